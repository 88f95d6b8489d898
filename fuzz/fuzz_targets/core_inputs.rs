//! libFuzzer entry point; the body is [`dsync_fuzz::core_inputs::run`], shared with the stable corpus test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dsync_fuzz::core_inputs::run(data));
