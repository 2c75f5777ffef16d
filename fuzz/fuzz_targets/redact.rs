#![no_main]
//! Fuzz target: cofferd::fuzzing::redact.

libfuzzer_sys::fuzz_target!(|data: &[u8]| cofferd::fuzzing::redact(data));
