//! AMQP 0-9-1 wire format for warren.
//!
//! Pure functions over byte buffers: [`decode_frame`] splits frames off a read buffer
//! (bodies stay `Bytes` slices of that buffer, never copied), method frames are parsed by
//! amq-protocol's generated parsers, content-header properties are kept raw and scanned
//! lazily ([`PropertiesView`]) so a message is forwarded byte for byte as it arrived.
//! Encoding writes many frames into one `BytesMut` so the server can flush them with one
//! syscall.
#![forbid(unsafe_code)]

mod decode;
mod encode;
mod error;
mod nesting;
mod properties;
mod table;

pub use amq_protocol::protocol::{self as methods, AMQPClass};
pub use amq_protocol::types::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};
pub use decode::{check_protocol_header, decode_frame, Frame, ProtocolHeaderCheck};
pub use encode::{
    decode_field_table, encode_ack, encode_content, encode_content_shared, encode_deliver,
    encode_field_table, encode_heartbeat, encode_method, encode_method_to_vec, encode_nack,
    encode_properties,
};
pub use error::CodecError;
pub use nesting::{filter_table, parse_table_bounded, table_depth, MAX_PARSE_DEPTH};
pub use properties::{
    parse_properties, rewrite_properties, BasicProperties, PropertiesEdit, PropertiesView,
};
pub use table::{Table, Value};

/// The only protocol header warren speaks (and sends back to peers that offer another).
pub const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";
/// Frame header (type, channel, size) plus the frame-end octet.
pub const FRAME_OVERHEAD: u32 = 8;
/// Smallest frame_max a peer may negotiate (AMQP 0-9-1 4.2.3), and the limit before tune.
pub const FRAME_MIN_SIZE: u32 = 4096;
pub const FRAME_METHOD: u8 = 1;
pub const FRAME_HEADER: u8 = 2;
pub const FRAME_BODY: u8 = 3;
pub const FRAME_HEARTBEAT: u8 = 8;
pub const FRAME_END: u8 = 0xCE;
/// Class id of `basic`, the only content class.
pub const CLASS_BASIC: u16 = 60;
