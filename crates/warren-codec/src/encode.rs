use bytes::{BufMut, Bytes, BytesMut};

use crate::{
    error::CodecError, properties::BasicProperties, AMQPClass, CLASS_BASIC, FRAME_BODY, FRAME_END,
    FRAME_HEADER, FRAME_HEARTBEAT, FRAME_METHOD,
};

/// Serializes a method's class id, method id and arguments with amq-protocol's generator.
pub fn encode_method_to_vec(method: &AMQPClass) -> Result<Vec<u8>, CodecError> {
    cookie_factory::gen_simple(
        amq_protocol::protocol::gen_class(method),
        Vec::with_capacity(64),
    )
    .map_err(|e| CodecError::Encode(e.to_string()))
}

/// Appends a method frame.
pub fn encode_method(
    out: &mut BytesMut,
    channel: u16,
    method: &AMQPClass,
) -> Result<(), CodecError> {
    let payload = encode_method_to_vec(method)?;
    put_frame(out, FRAME_METHOD, channel, &payload);
    Ok(())
}

/// Serializes parsed properties back into a raw property block.
pub fn encode_properties(props: &BasicProperties) -> Result<Vec<u8>, CodecError> {
    cookie_factory::gen_simple(
        amq_protocol::protocol::basic::gen_properties(props),
        Vec::with_capacity(64),
    )
    .map_err(|e| CodecError::Encode(e.to_string()))
}

/// Serializes a field table (with its length prefix), e.g. queue arguments to store.
pub fn encode_field_table(table: &amq_protocol::types::FieldTable) -> Result<Vec<u8>, CodecError> {
    cookie_factory::gen_simple(
        amq_protocol::types::generation::gen_field_table(table),
        Vec::with_capacity(64),
    )
    .map_err(|e| CodecError::Encode(e.to_string()))
}

/// Parses a field table written by [`encode_field_table`].
pub fn decode_field_table(raw: &[u8]) -> Result<amq_protocol::types::FieldTable, CodecError> {
    match amq_protocol::types::parsing::parse_field_table(raw) {
        Ok((&[], table)) => Ok(table),
        _ => Err(CodecError::MalformedProperties),
    }
}

fn put_frame(out: &mut BytesMut, frame_type: u8, channel: u16, payload: &[u8]) {
    out.reserve(payload.len() + 8);
    out.put_u8(frame_type);
    out.put_u16(channel);
    out.put_u32(payload.len() as u32);
    out.put_slice(payload);
    out.put_u8(FRAME_END);
}

fn put_short_str(out: &mut BytesMut, s: &str) {
    // Names reach the broker as shortstr, so they fit; clamp anyway rather than corrupt.
    let bytes = &s.as_bytes()[..s.len().min(255)];
    out.put_u8(bytes.len() as u8);
    out.put_slice(bytes);
}

/// Appends a heartbeat frame.
pub fn encode_heartbeat(out: &mut BytesMut) {
    put_frame(out, FRAME_HEARTBEAT, 0, &[]);
}

/// Appends basic.deliver, hand-encoded: it is written once per delivered message.
pub fn encode_deliver(
    out: &mut BytesMut,
    channel: u16,
    consumer_tag: &str,
    delivery_tag: u64,
    redelivered: bool,
    exchange: &str,
    routing_key: &str,
) {
    let size = 4
        + 1
        + consumer_tag.len().min(255)
        + 8
        + 1
        + 1
        + exchange.len().min(255)
        + 1
        + routing_key.len().min(255);
    out.reserve(size + 8);
    out.put_u8(FRAME_METHOD);
    out.put_u16(channel);
    out.put_u32(size as u32);
    out.put_u16(CLASS_BASIC);
    out.put_u16(60);
    put_short_str(out, consumer_tag);
    out.put_u64(delivery_tag);
    out.put_u8(u8::from(redelivered));
    put_short_str(out, exchange);
    put_short_str(out, routing_key);
    out.put_u8(FRAME_END);
}

/// Appends basic.ack (sent for publisher confirms).
pub fn encode_ack(out: &mut BytesMut, channel: u16, delivery_tag: u64, multiple: bool) {
    out.reserve(21);
    out.put_u8(FRAME_METHOD);
    out.put_u16(channel);
    out.put_u32(13);
    out.put_u16(CLASS_BASIC);
    out.put_u16(80);
    out.put_u64(delivery_tag);
    out.put_u8(u8::from(multiple));
    out.put_u8(FRAME_END);
}

/// Appends a basic.nack (publisher confirms: the broker could not take the message).
pub fn encode_nack(out: &mut BytesMut, channel: u16, delivery_tag: u64, multiple: bool) {
    out.reserve(21);
    out.put_u8(FRAME_METHOD);
    out.put_u16(channel);
    out.put_u32(13);
    out.put_u16(CLASS_BASIC);
    out.put_u16(120);
    out.put_u64(delivery_tag);
    out.put_u8(u8::from(multiple));
    out.put_u8(FRAME_END);
}

/// Appends a content header and the body split into frames of at most `frame_max` bytes
/// (0 = unlimited). `properties` is a raw property block as received from the publisher.
pub fn encode_content(
    out: &mut BytesMut,
    channel: u16,
    properties: &[u8],
    body: &[u8],
    frame_max: u32,
) {
    out.reserve(properties.len() + body.len() + 40);
    out.put_u8(FRAME_HEADER);
    out.put_u16(channel);
    out.put_u32((12 + properties.len()) as u32);
    out.put_u16(CLASS_BASIC);
    out.put_u16(0);
    out.put_u64(body.len() as u64);
    out.put_slice(properties);
    out.put_u8(FRAME_END);
    let chunk = if frame_max == 0 {
        body.len().max(1)
    } else {
        (frame_max as usize).saturating_sub(8).max(1)
    };
    for part in body.chunks(chunk) {
        put_frame(out, FRAME_BODY, channel, part);
    }
}

/// Like [`encode_content`], but the body is not copied: each body frame's payload is a
/// slice of `body` pushed to `chunks` between the frame headers written to `out` (what
/// `out` held before is pushed first, so `chunks` then `out` is the byte stream in order).
/// For large bodies, which the writer then sends with vectored writes.
pub fn encode_content_shared(
    out: &mut BytesMut,
    chunks: &mut Vec<Bytes>,
    channel: u16,
    properties: &[u8],
    body: &Bytes,
    frame_max: u32,
) {
    out.reserve(properties.len() + 32);
    out.put_u8(FRAME_HEADER);
    out.put_u16(channel);
    out.put_u32((12 + properties.len()) as u32);
    out.put_u16(CLASS_BASIC);
    out.put_u16(0);
    out.put_u64(body.len() as u64);
    out.put_slice(properties);
    out.put_u8(FRAME_END);
    let chunk = if frame_max == 0 {
        body.len().max(1)
    } else {
        (frame_max as usize).saturating_sub(8).max(1)
    };
    let mut at = 0;
    while at < body.len() {
        let end = (at + chunk).min(body.len());
        out.reserve(8);
        out.put_u8(FRAME_BODY);
        out.put_u16(channel);
        out.put_u32((end - at) as u32);
        chunks.push(out.split().freeze());
        chunks.push(body.slice(at..end));
        out.put_u8(FRAME_END);
        at = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(chunks: &[Bytes], out: &BytesMut) -> Vec<u8> {
        let mut all: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
        all.extend_from_slice(out);
        all
    }

    #[test]
    fn shared_content_is_the_same_bytes_as_copied_content() {
        let body = Bytes::from((0..300_000u32).map(|i| i as u8).collect::<Vec<u8>>());
        for frame_max in [0, 4096, 131_072, 300_008, 1_000_000] {
            let mut copied = BytesMut::from(&b"prefix"[..]);
            encode_content(&mut copied, 3, b"\x00\x00", &body, frame_max);
            let mut out = BytesMut::from(&b"prefix"[..]);
            let mut chunks = Vec::new();
            encode_content_shared(&mut out, &mut chunks, 3, b"\x00\x00", &body, frame_max);
            assert_eq!(
                joined(&chunks, &out),
                copied.to_vec(),
                "frame_max {frame_max}"
            );
            // Every body slice points into the original allocation.
            let base = body.as_ptr() as usize;
            let shared = chunks
                .iter()
                .filter(|c| {
                    let p = c.as_ptr() as usize;
                    p >= base && p < base + body.len()
                })
                .count();
            assert!(
                shared >= 1,
                "no body slice was shared at frame_max {frame_max}"
            );
        }
    }

    #[test]
    fn shared_content_of_an_empty_body_is_just_the_header() {
        let mut out = BytesMut::new();
        let mut chunks = Vec::new();
        encode_content_shared(&mut out, &mut chunks, 1, b"", &Bytes::new(), 131_072);
        let mut copied = BytesMut::new();
        encode_content(&mut copied, 1, b"", b"", 131_072);
        assert!(chunks.is_empty());
        assert_eq!(out, copied);
    }
}
