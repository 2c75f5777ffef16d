#![no_main]
//! Fuzz target: cofferd::fuzzing::attributes_request.

libfuzzer_sys::fuzz_target!(|data: &[u8]| cofferd::fuzzing::attributes_request(data));
