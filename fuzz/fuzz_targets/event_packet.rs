//! Fuzz target: see `alice_shell::fuzzing::event_packet` for what it feeds and what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| alice_shell::fuzzing::event_packet(data));
