//! Password hashes and permission checks, as RabbitMQ's internal auth backend does them.
//!
//! Hashes are `rabbit_password_hashing_sha256`: base64 of a 4-byte salt followed by
//! SHA-256(salt ++ password), so definitions exported from RabbitMQ import unchanged.
//! Permissions are three regexes per user and vhost (configure, write, read), matched
//! anywhere in the resource name as Erlang's `re:run` does; the empty pattern matches nothing.

use base64::{engine::general_purpose::STANDARD, Engine};
use regex::Regex;
use sha2::{Digest, Sha256};

use crate::util::error::AmqpError;

/// The only hashing algorithm warren writes; the MD5 one RabbitMQ 3.0 used is also read.
pub const HASHING_ALGORITHM: &str = "rabbit_password_hashing_sha256";

/// Hashes `password` with a fresh random salt.
pub fn hash_password(password: &str) -> String {
    let salt = (crate::util::names::random_u64() as u32).to_be_bytes();
    hash_with_salt(salt, password)
}

pub fn hash_with_salt(salt: [u8; 4], password: &str) -> String {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(password.as_bytes());
    let mut out = salt.to_vec();
    out.extend_from_slice(&h.finalize());
    STANDARD.encode(out)
}

/// Checks `password` against a stored hash. An empty hash (a user created with
/// `password_hash: ""`) accepts no password, as in RabbitMQ.
pub fn verify_password(hash: &str, algorithm: &str, password: &str) -> bool {
    let Ok(raw) = STANDARD.decode(hash) else {
        return false;
    };
    if raw.len() < 5 {
        return false;
    }
    let (salt, digest) = raw.split_at(4);
    let computed: Vec<u8> = match algorithm {
        "rabbit_password_hashing_md5" => {
            // Not supported: md5 is not among the allowed crates; such users cannot log in.
            return false;
        }
        "rabbit_password_hashing_sha512" => return false,
        _ => {
            let mut h = Sha256::new();
            h.update(salt);
            h.update(password.as_bytes());
            h.finalize().to_vec()
        }
    };
    // Constant-time compare: no early exit on the first differing byte.
    computed.len() == digest.len()
        && computed
            .iter()
            .zip(digest)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// The three kinds of access RabbitMQ checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Configure,
    Write,
    Read,
}

/// What is being accessed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Queue,
    Exchange,
}

impl Resource {
    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Queue => "queue",
            Resource::Exchange => "exchange",
        }
    }
}

/// One regex of a permission: the source text (for listing and export) and its compiled
/// form. `.*` is kept uncompiled as the allow-all fast path publishes hit.
#[derive(Debug, Clone)]
pub struct Pattern {
    pub source: String,
    compiled: Option<Regex>,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid regular expression '{pattern}': {reason}")]
pub struct PatternError {
    pub pattern: String,
    pub reason: String,
}

impl Pattern {
    pub fn new(source: &str) -> Result<Self, PatternError> {
        let compiled = if source == ".*" || source.is_empty() {
            None
        } else {
            Some(Regex::new(source).map_err(|e| PatternError {
                pattern: source.to_string(),
                reason: e.to_string(),
            })?)
        };
        Ok(Pattern {
            source: source.to_string(),
            compiled,
        })
    }

    pub fn matches(&self, name: &str) -> bool {
        match &self.compiled {
            Some(re) => re.is_match(name),
            None => self.source == ".*",
        }
    }
}

/// configure / write / read patterns of a user in a vhost.
#[derive(Debug, Clone)]
pub struct Permission {
    pub configure: Pattern,
    pub write: Pattern,
    pub read: Pattern,
}

impl Permission {
    pub fn new(configure: &str, write: &str, read: &str) -> Result<Self, PatternError> {
        Ok(Permission {
            configure: Pattern::new(configure)?,
            write: Pattern::new(write)?,
            read: Pattern::new(read)?,
        })
    }

    pub fn allow_all() -> Self {
        let all = Pattern {
            source: ".*".into(),
            compiled: None,
        };
        Permission {
            configure: all.clone(),
            write: all.clone(),
            read: all,
        }
    }

    pub fn allows(&self, access: Access, name: &str) -> bool {
        match access {
            Access::Configure => self.configure.matches(name),
            Access::Write => self.write.matches(name),
            Access::Read => self.read.matches(name),
        }
    }
}

/// Rewrites an Erlang `re` pattern for the regex crate: a brace that does not open or
/// close a counted repetition (`{n}`, `{n,}`, `{n,m}`) is a literal in PCRE, so
/// `^{username}\.` is valid there; the regex crate needs it escaped.
fn literal_braces(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len() + 4);
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        let step = match c {
            '\\' => {
                out.extend(chars.get(i..(i + 2).min(chars.len())).unwrap_or_default());
                2
            }
            '{' => match counted_repetition(chars.get(i..).unwrap_or_default()) {
                Some(len) => {
                    out.extend(chars.get(i..i + len).unwrap_or_default());
                    len
                }
                None => {
                    out.push_str("\\{");
                    1
                }
            },
            '}' => {
                out.push_str("\\}");
                1
            }
            c => {
                out.push(c);
                1
            }
        };
        i += step;
    }
    out
}

/// The length of `{n}`, `{n,}` or `{n,m}` at the start of `chars`, if it is one.
fn counted_repetition(chars: &[char]) -> Option<usize> {
    let close = chars.iter().position(|&c| c == '}')?;
    let inner: String = chars.get(1..close)?.iter().collect();
    let (low, high) = inner.split_once(',').unwrap_or((&inner, "0"));
    let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    (!low.is_empty() && digits(low) && digits(high)).then_some(close + 1)
}

/// One pattern of a topic permission, with `{username}` and `{vhost}` expanded as
/// RabbitMQ's internal backend expands them. RabbitMQ 3.10 gives AMQP 0-9-1
/// connections no `{client_id}` (only MQTT's direct connections carry one), so it stays
/// as written and matches itself literally. The empty pattern is `^$`: only the empty
/// routing key passes.
#[derive(Debug, Clone)]
pub struct TopicPattern {
    pub source: String,
    /// `None` for `.*`; an expanded pattern that no longer compiles matches nothing.
    compiled: Option<Option<Regex>>,
}

impl TopicPattern {
    /// Checks that `source` is a valid pattern before expansion, as RabbitMQ does when
    /// the permission is set.
    pub fn validate(source: &str) -> Result<(), PatternError> {
        Regex::new(&literal_braces(source))
            .map(drop)
            .map_err(|e| PatternError {
                pattern: source.to_string(),
                reason: e.to_string(),
            })
    }

    fn new(source: &str, user: &str, vhost: &str) -> Self {
        let compiled = if source == ".*" {
            None
        } else {
            let effective = if source.is_empty() { "^$" } else { source };
            let expanded = expand(effective, user, vhost);
            Some(Regex::new(&literal_braces(&expanded)).ok())
        };
        TopicPattern {
            source: source.to_string(),
            compiled,
        }
    }

    pub fn matches(&self, routing_key: &str) -> bool {
        match &self.compiled {
            None => true,
            Some(Some(re)) => re.is_match(routing_key),
            Some(None) => false,
        }
    }
}

/// RabbitMQ's variable expansion in topic permissions (`binary:replace`, no escaping).
pub fn expand(pattern: &str, user: &str, vhost: &str) -> String {
    pattern
        .replace("{username}", user)
        .replace("{vhost}", vhost)
}

/// A user's topic permission for one exchange of a vhost: patterns for the routing keys
/// of publishes (write) and of bindings (read).
#[derive(Debug, Clone)]
pub struct TopicPermission {
    pub exchange: String,
    pub write: TopicPattern,
    pub read: TopicPattern,
}

impl TopicPermission {
    /// `user` and `vhost` are those it belongs to, for the variables in its patterns.
    pub fn new(
        user: &str,
        vhost: &str,
        exchange: &str,
        write: &str,
        read: &str,
    ) -> Result<Self, PatternError> {
        TopicPattern::validate(write)?;
        TopicPattern::validate(read)?;
        Ok(TopicPermission {
            exchange: exchange.to_string(),
            write: TopicPattern::new(write, user, vhost),
            read: TopicPattern::new(read, user, vhost),
        })
    }

    /// Write for publishes, read for bindings; configure is not a topic access.
    pub fn allows(&self, access: Access, routing_key: &str) -> bool {
        match access {
            Access::Write => self.write.matches(routing_key),
            Access::Read => self.read.matches(routing_key),
            Access::Configure => true,
        }
    }
}

/// A user's topic permissions in a vhost, by exchange.
pub type TopicPermissions = std::collections::BTreeMap<String, TopicPermission>;

/// RabbitMQ's topic refusal text (verified against RabbitMQ 3.10.8).
pub fn topic_refused(routing_key: &str, exchange: &str, vhost: &str, user: &str) -> AmqpError {
    AmqpError::access_refused(format_args!(
        "access to topic '{routing_key}' in exchange '{exchange}' in vhost '{vhost}' refused for user '{user}'"
    ))
}

/// RabbitMQ's refusal text: `access to queue 'q' in vhost '/' refused for user 'u'`.
pub fn refused(resource: Resource, name: &str, vhost: &str, user: &str) -> AmqpError {
    AmqpError::access_refused(format_args!(
        "access to {} '{name}' in vhost '{vhost}' refused for user '{user}'",
        resource.as_str()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_matches_rabbitmq() {
        // Exported from RabbitMQ 3.10 (tests/fixtures/management/user.json): user mon,
        // password monpw.
        let hash = "+w3C+93MKW0/5IoF3r5lcrBfbCMvjGigXMVgXSkzBY9zQXNX";
        assert!(verify_password(hash, HASHING_ALGORITHM, "monpw"));
        assert!(!verify_password(hash, HASHING_ALGORITHM, "monpx"));
        assert!(!verify_password("", HASHING_ALGORITHM, ""));
        let raw = STANDARD.decode(hash).unwrap_or_default();
        let salt = [raw[0], raw[1], raw[2], raw[3]];
        assert_eq!(hash_with_salt(salt, "monpw"), hash);
        let fresh = hash_password("secret");
        assert!(verify_password(&fresh, HASHING_ALGORITHM, "secret"));
        assert_ne!(fresh, hash_password("secret"), "salts differ");
    }

    #[test]
    fn patterns_match_like_erlang_re() {
        let p = Permission::new("^c", "w", "").unwrap();
        assert!(p.allows(Access::Configure, "cq"));
        assert!(!p.allows(Access::Configure, "qc"));
        // Unanchored: matches anywhere.
        assert!(p.allows(Access::Write, "xwx"));
        // The empty pattern grants nothing.
        assert!(!p.allows(Access::Read, ""));
        assert!(!p.allows(Access::Read, "anything"));
        assert!(Permission::allow_all().allows(Access::Read, ""));
        assert!(Permission::new("(", ".*", ".*").is_err());
    }

    #[test]
    fn refusal_text() {
        let e = refused(Resource::Queue, "other", "/", "limited");
        assert_eq!(
            e.text,
            "ACCESS_REFUSED - access to queue 'other' in vhost '/' refused for user 'limited'"
        );
    }

    #[test]
    fn braces_are_literal_unless_they_count() {
        assert_eq!(literal_braces("^{username}\\."), "^\\{username\\}\\.");
        assert_eq!(literal_braces("a{2}b{1,}c{1,3}"), "a{2}b{1,}c{1,3}");
        assert_eq!(literal_braces("\\{x}"), "\\{x\\}");
        assert_eq!(literal_braces("{,3}"), "\\{,3\\}");
        assert!(TopicPattern::validate("^{client_id}$").is_ok());
        assert!(TopicPattern::validate("(").is_err());
    }

    #[test]
    fn topic_patterns_expand_and_match_like_rabbitmq() {
        let p =
            TopicPermission::new("u", "v", "x", "^{username}\\.", "^{vhost}-{client_id}").unwrap();
        assert!(p.allows(Access::Write, "u.a"));
        assert!(!p.allows(Access::Write, "w.a"));
        // {client_id} is not expanded for AMQP 0-9-1: it matches itself.
        assert!(p.allows(Access::Read, "v-{client_id}"));
        assert!(!p.allows(Access::Read, "v-cid"));
        // The empty pattern lets only the empty routing key through.
        let empty = TopicPermission::new("u", "v", "x", "", ".*").unwrap();
        assert!(empty.allows(Access::Write, ""));
        assert!(!empty.allows(Access::Write, "a"));
        assert!(empty.allows(Access::Read, "anything"));
        // Unanchored, as Erlang's re:run.
        let mid = TopicPermission::new("u", "v", "x", "b", "a{2}").unwrap();
        assert!(mid.allows(Access::Write, "abc"));
        assert!(mid.allows(Access::Read, "xaax"));
        assert!(!mid.allows(Access::Read, "xax"));
        assert!(TopicPermission::new("u", "v", "x", "(", ".*").is_err());
        // A user name that breaks the expanded regex denies rather than fails.
        let odd = TopicPermission::new("(", "v", "x", "{username}", ".*").unwrap();
        assert!(!odd.allows(Access::Write, "("));
    }

    #[test]
    fn topic_refusal_text() {
        let e = topic_refused("b.1", "amq.topic", "tpv", "tpu");
        assert_eq!(
            e.text,
            "ACCESS_REFUSED - access to topic 'b.1' in exchange 'amq.topic' in vhost 'tpv' refused for user 'tpu'"
        );
    }
}
