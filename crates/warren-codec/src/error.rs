use thiserror::Error;

/// Why bytes from a peer could not be turned into a frame. Every variant is a
/// connection-level protocol error; the server maps it to the AMQP reply code.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CodecError {
    #[error("frame size {size} exceeds the negotiated frame_max {max}")]
    FrameTooLarge { size: u32, max: u32 },
    #[error("invalid frame end marker {0:#04x}")]
    BadFrameEnd(u8),
    #[error("unknown frame type {0}")]
    UnknownFrameType(u8),
    #[error("unknown method {class_id}/{method_id}")]
    UnknownMethod { class_id: u16, method_id: u16 },
    #[error("malformed arguments for method {class_id}/{method_id}")]
    MalformedMethod { class_id: u16, method_id: u16 },
    #[error("malformed content header")]
    MalformedHeader,
    #[error("malformed content properties")]
    MalformedProperties,
    #[error("could not encode: {0}")]
    Encode(String),
}
