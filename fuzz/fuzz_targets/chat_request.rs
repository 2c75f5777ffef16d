#![no_main]
//! Fuzz target: cofferd::fuzzing::chat_request.

libfuzzer_sys::fuzz_target!(|data: &[u8]| cofferd::fuzzing::chat_request(data));
