//! The load tools' shared parts; the criterion benches live in `benches/`, the tools in `src/bin/`.

pub mod honest;
pub mod usage;
pub mod wire;
