#![no_main]
//! Fuzz target: cofferd::fuzzing::audit_line.

libfuzzer_sys::fuzz_target!(|data: &[u8]| cofferd::fuzzing::audit_line(data));
