//! Server-generated names (`amq.gen-...`, `amq.ctag-...`), random like RabbitMQ's.

use std::{
    collections::hash_map::RandomState,
    hash::{BuildHasher, Hasher},
    sync::atomic::{AtomicU64, Ordering},
};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// 64 unpredictable bits: std's per-instance random hash keys, mixed with a counter so two
/// calls never collide.
pub(crate) fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.finish()
}

/// 22 characters of URL-safe base64 from 128 random bits, as RabbitMQ makes them.
pub fn random_suffix() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bits = (u128::from(random_u64()) << 64) | u128::from(random_u64());
    (0..22)
        .map(|i| ALPHABET[((bits >> (i * 6)) & 63) as usize] as char)
        .collect()
}

pub fn queue_name() -> String {
    format!("amq.gen-{}", random_suffix())
}

pub fn consumer_tag() -> String {
    format!("amq.ctag-{}", random_suffix())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_have_rabbitmq_shape_and_differ() {
        let a = queue_name();
        let b = queue_name();
        assert!(a.starts_with("amq.gen-"));
        assert_eq!(a.len(), "amq.gen-".len() + 22);
        assert_ne!(a, b);
        assert!(consumer_tag().starts_with("amq.ctag-"));
    }
}
