//! Feeds the connection state machine random and mutated frame sequences through a real
//! socket (server in-process) and checks that nothing panics, every bad connection is
//! closed, and a well-behaved connection opened before the storm keeps working.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    net::SocketAddr,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use amq_protocol::protocol::{basic, channel, connection, exchange, queue, AMQPClass};
use amq_protocol::types::FieldTable;
use bytes::BytesMut;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use warren_codec::{decode_frame, encode_content, encode_method, Frame};
use warren_integration::raw::{handshake_bytes, raw_open};
use warren_server::{serve, Broker, ServerConfig, Shutdown};

static PANICKED: AtomicBool = AtomicBool::new(false);

/// xorshift64*: deterministic, so a failure reproduces with the same seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn method(out: &mut BytesMut, channel: u16, m: AMQPClass) {
    encode_method(out, channel, &m).unwrap();
}

/// One plausible frame sequence of a random kind.
fn random_step(rng: &mut Rng, out: &mut BytesMut) {
    let ch = 1 + rng.below(3) as u16;
    let names = ["q1", "q2", "", "amq.gen-x", "amq.rabbitmq.reply-to"];
    let q = names[rng.below(names.len() as u64) as usize];
    match rng.below(12) {
        0 => method(
            out,
            ch,
            AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
        ),
        1 => method(
            out,
            ch,
            AMQPClass::Channel(channel::AMQPMethod::Close(channel::Close {
                reply_code: 200,
                reply_text: "".into(),
                class_id: 0,
                method_id: 0,
            })),
        ),
        2 => method(
            out,
            ch,
            AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
                queue: q.into(),
                passive: rng.below(4) == 0,
                durable: rng.below(2) == 0,
                exclusive: rng.below(2) == 0,
                auto_delete: rng.below(2) == 0,
                nowait: false,
                arguments: FieldTable::default(),
            })),
        ),
        3 | 4 => {
            method(
                out,
                ch,
                AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
                    exchange: ["", "amq.topic", "amq.fanout", "nope"][rng.below(4) as usize].into(),
                    routing_key: q.into(),
                    mandatory: rng.below(2) == 0,
                    immediate: false,
                })),
            );
            let body = vec![b'x'; rng.below(300) as usize];
            encode_content(out, ch, &[0, 0], &body, 4096);
        }
        5 => method(
            out,
            ch,
            AMQPClass::Basic(basic::AMQPMethod::Consume(basic::Consume {
                queue: q.into(),
                consumer_tag: ["", "t1", "t2"][rng.below(3) as usize].into(),
                no_local: false,
                no_ack: rng.below(2) == 0,
                exclusive: rng.below(3) == 0,
                nowait: false,
                arguments: FieldTable::default(),
            })),
        ),
        6 => method(
            out,
            ch,
            AMQPClass::Basic(basic::AMQPMethod::Ack(basic::Ack {
                delivery_tag: rng.below(5),
                multiple: rng.below(2) == 0,
            })),
        ),
        7 => method(
            out,
            ch,
            AMQPClass::Basic(basic::AMQPMethod::Nack(basic::Nack {
                delivery_tag: rng.below(5),
                multiple: rng.below(2) == 0,
                requeue: rng.below(2) == 0,
            })),
        ),
        8 => method(
            out,
            ch,
            AMQPClass::Basic(basic::AMQPMethod::Get(basic::Get {
                queue: q.into(),
                no_ack: rng.below(2) == 0,
            })),
        ),
        9 => method(
            out,
            ch,
            AMQPClass::Exchange(exchange::AMQPMethod::Declare(exchange::Declare {
                exchange: ["x1", "amq.direct", ""][rng.below(3) as usize].into(),
                kind: ["direct", "topic", "headers", "bogus"][rng.below(4) as usize].into(),
                passive: false,
                durable: false,
                auto_delete: rng.below(2) == 0,
                internal: false,
                nowait: false,
                arguments: FieldTable::default(),
            })),
        ),
        10 => method(
            out,
            ch,
            AMQPClass::Queue(queue::AMQPMethod::Bind(queue::Bind {
                queue: q.into(),
                exchange: ["x1", "amq.topic", "amq.headers"][rng.below(3) as usize].into(),
                routing_key: "#".into(),
                nowait: false,
                arguments: FieldTable::default(),
            })),
        ),
        _ => method(
            out,
            ch,
            AMQPClass::Queue(queue::AMQPMethod::Delete(queue::Delete {
                queue: q.into(),
                if_unused: rng.below(2) == 0,
                if_empty: rng.below(2) == 0,
                nowait: false,
            })),
        ),
    }
}

async fn start() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let broker = Broker::new(ServerConfig::default());
    tokio::spawn(serve(listener, broker, Shutdown::new()));
    addr
}

/// Reads frames until the server closes the socket or goes quiet.
async fn drain(stream: &mut TcpStream) -> Vec<Frame> {
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_millis(150), stream.read_buf(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(_)) => {}
        }
        if buf.starts_with(b"AMQP") {
            let _ = buf.split_to(buf.len().min(8));
        }
        while let Ok(Some(f)) = decode_frame(&mut buf, 0) {
            frames.push(f);
        }
    }
    frames
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_and_mutated_frames_never_break_the_broker() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICKED.store(true, Ordering::SeqCst);
        default_hook(info);
    }));
    let addr = start().await;

    // A well-behaved client, open through the whole storm.
    let mut good = raw_open(addr.port(), false).await;

    let seed = std::env::var("WARREN_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_u64);
    let mut rng = Rng(seed);
    // Every case starts with the whole handshake, sent without waiting for replies; on
    // its own the broker accepts it (start, tune, open-ok), so the cases get past it.
    let handshake = handshake_bytes(false);
    let mut probe = TcpStream::connect(addr).await.unwrap();
    probe.write_all(&handshake).await.unwrap();
    let replies = drain(&mut probe).await;
    assert!(
        matches!(
            replies.last(),
            Some(Frame::Method { method, .. })
                if matches!(**method, AMQPClass::Connection(connection::AMQPMethod::OpenOk(_)))
        ),
        "handshake replies: {replies:?}"
    );
    let cases = 600;
    let tasks: Vec<_> = (0..cases)
        .map(|_| {
            let mut bytes = BytesMut::from(&handshake[..]);
            for _ in 0..(1 + rng.below(25)) {
                random_step(&mut rng, &mut bytes);
            }
            // Mutate a few bytes after the handshake in most cases.
            let hs = handshake.len();
            if rng.below(4) != 0 && bytes.len() > hs {
                for _ in 0..(1 + rng.below(4)) {
                    let pos = hs + rng.below((bytes.len() - hs) as u64) as usize;
                    bytes[pos] = rng.next() as u8;
                }
            }
            tokio::spawn(async move {
                let mut s = TcpStream::connect(addr).await.unwrap();
                let _ = s.write_all(&bytes).await;
                drain(&mut s).await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }

    // The good connection still works: declare, publish, get.
    let mut out = BytesMut::new();
    method(
        &mut out,
        1,
        AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
            queue: "fuzz-survivor".into(),
            passive: false,
            durable: false,
            exclusive: true,
            auto_delete: false,
            nowait: false,
            arguments: FieldTable::default(),
        })),
    );
    method(
        &mut out,
        1,
        AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
            exchange: "".into(),
            routing_key: "fuzz-survivor".into(),
            mandatory: false,
            immediate: false,
        })),
    );
    encode_content(&mut out, 1, &[0, 0], b"still here", 4096);
    method(
        &mut out,
        1,
        AMQPClass::Basic(basic::AMQPMethod::Get(basic::Get {
            queue: "fuzz-survivor".into(),
            no_ack: true,
        })),
    );
    good.write_all(&out).await.unwrap();
    let frames = drain(&mut good).await;
    let body = frames.iter().find_map(|f| match f {
        Frame::Body { payload, .. } => Some(payload.clone()),
        _ => None,
    });
    assert_eq!(
        body.as_deref(),
        Some(&b"still here"[..]),
        "frames: {frames:?}"
    );
    assert!(
        !PANICKED.load(Ordering::SeqCst),
        "a connection task panicked"
    );
}
