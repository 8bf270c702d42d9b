//! Password hashes and permission checks, as RabbitMQ's internal auth backend does them.
//!
//! Hashes are RabbitMQ's `rabbit_password_hashing_*`: base64 of a 4-byte salt followed by
//! HASH(salt ++ password), so definitions exported from RabbitMQ import unchanged. New
//! passwords get SHA-256 (RabbitMQ 3.10's default); SHA-512 and MD5 hashes imported from
//! other setups are verified as RabbitMQ verifies them.
//! Permissions are three regexes per user and vhost (configure, write, read), matched
//! anywhere in the resource name as Erlang's `re:run` does; the empty pattern matches nothing.
//! Erlang's `re` is PCRE, so patterns are compiled with fancy-regex (look-around and
//! back-references, as `^(?!private).*` needs); a brace that does not count is a literal,
//! as in PCRE. A match that gives up (fancy-regex's backtracking limit) denies.

use base64::{engine::general_purpose::STANDARD, Engine};
use fancy_regex::Regex;
use md5::Md5;
use sha2::{Digest, Sha256, Sha512};

use crate::util::error::AmqpError;

/// The algorithm warren writes for new passwords, as RabbitMQ 3.10 does by default.
pub const HASHING_ALGORITHM: &str = "rabbit_password_hashing_sha256";

/// The password hashing algorithms RabbitMQ ships, all `base64(salt ++ HASH(salt ++ password))`
/// with a 4-byte salt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashingAlgorithm {
    Sha256,
    Sha512,
    /// RabbitMQ 3.0's, still read from old exports.
    Md5,
}

impl HashingAlgorithm {
    /// The algorithm named by a user's `hashing_algorithm`, None if RabbitMQ has no such one.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "rabbit_password_hashing_sha256" => Some(HashingAlgorithm::Sha256),
            "rabbit_password_hashing_sha512" => Some(HashingAlgorithm::Sha512),
            "rabbit_password_hashing_md5" => Some(HashingAlgorithm::Md5),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            HashingAlgorithm::Sha256 => "rabbit_password_hashing_sha256",
            HashingAlgorithm::Sha512 => "rabbit_password_hashing_sha512",
            HashingAlgorithm::Md5 => "rabbit_password_hashing_md5",
        }
    }

    /// HASH(salt ++ password).
    fn salted_digest(self, salt: &[u8], password: &str) -> Vec<u8> {
        match self {
            HashingAlgorithm::Sha256 => {
                let mut h = Sha256::new();
                h.update(salt);
                h.update(password.as_bytes());
                h.finalize().to_vec()
            }
            HashingAlgorithm::Sha512 => {
                let mut h = Sha512::new();
                h.update(salt);
                h.update(password.as_bytes());
                h.finalize().to_vec()
            }
            HashingAlgorithm::Md5 => {
                let mut h = Md5::new();
                h.update(salt);
                h.update(password.as_bytes());
                h.finalize().to_vec()
            }
        }
    }
}

/// The operating system's random source failed, so no salt could be made.
#[derive(Debug, thiserror::Error)]
#[error("no random salt for the password hash: {0}")]
pub struct SaltError(String);

/// Hashes `password` (SHA-256) with a fresh salt from the operating system's
/// cryptographic random source.
pub fn hash_password(password: &str) -> Result<String, SaltError> {
    let mut salt = [0u8; 4];
    getrandom::fill(&mut salt).map_err(|e| SaltError(e.to_string()))?;
    Ok(hash_with_salt(salt, password))
}

/// The SHA-256 hash of `password` with `salt`.
pub fn hash_with_salt(salt: [u8; 4], password: &str) -> String {
    hash_with_salt_as(HashingAlgorithm::Sha256, salt, password)
}

/// The hash of `password` with `salt` in `algorithm`, as RabbitMQ writes it.
pub fn hash_with_salt_as(algorithm: HashingAlgorithm, salt: [u8; 4], password: &str) -> String {
    let mut out = salt.to_vec();
    out.extend_from_slice(&algorithm.salted_digest(&salt, password));
    STANDARD.encode(out)
}

/// Checks `password` against a stored hash. An empty hash (a user created with
/// `password_hash: ""`) accepts no password, as in RabbitMQ; so does an algorithm
/// RabbitMQ does not have (the caller logs that).
pub fn verify_password(hash: &str, algorithm: &str, password: &str) -> bool {
    let Some(algorithm) = HashingAlgorithm::from_name(algorithm) else {
        return false;
    };
    let Ok(raw) = STANDARD.decode(hash) else {
        return false;
    };
    if raw.len() < 5 {
        return false;
    }
    let (salt, digest) = raw.split_at(4);
    let computed = algorithm.salted_digest(salt, password);
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
            Some(compile(source).map_err(|e| PatternError {
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
            Some(re) => re.is_match(name).unwrap_or(false),
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

/// Compiles an Erlang `re` (PCRE) pattern.
fn compile(source: &str) -> Result<Regex, fancy_regex::Error> {
    Regex::new(&literal_braces(source))
}

/// Rewrites an Erlang `re` pattern for fancy-regex: a brace that does not open or
/// close a counted repetition (`{n}`, `{n,}`, `{n,m}`) is a literal in PCRE, so
/// `^{username}\.` is valid there; fancy-regex needs it escaped.
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
        compile(source).map(drop).map_err(|e| PatternError {
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
            Some(compile(&expanded).ok())
        };
        TopicPattern {
            source: source.to_string(),
            compiled,
        }
    }

    pub fn matches(&self, routing_key: &str) -> bool {
        match &self.compiled {
            None => true,
            Some(Some(re)) => re.is_match(routing_key).unwrap_or(false),
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

    fn md5(data: &[u8]) -> [u8; 16] {
        Md5::digest(data).into()
    }

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
        let fresh = hash_password("secret").unwrap();
        assert!(verify_password(&fresh, HASHING_ALGORITHM, "secret"));
        assert_ne!(fresh, hash_password("secret").unwrap(), "salts differ");
    }

    /// Checks a vector both ways: it verifies, a wrong password does not, and hashing the
    /// password with the vector's salt gives the vector back.
    fn check_vector(algorithm: &str, hash: &str, password: &str) {
        assert!(verify_password(hash, algorithm, password), "{algorithm}");
        assert!(!verify_password(hash, algorithm, "wrong"), "{algorithm}");
        let raw = STANDARD.decode(hash).unwrap();
        let salt = [raw[0], raw[1], raw[2], raw[3]];
        let alg = HashingAlgorithm::from_name(algorithm).unwrap();
        assert_eq!(alg.name(), algorithm);
        assert_eq!(hash_with_salt_as(alg, salt, password), hash);
    }

    #[test]
    fn sha256_vector_from_rabbitmq() {
        // Made by RabbitMQ 3.10.8 (PUT /api/users/wh_sha256a {"password":"s3cret-pw"},
        // then GET): its default algorithm, which warren writes too.
        check_vector(
            "rabbit_password_hashing_sha256",
            "fPFCLmaXz+qXrQBTvZ9o6mAboaxElZrqQu4StMZiaNYQk6FN",
            "s3cret-pw",
        );
    }

    #[test]
    fn sha512_vector_accepted_by_rabbitmq() {
        // base64(salt a1b2c3d4 ++ sha512(salt ++ "s3cret-pw512")), made with Python's
        // hashlib; RabbitMQ 3.10.8 imported it (POST /api/definitions) and let the user
        // log in with that password (GET /api/whoami 200) and not with another (401).
        check_vector(
            "rabbit_password_hashing_sha512",
            "obLD1ITZGumULlBrtH8N5lT0o9U89f6cBHscT8bMGsFXELf2gcCZb42aoLeJsVsyEkPi1VGowtGBBf2hZO2GCv4LBYo=",
            "s3cret-pw512",
        );
    }

    #[test]
    fn md5_vector_accepted_by_rabbitmq() {
        // base64(salt 0badf00d ++ md5(salt ++ "md5-pässwort" as UTF-8)), made with Python's
        // hashlib; RabbitMQ 3.10.8 imported it and let the user log in as for sha512.
        check_vector(
            "rabbit_password_hashing_md5",
            "C63wDSP2otUR3h6tpoGL1SEeyzQ=",
            "md5-pässwort",
        );
    }

    #[test]
    fn md5_matches_rfc_1321() {
        let hex = |d: [u8; 16]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
        for (input, want) in [
            ("", "d41d8cd98f00b204e9800998ecf8427e"),
            ("a", "0cc175b9c0f1b6a831c399e269772661"),
            ("abc", "900150983cd24fb0d6963f7d28e17f72"),
            ("message digest", "f96b697d7cb7938d525a2f31aaf161d0"),
            (
                "abcdefghijklmnopqrstuvwxyz",
                "c3fcd3d76192e4007dfb496cca67e13b",
            ),
            (
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
                "d174ab98d277d9f5a5611c2c9f419d9f",
            ),
            (
                "12345678901234567890123456789012345678901234567890123456789012345678901234567890",
                "57edf4a22be3c955ac49da2e2107b67a",
            ),
        ] {
            assert_eq!(hex(md5(input.as_bytes())), want, "{input:?}");
        }
        // Lengths around the 56-byte padding boundary.
        for (len, want) in [
            (55, "ef1772b6dff9a122358552954ad0df65"),
            (56, "3b0c8ac703f828b04c6c197006d17218"),
            (57, "652b906d60af96844ebd21b674f35e93"),
            (64, "014842d480b571495a4a0363793f7367"),
        ] {
            assert_eq!(hex(md5(&vec![b'a'; len])), want, "{len} bytes");
        }
    }

    #[test]
    fn unknown_algorithm_accepts_nothing() {
        let hash = "fPFCLmaXz+qXrQBTvZ9o6mAboaxElZrqQu4StMZiaNYQk6FN";
        assert!(HashingAlgorithm::from_name("rabbit_password_hashing_bcrypt").is_none());
        assert!(!verify_password(
            hash,
            "rabbit_password_hashing_bcrypt",
            "s3cret-pw"
        ));
        assert!(!verify_password(hash, "", "s3cret-pw"));
        // A hash of one algorithm does not pass as another.
        assert!(!verify_password(
            hash,
            "rabbit_password_hashing_sha512",
            "s3cret-pw"
        ));
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
    fn pcre_look_around_and_back_references() {
        // RabbitMQ's documented "everything but" idiom.
        let p = Permission::new("^(?!private).*", "(a)\\1", "(?<=x)y").unwrap();
        assert!(p.allows(Access::Configure, "public-q"));
        assert!(!p.allows(Access::Configure, "private-q"));
        assert!(p.allows(Access::Configure, "q-private"));
        assert!(p.allows(Access::Write, "baab"));
        assert!(!p.allows(Access::Write, "abab"));
        assert!(p.allows(Access::Read, "xy"));
        assert!(!p.allows(Access::Read, "zy"));
        // Literal braces, as PCRE reads them, in permissions too.
        assert!(Permission::new("^{a}$", ".*", ".*")
            .unwrap()
            .allows(Access::Configure, "{a}"));
        let t = TopicPermission::new("u", "v", "x", "^(?!{username}\\.)", "(\\w)\\1").unwrap();
        assert!(t.allows(Access::Write, "w.a"));
        assert!(!t.allows(Access::Write, "u.a"));
        assert!(t.allows(Access::Read, "a.bb"));
        assert!(!t.allows(Access::Read, "a.b"));
        assert!(Permission::new("(?!", ".*", ".*").is_err());
        assert!(Permission::new("\\2(a)", ".*", ".*").is_err());
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
