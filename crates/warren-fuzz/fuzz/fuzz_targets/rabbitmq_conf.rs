#![no_main]
//! `cargo +nightly fuzz run --fuzz-dir crates/warren-fuzz/fuzz rabbitmq_conf`: see warren_fuzz::rabbitmq_conf.

libfuzzer_sys::fuzz_target!(|data: &[u8]| warren_fuzz::rabbitmq_conf::run(data));
