//! libFuzzer entry point; the body is [`dsync_fuzz::tcp_frames::run`], shared with the stable corpus test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dsync_fuzz::tcp_frames::run(data));
