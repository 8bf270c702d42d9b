//! The fuzz targets' bodies, as ordinary functions over arbitrary bytes.
//!
//! Each module drives one of warren's input parsers the way the broker does and checks
//! what must hold for every input: no panic, no hang, and the module's own invariants
//! (a re-encoded value parses back the same, output frames are well formed, ...). A
//! broken invariant panics, which libFuzzer reports as a crash.
//!
//! `fuzz/fuzz_targets/*.rs` (cargo-fuzz, nightly) call these functions; `tests/replay.rs`
//! runs every committed seed (`corpus/<target>/`) and every crash input found so far
//! (`regressions/<target>/`) through them with stable Rust, as part of `cargo test`.

pub mod connection;
pub mod definitions;
pub mod field_table;
pub mod frame;
pub mod http;
pub mod method;
pub mod rabbitmq_conf;

/// A target's body: one input in, a panic when an invariant breaks.
pub type Harness = fn(&[u8]);

/// The fuzz targets, by name (the names of `fuzz/fuzz_targets/*.rs` and `corpus/*`).
pub const TARGETS: [(&str, Harness); 7] = [
    ("frame", frame::run),
    ("method", method::run),
    ("field_table", field_table::run),
    ("connection", connection::run),
    ("definitions", definitions::run),
    ("http", http::run),
    ("rabbitmq_conf", rabbitmq_conf::run),
];

/// One tokio runtime per process (current-thread: inputs run one at a time, and the
/// fuzzer's process should not start worker threads per input).
pub(crate) fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("cannot build a tokio runtime: {e}"))
    })
}
