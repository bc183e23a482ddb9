#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| postern::fuzzing::image_params(data));
