//! The tail of a long queue, kept outside memory.
//!
//! A queue whose bodies are already paged out still holds a few hundred bytes per message
//! in memory (its entry, routing data and properties): ten million messages would be
//! gigabytes. Past a window of in-memory entries a queue hands the newest ones to a
//! [`TailStore`] instead, in publish order, and reads them back a batch at a time as
//! consumers work through the head (RabbitMQ's "delta" of a classic queue).
//!
//! The store is the server's (files); this module fixes what it must do and the record
//! format, which is pure so it can be tested and fuzzed without I/O.

use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes};

use crate::{queue::Entry, Message, StoredRef};

#[derive(Debug, thiserror::Error)]
pub enum TailError {
    #[error("tail store I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("damaged tail record: {0}")]
    Damaged(&'static str),
}

/// Where a queue keeps the entries past its in-memory window, oldest first.
pub trait TailStore: Send + std::fmt::Debug {
    /// Appends an entry after every entry already held.
    fn append(&mut self, entry: &Entry) -> Result<(), TailError>;
    /// Removes up to `max` entries from the front into `out`, in order.
    fn read_front(&mut self, max: usize, out: &mut Vec<Entry>) -> Result<(), TailError>;
    /// Forgets every entry held (and frees the space they took).
    fn clear(&mut self);
}

const HAS_EXPIRES_AT: u8 = 1;
const REDELIVERED: u8 = 2;
const PERSISTENT: u8 = 4;
const HAS_EXPIRATION: u8 = 8;
const HAS_STORED: u8 = 16;
const PAGED: u8 = 32;
const HAS_BCC: u8 = 64;

/// Appends `entry` to `out` as one record (without a length prefix). A body still in
/// memory is written along; a paged-out one stays where `stored` says.
pub fn encode_entry(entry: &Entry, out: &mut Vec<u8>) {
    let m = &entry.message;
    let mut flags = 0;
    for (set, bit) in [
        (entry.expires_at.is_some(), HAS_EXPIRES_AT),
        (entry.redelivered, REDELIVERED),
        (m.persistent, PERSISTENT),
        (m.expiration.is_some(), HAS_EXPIRATION),
        (m.stored.is_some(), HAS_STORED),
        (m.paged_len.is_some(), PAGED),
        (m.bcc.is_some(), HAS_BCC),
    ] {
        if set {
            flags |= bit;
        }
    }
    out.put_u8(flags);
    out.put_u64(entry.seq);
    out.put_u32(entry.delivery_count);
    out.put_u8(m.priority);
    if let Some(at) = entry.expires_at {
        out.put_u64(at);
    }
    if let Some(exp) = m.expiration {
        out.put_u64(exp);
    }
    if let Some(r) = m.stored {
        out.put_u64(r.segment);
        out.put_u32(r.offset);
        out.put_u32(r.len);
    }
    if let Some(len) = m.paged_len {
        out.put_u64(len as u64);
    }
    put_bytes(out, m.exchange.as_bytes());
    put_bytes(out, m.routing_key.as_bytes());
    put_bytes(out, &m.properties);
    if let Some(bcc) = &m.bcc {
        out.put_u32(bcc.len() as u32);
        for key in bcc.iter() {
            put_bytes(out, key.as_bytes());
        }
    }
    if m.paged_len.is_none() {
        put_bytes(out, &m.body);
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.put_u32(b.len() as u32);
    out.put_slice(b);
}

fn need(buf: &Bytes, n: usize) -> Result<(), TailError> {
    if buf.remaining() < n {
        return Err(TailError::Damaged("record ends early"));
    }
    Ok(())
}

fn get_bytes(buf: &mut Bytes) -> Result<Bytes, TailError> {
    need(buf, 4)?;
    let len = buf.get_u32() as usize;
    need(buf, len)?;
    Ok(buf.split_to(len))
}

fn get_str(buf: &mut Bytes) -> Result<Arc<str>, TailError> {
    let b = get_bytes(buf)?;
    std::str::from_utf8(&b)
        .map(Arc::from)
        .map_err(|_| TailError::Damaged("name is not UTF-8"))
}

/// Reads back one record written by [`encode_entry`]. Properties and an in-record body
/// share `record`'s allocation.
pub fn decode_entry(mut record: Bytes) -> Result<Entry, TailError> {
    let buf = &mut record;
    need(buf, 1 + 8 + 4 + 1)?;
    let flags = buf.get_u8();
    let seq = buf.get_u64();
    let delivery_count = buf.get_u32();
    let priority = buf.get_u8();
    let opt_u64 = |bit: u8, buf: &mut Bytes| -> Result<Option<u64>, TailError> {
        if flags & bit == 0 {
            return Ok(None);
        }
        need(buf, 8)?;
        Ok(Some(buf.get_u64()))
    };
    let expires_at = opt_u64(HAS_EXPIRES_AT, buf)?;
    let expiration = opt_u64(HAS_EXPIRATION, buf)?;
    let stored = if flags & HAS_STORED != 0 {
        need(buf, 16)?;
        Some(StoredRef {
            segment: buf.get_u64(),
            offset: buf.get_u32(),
            len: buf.get_u32(),
        })
    } else {
        None
    };
    let paged_len = opt_u64(PAGED, buf)?.map(|n| n as usize);
    let exchange = get_str(buf)?;
    let routing_key = get_str(buf)?;
    let properties = get_bytes(buf)?;
    let bcc = if flags & HAS_BCC != 0 {
        need(buf, 4)?;
        let n = buf.get_u32() as usize;
        // Each key takes at least its 4-byte length: a damaged count cannot allocate much.
        need(buf, n.saturating_mul(4))?;
        let mut keys = Vec::with_capacity(n);
        for _ in 0..n {
            keys.push(get_str(buf)?.to_string());
        }
        Some(Arc::from(keys))
    } else {
        None
    };
    let body = if paged_len.is_none() {
        get_bytes(buf)?
    } else {
        Bytes::new()
    };
    if buf.has_remaining() {
        return Err(TailError::Damaged("trailing bytes"));
    }
    if paged_len.is_some() && stored.is_none() {
        return Err(TailError::Damaged("paged body without a place on disk"));
    }
    Ok(Entry {
        message: Arc::new(Message {
            exchange,
            routing_key,
            properties,
            body,
            persistent: flags & PERSISTENT != 0,
            priority,
            expiration,
            bcc,
            stored,
            paged_len,
        }),
        seq,
        redelivered: flags & REDELIVERED != 0,
        expires_at,
        delivery_count,
    })
}

/// A [`TailStore`] in memory, holding encoded records: for tests of the queue logic.
#[derive(Debug, Default)]
pub struct MemoryTail {
    records: std::collections::VecDeque<Bytes>,
    /// Fail the next append (to test the fallback).
    pub fail_appends: bool,
}

impl MemoryTail {
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

impl TailStore for MemoryTail {
    fn append(&mut self, entry: &Entry) -> Result<(), TailError> {
        if self.fail_appends {
            return Err(TailError::Damaged("append refused"));
        }
        let mut buf = Vec::new();
        encode_entry(entry, &mut buf);
        self.records.push_back(Bytes::from(buf));
        Ok(())
    }

    fn read_front(&mut self, max: usize, out: &mut Vec<Entry>) -> Result<(), TailError> {
        for _ in 0..max {
            let Some(r) = self.records.pop_front() else {
                break;
            };
            out.push(decode_entry(r)?);
        }
        Ok(())
    }

    fn clear(&mut self) {
        self.records.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(paged: bool, bcc: bool) -> Entry {
        Entry {
            message: Arc::new(Message {
                exchange: Arc::from("ex"),
                routing_key: Arc::from("rk.é"),
                properties: Bytes::from_static(&[0x80, 0, 1, 2]),
                body: if paged {
                    Bytes::new()
                } else {
                    Bytes::from_static(b"body")
                },
                persistent: true,
                priority: 3,
                expiration: Some(500),
                bcc: bcc.then(|| Arc::from(vec!["a".to_string(), "b".to_string()])),
                stored: Some(StoredRef {
                    segment: 7,
                    offset: 9,
                    len: 11,
                }),
                paged_len: paged.then_some(1024),
            }),
            seq: 42,
            redelivered: true,
            expires_at: Some(123_456),
            delivery_count: 2,
        }
    }

    fn same(a: &Entry, b: &Entry) -> bool {
        a.message == b.message
            && a.seq == b.seq
            && a.redelivered == b.redelivered
            && a.expires_at == b.expires_at
            && a.delivery_count == b.delivery_count
    }

    #[test]
    fn round_trip_paged_and_in_memory_bodies() {
        for (paged, bcc) in [(true, false), (false, true), (false, false), (true, true)] {
            let e = entry(paged, bcc);
            let mut buf = Vec::new();
            encode_entry(&e, &mut buf);
            let back = decode_entry(Bytes::from(buf)).expect("decodes");
            assert!(same(&e, &back), "{paged} {bcc}: {back:?}");
        }
    }

    #[test]
    fn truncated_records_are_errors_not_panics() {
        let mut buf = Vec::new();
        encode_entry(&entry(false, true), &mut buf);
        for cut in 0..buf.len() {
            assert!(decode_entry(Bytes::copy_from_slice(&buf[..cut])).is_err());
        }
        buf.push(0);
        assert!(decode_entry(Bytes::from(buf)).is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_entry(Bytes::from(data));
        }
    }
}
