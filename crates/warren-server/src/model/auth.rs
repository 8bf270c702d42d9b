//! Password hashes and permission checks, as RabbitMQ's internal auth backend does them.
//!
//! Hashes are RabbitMQ's `rabbit_password_hashing_*`: base64 of a 4-byte salt followed by
//! HASH(salt ++ password), so definitions exported from RabbitMQ import unchanged. New
//! passwords get SHA-256 (RabbitMQ 3.10's default); SHA-512 and MD5 hashes imported from
//! other setups are verified as RabbitMQ verifies them.
//! Permissions are three regexes per user and vhost (configure, write, read), matched
//! anywhere in the resource name as Erlang's `re:run` does; the empty pattern matches nothing.

use base64::{engine::general_purpose::STANDARD, Engine};
use regex::Regex;
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
                let mut data = Vec::with_capacity(salt.len() + password.len());
                data.extend_from_slice(salt);
                data.extend_from_slice(password.as_bytes());
                md5(&data).to_vec()
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

/// MD5 (RFC 1321), only to verify the legacy `rabbit_password_hashing_md5` hashes.
fn md5(data: &[u8]) -> [u8; 16] {
    const S: [u32; 64] = [
        7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5,
        9, 14, 20, 5, 9, 14, 20, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10,
        15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
    ];
    // K[i] = floor(abs(sin(i + 1)) * 2^32).
    const K: [u32; 64] = [
        0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613,
        0xfd469501, 0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193,
        0xa679438e, 0x49b40821, 0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d,
        0x02441453, 0xd8a1e681, 0xe7d3fbc8, 0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed,
        0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a, 0xfffa3942, 0x8771f681, 0x6d9d6122,
        0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70, 0x289b7ec6, 0xeaa127fa,
        0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665, 0xf4292244,
        0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
        0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb,
        0xeb86d391,
    ];
    let mut state: [u32; 4] = [0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476];
    let mut msg = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_le_bytes());
    for block in msg.chunks_exact(64) {
        let mut m = [0u32; 16];
        for (word, bytes) in m.iter_mut().zip(block.chunks_exact(4)) {
            *word = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        }
        let [mut a, mut b, mut c, mut d] = state;
        for i in 0..64 {
            let (f, g) = match i / 16 {
                0 => ((b & c) | (!b & d), i),
                1 => ((d & b) | (!d & c), (5 * i + 1) % 16),
                2 => (b ^ c ^ d, (3 * i + 5) % 16),
                _ => (c ^ (b | !d), (7 * i) % 16),
            };
            let rotated = a
                .wrapping_add(f)
                .wrapping_add(K[i])
                .wrapping_add(m[g])
                .rotate_left(S[i]);
            a = d;
            d = c;
            c = b;
            b = b.wrapping_add(rotated);
        }
        state[0] = state[0].wrapping_add(a);
        state[1] = state[1].wrapping_add(b);
        state[2] = state[2].wrapping_add(c);
        state[3] = state[3].wrapping_add(d);
    }
    let mut out = [0u8; 16];
    for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    out
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
    fn refusal_text() {
        let e = refused(Resource::Queue, "other", "/", "limited");
        assert_eq!(
            e.text,
            "ACCESS_REFUSED - access to queue 'other' in vhost '/' refused for user 'limited'"
        );
    }
}
