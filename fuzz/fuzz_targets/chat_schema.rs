#![no_main]
//! Fuzz target: cofferd::fuzzing::chat_schema (the response_format schema path:
//! checks, llama.cpp's converter, the grammar check and llama.cpp's grammar parser).

libfuzzer_sys::fuzz_target!(|data: &[u8]| cofferd::fuzzing::chat_schema(data));
