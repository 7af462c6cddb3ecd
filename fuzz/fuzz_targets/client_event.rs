//! Fuzz target: see `alice_core::fuzzing::client_event` for what it feeds and what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| alice_core::fuzzing::client_event(data));
