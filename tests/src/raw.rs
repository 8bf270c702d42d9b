//! Raw-socket AMQP 0-9-1 frame helpers, for tests that speak the wire protocol by hand.

use lapin::protocol::{self, AMQPClass};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::client::within;

/// The AMQP 0-9-1 protocol header a client sends first.
pub const PROTOCOL_HEADER: &[u8] = b"AMQP\x00\x00\x09\x01";

pub const FRAME_METHOD: u8 = 1;
pub const FRAME_HEADER: u8 = 2;
pub const FRAME_BODY: u8 = 3;
pub const FRAME_HEARTBEAT: u8 = 8;

/// One frame as read off the wire (frame-end octet checked and removed).
pub struct RawFrame {
    pub kind: u8,
    pub channel: u16,
    pub payload: Vec<u8>,
}

pub async fn read_frame<S: tokio::io::AsyncRead + Unpin>(sock: &mut S) -> RawFrame {
    let mut header = [0u8; 7];
    within("frame header", sock.read_exact(&mut header))
        .await
        .expect("read frame header");
    let size = u32::from_be_bytes([header[3], header[4], header[5], header[6]]) as usize;
    let mut payload = vec![0u8; size + 1];
    within("frame payload", sock.read_exact(&mut payload))
        .await
        .expect("read frame payload");
    assert_eq!(payload[size], 0xCE, "frame-end octet");
    payload.truncate(size);
    RawFrame {
        kind: header[0],
        channel: u16::from_be_bytes([header[1], header[2]]),
        payload,
    }
}

pub fn decode_method(payload: &[u8]) -> AMQPClass {
    let (rest, class) = protocol::parse_class(payload).expect("parse method");
    assert!(rest.is_empty(), "method frame has trailing bytes");
    class
}

/// Reads the next method frame (skipping heartbeats) and returns its channel and method.
pub async fn read_method<S: tokio::io::AsyncRead + Unpin>(sock: &mut S) -> (u16, AMQPClass) {
    loop {
        let frame = read_frame(sock).await;
        match frame.kind {
            FRAME_HEARTBEAT => continue,
            FRAME_METHOD => return (frame.channel, decode_method(&frame.payload)),
            other => panic!("expected a method frame, got frame type {other}"),
        }
    }
}

pub fn frame_bytes(kind: u8, channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![kind];
    frame.extend_from_slice(&channel.to_be_bytes());
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(payload);
    frame.push(0xCE);
    frame
}

pub fn method_frame(channel: u16, class_id: u16, method_id: u16, args: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(4 + args.len());
    payload.extend_from_slice(&class_id.to_be_bytes());
    payload.extend_from_slice(&method_id.to_be_bytes());
    payload.extend_from_slice(args);
    frame_bytes(FRAME_METHOD, channel, &payload)
}

pub async fn write_method<S: tokio::io::AsyncWrite + Unpin>(
    sock: &mut S,
    channel: u16,
    class_id: u16,
    method_id: u16,
    a: &[u8],
) {
    within(
        "write frame",
        sock.write_all(&method_frame(channel, class_id, method_id, a)),
    )
    .await
    .expect("write frame");
}

pub fn shortstr(s: &str) -> Vec<u8> {
    let mut v = vec![u8::try_from(s.len()).unwrap()];
    v.extend_from_slice(s.as_bytes());
    v
}

/// TCP connection plus the AMQP 0-9-1 protocol header.
pub async fn raw_connect(port: u16) -> TcpStream {
    let mut sock = within("tcp connect", TcpStream::connect(("127.0.0.1", port)))
        .await
        .expect("tcp connect");
    within("protocol header", sock.write_all(PROTOCOL_HEADER))
        .await
        .unwrap();
    sock
}

/// Reads one frame that must be a method frame on channel 0 (no heartbeats skipped) and
/// decodes it.
pub async fn read_channel0_method(sock: &mut TcpStream) -> AMQPClass {
    let frame = read_frame(sock).await;
    assert_eq!(frame.kind, FRAME_METHOD, "expected a method frame");
    assert_eq!(frame.channel, 0, "on channel 0");
    decode_method(&frame.payload)
}

/// Client properties announcing (or not) the connection.blocked capability.
pub fn client_properties(blocked_capability: bool) -> Vec<u8> {
    let mut caps = Vec::new();
    if blocked_capability {
        caps.extend(shortstr("connection.blocked"));
        caps.extend_from_slice(b"t\x01");
    }
    let mut entries = shortstr("capabilities");
    entries.push(b'F');
    entries.extend_from_slice(&(caps.len() as u32).to_be_bytes());
    entries.extend(caps);
    let mut table = (entries.len() as u32).to_be_bytes().to_vec();
    table.extend(entries);
    table
}

/// connection.start-ok arguments: client properties (see [`client_properties`]), PLAIN
/// as guest/guest, locale en_US.
pub fn start_ok_args(blocked_capability: bool) -> Vec<u8> {
    let mut args = client_properties(blocked_capability);
    args.extend(shortstr("PLAIN"));
    let response = b"\0guest\0guest";
    args.extend_from_slice(&(response.len() as u32).to_be_bytes());
    args.extend_from_slice(response);
    args.extend(shortstr("en_US"));
    args
}

/// connection.tune-ok arguments, with no heartbeats.
pub fn tune_ok_args(channel_max: u16, frame_max: u32) -> Vec<u8> {
    let mut args = channel_max.to_be_bytes().to_vec();
    args.extend_from_slice(&frame_max.to_be_bytes());
    args.extend_from_slice(&0u16.to_be_bytes());
    args
}

/// connection.open arguments for `vhost`.
pub fn open_args(vhost: &str) -> Vec<u8> {
    let mut args = shortstr(vhost);
    args.extend(shortstr(""));
    args.push(0);
    args
}

/// The client's whole side of the handshake in one buffer, for tests that send it without
/// waiting for the broker's replies: protocol header, start-ok (as [`raw_open_connection`]
/// sends it), tune-ok (channel_max 2047, frame_max 131072, no heartbeats) and
/// connection.open on vhost "/". The broker answers with start, tune and open-ok.
pub fn handshake_bytes(blocked_capability: bool) -> Vec<u8> {
    let mut out = PROTOCOL_HEADER.to_vec();
    out.extend(method_frame(0, 10, 11, &start_ok_args(blocked_capability)));
    out.extend(method_frame(0, 10, 31, &tune_ok_args(2047, 131_072)));
    out.extend(method_frame(0, 10, 40, &open_args("/")));
    out
}

/// A raw connection through the handshake (guest/guest, no heartbeats) up to
/// connection.open-ok on vhost "/", each step waiting for the broker's reply (tune-ok
/// accepts the broker's channel_max and frame_max).
pub async fn raw_open_connection(port: u16, blocked_capability: bool) -> TcpStream {
    let mut sock = raw_connect(port).await;
    assert!(matches!(
        read_method(&mut sock).await,
        (
            0,
            AMQPClass::Connection(protocol::connection::AMQPMethod::Start(_))
        )
    ));
    write_method(&mut sock, 0, 10, 11, &start_ok_args(blocked_capability)).await;
    let tune = match read_method(&mut sock).await {
        (0, AMQPClass::Connection(protocol::connection::AMQPMethod::Tune(t))) => t,
        other => panic!("expected connection.tune, got {other:?}"),
    };
    let args = tune_ok_args(tune.channel_max, tune.frame_max);
    write_method(&mut sock, 0, 10, 31, &args).await;
    write_method(&mut sock, 0, 10, 40, &open_args("/")).await;
    assert!(matches!(
        read_method(&mut sock).await,
        (
            0,
            AMQPClass::Connection(protocol::connection::AMQPMethod::OpenOk(_))
        )
    ));
    sock
}

/// A raw connection through the handshake (no heartbeats) with channel 1 open. Nothing
/// may arrive between open-ok and channel.open-ok: RabbitMQ sends connection.blocked
/// only once a blocked connection publishes.
pub async fn raw_open(port: u16, blocked_capability: bool) -> TcpStream {
    let mut sock = raw_open_connection(port, blocked_capability).await;
    write_method(&mut sock, 1, 20, 10, &shortstr("")).await;
    match read_method(&mut sock).await {
        (1, AMQPClass::Channel(protocol::channel::AMQPMethod::OpenOk(_))) => {}
        other => panic!("expected channel.open-ok, got {other:?}"),
    }
    sock
}

/// basic.publish with its header and body, in one write.
pub async fn raw_publish(sock: &mut TcpStream, queue: &str, body: &[u8]) {
    let mut args = 0u16.to_be_bytes().to_vec();
    args.extend(shortstr(""));
    args.extend(shortstr(queue));
    args.push(0);
    let mut bytes = method_frame(1, 60, 40, &args);
    let mut header = 60u16.to_be_bytes().to_vec();
    header.extend_from_slice(&0u16.to_be_bytes());
    header.extend_from_slice(&(body.len() as u64).to_be_bytes());
    header.extend_from_slice(&0u16.to_be_bytes());
    bytes.extend(frame_bytes(FRAME_HEADER, 1, &header));
    bytes.extend(frame_bytes(FRAME_BODY, 1, body));
    within("publish", sock.write_all(&bytes)).await.unwrap();
}
