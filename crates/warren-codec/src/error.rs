use bytes::Bytes;
use thiserror::Error;

/// Why bytes from a peer could not be turned into a frame. Every variant is a
/// connection-level protocol error; the server maps it to the AMQP reply code.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CodecError {
    /// The size field announces more than frame_max allows; the payload is not read.
    #[error("frame payload of {size} bytes exceeds the negotiated frame_max {frame_max}")]
    FrameTooLarge {
        frame_type: u8,
        size: u32,
        frame_max: u32,
    },
    #[error("invalid frame end marker {end:#04x}")]
    BadFrameEnd {
        frame_type: u8,
        payload: Bytes,
        end: u8,
    },
    /// A frame of unknown type, a heartbeat with a payload, or a method frame too short
    /// to hold class and method ids.
    #[error("unknown frame (type {frame_type})")]
    UnknownFrame { frame_type: u8, payload: Bytes },
    #[error("unknown method {class_id}/{method_id}")]
    UnknownMethod { class_id: u16, method_id: u16 },
    /// Known method, undecodable arguments (`arguments` excludes the class/method ids).
    #[error("malformed arguments for method {class_id}/{method_id}")]
    MalformedMethod {
        class_id: u16,
        method_id: u16,
        arguments: Bytes,
    },
    /// basic.qos with a prefetch_size, which RabbitMQ refuses. Detected here because
    /// amq-protocol's `basic::Qos` does not keep the field.
    #[error("basic.qos prefetch_size {0} is not supported")]
    PrefetchSize(u32),
    /// A method argument table nested deeper than [`crate::MAX_PARSE_DEPTH`]: refused
    /// rather than handed to a recursive parser.
    #[error("a field table of method {class_id}/{method_id} nests {depth} levels deep")]
    TableTooDeep {
        class_id: u16,
        method_id: u16,
        depth: usize,
    },
    #[error("malformed content header")]
    MalformedHeader,
    #[error("malformed content properties")]
    MalformedProperties,
    #[error("could not encode: {0}")]
    Encode(String),
}
