//! The keys RabbitMQ 3.10.8 accepts in rabbitmq.conf: every `{mapping, "..."}` of the
//! cuttlefish schemas it ships (the broker's, every bundled plugin's, and cuttlefish's
//! Erlang VM schema), one per line in `keys-3.10.8.txt`. A segment `$name` stands for
//! any one segment (`listeners.tcp.$name` matches `listeners.tcp.default`).
//!
//! RabbitMQ refuses to start on a key outside this list ("Conf file attempted to set
//! unknown variable"); warren does the same, and warns about the keys in it that it
//! does not act on.

use std::sync::OnceLock;

/// The RabbitMQ release the key list was taken from.
pub const RABBITMQ_KEYS_VERSION: &str = "3.10.8";

const KEYS: &str = include_str!("keys-3.10.8.txt");

fn patterns() -> &'static [Vec<&'static str>] {
    static PATTERNS: OnceLock<Vec<Vec<&'static str>>> = OnceLock::new();
    PATTERNS.get_or_init(|| {
        KEYS.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(|l| l.split('.').collect())
            .collect()
    })
}

/// Whether `key` (dotted) is one RabbitMQ 3.10 knows.
pub fn is_rabbitmq_key(key: &str) -> bool {
    let segments: Vec<&str> = key.split('.').collect();
    patterns().iter().any(|p| {
        p.len() == segments.len()
            && p.iter()
                .zip(&segments)
                .all(|(want, got)| want.starts_with('$') || want == got)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_and_unknown_keys() {
        for key in [
            "listeners.tcp.default",
            "listeners.tcp.1",
            "loopback_users.guest",
            "default_user_tags.administrator",
            "cluster_formation.peer_discovery_backend",
            "mqtt.listeners.tcp.default",
            "log.console.level",
            "management_agent.disable_metrics_collector",
        ] {
            assert!(is_rabbitmq_key(key), "{key}");
        }
        for key in [
            "foo.bar",
            "listeners",
            "listeners.tcp.a.b",
            "default_user.x",
            "",
        ] {
            assert!(!is_rabbitmq_key(key), "{key}");
        }
    }
}
