#![no_main]
//! `cargo +nightly fuzz run --fuzz-dir crates/warren-fuzz/fuzz http`: see warren_fuzz::http.

libfuzzer_sys::fuzz_target!(|data: &[u8]| warren_fuzz::http::run(data));
