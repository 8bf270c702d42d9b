//! Codec behaviour: every frame type, field tables, partial reads, frames split at any
//! byte, and hostile input that must be refused without panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use amq_protocol::protocol::{basic, channel, connection, queue, AMQPClass};
use amq_protocol::types::{
    AMQPValue, ByteArray, DecimalValue, FieldArray, FieldTable, LongString, ShortString,
};
use bytes::{BufMut, BytesMut};
use proptest::prelude::*;
use warren_codec::*;

fn method_frame(channel: u16, method: &AMQPClass) -> BytesMut {
    let mut out = BytesMut::new();
    encode_method(&mut out, channel, method).unwrap();
    out
}

fn decode_all(mut buf: BytesMut, frame_max: u32) -> Vec<Frame> {
    let mut frames = Vec::new();
    while let Some(f) = decode_frame(&mut buf, frame_max).unwrap() {
        frames.push(f);
    }
    assert!(buf.is_empty(), "left over: {buf:?}");
    frames
}

fn every_field_type() -> FieldTable {
    let mut nested = FieldTable::default();
    nested.insert(
        "inner".into(),
        AMQPValue::LongString(LongString::from(b"x".to_vec())),
    );
    let mut t = FieldTable::default();
    t.insert("bool".into(), AMQPValue::Boolean(true));
    t.insert("i8".into(), AMQPValue::ShortShortInt(-8));
    t.insert("u8".into(), AMQPValue::ShortShortUInt(8));
    t.insert("i16".into(), AMQPValue::ShortInt(-16));
    t.insert("u16".into(), AMQPValue::ShortUInt(16));
    t.insert("i32".into(), AMQPValue::LongInt(-32));
    t.insert("u32".into(), AMQPValue::LongUInt(32));
    t.insert("i64".into(), AMQPValue::LongLongInt(-64));
    t.insert("f32".into(), AMQPValue::Float(1.5));
    t.insert("f64".into(), AMQPValue::Double(2.5));
    t.insert(
        "dec".into(),
        AMQPValue::DecimalValue(DecimalValue {
            scale: 2,
            value: 12345,
        }),
    );
    t.insert(
        "str".into(),
        AMQPValue::LongString(LongString::from(b"hello".to_vec())),
    );
    t.insert(
        "arr".into(),
        AMQPValue::FieldArray(FieldArray::from(vec![
            AMQPValue::LongInt(1),
            AMQPValue::Void,
        ])),
    );
    t.insert("ts".into(), AMQPValue::Timestamp(1_700_000_000));
    t.insert("table".into(), AMQPValue::FieldTable(nested));
    t.insert(
        "bytes".into(),
        AMQPValue::ByteArray(ByteArray::from(vec![0u8, 1, 2])),
    );
    t.insert("void".into(), AMQPValue::Void);
    t
}

#[test]
fn method_frames_round_trip_with_every_field_type() {
    let declare = AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
        queue: "q".into(),
        passive: false,
        durable: true,
        exclusive: false,
        auto_delete: true,
        nowait: false,
        arguments: every_field_type(),
    }));
    let frames = decode_all(method_frame(7, &declare), 131_072);
    assert_eq!(
        frames,
        vec![Frame::Method {
            channel: 7,
            method: Box::new(declare)
        }]
    );
}

#[test]
fn heartbeat_frames() {
    let mut out = BytesMut::new();
    encode_heartbeat(&mut out);
    assert_eq!(&out[..], &[8, 0, 0, 0, 0, 0, 0, 0xCE]);
    assert_eq!(decode_all(out, 4096), vec![Frame::Heartbeat { channel: 0 }]);
}

#[test]
fn content_is_split_at_frame_max_and_reassembles() {
    let props = encode_properties(
        &BasicProperties::default()
            .with_content_type(ShortString::from("text/plain"))
            .with_delivery_mode(2)
            .with_headers(every_field_type()),
    )
    .unwrap();
    let body: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    let mut out = BytesMut::new();
    encode_content(&mut out, 3, &props, &body, 4096);
    let frames = decode_all(out, 4096);
    let Frame::Header {
        channel,
        class_id,
        body_size,
        properties,
    } = &frames[0]
    else {
        panic!("expected a content header, got {:?}", frames[0]);
    };
    assert_eq!((*channel, *class_id, *body_size), (3, 60, 10_000));
    assert_eq!(&properties[..], &props[..]);
    let view = PropertiesView::scan(properties).unwrap();
    assert!(view.persistent());
    assert_eq!(
        parse_properties(properties).unwrap().headers(),
        &Some(every_field_type())
    );
    let mut joined = Vec::new();
    for f in &frames[1..] {
        let Frame::Body {
            channel: 3,
            payload,
        } = f
        else {
            panic!("expected body, got {f:?}")
        };
        assert!(payload.len() <= 4096 - 8);
        joined.extend_from_slice(payload);
    }
    assert_eq!(frames.len(), 1 + 10_000usize.div_ceil(4088));
    assert_eq!(joined, body);
}

#[test]
fn deliver_and_ack_match_amq_protocol_encoding() {
    let mut hand = BytesMut::new();
    encode_deliver(&mut hand, 2, "ctag", 42, true, "ex", "rk");
    let generic = method_frame(
        2,
        &AMQPClass::Basic(basic::AMQPMethod::Deliver(basic::Deliver {
            consumer_tag: "ctag".into(),
            delivery_tag: 42,
            redelivered: true,
            exchange: "ex".into(),
            routing_key: "rk".into(),
        })),
    );
    assert_eq!(hand, generic);
    let mut hand = BytesMut::new();
    encode_ack(&mut hand, 5, 9, true);
    let generic = method_frame(
        5,
        &AMQPClass::Basic(basic::AMQPMethod::Ack(basic::Ack {
            delivery_tag: 9,
            multiple: true,
        })),
    );
    assert_eq!(hand, generic);
}

#[test]
fn partial_frames_wait_for_more_bytes() {
    let frame = method_frame(
        1,
        &AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
    );
    for cut in 0..frame.len() {
        let mut buf = BytesMut::from(&frame[..cut]);
        assert_eq!(decode_frame(&mut buf, 4096).unwrap(), None, "cut at {cut}");
        assert_eq!(buf.len(), cut, "nothing consumed at cut {cut}");
    }
}

#[test]
fn protocol_header_check() {
    assert_eq!(
        check_protocol_header(b"AMQP"),
        ProtocolHeaderCheck::Incomplete
    );
    assert_eq!(
        check_protocol_header(b"AMQP\x00\x00\x09\x01"),
        ProtocolHeaderCheck::Accepted
    );
    assert_eq!(
        check_protocol_header(b"AMQP\x00\x00\x09\x00"),
        ProtocolHeaderCheck::Refused
    );
    assert_eq!(
        check_protocol_header(b"GET / HTTP/1.1\r\n"),
        ProtocolHeaderCheck::Refused
    );
}

#[test]
fn hostile_frames_are_refused() {
    // Size over frame_max: refused from the header alone.
    let mut buf = BytesMut::from(&[3u8, 0, 1, 0, 0, 0x13, 0x88][..]);
    assert_eq!(
        decode_frame(&mut buf, 4096),
        Err(CodecError::FrameTooLarge {
            frame_type: 3,
            size: 5000,
            frame_max: 4088
        })
    );
    // A 4 GiB size is refused without buffering anything.
    let mut buf = BytesMut::from(&[3u8, 0, 1, 0xff, 0xff, 0xff, 0xff][..]);
    assert!(matches!(
        decode_frame(&mut buf, 131_072),
        Err(CodecError::FrameTooLarge { .. })
    ));
    // Payload of exactly frame_max is tolerated, as RabbitMQ does.
    let mut buf = BytesMut::new();
    buf.put_u8(3);
    buf.put_u16(1);
    buf.put_u32(4096);
    buf.put_slice(&[b'x'; 4096]);
    buf.put_u8(0xCE);
    assert!(matches!(
        decode_frame(&mut buf, 4096),
        Ok(Some(Frame::Body { .. }))
    ));
    // Bad end marker.
    let mut buf = BytesMut::from(&[1u8, 0, 1, 0, 0, 0, 1, 0, 0][..]);
    assert!(matches!(
        decode_frame(&mut buf, 4096),
        Err(CodecError::BadFrameEnd { end: 0, .. })
    ));
    // Unknown frame type, heartbeat with payload, too-short method.
    for bytes in [
        &[9u8, 0, 0, 0, 0, 0, 1, 7, 0xCE][..],
        &[8, 0, 0, 0, 0, 0, 1, 7, 0xCE],
        &[1, 0, 0, 0, 0, 0, 1, 0, 0xCE],
    ] {
        let mut buf = BytesMut::from(bytes);
        assert!(matches!(
            decode_frame(&mut buf, 4096),
            Err(CodecError::UnknownFrame { .. })
        ));
    }
    // Unknown method and truncated arguments.
    let mut buf = BytesMut::from(&[1u8, 0, 1, 0, 0, 0, 4, 0, 99, 0, 1, 0xCE][..]);
    assert_eq!(
        decode_frame(&mut buf, 4096),
        Err(CodecError::UnknownMethod {
            class_id: 99,
            method_id: 1
        })
    );
    let mut buf = BytesMut::from(&[1u8, 0, 1, 0, 0, 0, 6, 0, 50, 0, 10, 0, 0, 0xCE][..]);
    assert!(matches!(
        decode_frame(&mut buf, 4096),
        Err(CodecError::MalformedMethod {
            class_id: 50,
            method_id: 10,
            ..
        })
    ));
    // basic.qos with a prefetch_size.
    let mut buf = BytesMut::from(
        &[
            1u8, 0, 1, 0, 0, 0, 11, 0, 60, 0, 10, 0, 0, 0, 10, 0, 1, 0, 0xCE,
        ][..],
    );
    assert_eq!(
        decode_frame(&mut buf, 4096),
        Err(CodecError::PrefetchSize(10))
    );
}

#[test]
fn properties_scan_rejects_truncation() {
    let props = encode_properties(
        &BasicProperties::default()
            .with_reply_to(ShortString::from("amq.rabbitmq.reply-to"))
            .with_expiration(ShortString::from("1000"))
            .with_user_id(ShortString::from("guest"))
            .with_priority(7),
    )
    .unwrap();
    let view = PropertiesView::scan(&props).unwrap();
    assert_eq!(view.priority, Some(7));
    assert_eq!(
        &props[view.reply_to.clone().unwrap()],
        b"amq.rabbitmq.reply-to"
    );
    assert_eq!(&props[view.expiration.clone().unwrap()], b"1000");
    assert_eq!(&props[view.user_id.clone().unwrap()], b"guest");
    for cut in 0..props.len() {
        assert!(PropertiesView::scan(&props[..cut]).is_err(), "cut at {cut}");
    }
}

fn sample_stream() -> BytesMut {
    let mut out = method_frame(
        0,
        &AMQPClass::Connection(connection::AMQPMethod::Open(connection::Open {
            virtual_host: "/".into(),
        })),
    );
    out.extend_from_slice(&method_frame(
        1,
        &AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
            exchange: "amq.topic".into(),
            routing_key: "a.b.c".into(),
            mandatory: true,
            immediate: false,
        })),
    ));
    let props =
        encode_properties(&BasicProperties::default().with_headers(every_field_type())).unwrap();
    encode_content(&mut out, 1, &props, &[7u8; 300], 4096);
    encode_heartbeat(&mut out);
    out
}

proptest! {
    /// However the stream is cut into reads, the same frames come out.
    #[test]
    fn frames_split_at_any_byte(cuts in proptest::collection::vec(1usize..64, 1..40)) {
        let stream = sample_stream();
        let expected = decode_all(stream.clone(), 4096);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        let mut pos = 0;
        for cut in cuts.iter().cycle() {
            if pos >= stream.len() { break; }
            let end = (pos + cut).min(stream.len());
            buf.extend_from_slice(&stream[pos..end]);
            pos = end;
            while let Some(f) = decode_frame(&mut buf, 4096).unwrap() {
                got.push(f);
            }
        }
        prop_assert_eq!(got, expected);
    }

    /// Random bytes never panic the decoder, and an error never consumes a partial frame
    /// in a way that loops forever.
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512), frame_max in 0u32..10_000) {
        let mut buf = BytesMut::from(&bytes[..]);
        for _ in 0..64 {
            match decode_frame(&mut buf, frame_max) {
                Ok(Some(Frame::Header { properties, .. })) => { let _ = parse_properties(&properties); }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
    }

    /// Single-byte mutations of a valid stream are either decoded or refused, never a panic.
    #[test]
    fn mutated_frames_never_panic(pos in 0usize..2000, byte in any::<u8>()) {
        let mut stream = sample_stream();
        let pos = pos % stream.len();
        stream[pos] = byte;
        let mut buf = stream;
        for _ in 0..64 {
            match decode_frame(&mut buf, 4096) {
                Ok(Some(Frame::Header { properties, .. })) => { let _ = PropertiesView::scan(&properties); let _ = parse_properties(&properties); }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
    }
}
