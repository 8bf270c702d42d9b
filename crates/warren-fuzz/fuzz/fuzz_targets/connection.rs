#![no_main]
//! `cargo +nightly fuzz run --fuzz-dir crates/warren-fuzz/fuzz connection`: see warren_fuzz::connection.

libfuzzer_sys::fuzz_target!(|data: &[u8]| warren_fuzz::connection::run(data));
