//! Fuzz target: see `alice_core::fuzzing::core_bursts` (`core_ops`, with runs of client events
//! handed to the core as bursts). Start it from `corpus/core_ops`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| alice_core::fuzzing::core_bursts(data));
