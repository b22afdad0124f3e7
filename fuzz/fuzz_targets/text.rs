#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| npu_fuzz::text::run(data));
