#![no_main]
//! `cargo +nightly fuzz run --fuzz-dir crates/warren-fuzz/fuzz field_table`: see warren_fuzz::field_table.

libfuzzer_sys::fuzz_target!(|data: &[u8]| warren_fuzz::field_table::run(data));
