//! Bodies that span several large frames. The broker reads the payload of such frames
//! straight into the message's body buffer (no frame buffer copied into it afterwards);
//! these tests check that the bytes come out exactly as they went in whatever way the
//! socket splits them, with other channels' frames in between, and that a wrong frame end
//! after such a payload is still the frame error RabbitMQ sends.

use std::time::Duration;

use lapin::{
    options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions},
    protocol::{self, AMQPClass},
    BasicProperties,
};
use tokio::io::AsyncWriteExt;
use warren_integration::{
    client::{channel, connect, declare_queue, get, within},
    raw::{
        frame_bytes, method_frame, raw_open, read_method, shortstr, write_method, FRAME_BODY,
        FRAME_HEADER,
    },
    Broker,
};

/// Bytes that differ at every position, so a misplaced or repeated slice shows.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn publish_frames(channel: u16, queue: &str) -> Vec<u8> {
    let mut args = 0u16.to_be_bytes().to_vec();
    args.extend(shortstr(""));
    args.extend(shortstr(queue));
    args.push(0);
    method_frame(channel, 60, 40, &args)
}

fn header_frame(channel: u16, body_size: usize) -> Vec<u8> {
    let mut header = 60u16.to_be_bytes().to_vec();
    header.extend_from_slice(&0u16.to_be_bytes());
    header.extend_from_slice(&(body_size as u64).to_be_bytes());
    header.extend_from_slice(&0u16.to_be_bytes());
    frame_bytes(FRAME_HEADER, channel, &header)
}

/// The frames of one publish whose body is cut into frames of `frame_payload` bytes.
fn body_frames(channel: u16, body: &[u8], frame_payload: usize) -> Vec<Vec<u8>> {
    body.chunks(frame_payload)
        .map(|part| frame_bytes(FRAME_BODY, channel, part))
        .collect()
}

/// The next message in `queue` once the broker has routed it (the raw socket's publishes
/// are not confirmed).
async fn routed(ch: &lapin::Channel, queue: &str) -> lapin::message::BasicGetMessage {
    within("message routed", async {
        loop {
            if let Some(m) = get(ch, queue, true).await {
                break m;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

async fn open_channel(sock: &mut tokio::net::TcpStream, id: u16) {
    write_method(sock, id, 20, 10, &shortstr("")).await;
    match read_method(sock).await {
        (c, AMQPClass::Channel(protocol::channel::AMQPMethod::OpenOk(_))) if c == id => {}
        other => panic!("expected channel.open-ok on {id}, got {other:?}"),
    }
}

/// Two large multi-frame bodies on channels 1 and 2, their frames interleaved, a small
/// message on channel 3 between them, all written in pieces of awkward sizes (inside a
/// frame header, one byte before a frame end, exactly at a frame end, ...) with pauses so
/// the broker's reads end at those places.
#[tokio::test]
async fn multi_frame_bodies_arrive_intact_whatever_the_reads() {
    let broker = Broker::start();
    let conn = connect(&broker.amqp_url()).await;
    let ch = channel(&conn).await;
    for q in ["big-a", "big-b", "small"] {
        declare_queue(&ch, q, QueueDeclareOptions::default()).await;
    }
    let mut sock = raw_open(broker.port, false).await;
    open_channel(&mut sock, 2).await;
    open_channel(&mut sock, 3).await;

    // frame_max is 131,072: payloads of up to 131,064 bytes.
    let body_a = pattern(300_001, 7);
    let body_b = pattern(131_064 * 2, 11);
    let small = b"between the large frames".to_vec();
    let frames_a = body_frames(1, &body_a, 131_064);
    let frames_b = body_frames(2, &body_b, 131_064);
    let mut wire = Vec::new();
    wire.extend(publish_frames(1, "big-a"));
    wire.extend(header_frame(1, body_a.len()));
    wire.extend(publish_frames(2, "big-b"));
    wire.extend(header_frame(2, body_b.len()));
    wire.extend(&frames_a[0]);
    wire.extend(&frames_b[0]);
    wire.extend(publish_frames(3, "small"));
    wire.extend(header_frame(3, small.len()));
    wire.extend(frame_bytes(FRAME_BODY, 3, &small));
    wire.extend(&frames_a[1]);
    wire.extend(&frames_b[1]);
    wire.extend(&frames_a[2]);

    let cuts = [3, 4, 1, 40_000, 91_070, 1, 131_000, 64, 1, 7, 65_536, 2];
    let mut at = 0;
    let mut i = 0;
    while at < wire.len() {
        let n = cuts[i % cuts.len()].min(wire.len() - at);
        within("write", sock.write_all(&wire[at..at + n]))
            .await
            .expect("write");
        sock.flush().await.expect("flush");
        tokio::time::sleep(Duration::from_millis(5)).await;
        at += n;
        i += 1;
    }

    for (queue, expected) in [("big-a", &body_a), ("big-b", &body_b), ("small", &small)] {
        let message = routed(&ch, queue).await;
        assert_eq!(message.delivery.data.len(), expected.len(), "{queue} size");
        assert!(message.delivery.data == *expected, "{queue} bytes differ");
    }
}

/// A wrong frame end after a large body frame read into the body buffer: 501 with
/// RabbitMQ's text for an invalid frame end, as for any other frame; the broker goes on.
#[tokio::test]
async fn wrong_frame_end_after_a_large_body_frame_is_a_frame_error() {
    let broker = Broker::start();
    let mut sock = raw_open(broker.port, false).await;
    let ch_conn = connect(&broker.amqp_url()).await;
    let ch = channel(&ch_conn).await;
    declare_queue(&ch, "bad-end", QueueDeclareOptions::default()).await;

    let body = pattern(200_000, 3);
    let mut frames = body_frames(1, &body, 131_064);
    let first = frames.remove(0);
    let mut broken = first.clone();
    let last = broken.len() - 1;
    broken[last] = b'A';
    let mut wire = publish_frames(1, "bad-end");
    wire.extend(header_frame(1, body.len()));
    wire.extend(&broken[..100]);
    within("write", sock.write_all(&wire)).await.expect("write");
    tokio::time::sleep(Duration::from_millis(20)).await;
    within("write", sock.write_all(&broken[100..]))
        .await
        .expect("write");

    match read_method(&mut sock).await {
        (0, AMQPClass::Connection(protocol::connection::AMQPMethod::Close(close))) => {
            assert_eq!(close.reply_code, 501);
            // The reply text (a shortstr) is cut at 255 bytes, inside the octets, which
            // are the frame's own payload.
            let text = close.reply_text.as_str();
            let expected = format!(
                "FRAME_ERROR - type 3, all octets = <<{},{},{},",
                body[0], body[1], body[2]
            );
            assert!(text.starts_with(&expected), "{text}");
        }
        other => panic!("expected connection.close, got {other:?}"),
    }
    // Nothing of the broken message was routed; other connections are unaffected.
    assert!(get(&ch, "bad-end", true).await.is_none());
    let other = connect(&broker.amqp_url()).await;
    let other_ch = channel(&other).await;
    declare_queue(&other_ch, "after", QueueDeclareOptions::default()).await;
}

/// Through a client library: bodies from just over one frame to several MiB, confirmed,
/// then fetched and compared byte for byte.
#[tokio::test]
async fn large_bodies_round_trip_through_lapin() {
    let broker = Broker::start();
    let conn = connect(&broker.amqp_url()).await;
    let ch = channel(&conn).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm.select");
    declare_queue(&ch, "sizes", QueueDeclareOptions::default()).await;
    let sizes = [
        131_065,
        262_128,
        262_129,
        1 << 20,
        (1 << 20) + 1,
        3 * (1 << 20) + 17,
    ];
    let bodies: Vec<Vec<u8>> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| pattern(n, i as u64 + 100))
        .collect();
    for body in &bodies {
        let confirm = ch
            .basic_publish(
                "".into(),
                "sizes".into(),
                BasicPublishOptions::default(),
                body,
                BasicProperties::default(),
            )
            .await
            .expect("publish");
        assert!(within("confirm", confirm).await.expect("confirm").is_ack());
    }
    for (body, size) in bodies.iter().zip(sizes) {
        let m = get(&ch, "sizes", true).await.expect("message");
        assert_eq!(m.delivery.data.len(), size);
        assert!(m.delivery.data == *body, "body of {size} bytes differs");
    }
}

/// A content header whose properties carry a `headers` table with one long string of
/// `value_len` bytes, so the method and header frames between two bodies can be larger
/// than the broker's short reads after a body.
fn header_frame_with_headers(channel: u16, body_size: usize, value_len: usize) -> Vec<u8> {
    let mut table = shortstr("filler");
    table.push(b'S');
    table.extend_from_slice(&(value_len as u32).to_be_bytes());
    table.extend(std::iter::repeat_n(b'h', value_len));
    let mut header = 60u16.to_be_bytes().to_vec();
    header.extend_from_slice(&0u16.to_be_bytes());
    header.extend_from_slice(&(body_size as u64).to_be_bytes());
    header.extend_from_slice(&0x2000u16.to_be_bytes()); // property flags: headers
    header.extend_from_slice(&(table.len() as u32).to_be_bytes());
    header.extend(table);
    frame_bytes(FRAME_HEADER, channel, &header)
}

/// Many messages written in one go, as a fast publisher's buffered writer sends them:
/// multi-frame bodies back to back, so each payload read also takes in the frame end and
/// the next frame's header; content headers larger than the short reads that follow a
/// body; small messages after the large ones (reads become unbounded again). Every body
/// and header comes out as it went in, in order.
#[tokio::test]
async fn back_to_back_bodies_written_at_once_arrive_intact() {
    let broker = Broker::start();
    let conn = connect(&broker.amqp_url()).await;
    let ch = channel(&conn).await;
    declare_queue(&ch, "at-once", QueueDeclareOptions::default()).await;
    let mut sock = raw_open(broker.port, false).await;

    // (body size, length of the header value): large bodies, then small ones.
    let plan = [
        (1 << 20, 0),
        ((1 << 20) + 1, 10_000),
        (300_001, 0),
        (262_128, 5_000),
        (131_065, 0),
        (1 << 20, 20_000),
        (17, 0),
        (4_096, 9_000),
        (65_536, 0),
        (1, 0),
        (200_000, 0),
        (5, 6_000),
    ];
    let mut wire = Vec::new();
    let mut expected = Vec::new();
    for (i, &(size, header_len)) in plan.iter().enumerate() {
        let body = pattern(size, 500 + i as u64);
        wire.extend(publish_frames(1, "at-once"));
        wire.extend(header_frame_with_headers(1, size, header_len));
        for frame in body_frames(1, &body, 131_064) {
            wire.extend(frame);
        }
        expected.push((body, header_len));
    }
    within("write", sock.write_all(&wire)).await.expect("write");
    sock.flush().await.expect("flush");

    for (i, (body, header_len)) in expected.iter().enumerate() {
        let message = routed(&ch, "at-once").await;
        assert_eq!(message.delivery.data.len(), body.len(), "message {i} size");
        assert!(message.delivery.data == *body, "message {i} bytes differ");
        let filler = message
            .delivery
            .properties
            .headers()
            .as_ref()
            .and_then(|h| h.inner().get("filler").cloned());
        match filler {
            Some(lapin::types::AMQPValue::LongString(s)) => {
                assert_eq!(s.as_bytes().len(), *header_len, "message {i} header")
            }
            other => panic!("message {i}: header value {other:?}"),
        }
    }
}
