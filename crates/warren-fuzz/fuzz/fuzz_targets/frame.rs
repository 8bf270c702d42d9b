#![no_main]
//! `cargo +nightly fuzz run --fuzz-dir crates/warren-fuzz/fuzz frame`: see warren_fuzz::frame.

libfuzzer_sys::fuzz_target!(|data: &[u8]| warren_fuzz::frame::run(data));
