//! Benchmarks and the load generator live in `benches/` and `src/bin/`.
