//! rabbitmq.conf and enabled_plugins: the input is a file's bytes, read by the parser and
//! mapped to settings as the broker reads `/etc/rabbitmq` at start.
//!
//! - `parse_utf8` either accepts the whole file or names a line that exists in it;
//! - every entry it returns has a non-empty key, a line within the file, and lines in
//!   increasing order;
//! - mapping the entries to settings never panics, and every problem it reports names an
//!   entry's line;
//! - the enabled_plugins parser never panics, and what it accepts are plugin names without
//!   separators.

use warren_server::util::rabbitmq_conf::{parse_enabled_plugins, parse_utf8, settings};

/// Reads `data` as rabbitmq.conf, then as enabled_plugins.
pub fn run(data: &[u8]) {
    let lines = 1 + data.iter().filter(|b| **b == b'\n').count();
    match parse_utf8(data) {
        Ok(entries) => {
            let mut last = 0;
            for e in &entries {
                assert!(!e.key.is_empty(), "an entry without a key: {e:?}");
                assert!(
                    e.line > last && e.line <= lines,
                    "line {} of {lines}",
                    e.line
                );
                last = e.line;
            }
            let report = settings(entries.iter().map(|e| ("fuzz.conf", e)));
            for p in report.warnings.iter().chain(&report.errors) {
                assert!(
                    entries.iter().any(|e| e.line == p.line),
                    "a problem on no entry's line: {p:?}"
                );
            }
        }
        Err(e) => assert!(
            e.line >= 1 && e.line <= lines,
            "error on line {} of {lines}",
            e.line
        ),
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(plugins) = parse_enabled_plugins(text) {
            for p in plugins {
                assert!(
                    !p.is_empty() && !p.contains([',', '[', ']', '.']),
                    "plugin name {p:?}"
                );
            }
        }
    }
}
