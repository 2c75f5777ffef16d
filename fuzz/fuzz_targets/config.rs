#![no_main]
//! Fuzz target: cofferd::fuzzing::config.

libfuzzer_sys::fuzz_target!(|data: &[u8]| cofferd::fuzzing::config(data));
