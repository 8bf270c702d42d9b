//! Frame splitting: a client's byte stream (optionally starting with the protocol
//! header) cut into frames by `decode_frame`, under the negotiated limit and the
//! pre-tune one.

use bytes::BytesMut;
use warren_codec::{check_protocol_header, decode_frame, Frame, ProtocolHeaderCheck};

/// Splits `data` into frames until it runs out or a frame is refused.
pub fn run(data: &[u8]) {
    let body = match check_protocol_header(data) {
        ProtocolHeaderCheck::Accepted => &data[8..],
        _ => data,
    };
    for frame_max in [131_072, warren_codec::FRAME_MIN_SIZE, 0] {
        split_all(body, frame_max);
    }
}

fn split_all(data: &[u8], frame_max: u32) {
    let mut buf = BytesMut::from(data);
    loop {
        let before = buf.len();
        match decode_frame(&mut buf, frame_max) {
            Ok(Some(frame)) => {
                assert!(buf.len() < before, "a frame consumed nothing");
                check(&frame, frame_max);
            }
            // "Need more bytes" consumes nothing.
            Ok(None) => {
                assert_eq!(buf.len(), before, "Ok(None) consumed input");
                return;
            }
            Err(_) => return,
        }
    }
}

fn check(frame: &Frame, frame_max: u32) {
    match frame {
        Frame::Method { method, .. } => crate::method::check_method(method),
        Frame::Header { properties, .. } => crate::method::check_properties(properties),
        Frame::Body { payload, .. } => {
            assert!(frame_max == 0 || payload.len() <= frame_max as usize);
        }
        Frame::Heartbeat { .. } => {}
    }
}
