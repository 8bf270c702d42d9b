//! Method and content-header decoding: the input is one frame payload, decoded both as a
//! method frame and as a content-header frame. A decoded method must re-encode and parse
//! back to the same bytes; a content header's properties must parse, re-encode and
//! survive the rewrites the broker applies (dead-lettering, direct reply-to).

use bytes::{BufMut, Bytes, BytesMut};
use warren_codec::{
    decode_frame, encode_method_to_vec, encode_properties, parse_properties, rewrite_properties,
    Frame, PropertiesEdit, PropertiesView, FRAME_END, FRAME_HEADER, FRAME_METHOD,
};

/// Decodes `data` as a method payload and as a content-header payload.
pub fn run(data: &[u8]) {
    for frame_type in [FRAME_METHOD, FRAME_HEADER] {
        let mut buf = BytesMut::with_capacity(data.len() + 8);
        buf.put_u8(frame_type);
        buf.put_u16(1);
        buf.put_u32(u32::try_from(data.len()).unwrap_or(u32::MAX));
        buf.put_slice(data);
        buf.put_u8(FRAME_END);
        match decode_frame(&mut buf, 0) {
            Ok(Some(Frame::Method { method, .. })) => check_method(&method),
            Ok(Some(Frame::Header { properties, .. })) => check_properties(&properties),
            Ok(Some(other)) => panic!("a type {frame_type} frame decoded as {other:?}"),
            Ok(None) => panic!("a complete frame was reported incomplete"),
            Err(_) => {}
        }
    }
}

/// A decoded method encodes, and its encoding decodes to the same encoding.
pub(crate) fn check_method(method: &warren_codec::AMQPClass) {
    let Ok(encoded) = encode_method_to_vec(method) else {
        // amq-protocol refuses to write some values it reads (a shortstr over 255
        // bytes cannot arrive, but a table may hold what its writer rejects).
        return;
    };
    let mut buf = BytesMut::new();
    buf.put_u8(FRAME_METHOD);
    buf.put_u16(1);
    buf.put_u32(u32::try_from(encoded.len()).unwrap_or(u32::MAX));
    buf.put_slice(&encoded);
    buf.put_u8(FRAME_END);
    match decode_frame(&mut buf, 0) {
        Ok(Some(Frame::Method { method: again, .. })) => {
            let twice = encode_method_to_vec(&again).unwrap_or_default();
            assert_eq!(encoded, twice, "a re-encoded method changed: {method:?}");
        }
        other => panic!("a re-encoded method does not decode: {method:?} -> {other:?}"),
    }
}

/// What the broker does with a publisher's raw property block must work on every block
/// the scanner accepted.
pub(crate) fn check_properties(raw: &Bytes) {
    let view = PropertiesView::scan(raw).unwrap_or_else(|e| panic!("accepted, then {e:?}"));
    let _ = view.persistent();
    if let Ok(props) = parse_properties(raw) {
        if let Ok(encoded) = encode_properties(&props) {
            let again = parse_properties(&encoded)
                .unwrap_or_else(|e| panic!("re-encoded properties refused: {e:?}"));
            assert_eq!(encode_properties(&again).ok(), Some(encoded));
        }
    }
    let edits = [
        PropertiesEdit::default(),
        PropertiesEdit {
            headers: Some(None),
            remove_expiration: true,
            reply_to: Some(Bytes::from_static(b"amq.rabbitmq.reply-to.g1h2AA")),
        },
        PropertiesEdit {
            headers: Some(Some(Bytes::from_static(&[0, 0, 0, 0]))),
            remove_expiration: false,
            reply_to: None,
        },
    ];
    for edit in &edits {
        let out = rewrite_properties(raw, edit)
            .unwrap_or_else(|e| panic!("rewrite of an accepted block failed: {e:?}"));
        PropertiesView::scan(&out)
            .unwrap_or_else(|e| panic!("a rewritten block does not scan: {e:?}"));
    }
    let same = rewrite_properties(raw, &edits[0]).unwrap_or_default();
    assert_eq!(&same[..], &raw[..], "an empty edit changed the block");
}
