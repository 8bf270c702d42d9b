#![no_main]
//! `cargo +nightly fuzz run --fuzz-dir crates/warren-fuzz/fuzz definitions`: see warren_fuzz::definitions.

libfuzzer_sys::fuzz_target!(|data: &[u8]| warren_fuzz::definitions::run(data));
