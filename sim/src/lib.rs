//! Whole Alice Realtime clusters on turmoil: the shell's own code on simulated nodes, a fake Redis,
//! a store that fails on demand and scripted Socket.IO clients, all on simulated time, with faults
//! injected from a plan drawn from the seed. See `README.md`.

pub mod check;
pub mod client;
pub mod clients;
pub mod net;
pub mod redis;
pub mod scenario;
pub mod seeds;
pub mod store;
pub mod trace;
pub mod world;
