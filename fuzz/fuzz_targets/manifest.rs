#![no_main]
//! Fuzz target: cofferd::fuzzing::manifest.

libfuzzer_sys::fuzz_target!(|data: &[u8]| cofferd::fuzzing::manifest(data));
