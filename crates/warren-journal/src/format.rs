//! Byte layout of message records and ack entries. Pure functions, no I/O.
//!
//! All integers are little-endian.
//!
//! Message record (in `<seq>.seg`):
//!
//! ```text
//! fixed   magic u32 | header_len u32 | body_len u32 | header_crc u32
//! header  msg_id u64 | flags u8 | [expires_at_ms u64 if flags & EXPIRES]
//!         | n_queues u16 | queue_id u64 * n_queues
//!         | exchange_len u16 | exchange | routing_key_len u16 | routing_key
//!         | properties_len u32 | properties
//! body    body_len bytes
//! trailer body_crc u32
//! ```
//!
//! `header_crc` is the CRC-32C of the first 12 fixed bytes followed by the header, so a
//! damaged length is caught before it is trusted, and a record whose body is damaged still
//! names the queues that lost it. `body_crc` is the CRC-32C of the body.
//!
//! Ack entry (in `<seq>.acks`), fixed [`ACK_ENTRY_LEN`] bytes:
//!
//! ```text
//! queue_id u64 | offset u64 | kind u8 | 0u8 * 3 | crc u32 (CRC-32C of the first 20 bytes)
//! ```

use bytes::Bytes;

use crate::QueueId;

/// "WJR1": warren journal record, format 1.
pub(crate) const MAGIC: u32 = u32::from_le_bytes(*b"WJR1");
pub(crate) const FIXED_LEN: usize = 16;
pub(crate) const TRAILER_LEN: usize = 4;
pub(crate) const ACK_ENTRY_LEN: usize = 24;

const FLAG_PERSISTENT: u8 = 1;
const FLAG_EXPIRES: u8 = 2;

/// What an ack-file entry records about one (message, queue) reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AckKind {
    /// The queue is done with the message; it must not come back.
    Acked = 1,
    /// The message was handed to a consumer; if it comes back it is redelivered.
    Delivered = 2,
    /// The queue was deleted: every reference it held in this segment is released (the
    /// offset is unused). Without it, recovery keeps a queue's messages it cannot place
    /// (see `Recovery::orphans`) instead of dropping them.
    Forgotten = 3,
}

/// Header fields of a record, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header {
    pub msg_id: u64,
    pub persistent: bool,
    pub expires_at_ms: Option<u64>,
    pub queues: Vec<QueueId>,
    pub exchange: String,
    pub routing_key: String,
    pub properties: Bytes,
}

/// Why a byte range is not a valid record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bad {
    /// Fewer bytes than the record needs: a torn write (or a wrong location).
    Short,
    /// Magic, lengths or header CRC wrong: nothing in the record can be trusted.
    Header,
    /// Header fine, body CRC wrong: the header (and so its queue list) is trustworthy.
    Body,
}

fn u16_len(n: usize) -> Option<u16> {
    u16::try_from(n).ok()
}

/// Encoded size of a record, or `None` when a field is too long for the format.
pub(crate) fn record_len(
    n_queues: usize,
    exchange: &str,
    routing_key: &str,
    properties: &[u8],
    body: &[u8],
    expires: bool,
) -> Option<usize> {
    u16_len(n_queues)?;
    u16_len(exchange.len())?;
    u16_len(routing_key.len())?;
    u32::try_from(properties.len()).ok()?;
    u32::try_from(body.len()).ok()?;
    let header = 8
        + 1
        + if expires { 8 } else { 0 }
        + 2
        + 8 * n_queues
        + 2
        + exchange.len()
        + 2
        + routing_key.len()
        + 4
        + properties.len();
    u32::try_from(header).ok()?;
    let total = FIXED_LEN + header + body.len() + TRAILER_LEN;
    u32::try_from(total).ok()?;
    Some(total)
}

/// Appends one encoded record to `out`. The caller has checked the sizes with
/// [`record_len`]; lengths are truncated casts only if it did not.
#[allow(clippy::cast_possible_truncation)]
pub(crate) fn encode_record(out: &mut Vec<u8>, h: &Header, body: &[u8]) {
    let start = out.len();
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&[0; 4]); // header_len, patched below
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]); // header_crc, patched below
    let header_start = out.len();
    out.extend_from_slice(&h.msg_id.to_le_bytes());
    let mut flags = 0;
    if h.persistent {
        flags |= FLAG_PERSISTENT;
    }
    if h.expires_at_ms.is_some() {
        flags |= FLAG_EXPIRES;
    }
    out.push(flags);
    if let Some(e) = h.expires_at_ms {
        out.extend_from_slice(&e.to_le_bytes());
    }
    out.extend_from_slice(&(h.queues.len() as u16).to_le_bytes());
    for q in &h.queues {
        out.extend_from_slice(&q.0.to_le_bytes());
    }
    out.extend_from_slice(&(h.exchange.len() as u16).to_le_bytes());
    out.extend_from_slice(h.exchange.as_bytes());
    out.extend_from_slice(&(h.routing_key.len() as u16).to_le_bytes());
    out.extend_from_slice(h.routing_key.as_bytes());
    out.extend_from_slice(&(h.properties.len() as u32).to_le_bytes());
    out.extend_from_slice(&h.properties);
    let header_len = (out.len() - header_start) as u32;
    if let Some(dst) = out.get_mut(start + 4..start + 8) {
        dst.copy_from_slice(&header_len.to_le_bytes());
    }
    let crc = out
        .get(start..start + 12)
        .map(crc32c::crc32c)
        .unwrap_or_default();
    let crc = crc32c::crc32c_append(crc, out.get(header_start..).unwrap_or_default());
    if let Some(dst) = out.get_mut(start + 12..start + 16) {
        dst.copy_from_slice(&crc.to_le_bytes());
    }
    out.extend_from_slice(body);
    out.extend_from_slice(&crc32c::crc32c(body).to_le_bytes());
}

fn read_u32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(s.try_into().ok()?))
}

/// A little cursor over a header that fails (returns `None`) instead of panicking.
struct Cursor<'a> {
    b: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.b.len() {
            return None;
        }
        let (head, tail) = self.b.split_at(n);
        self.b = tail;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn string(&mut self, n: usize) -> Option<String> {
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
}

fn decode_header(b: &[u8]) -> Option<Header> {
    let mut c = Cursor { b };
    let msg_id = c.u64()?;
    let flags = c.u8()?;
    let expires_at_ms = if flags & FLAG_EXPIRES != 0 {
        Some(c.u64()?)
    } else {
        None
    };
    let n = usize::from(c.u16()?);
    let mut queues = Vec::with_capacity(n);
    for _ in 0..n {
        queues.push(QueueId(c.u64()?));
    }
    let n = usize::from(c.u16()?);
    let exchange = c.string(n)?;
    let n = usize::from(c.u16()?);
    let routing_key = c.string(n)?;
    let n = usize::try_from(c.u32()?).ok()?;
    let properties = Bytes::copy_from_slice(c.take(n)?);
    if !c.b.is_empty() {
        return None;
    }
    Some(Header {
        msg_id,
        persistent: flags & FLAG_PERSISTENT != 0,
        expires_at_ms,
        queues,
        exchange,
        routing_key,
        properties,
    })
}

/// Header and body lengths claimed by a fixed part, unchecked (the header CRC covers them;
/// [`parse_header`] verifies). `None` when fewer than [`FIXED_LEN`] bytes or no magic.
pub(crate) fn peek_lengths(fixed: &[u8]) -> Option<(u64, u64)> {
    if read_u32(fixed, 0)? != MAGIC {
        return None;
    }
    Some((
        u64::from(read_u32(fixed, 4)?),
        u64::from(read_u32(fixed, 8)?),
    ))
}

/// A record found at the start of a byte slice.
#[derive(Debug)]
pub(crate) struct Parsed<'a> {
    pub header: Header,
    pub body: &'a [u8],
    /// Total encoded length.
    pub len: usize,
}

/// Checks the fixed part and header of the record at the start of `b`. Returns the
/// header and the record's total length; the body is not checked.
pub(crate) fn parse_header(b: &[u8]) -> Result<(Header, usize), Bad> {
    let Some(fixed) = b.get(..FIXED_LEN) else {
        return Err(Bad::Short);
    };
    if read_u32(fixed, 0) != Some(MAGIC) {
        return Err(Bad::Header);
    }
    let header_len = read_u32(fixed, 4).ok_or(Bad::Header)? as usize;
    let body_len = read_u32(fixed, 8).ok_or(Bad::Header)? as usize;
    let header_crc = read_u32(fixed, 12).ok_or(Bad::Header)?;
    let total = FIXED_LEN + header_len + body_len + TRAILER_LEN;
    let Some(header) = b.get(FIXED_LEN..FIXED_LEN + header_len) else {
        // A length we cannot check yet: torn if it would run past the data.
        return Err(Bad::Short);
    };
    let crc = crc32c::crc32c_append(crc32c::crc32c(fixed.get(..12).unwrap_or_default()), header);
    if crc != header_crc {
        return Err(Bad::Header);
    }
    let header = decode_header(header).ok_or(Bad::Header)?;
    Ok((header, total))
}

/// Parses and fully verifies the record at the start of `b`.
pub(crate) fn parse_record(b: &[u8]) -> Result<Parsed<'_>, Bad> {
    let (header, len) = parse_header(b)?;
    let Some(rec) = b.get(..len) else {
        return Err(Bad::Short);
    };
    let body_end = len - TRAILER_LEN;
    let body_start = body_end - body_len_of(rec);
    let body = rec.get(body_start..body_end).ok_or(Bad::Short)?;
    let crc = read_u32(rec, body_end).ok_or(Bad::Short)?;
    if crc32c::crc32c(body) != crc {
        return Err(Bad::Body);
    }
    Ok(Parsed { header, body, len })
}

fn body_len_of(rec: &[u8]) -> usize {
    read_u32(rec, 8).unwrap_or(0) as usize
}

/// Encodes one ack entry.
pub(crate) fn encode_ack(queue: QueueId, offset: u64, kind: AckKind) -> [u8; ACK_ENTRY_LEN] {
    let mut e = [0u8; ACK_ENTRY_LEN];
    let (head, crc) = e.split_at_mut(20);
    let (q, rest) = head.split_at_mut(8);
    q.copy_from_slice(&queue.0.to_le_bytes());
    let (o, rest) = rest.split_at_mut(8);
    o.copy_from_slice(&offset.to_le_bytes());
    if let Some(k) = rest.first_mut() {
        *k = kind as u8;
    }
    let c = crc32c::crc32c(head);
    crc.copy_from_slice(&c.to_le_bytes());
    e
}

/// Decodes one ack entry; `None` when its CRC or kind is wrong.
pub(crate) fn decode_ack(e: &[u8]) -> Option<(QueueId, u64, AckKind)> {
    if e.len() != ACK_ENTRY_LEN {
        return None;
    }
    let c = Cursor { b: e };
    let mut c = c;
    let q = c.u64()?;
    let off = c.u64()?;
    let kind = c.u8()?;
    let _pad = c.take(3)?;
    let crc = c.u32()?;
    if crc32c::crc32c(e.get(..20)?) != crc {
        return None;
    }
    let kind = match kind {
        1 => AckKind::Acked,
        2 => AckKind::Delivered,
        3 => AckKind::Forgotten,
        _ => return None,
    };
    Some((QueueId(q), off, kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            msg_id: 7,
            persistent: true,
            expires_at_ms: Some(123),
            queues: vec![QueueId(1), QueueId(9)],
            exchange: "amq.direct".into(),
            routing_key: "rk".into(),
            properties: Bytes::from_static(b"\x80\x00\x02"),
        }
    }

    #[test]
    fn record_round_trip() {
        let h = header();
        let mut out = vec![0xAA]; // encoding appends; leading bytes stay untouched
        encode_record(&mut out, &h, b"hello");
        let rec = out.get(1..).unwrap();
        assert_eq!(
            rec.len(),
            record_len(2, "amq.direct", "rk", &h.properties, b"hello", true).unwrap()
        );
        let p = parse_record(rec).unwrap();
        assert_eq!(p.header, h);
        assert_eq!(p.body, b"hello");
        assert_eq!(p.len, rec.len());
    }

    #[test]
    fn every_prefix_is_short_and_every_flip_is_caught() {
        let mut rec = Vec::new();
        encode_record(&mut rec, &header(), b"body bytes");
        for n in 0..rec.len() {
            assert!(parse_record(&rec[..n]).is_err(), "prefix {n}");
        }
        let header_end = rec.len() - 10 - TRAILER_LEN;
        for i in 0..rec.len() {
            let mut r = rec.clone();
            r[i] ^= 0x10;
            let err = parse_record(&r).unwrap_err();
            if i < header_end {
                assert!(matches!(err, Bad::Header | Bad::Short), "byte {i}: {err:?}");
            } else {
                assert_eq!(err, Bad::Body, "byte {i}");
            }
        }
    }

    #[test]
    fn ack_round_trip_and_damage() {
        let e = encode_ack(QueueId(5), 4096, AckKind::Delivered);
        assert_eq!(decode_ack(&e), Some((QueueId(5), 4096, AckKind::Delivered)));
        let e = encode_ack(QueueId(7), 0, AckKind::Forgotten);
        assert_eq!(decode_ack(&e), Some((QueueId(7), 0, AckKind::Forgotten)));
        for i in 0..ACK_ENTRY_LEN {
            let mut d = e;
            d[i] ^= 1;
            assert_eq!(decode_ack(&d), None, "byte {i}");
        }
    }
}
