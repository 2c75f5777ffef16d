#![no_main]
//! Fuzz target: cofferd::fuzzing::infer_request.

libfuzzer_sys::fuzz_target!(|data: &[u8]| cofferd::fuzzing::infer_request(data));
