//! The `x-consistent-hash` exchange of rabbitmq_consistent_hash_exchange 3.10: binding
//! keys are weights, each destination owns `weight` consecutive buckets in binding order,
//! and a message goes to the bucket that jump consistent hashing (Lamping and Veach)
//! picks for the hash of its routing key, one header or one property.
//!
//! RabbitMQ hashes with `erlang:phash2` and seeds `rand`'s exs1024 from it; warren hashes
//! the same inputs with FNV-1a and a splitmix64 finaliser and jumps with the paper's
//! generator. Which queue one key lands on differs, the shares per weight do not
//! (tests/fixtures/plugins/consistent_hash_3.10.8.json holds RabbitMQ's counts).

use amq_protocol::types::{AMQPValue, FieldTable};

use crate::Destination;

/// What an exchange hashes on (its `hash-header` / `hash-property` argument).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HashOn {
    RoutingKey,
    Header(String),
    Property(HashProperty),
}

/// The properties `hash-property` may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashProperty {
    CorrelationId,
    MessageId,
    Timestamp,
}

impl HashOn {
    /// Reads an exchange's arguments; the error is RabbitMQ's 406 text.
    pub fn from_arguments(arguments: &FieldTable) -> Result<HashOn, String> {
        let text = |key: &str| match arguments.inner().get(key) {
            Some(AMQPValue::LongString(s)) => {
                Some(String::from_utf8_lossy(s.as_bytes()).into_owned())
            }
            Some(AMQPValue::ShortString(s)) => Some(s.as_str().to_string()),
            _ => None,
        };
        match (text("hash-header"), text("hash-property")) {
            (None, None) => Ok(HashOn::RoutingKey),
            (Some(h), None) => Ok(HashOn::Header(h)),
            (None, Some(p)) => match p.as_str() {
                "correlation_id" => Ok(HashOn::Property(HashProperty::CorrelationId)),
                "message_id" => Ok(HashOn::Property(HashProperty::MessageId)),
                "timestamp" => Ok(HashOn::Property(HashProperty::Timestamp)),
                other => Err(format!("Unsupported property: {other}")),
            },
            (Some(_), Some(_)) => {
                Err("hash-header and hash-property are mutually exclusive".into())
            }
        }
    }
}

/// A binding key's weight, or RabbitMQ's 406 text (`list_to_integer`: an optional sign
/// and digits; below 1 refused).
pub fn binding_weight(key: &str) -> Result<u32, String> {
    let digits = key.strip_prefix(['+', '-']).unwrap_or(key);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "The binding key must be an integer: {}",
            crate::headers::erl_binary(key.as_bytes())
        ));
    }
    if key.starts_with('-') || digits.bytes().all(|b| b == b'0') {
        return Err("The binding key must be greater than 0".into());
    }
    // Weights beyond u32 are clamped: RabbitMQ would allocate that many buckets.
    Ok(digits.parse::<u32>().unwrap_or(u32::MAX))
}

/// The ring: destinations with their weights in binding order.
#[derive(Clone, Debug, Default)]
pub struct Ring {
    members: Vec<(Destination, u32)>,
    /// `ends[i]`: one past the last bucket of `members[i]`.
    ends: Vec<u64>,
}

impl Ring {
    /// Adds a destination's buckets after the others; a destination already in the ring
    /// keeps its buckets (RabbitMQ ignores its second binding, whatever the key).
    pub fn add(&mut self, d: &Destination, weight: u32) {
        if self.members.iter().any(|(m, _)| m == d) {
            return;
        }
        let end = self.total() + u64::from(weight);
        self.members.push((d.clone(), weight));
        self.ends.push(end);
    }

    /// Takes a destination's buckets out; the later ones move down.
    pub fn remove(&mut self, d: &Destination) {
        if let Some(i) = self.members.iter().position(|(m, _)| m == d) {
            self.members.remove(i);
            self.ends.clear();
            let mut end = 0;
            for (_, w) in &self.members {
                end += u64::from(*w);
                self.ends.push(end);
            }
        }
    }

    pub fn total(&self) -> u64 {
        self.ends.last().copied().unwrap_or(0)
    }

    /// The destination owning the bucket jump hashing picks for `hash`.
    pub fn pick(&self, hash: u64) -> Option<&Destination> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let bucket = jump_hash(hash, total);
        let i = self.ends.partition_point(|end| *end <= bucket);
        self.members.get(i).map(|(d, _)| d)
    }
}

/// Jump consistent hashing (Lamping and Veach, 2014): a bucket in `0..buckets`.
pub fn jump_hash(mut key: u64, buckets: u64) -> u64 {
    let (mut b, mut j): (i128, i128) = (-1, 0);
    while j < i128::from(buckets) {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_618_493).wrapping_add(1);
        let r = ((key >> 33) + 1) as f64;
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / r)) as i128;
    }
    b.max(0) as u64
}

/// A stable 64-bit hash of bytes (FNV-1a, then splitmix64's finaliser so that nearby
/// keys spread over the whole range).
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// What a missing header or property hashes as (RabbitMQ hashes the atom `undefined`,
/// so all such messages go to one destination).
const UNDEFINED: &[u8] = b"undefined";

/// The hash of a header's value: its type and its text, so `1` and `"1"` differ as
/// RabbitMQ's `{Type, Value}` tuples do.
fn header_hash(value: Option<&AMQPValue>) -> u64 {
    match value {
        None => hash_bytes(UNDEFINED),
        Some(v) => {
            let mut bytes = crate::headers::type_atom(v).as_bytes().to_vec();
            bytes.push(0);
            match v {
                AMQPValue::LongString(s) => bytes.extend_from_slice(s.as_bytes()),
                AMQPValue::ShortString(s) => bytes.extend_from_slice(s.as_str().as_bytes()),
                other => bytes.extend_from_slice(format!("{other:?}").as_bytes()),
            }
            hash_bytes(&bytes)
        }
    }
}

/// The message fields a consistent-hash exchange may hash on.
#[derive(Clone, Copy, Debug, Default)]
pub struct MessageRef<'a> {
    pub headers: Option<&'a FieldTable>,
    /// The raw content-header property block (flags, then the values).
    pub properties: &'a [u8],
}

impl MessageRef<'_> {
    pub(crate) fn hash(&self, on: &HashOn, routing_key: &str) -> u64 {
        match on {
            HashOn::RoutingKey => hash_bytes(routing_key.as_bytes()),
            HashOn::Header(name) => {
                header_hash(self.headers.and_then(|h| h.inner().get(name.as_str())))
            }
            HashOn::Property(p) => match property(self.properties, *p) {
                Some(v) => hash_bytes(&v),
                None => hash_bytes(UNDEFINED),
            },
        }
    }
}

/// Reads correlation-id, message-id or timestamp (as its decimal text, as RabbitMQ
/// hashes it) out of a raw property block; `None` when absent or malformed.
fn property(raw: &[u8], which: HashProperty) -> Option<Vec<u8>> {
    let flags = u16::from_be_bytes([*raw.first()?, *raw.get(1)?]);
    let want = match which {
        HashProperty::CorrelationId => 10,
        HashProperty::MessageId => 7,
        HashProperty::Timestamp => 6,
    };
    if flags & (1 << want) == 0 {
        return None;
    }
    let mut pos = 2usize;
    // Property flags from bit 15 down: content-type, content-encoding, headers,
    // delivery-mode, priority, correlation-id, reply-to, expiration, message-id,
    // timestamp; skip the ones before the wanted one.
    for bit in ((want + 1)..=15).rev() {
        if flags & (1 << bit) == 0 {
            continue;
        }
        let len = match bit {
            13 => 4 + u32::from_be_bytes(raw.get(pos..pos + 4)?.try_into().ok()?) as usize,
            12 | 11 => 1,
            _ => 1 + usize::from(*raw.get(pos)?),
        };
        pos = pos.checked_add(len)?;
    }
    if want == 6 {
        let t = u64::from_be_bytes(raw.get(pos..pos + 8)?.try_into().ok()?);
        return Some(t.to_string().into_bytes());
    }
    let len = usize::from(*raw.get(pos)?);
    raw.get(pos + 1..pos + 1 + len).map(<[u8]>::to_vec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::types::{LongString, ShortString};

    fn q(n: &str) -> Destination {
        Destination::Queue(n.into())
    }

    fn shares(ring: &Ring, keys: impl Iterator<Item = u64>) -> Vec<u64> {
        let mut counts = vec![0u64; ring.members.len()];
        for k in keys {
            let d = ring.pick(k).unwrap();
            let i = ring.members.iter().position(|(m, _)| m == d).unwrap();
            counts[i] += 1;
        }
        counts
    }

    #[test]
    fn weights_are_validated_as_rabbitmq_does() {
        assert_eq!(binding_weight("3"), Ok(3));
        assert_eq!(binding_weight("+2"), Ok(2));
        assert_eq!(binding_weight("007"), Ok(7));
        for bad in ["0", "-1", "-0"] {
            assert_eq!(
                binding_weight(bad),
                Err("The binding key must be greater than 0".into())
            );
        }
        assert_eq!(
            binding_weight("abc"),
            Err("The binding key must be an integer: <<\"abc\">>".into())
        );
        assert_eq!(
            binding_weight(""),
            Err("The binding key must be an integer: <<>>".into())
        );
        assert!(binding_weight("1.5").is_err() && binding_weight(" 2").is_err());
    }

    #[test]
    fn arguments_choose_what_is_hashed() {
        let mut t = FieldTable::default();
        assert_eq!(HashOn::from_arguments(&t), Ok(HashOn::RoutingKey));
        t.insert(
            ShortString::from("hash-header"),
            AMQPValue::LongString(LongString::from("h")),
        );
        assert_eq!(HashOn::from_arguments(&t), Ok(HashOn::Header("h".into())));
        t.insert(
            ShortString::from("hash-property"),
            AMQPValue::LongString(LongString::from("message_id")),
        );
        assert_eq!(
            HashOn::from_arguments(&t),
            Err("hash-header and hash-property are mutually exclusive".into())
        );
        let mut p = FieldTable::default();
        p.insert(
            ShortString::from("hash-property"),
            AMQPValue::LongString(LongString::from("app_id")),
        );
        assert_eq!(
            HashOn::from_arguments(&p),
            Err("Unsupported property: app_id".into())
        );
    }

    #[test]
    fn jump_hash_stays_in_range_and_moves_few_keys() {
        for n in 1..50 {
            for k in 0..200u64 {
                assert!(jump_hash(hash_bytes(&k.to_le_bytes()), n) < n);
            }
        }
        // Growing 10 -> 11 buckets moves about 1/11 of the keys, all to the new bucket.
        let moved = (0..10_000u64)
            .filter(|k| {
                let h = hash_bytes(k.to_string().as_bytes());
                let (a, b) = (jump_hash(h, 10), jump_hash(h, 11));
                assert!(a == b || b == 10);
                a != b
            })
            .count();
        assert!((700..1100).contains(&moved), "{moved}");
    }

    #[test]
    fn shares_follow_weights_like_rabbitmq() {
        // RabbitMQ 3.10.8, weights 1,1,2,2 and routing keys "0".."19999":
        // 3277, 3327, 6839, 6557 (tests/fixtures/plugins/consistent_hash_3.10.8.json).
        let mut ring = Ring::default();
        for (n, w) in [("q1", 1), ("q2", 1), ("q3", 2), ("q4", 2)] {
            ring.add(&q(n), w);
        }
        let counts = shares(
            &ring,
            (0..20_000).map(|i: u32| hash_bytes(i.to_string().as_bytes())),
        );
        for (got, rabbit) in counts.iter().zip([3277u64, 3327, 6839, 6557]) {
            let diff = got.abs_diff(rabbit);
            assert!(diff < 400, "{counts:?}");
        }
    }

    #[test]
    fn a_destination_joins_once_and_leaves_with_all_its_buckets() {
        let mut ring = Ring::default();
        ring.add(&q("a"), 1);
        ring.add(&q("b"), 1);
        ring.add(&q("a"), 5);
        assert_eq!(ring.total(), 2);
        ring.remove(&q("a"));
        assert_eq!(ring.total(), 1);
        assert!((0..100u64).all(|k| ring.pick(hash_bytes(&k.to_le_bytes())) == Some(&q("b"))));
        ring.remove(&q("b"));
        assert_eq!(ring.pick(1), None);
    }

    #[test]
    fn properties_are_read_from_the_raw_block() {
        // flags: correlation-id (bit 10), message-id (bit 7), timestamp (bit 6).
        let flags: u16 = (1 << 10) | (1 << 7) | (1 << 6);
        let mut raw = flags.to_be_bytes().to_vec();
        raw.extend_from_slice(b"\x02c1\x03m-1");
        raw.extend_from_slice(&77u64.to_be_bytes());
        assert_eq!(
            property(&raw, HashProperty::CorrelationId),
            Some(b"c1".to_vec())
        );
        assert_eq!(
            property(&raw, HashProperty::MessageId),
            Some(b"m-1".to_vec())
        );
        assert_eq!(
            property(&raw, HashProperty::Timestamp),
            Some(b"77".to_vec())
        );
        let only_ts = (1u16 << 6).to_be_bytes();
        let mut raw2 = only_ts.to_vec();
        raw2.extend_from_slice(&5u64.to_be_bytes());
        assert_eq!(property(&raw2, HashProperty::MessageId), None);
        assert_eq!(
            property(&raw2, HashProperty::Timestamp),
            Some(b"5".to_vec())
        );
        assert_eq!(property(&[], HashProperty::Timestamp), None);
    }
}
