#![no_main]
//! Fuzz target: cofferd::fuzzing::embeddings_request.

libfuzzer_sys::fuzz_target!(|data: &[u8]| cofferd::fuzzing::embeddings_request(data));
