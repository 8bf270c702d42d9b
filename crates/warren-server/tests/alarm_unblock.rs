//! The whole alarm cycle through a real socket, server in-process: a disk limit no disk
//! meets raises the alarm, a publisher is blocked (connection.blocked, socket no longer
//! read), then the limit is lowered in place so that the sampler clears the alarm on its
//! next tick: connection.unblocked arrives, the frames the broker left unread are
//! processed in order and the held-back message reaches its consumer. (The black-box
//! test, tests/tests/alarm.rs, cannot clear an alarm: limits are fixed at start there.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{sync::atomic::Ordering, sync::Arc, time::Duration};

use amq_protocol::protocol::{basic, connection, queue, AMQPClass};
use amq_protocol::types::FieldTable;
use bytes::BytesMut;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use warren_codec::{decode_frame, encode_content, encode_method, Frame};
use warren_integration::raw::raw_open;
use warren_server::{alarm::FlowState, serve, Broker, ServerConfig, Shutdown};

fn method(out: &mut BytesMut, channel: u16, m: AMQPClass) {
    encode_method(out, channel, &m).unwrap();
}

fn declare(out: &mut BytesMut, name: &str, passive: bool) {
    method(
        out,
        1,
        AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
            queue: name.into(),
            passive,
            durable: false,
            exclusive: false,
            auto_delete: false,
            nowait: false,
            arguments: FieldTable::default(),
        })),
    );
}

/// A client socket with its own read buffer.
struct Client {
    sock: TcpStream,
    buf: BytesMut,
}

impl Client {
    /// Through the handshake (shared with the black-box tests) with channel 1 open.
    async fn connect(broker: std::net::SocketAddr, blocked_capability: bool) -> Client {
        Client {
            sock: raw_open(broker.port(), blocked_capability).await,
            buf: BytesMut::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.sock.write_all(bytes).await.unwrap();
    }

    /// The next method (content frames skipped), or `None` after `limit` of silence.
    async fn next_method(&mut self, limit: Duration) -> Option<AMQPClass> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            while let Ok(Some(f)) = decode_frame(&mut self.buf, 0) {
                if let Frame::Method { method, .. } = f {
                    return Some(*method);
                }
            }
            match tokio::time::timeout_at(deadline, self.sock.read_buf(&mut self.buf)).await {
                Ok(Ok(n)) if n > 0 => {}
                Ok(_) => panic!("broker closed the socket"),
                Err(_) => return None,
            }
        }
    }

    /// The next content body (after a deliver and its header), or `None`.
    async fn next_body(&mut self, limit: Duration) -> Option<Vec<u8>> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            while let Ok(Some(f)) = decode_frame(&mut self.buf, 0) {
                if let Frame::Body { payload, .. } = f {
                    return Some(payload.to_vec());
                }
            }
            match tokio::time::timeout_at(deadline, self.sock.read_buf(&mut self.buf)).await {
                Ok(Ok(n)) if n > 0 => {}
                Ok(_) => panic!("broker closed the socket"),
                Err(_) => return None,
            }
        }
    }
}

fn states(broker: &Broker) -> Vec<FlowState> {
    broker
        .admin
        .connections
        .iter()
        .map(|c| c.handle.flow_state())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarm_blocks_then_unblocks_and_reading_resumes() {
    let dir = std::env::temp_dir().join(format!("warren-alarm-unblock-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = ServerConfig {
        data_dir: dir.clone(),
        disk_free_limit: u64::MAX,
        ..ServerConfig::default()
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let broker: Arc<Broker> = Broker::new(cfg);
    tokio::spawn(serve(listener, broker.clone(), Shutdown::new()));
    for _ in 0..50 {
        if broker.alarms.current().disk {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(broker.alarms.current().disk, "disk alarm never set");

    // A consumer (declares and consumes: neither blocks it).
    let mut consumer = Client::connect(addr, false).await;
    let mut out = BytesMut::new();
    declare(&mut out, "held", false);
    method(
        &mut out,
        1,
        AMQPClass::Basic(basic::AMQPMethod::Consume(basic::Consume {
            queue: "held".into(),
            consumer_tag: "c".into(),
            no_local: false,
            no_ack: true,
            exclusive: false,
            nowait: false,
            arguments: FieldTable::default(),
        })),
    );
    consumer.send(&out).await;
    for _ in 0..2 {
        consumer
            .next_method(Duration::from_secs(5))
            .await
            .expect("declare-ok, consume-ok");
    }

    // The publisher: blocked by its publish; the declare after it goes unread.
    let mut publisher = Client::connect(addr, true).await;
    assert_eq!(states(&broker), vec![FlowState::Blocking; 2]);
    let mut out = BytesMut::new();
    method(
        &mut out,
        1,
        AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
            exchange: "".into(),
            routing_key: "held".into(),
            mandatory: false,
            immediate: false,
        })),
    );
    encode_content(&mut out, 1, &[0, 0], b"held back", 131_072);
    declare(&mut out, "held", true);
    publisher.send(&out).await;
    match publisher.next_method(Duration::from_secs(5)).await {
        Some(AMQPClass::Connection(connection::AMQPMethod::Blocked(b))) => {
            assert_eq!(b.reason.as_str(), "low on disk");
        }
        other => panic!("expected connection.blocked, got {other:?}"),
    }
    assert!(publisher
        .next_method(Duration::from_millis(400))
        .await
        .is_none());
    assert!(consumer
        .next_body(Duration::from_millis(300))
        .await
        .is_none());
    let mut s = states(&broker);
    s.sort_by_key(|s| *s as u8);
    assert_eq!(s, vec![FlowState::Blocking, FlowState::Blocked]);

    // Lower the limit: the next sample clears the alarm.
    broker.alarms.disk_free_limit.store(0, Ordering::Relaxed);
    match publisher.next_method(Duration::from_secs(5)).await {
        Some(AMQPClass::Connection(connection::AMQPMethod::Unblocked(_))) => {}
        other => panic!("expected connection.unblocked, got {other:?}"),
    }
    // Reading resumed where it stopped: the held publish, then the declare.
    match publisher.next_method(Duration::from_secs(5)).await {
        Some(AMQPClass::Queue(queue::AMQPMethod::DeclareOk(ok))) => {
            assert_eq!(ok.queue.as_str(), "held");
        }
        other => panic!("expected queue.declare-ok, got {other:?}"),
    }
    assert_eq!(
        consumer.next_body(Duration::from_secs(5)).await.as_deref(),
        Some(&b"held back"[..])
    );
    // Each connection task applies the change on its own; give the consumer's a moment.
    for _ in 0..50 {
        if states(&broker) == vec![FlowState::Running; 2] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(states(&broker), vec![FlowState::Running; 2]);
    let _ = std::fs::remove_dir_all(&dir);
}
