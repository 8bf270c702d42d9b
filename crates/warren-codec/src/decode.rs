use bytes::{Buf, Bytes, BytesMut};

use crate::{
    error::CodecError, properties::PropertiesView, AMQPClass, FRAME_BODY, FRAME_END, FRAME_HEADER,
    FRAME_HEARTBEAT, FRAME_METHOD, PROTOCOL_HEADER,
};

/// One frame from a peer. Bodies and raw properties are slices of the read buffer.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Method {
        channel: u16,
        method: Box<AMQPClass>,
    },
    /// A content header. `properties` is the raw property-flags-and-values block, validated
    /// by a scan but kept as received so it can be forwarded unchanged.
    Header {
        channel: u16,
        class_id: u16,
        body_size: u64,
        properties: Bytes,
    },
    Body {
        channel: u16,
        payload: Bytes,
    },
    Heartbeat {
        channel: u16,
    },
}

impl Frame {
    pub fn channel(&self) -> u16 {
        match self {
            Frame::Method { channel, .. }
            | Frame::Header { channel, .. }
            | Frame::Body { channel, .. }
            | Frame::Heartbeat { channel } => *channel,
        }
    }
}

/// Outcome of looking at the first bytes a client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolHeaderCheck {
    /// Fewer than 8 bytes so far.
    Incomplete,
    /// `AMQP 0-9-1`.
    Accepted,
    /// Anything else: answer with [`PROTOCOL_HEADER`] and close.
    Refused,
}

pub fn check_protocol_header(buf: &[u8]) -> ProtocolHeaderCheck {
    match buf.get(..PROTOCOL_HEADER.len()) {
        None => ProtocolHeaderCheck::Incomplete,
        Some(h) if h == PROTOCOL_HEADER => ProtocolHeaderCheck::Accepted,
        Some(_) => ProtocolHeaderCheck::Refused,
    }
}

/// Splits one frame off the front of `buf`.
///
/// Returns `Ok(None)` when more bytes are needed (nothing is consumed). `frame_max` is the
/// negotiated maximum frame size including the 8 bytes of header and end marker; 0 means
/// unlimited. The size check runs before the payload arrives, so a hostile size never
/// makes the server buffer it.
pub fn decode_frame(buf: &mut BytesMut, frame_max: u32) -> Result<Option<Frame>, CodecError> {
    let Some(head) = buf.get(..7) else {
        return Ok(None);
    };
    let frame_type = head[0];
    let channel = u16::from_be_bytes([head[1], head[2]]);
    let size = u32::from_be_bytes([head[3], head[4], head[5], head[6]]);
    // RabbitMQ tolerates payloads up to frame_max itself (an 8 byte allowance over
    // frame_max - 8) and reports the limit as frame_max - 8.
    if frame_max != 0 && size > frame_max {
        return Err(CodecError::FrameTooLarge {
            frame_type,
            size,
            frame_max: frame_max.saturating_sub(8),
        });
    }
    let total = 7 + size as usize + 1;
    if buf.len() < total {
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    let end = buf[total - 1];
    let mut frame = buf.split_to(total).freeze();
    frame.advance(7);
    frame.truncate(size as usize);
    let payload = frame;
    if end != FRAME_END {
        return Err(CodecError::BadFrameEnd {
            frame_type,
            payload,
            end,
        });
    }
    let frame = match frame_type {
        FRAME_METHOD if payload.len() >= 4 => Frame::Method {
            channel,
            method: Box::new(parse_method(&payload)?),
        },
        FRAME_HEADER => parse_header(channel, payload)?,
        FRAME_BODY => Frame::Body { channel, payload },
        FRAME_HEARTBEAT if payload.is_empty() => Frame::Heartbeat { channel },
        _ => {
            return Err(CodecError::UnknownFrame {
                frame_type,
                payload,
            })
        }
    };
    Ok(Some(frame))
}

fn parse_method(payload: &Bytes) -> Result<AMQPClass, CodecError> {
    let class_id = u16::from_be_bytes([payload[0], payload[1]]);
    let method_id = u16::from_be_bytes([payload[2], payload[3]]);
    if !is_known_method(class_id, method_id) {
        return Err(CodecError::UnknownMethod {
            class_id,
            method_id,
        });
    }
    if (class_id, method_id) == (60, 10) && payload.len() >= 8 {
        let size = u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]);
        if size != 0 {
            return Err(CodecError::PrefetchSize(size));
        }
    }
    let pruned = check_method_tables(class_id, method_id, payload)?;
    let payload = pruned.as_ref().unwrap_or(payload);
    match amq_protocol::protocol::parse_class(&payload[..]) {
        Ok((&[], method)) => Ok(method),
        _ => Err(CodecError::MalformedMethod {
            class_id,
            method_id,
            arguments: payload.slice(4..),
        }),
    }
}

/// Fields that precede a method's field-table argument.
#[derive(Clone, Copy)]
enum Before {
    Octet,
    Short,
    ShortStr,
}

/// The fields before the field-table argument of each method that has one.
fn fields_before_table(class_id: u16, method_id: u16) -> Option<&'static [Before]> {
    use Before::{Octet, Short, ShortStr};
    Some(match (class_id, method_id) {
        (10, 10) => &[Octet, Octet],
        (10, 11) => &[],
        (40, 10) => &[Short, ShortStr, ShortStr, Octet],
        (40, 30) | (40, 40) | (50, 20) => &[Short, ShortStr, ShortStr, ShortStr, Octet],
        (50, 10) => &[Short, ShortStr, Octet],
        (50, 50) => &[Short, ShortStr, ShortStr, ShortStr],
        (60, 20) => &[Short, ShortStr, ShortStr, Octet],
        _ => return None,
    })
}

/// Keeps amq-protocol's recursive parser away from deeply nested argument tables: a
/// table deeper than [`crate::MAX_PARSE_DEPTH`] is refused, except connection.start-ok's
/// client properties, which RabbitMQ accepts at any depth and warren only displays: their
/// too-deep entries are dropped and the method is returned re-encoded. A malformed table
/// is left for `parse_class` to report.
fn check_method_tables(
    class_id: u16,
    method_id: u16,
    payload: &Bytes,
) -> Result<Option<Bytes>, CodecError> {
    let Some(fields) = fields_before_table(class_id, method_id) else {
        return Ok(None);
    };
    let mut pos = 4;
    for field in fields {
        pos += match field {
            Before::Octet => 1,
            Before::Short => 2,
            Before::ShortStr => 1 + usize::from(payload.get(pos).copied().unwrap_or(0)),
        };
    }
    let Some(len) = payload.get(pos..pos + 4) else {
        return Ok(None);
    };
    let end = pos + 4 + u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
    let Some(table) = payload.get(pos..end) else {
        return Ok(None);
    };
    let Ok(depth) = crate::table_depth(table) else {
        return Ok(None);
    };
    if depth <= crate::MAX_PARSE_DEPTH {
        return Ok(None);
    }
    if (class_id, method_id) != (10, 11) {
        return Err(CodecError::TableTooDeep {
            class_id,
            method_id,
            depth,
        });
    }
    let shallow = crate::filter_table(table, |_, d| d < crate::MAX_PARSE_DEPTH)?;
    let mut rebuilt = BytesMut::with_capacity(payload.len());
    rebuilt.extend_from_slice(&payload[..pos]);
    rebuilt.extend_from_slice(&shallow);
    rebuilt.extend_from_slice(&payload[end..]);
    Ok(Some(rebuilt.freeze()))
}

fn parse_header(channel: u16, payload: Bytes) -> Result<Frame, CodecError> {
    if payload.len() < 14 {
        return Err(CodecError::MalformedHeader);
    }
    let class_id = u16::from_be_bytes([payload[0], payload[1]]);
    let mut size = [0u8; 8];
    size.copy_from_slice(&payload[4..12]);
    let body_size = u64::from_be_bytes(size);
    let properties = payload.slice(12..);
    PropertiesView::scan(&properties)?;
    Ok(Frame::Header {
        channel,
        class_id,
        body_size,
        properties,
    })
}

/// Method ids defined by AMQP 0-9-1 (with RabbitMQ's extensions), by class.
pub(crate) fn is_known_method(class_id: u16, method_id: u16) -> bool {
    let methods: &[u16] = match class_id {
        10 => &[10, 11, 20, 21, 30, 31, 40, 41, 50, 51, 60, 61, 70, 71],
        20 => &[10, 11, 20, 21, 40, 41],
        30 => &[10, 11],
        40 => &[10, 11, 20, 21, 30, 31, 40, 51],
        50 => &[10, 11, 20, 21, 30, 31, 40, 41, 50, 51],
        60 => &[
            10, 11, 20, 21, 30, 31, 40, 50, 60, 70, 71, 72, 80, 90, 100, 110, 111, 120,
        ],
        85 => &[10, 11],
        90 => &[10, 11, 20, 21, 30, 31],
        _ => &[],
    };
    methods.contains(&method_id)
}
