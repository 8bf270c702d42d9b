#![no_main]
//! `cargo +nightly fuzz run --fuzz-dir crates/warren-fuzz/fuzz method`: see warren_fuzz::method.

libfuzzer_sys::fuzz_target!(|data: &[u8]| warren_fuzz::method::run(data));
