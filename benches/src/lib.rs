//! Benchmarks and the load generator; built in their own issue.
