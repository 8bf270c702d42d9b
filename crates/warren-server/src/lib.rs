//! warren's AMQP 0-9-1 server: the broker model (vhosts, users, exchanges, queues), the
//! per-connection state machine with its channels, and the accept loop.
//!
//! Data flows one way: socket → codec → channel handler → router → queue → consumer's
//! connection task → codec → socket. Queue and channel rules live in pure crates
//! (warren-router, warren-store); this crate owns tasks, locks and sockets.
#![forbid(unsafe_code)]

// Layers, each importing only those above it in this list:
// util <- persist <- model <- session, admin <- recovery <- server.
pub mod admin;
pub mod model;
pub mod persist;
pub mod recovery;
mod server;
pub mod session;
pub mod util;

// The paths other crates use.
pub use admin::definitions;
pub use model::{
    alarm, args, auth, broker, config, limits, params, policy, queue, stats, timers, trace, vhost,
    views,
};
pub use persist::{spill, storage};
pub use util::{error, json, mailbox};

pub use broker::Broker;
pub use config::ServerConfig;
pub use error::{AmqpError, ReplyCode, Scope};
pub use server::{serve, serve_listeners, AmqpListener, Shutdown};
pub use session::connection::serve_stream;

#[cfg(test)]
mod layering {
    //! The layers above import one way: a file may name only its own layer and those
    //! before it (session and admin are siblings and do not import each other).

    use std::path::{Path, PathBuf};

    const LAYERS: [&str; 7] = [
        "util", "persist", "model", "session", "admin", "recovery", "server",
    ];

    fn rank(layer: &str) -> Option<usize> {
        LAYERS.iter().position(|l| *l == layer)
    }

    fn allowed(from: &str, to: &str) -> bool {
        if from == to {
            return true;
        }
        if matches!((from, to), ("session", "admin") | ("admin", "session")) {
            return false;
        }
        matches!((rank(from), rank(to)), (Some(f), Some(t)) if t < f)
    }

    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read src") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// The layers a source text names: `crate::layer` anywhere, and `layer::` inside a
    /// `use crate::{...}` list (where it is not preceded by another path segment).
    fn named_layers(code: &str) -> Vec<&'static str> {
        let mut found = Vec::new();
        for layer in LAYERS {
            let needle = format!("{layer}::");
            let mut from = 0;
            while let Some(at) = code[from..].find(&needle) {
                let start = from + at;
                let before = &code[..start];
                let prev = before.chars().last();
                let bare = !matches!(prev, Some(c) if c == ':' || c == '_' || c.is_alphanumeric());
                if before.ends_with("crate::") || bare {
                    found.push(layer);
                }
                from = start + needle.len();
            }
        }
        found
    }

    #[test]
    fn dependencies_run_one_way() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        let mut violations = Vec::new();
        for file in files {
            let rel = file.strip_prefix(&src).expect("under src");
            let first = rel.components().next().expect("a component");
            let layer = first
                .as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_string();
            if layer == "lib" {
                continue;
            }
            let text = std::fs::read_to_string(&file).expect("read source");
            // Unit tests may reach anywhere; comments name paths for readers.
            let code = text.split("#[cfg(test)]").next().unwrap_or("");
            let code: String = code
                .lines()
                .map(|l| l.split("//").next().unwrap_or(""))
                .collect::<Vec<_>>()
                .join("\n");
            for to in named_layers(&code) {
                if !allowed(&layer, to) {
                    violations.push(format!("{} ({layer}) imports {to}", rel.display()));
                }
            }
        }
        assert!(violations.is_empty(), "{violations:#?}");
    }

    #[test]
    fn the_check_sees_both_spellings() {
        assert_eq!(named_layers("use crate::session::x;"), vec!["session"]);
        assert_eq!(
            named_layers("use crate::{\n    model::queue::Queue,\n    util::clock,\n};"),
            vec!["util", "model"]
        );
        assert!(named_layers("warren_server::model::x; my_session::b").is_empty());
        assert!(!allowed("model", "session"));
        assert!(!allowed("session", "admin"));
        assert!(allowed("recovery", "admin"));
    }
}
