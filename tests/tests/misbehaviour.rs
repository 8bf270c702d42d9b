//! Misbehaving and demanding clients: slow or stalled handshakes, connections that die
//! mid-message or with unacknowledged deliveries, acks on the wrong channel, garbage on
//! the wire, and large numbers of queues, consumers and messages. The expected behaviour
//! and texts are RabbitMQ 3.10's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use futures_lite::StreamExt;
use lapin::{
    message::Delivery,
    options::*,
    protocol::{self, AMQPClass},
    BasicProperties, Channel, Confirmation,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use warren_integration::{client::*, raw::*, Broker};

// ---------------------------------------------------------------------------------------
// helpers: lapin (the shared ones live in warren_integration::client)
// ---------------------------------------------------------------------------------------

async fn ack(d: &Delivery, multiple: bool) {
    within("basic.ack", d.ack(BasicAckOptions { multiple }))
        .await
        .expect("basic.ack");
}

/// A full publish / basic.get round trip proving the channel (and its connection) works.
async fn assert_channel_works(ch: &Channel) {
    let q = exclusive_queue(ch).await;
    publish(ch, "", &q, b"ping").await;
    assert_eq!(drain(ch, &q).await, vec!["ping".to_string()]);
}

/// Starts a broker whose handshake timeout is `secs` seconds (via the TOML config file).
fn broker_with_handshake_timeout(test: &str, secs: u64) -> Broker {
    let path = std::env::temp_dir().join(format!(
        "warren-misbehaviour-{}-{test}.toml",
        std::process::id()
    ));
    std::fs::write(&path, format!("handshake_timeout_secs = {secs}\n")).expect("write config");
    let broker = Broker::start_with(&["--config", path.to_str().unwrap()], &[]);
    let _ = std::fs::remove_file(&path);
    broker
}

// ---------------------------------------------------------------------------------------
// helpers: raw AMQP frames (the frame codec lives in warren_integration::raw)
// ---------------------------------------------------------------------------------------

/// queue.declare on channel 1 of a raw connection; waits for declare-ok.
async fn raw_queue_declare(sock: &mut TcpStream, name: &str, exclusive: bool) {
    let mut args = 0u16.to_be_bytes().to_vec();
    args.extend(shortstr(name));
    // bits: passive, durable, exclusive, auto-delete, no-wait
    args.push(if exclusive { 0b100 } else { 0 });
    args.extend_from_slice(&0u32.to_be_bytes()); // empty arguments table
    write_method(sock, 1, 50, 10, &args).await;
    match read_method(sock).await {
        (1, AMQPClass::Queue(protocol::queue::AMQPMethod::DeclareOk(ok))) => {
            assert_eq!(ok.queue.as_str(), name);
        }
        other => panic!("expected queue.declare-ok, got {other:?}"),
    }
}

/// Reads from `sock` until the broker closes it (EOF or a reset); returns the bytes that
/// arrived before that, or `None` if it was still open after `limit`.
async fn wait_for_close(sock: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, sock.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Deterministic pseudo-random bytes (xorshift64*).
fn pseudo_random_bytes(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        out.extend_from_slice(&seed.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

// ---------------------------------------------------------------------------------------
// stalled and slow handshakes
// ---------------------------------------------------------------------------------------

/// A client that sends part of the protocol header and then nothing is disconnected once
/// the handshake timeout passes, while other clients connect and work normally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loris_protocol_header() {
    let broker = broker_with_handshake_timeout("loris", 1);
    let mut sock = within(
        "tcp connect",
        TcpStream::connect(("127.0.0.1", broker.port)),
    )
    .await
    .expect("tcp connect");
    let began = Instant::now();
    within("write", sock.write_all(b"AM"))
        .await
        .expect("write partial header");
    let loris = tokio::spawn(async move {
        let got = wait_for_close(&mut sock, Duration::from_secs(6)).await;
        (got, began.elapsed())
    });

    // Meanwhile a well-behaved client is served normally...
    let conn = connect(&broker.amqp_url()).await;
    let ch = channel(&conn).await;
    assert_channel_works(&ch).await;

    let (got, elapsed) = within("loris task", loris).await.unwrap();
    let got = got.unwrap_or_else(|| panic!("stalled client still connected after {elapsed:?}"));
    assert!(
        got.is_empty(),
        "broker sent {got:?} to a client that never finished the protocol header"
    );
    assert!(
        elapsed >= Duration::from_millis(700) && elapsed <= Duration::from_secs(3),
        "closed after {elapsed:?}; expected about the 1 s handshake timeout"
    );
    // ...and is not subject to the handshake timeout once it is open.
    assert!(conn.status().connected(), "status {:?}", conn.status());
    assert_channel_works(&ch).await;
    within("connection.close", conn.close(200, "bye".into()))
        .await
        .expect("connection.close");
}

/// The handshake timeout covers the whole handshake from the moment the socket is
/// accepted (RabbitMQ arms one timer at accept), so a client cannot stretch it by
/// dribbling the protocol header one byte at a time.
#[tokio::test]
async fn slow_loris_dribbled_protocol_header() {
    let broker = broker_with_handshake_timeout("dribble", 1);
    let mut sock = within(
        "tcp connect",
        TcpStream::connect(("127.0.0.1", broker.port)),
    )
    .await
    .expect("tcp connect");
    let began = Instant::now();
    let mut closed_after = None;
    'dribble: for byte in PROTOCOL_HEADER {
        if within("write", sock.write_all(&[*byte])).await.is_err() {
            closed_after = Some(began.elapsed());
            break;
        }
        let mut buf = [0u8; 64];
        let deadline = tokio::time::Instant::now() + Duration::from_millis(600);
        loop {
            match tokio::time::timeout_at(deadline, sock.read(&mut buf)).await {
                Err(_) => break,
                Ok(Ok(0)) | Ok(Err(_)) => {
                    closed_after = Some(began.elapsed());
                    break 'dribble;
                }
                Ok(Ok(_)) => {} // connection.start once the header is complete
            }
        }
    }
    if closed_after.is_none()
        && wait_for_close(&mut sock, Duration::from_secs(6))
            .await
            .is_some()
    {
        closed_after = Some(began.elapsed());
    }
    let closed_after = closed_after.expect("dribbling client never disconnected");
    assert!(
        closed_after <= Duration::from_secs(3),
        "a client dribbling the protocol header (one byte per 600 ms) was disconnected only \
         after {closed_after:?}; the 1 s handshake timeout should end it after about 1 s"
    );
}

/// A client that sends the protocol header, reads connection.start and then stalls is
/// disconnected once the handshake timeout passes.
#[tokio::test]
async fn slow_handshake() {
    let broker = broker_with_handshake_timeout("handshake", 1);
    let began = Instant::now();
    let mut sock = raw_connect(broker.port).await;
    assert!(matches!(
        read_method(&mut sock).await,
        (
            0,
            AMQPClass::Connection(protocol::connection::AMQPMethod::Start(_))
        )
    ));
    let got = wait_for_close(&mut sock, Duration::from_secs(6)).await;
    let elapsed = began.elapsed();
    assert!(
        got.is_some(),
        "client stalled after connection.start still connected after {elapsed:?}"
    );
    assert!(
        elapsed >= Duration::from_millis(700) && elapsed <= Duration::from_secs(3),
        "closed after {elapsed:?}; expected about the 1 s handshake timeout"
    );
    // The broker is fine for the next client.
    let conn = connect(&broker.amqp_url()).await;
    assert_channel_works(&channel(&conn).await).await;
}

// ---------------------------------------------------------------------------------------
// connections that die at awkward moments
// ---------------------------------------------------------------------------------------

/// A connection dropped between a message's content header and the end of its body must
/// not leave a partial message in the queue.
#[tokio::test]
async fn connection_dropped_mid_content() {
    let broker = Broker::start();
    let mut sock = raw_open(broker.port, false).await;
    raw_queue_declare(&mut sock, "midcontent", false).await;
    // An exclusive queue marks when the broker has finished with the dead connection.
    raw_queue_declare(&mut sock, "midcontent-marker", true).await;
    // basic.publish to the default exchange, routing key "midcontent".
    let mut args = 0u16.to_be_bytes().to_vec();
    args.extend(shortstr(""));
    args.extend(shortstr("midcontent"));
    args.push(0); // mandatory, immediate
    let mut wire = method_frame(1, 60, 40, &args);
    // Content header: class basic, weight 0, body size 1000, no properties.
    let mut header = 60u16.to_be_bytes().to_vec();
    header.extend_from_slice(&0u16.to_be_bytes());
    header.extend_from_slice(&1000u64.to_be_bytes());
    header.extend_from_slice(&0u16.to_be_bytes());
    wire.extend(frame_bytes(FRAME_HEADER, 1, &header));
    // Only 100 of the announced 1000 body bytes.
    wire.extend(frame_bytes(FRAME_BODY, 1, &[b'x'; 100]));
    within("write", sock.write_all(&wire))
        .await
        .expect("write partial message");
    drop(sock);

    let conn = connect(&broker.amqp_url()).await;
    // Wait for the broker to clean up the dead connection: its exclusive queue goes away.
    within("dead connection cleanup", async {
        loop {
            let ch = channel(&conn).await;
            match passive_queue(&ch, "midcontent-marker").await {
                Ok(_) => panic!("exclusive queue of another connection declared passively"),
                Err(err) if amqp_error(&err).0 == 404 => break,
                Err(err) => assert_eq!(amqp_error(&err).0, 405, "{err}"),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    let ch = confirm_channel(&conn).await;
    let ok = passive_queue(&ch, "midcontent")
        .await
        .expect("midcontent still exists");
    assert_eq!(ok.message_count(), 0, "the partial message was enqueued");
    assert_eq!(ok.consumer_count(), 0);

    // The queue works normally.
    publish(&ch, "", "midcontent", b"complete").await;
    let mut consumer = consume(&ch, "midcontent", "after", false).await;
    let d = next_delivery(&mut consumer).await;
    assert_eq!(
        (body_str(&d), d.redelivered),
        ("complete".to_string(), false)
    );
    ack(&d, false).await;
    publish(&ch, "", "midcontent", b"again").await;
    let d = next_delivery(&mut consumer).await;
    assert_eq!(body_str(&d), "again");
    ack(&d, false).await;
    assert_no_delivery(&mut consumer).await;
}

/// Messages delivered to a consumer whose connection dies without acking them go to the
/// queue's other consumer, flagged redelivered, in their original order.
#[tokio::test]
async fn unacked_messages_go_to_another_consumer_when_connection_dies() {
    let broker = Broker::start();
    let conn = connect(&broker.amqp_url()).await;
    let ch = confirm_channel(&conn).await;
    declare_queue(&ch, "orphaned", QueueDeclareOptions::default()).await;
    for i in 0..5 {
        publish(&ch, "", "orphaned", format!("m{i}").as_bytes()).await;
    }

    // Consumer A: a raw connection with prefetch 10 and manual acks.
    let mut a = raw_open(broker.port, false).await;
    let mut args = 0u32.to_be_bytes().to_vec(); // prefetch-size
    args.extend_from_slice(&10u16.to_be_bytes()); // prefetch-count
    args.push(0); // global
    write_method(&mut a, 1, 60, 10, &args).await;
    assert!(matches!(
        read_method(&mut a).await,
        (1, AMQPClass::Basic(protocol::basic::AMQPMethod::QosOk(_)))
    ));
    let mut args = 0u16.to_be_bytes().to_vec();
    args.extend(shortstr("orphaned"));
    args.extend(shortstr("consumer-a"));
    args.push(0); // no-local, no-ack, exclusive, no-wait: all off
    args.extend_from_slice(&0u32.to_be_bytes());
    write_method(&mut a, 1, 60, 20, &args).await;
    assert!(matches!(
        read_method(&mut a).await,
        (
            1,
            AMQPClass::Basic(protocol::basic::AMQPMethod::ConsumeOk(_))
        )
    ));
    for i in 0..5u64 {
        let deliver = match read_method(&mut a).await {
            (1, AMQPClass::Basic(protocol::basic::AMQPMethod::Deliver(d))) => d,
            other => panic!("expected basic.deliver, got {other:?}"),
        };
        assert_eq!(deliver.delivery_tag, i + 1);
        assert!(!deliver.redelivered);
        let header = read_frame(&mut a).await;
        assert_eq!(header.kind, FRAME_HEADER);
        let size = u64::from_be_bytes(header.payload[4..12].try_into().unwrap()) as usize;
        let mut body = Vec::new();
        while body.len() < size {
            let frame = read_frame(&mut a).await;
            assert_eq!(frame.kind, FRAME_BODY);
            body.extend(frame.payload);
        }
        assert_eq!(body, format!("m{i}").as_bytes());
    }

    // Consumer B joins while A holds all five; it gets nothing yet.
    let ch_b = channel(&conn).await;
    let mut b = consume(&ch_b, "orphaned", "consumer-b", false).await;
    assert_no_delivery(&mut b).await;

    // A's connection dies abruptly: no channel.close, no connection.close.
    drop(a);
    for i in 0..5 {
        let d = next_delivery(&mut b).await;
        assert_eq!(
            (body_str(&d), d.redelivered),
            (format!("m{i}"), true),
            "message {i} after consumer A's connection died"
        );
        ack(&d, false).await;
    }
    assert_no_delivery(&mut b).await;
    let ok = passive_queue(&ch, "orphaned").await.expect("passive");
    assert_eq!((ok.message_count(), ok.consumer_count()), (0, 1));
}

// ---------------------------------------------------------------------------------------
// protocol misuse on an open connection
// ---------------------------------------------------------------------------------------

/// Delivery tags are per channel: acking channel 1's delivery on channel 2 is an unknown
/// delivery tag there (406) and leaves the message unacked on channel 1.
#[tokio::test]
async fn ack_on_wrong_channel() {
    let broker = Broker::start();
    let conn = connect(&broker.amqp_url()).await;
    let mut events = conn.events_listener();
    let ch1 = confirm_channel(&conn).await;
    let q = exclusive_queue(&ch1).await;
    publish(&ch1, "", &q, b"only").await;
    let msg = within(
        "basic.get",
        ch1.basic_get(q.as_str().into(), BasicGetOptions { no_ack: false }),
    )
    .await
    .expect("basic.get")
    .expect("a message");
    assert_eq!(msg.delivery.delivery_tag, 1);

    let ch2 = channel(&conn).await;
    within("basic.ack", ch2.basic_ack(1, BasicAckOptions::default()))
        .await
        .expect("basic.ack is asynchronous");
    assert!(sync(&ch2).await.is_err(), "channel 2 must be closed");
    let err = next_error_event(&mut events).await;
    assert_eq!(
        amqp_error(&err),
        expected(406, "PRECONDITION_FAILED - unknown delivery tag 1")
    );
    assert!(!ch2.status().connected());
    assert!(conn.status().connected());
    assert!(ch1.status().connected());

    // Channel 1 still holds the message unacked.
    let ok = passive_queue(&ch1, &q).await.expect("passive declare");
    assert_eq!(ok.message_count(), 0, "message is unacked on channel 1");
    // Closing channel 1 returns it to the queue.
    within("channel.close", ch1.close(200, "bye".into()))
        .await
        .expect("channel.close");
    let ch3 = channel(&conn).await;
    let ok = passive_queue(&ch3, &q).await.expect("passive declare");
    assert_eq!(
        ok.message_count(),
        1,
        "message requeued when channel 1 closed"
    );
    let again = within(
        "basic.get",
        ch3.basic_get(q.as_str().into(), BasicGetOptions { no_ack: true }),
    )
    .await
    .expect("basic.get")
    .expect("the requeued message");
    assert_eq!(again.delivery.data, b"only");
    assert!(again.delivery.redelivered);
}

/// RabbitMQ answers basic.cancel for a consumer tag it does not know with cancel-ok.
#[tokio::test]
async fn cancel_unknown_consumer_tag_is_ok() {
    let broker = Broker::start();
    let conn = connect(&broker.amqp_url()).await;
    let ch = channel(&conn).await;
    within(
        "basic.cancel",
        ch.basic_cancel("nope".into(), BasicCancelOptions::default()),
    )
    .await
    .expect("basic.cancel of an unknown tag gets cancel-ok");
    assert!(ch.status().connected());
    sync(&ch).await.expect("channel still open");
    assert_channel_works(&ch).await;

    // Same at the protocol level: the cancel-ok echoes the tag.
    let mut sock = raw_open(broker.port, false).await;
    let mut args = shortstr("nope");
    args.push(0); // no-wait off
    write_method(&mut sock, 1, 60, 30, &args).await;
    match read_method(&mut sock).await {
        (1, AMQPClass::Basic(protocol::basic::AMQPMethod::CancelOk(ok))) => {
            assert_eq!(ok.consumer_tag.as_str(), "nope");
        }
        other => panic!("expected basic.cancel-ok, got {other:?}"),
    }
}

/// One client sends 64 KiB of garbage after a valid handshake and is disconnected (with a
/// 501 FRAME_ERROR connection.close if anything), while 20 well-behaved connections carry
/// on publishing and consuming.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_after_handshake_other_connections_unaffected() {
    let broker = Broker::start();
    let url = broker.amqp_url();
    let sock = raw_open(broker.port, false).await;
    let (mut rd, mut wr) = sock.into_split();
    let garbage = pseudo_random_bytes(64 * 1024, 0x5EED_0BAD_F00D_CAFE);
    let vandal = tokio::spawn(async move {
        let writer = tokio::spawn(async move {
            // The broker may hang up before reading it all.
            let _ = wr.write_all(&garbage).await;
            let _ = wr.flush().await;
            wr
        });
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let closed = tokio::time::timeout(WAIT, async {
            loop {
                match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
                // Answer the broker's connection.close so that it can hang up at once.
                if got.len() >= 7 {
                    let size = u32::from_be_bytes([got[3], got[4], got[5], got[6]]) as usize;
                    if got.len() >= size + 8 {
                        if let Ok(mut wr) = writer.await {
                            let _ = wr.write_all(&method_frame(0, 10, 51, &[])).await;
                        }
                        loop {
                            match rd.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => got.extend_from_slice(&buf[..n]),
                            }
                        }
                    }
                }
            }
        })
        .await;
        (closed.is_ok(), got)
    });

    let mut tasks = Vec::new();
    for i in 0..20u32 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let conn = connect(&url).await;
            let ch = confirm_channel(&conn).await;
            let q = exclusive_queue(&ch).await;
            let mut consumer = consume(&ch, &q, "", false).await;
            for j in 0..100u32 {
                publish(&ch, "", &q, format!("{i}-{j}").as_bytes()).await;
            }
            for j in 0..100u32 {
                let d = next_delivery(&mut consumer).await;
                assert_eq!(body_str(&d), format!("{i}-{j}"));
                ack(&d, false).await;
            }
            within("connection.close", conn.close(200, "bye".into()))
                .await
                .expect("connection.close");
        }));
    }
    for t in tasks {
        within("client task", t).await.expect("client task");
    }

    let (closed, got) = within("garbage client", vandal).await.unwrap();
    assert!(closed, "the garbage-sending client was never disconnected");
    // If the broker said anything, it was connection.close 501 on channel 0.
    if got.len() >= 7 {
        assert_eq!((got[0], u16::from_be_bytes([got[1], got[2]])), (1, 0));
        let size = u32::from_be_bytes([got[3], got[4], got[5], got[6]]) as usize;
        assert!(got.len() >= size + 8, "truncated frame {got:?}");
        match decode_method(&got[7..7 + size]) {
            AMQPClass::Connection(protocol::connection::AMQPMethod::Close(close)) => {
                assert_eq!(close.reply_code, 501, "{close:?}");
                assert!(
                    close.reply_text.as_str().starts_with("FRAME_ERROR"),
                    "{close:?}"
                );
            }
            other => panic!("expected connection.close, got {other:?}"),
        }
    }
    // And the broker still serves new clients.
    let conn = connect(&url).await;
    assert_channel_works(&channel(&conn).await).await;
}

// ---------------------------------------------------------------------------------------
// scale
// ---------------------------------------------------------------------------------------

/// 2,000 queues over 4 connections, one no-ack consumer each: every consumer gets exactly
/// the one message published to its queue; afterwards all queues are deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_queues_and_consumers() {
    const CONNS: usize = 4;
    const PER_CONN: usize = 500;
    let broker = Broker::start();
    let url = broker.amqp_url();
    let name = |i: usize| format!("many-{i:04}");

    // Declare and consume, one task per connection.
    let mut setups = Vec::new();
    for c in 0..CONNS {
        let url = url.clone();
        setups.push(tokio::spawn(async move {
            let conn = connect(&url).await;
            let ch = channel(&conn).await;
            let mut consumers = Vec::with_capacity(PER_CONN);
            for i in c * PER_CONN..(c + 1) * PER_CONN {
                let q = declare_queue(&ch, &name(i), QueueDeclareOptions::default()).await;
                assert_eq!((q.message_count(), q.consumer_count()), (0, 0));
                consumers.push((i, consume(&ch, &name(i), "", true).await));
            }
            (conn, ch, consumers)
        }));
    }
    let mut setup = Vec::new();
    for t in setups {
        setup.push(
            tokio::time::timeout(Duration::from_secs(20), t)
                .await
                .expect("declaring queues and consumers took too long")
                .expect("setup task"),
        );
    }

    // One message to each queue through the default exchange.
    let publisher = connect(&url).await;
    let pch = confirm_channel(&publisher).await;
    let mut confirms = Vec::with_capacity(CONNS * PER_CONN);
    for i in 0..CONNS * PER_CONN {
        confirms.push(
            within(
                "basic.publish",
                pch.basic_publish(
                    "".into(),
                    name(i).as_str().into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..Default::default()
                    },
                    name(i).as_bytes(),
                    BasicProperties::default(),
                ),
            )
            .await
            .expect("basic.publish"),
        );
    }
    for c in confirms {
        assert_eq!(
            within("publisher confirm", c).await.expect("confirm"),
            Confirmation::Ack(None)
        );
    }

    // Every consumer gets exactly its own message.
    for (_, _, consumers) in &mut setup {
        for (i, consumer) in consumers.iter_mut() {
            let d = next_delivery(consumer).await;
            assert_eq!(body_str(&d), name(*i));
            assert_eq!(d.routing_key.as_str(), name(*i));
        }
    }
    tokio::time::sleep(QUIET).await;
    for (_, _, consumers) in &mut setup {
        for (i, consumer) in consumers.iter_mut() {
            if let Some(Some(extra)) = futures_lite::future::poll_once(consumer.next()).await {
                panic!("consumer of {} got a second delivery: {extra:?}", name(*i));
            }
        }
    }

    // Delete every queue, from the connection that consumes it.
    let mut deletes = Vec::new();
    for (conn, ch, consumers) in setup {
        deletes.push(tokio::spawn(async move {
            for (i, _) in &consumers {
                let count = within(
                    "queue.delete",
                    ch.queue_delete(name(*i).as_str().into(), QueueDeleteOptions::default()),
                )
                .await
                .expect("queue.delete");
                assert_eq!(count, 0, "messages left in {}", name(*i));
            }
            drop(consumers);
            within("connection.close", conn.close(200, "bye".into()))
                .await
                .expect("connection.close");
        }));
    }
    for t in deletes {
        tokio::time::timeout(Duration::from_secs(20), t)
            .await
            .expect("deleting queues took too long")
            .expect("delete task");
    }
    for i in (0..CONNS * PER_CONN)
        .step_by(97)
        .chain([CONNS * PER_CONN - 1])
    {
        let ch = channel(&publisher).await;
        let err = passive_queue(&ch, &name(i))
            .await
            .expect_err("deleted queue must be gone");
        assert_eq!(
            amqp_error(&err),
            (
                404,
                format!("NOT_FOUND - no queue '{}' in vhost '/'", name(i))
            )
        );
    }
}

/// 500 consumers on one queue over 10 channels and 5,000 messages: each message is
/// delivered exactly once and the consumers take turns, 10 messages each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_consumers_on_one_queue() {
    const CONSUMERS: usize = 500;
    const CHANNELS: usize = 10;
    const MESSAGES: usize = 5_000;
    let broker = Broker::start();
    let conn = connect(&broker.amqp_url()).await;
    let mut chans = Vec::with_capacity(CHANNELS);
    for _ in 0..CHANNELS {
        chans.push(channel(&conn).await);
    }
    declare_queue(&chans[0], "crowded", QueueDeclareOptions::default()).await;

    let received = Arc::new(Mutex::new(vec![Vec::<usize>::new(); CONSUMERS]));
    let total = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::with_capacity(CONSUMERS);
    for c in 0..CONSUMERS {
        let mut consumer = consume(&chans[c % CHANNELS], "crowded", &format!("c{c}"), true).await;
        let received = received.clone();
        let total = total.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(Ok(d)) = consumer.next().await {
                assert_eq!(d.routing_key.as_str(), "crowded");
                assert!(!d.redelivered);
                received.lock().unwrap()[c].push(body_str(&d).parse().unwrap());
                total.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    let ok = passive_queue(&chans[0], "crowded").await.expect("passive");
    assert_eq!(ok.consumer_count(), CONSUMERS as u32);

    let publisher = connect(&broker.amqp_url()).await;
    let pch = confirm_channel(&publisher).await;
    let mut confirms = Vec::with_capacity(MESSAGES);
    for i in 0..MESSAGES {
        confirms.push(
            within(
                "basic.publish",
                pch.basic_publish(
                    "".into(),
                    "crowded".into(),
                    BasicPublishOptions::default(),
                    i.to_string().as_bytes(),
                    BasicProperties::default(),
                ),
            )
            .await
            .expect("basic.publish"),
        );
    }
    for c in confirms {
        assert_eq!(
            within("publisher confirm", c).await.expect("confirm"),
            Confirmation::Ack(None)
        );
    }
    tokio::time::timeout(Duration::from_secs(20), async {
        while total.load(Ordering::SeqCst) < MESSAGES {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "only {} of {MESSAGES} messages delivered",
            total.load(Ordering::SeqCst)
        )
    });
    tokio::time::sleep(QUIET).await;
    for t in &tasks {
        assert!(!t.is_finished(), "a consumer stream ended early");
    }
    let received = received.lock().unwrap().clone();
    for t in tasks {
        t.abort();
    }

    let mut all: Vec<usize> = received.iter().flatten().copied().collect();
    assert_eq!(all.len(), MESSAGES, "deliveries in total");
    all.sort_unstable();
    assert_eq!(all, (0..MESSAGES).collect::<Vec<_>>(), "each message once");
    for (c, got) in received.iter().enumerate() {
        assert_eq!(
            got.len(),
            MESSAGES / CONSUMERS,
            "consumer c{c} got {got:?}; round-robin gives each consumer 10"
        );
        assert!(
            got.windows(2).all(|w| w[0] < w[1]),
            "consumer c{c} got messages out of order: {got:?}"
        );
    }
    let ok = passive_queue(&chans[0], "crowded").await.expect("passive");
    assert_eq!(ok.message_count(), 0);
}

/// A publisher with confirms floods 20,000 x 1 KiB messages while the only consumer
/// (prefetch 100) acks slowly: every publish is confirmed without waiting for the
/// consumer, and then the consumer, sped up, gets all of them exactly once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_floods_while_consumer_is_slow() {
    const MESSAGES: usize = 20_000;
    let broker = Broker::start();
    let url = broker.amqp_url();

    let cconn = connect(&url).await;
    let cch = channel(&cconn).await;
    declare_queue(&cch, "flood", QueueDeclareOptions::default()).await;
    within("basic.qos", cch.basic_qos(100, BasicQosOptions::default()))
        .await
        .expect("basic.qos");
    let mut consumer = consume(&cch, "flood", "slowpoke", false).await;
    let fast = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(AtomicUsize::new(0));
    let reader = {
        let fast = fast.clone();
        let seen = seen.clone();
        tokio::spawn(async move {
            let mut next = 0usize;
            while next < MESSAGES {
                let d = tokio::time::timeout(Duration::from_secs(30), consumer.next())
                    .await
                    .unwrap_or_else(|_| panic!("no delivery after message {next}"))
                    .expect("consumer stream ended")
                    .expect("delivery");
                assert_eq!(d.data.len(), 1024);
                let index = u64::from_be_bytes(d.data[..8].try_into().unwrap()) as usize;
                assert_eq!(index, next, "deliveries out of order or duplicated");
                assert!(!d.redelivered, "message {index} redelivered");
                next += 1;
                seen.store(next, Ordering::SeqCst);
                if fast.load(Ordering::SeqCst) {
                    if next.is_multiple_of(50) || next == MESSAGES {
                        ack(&d, true).await;
                    }
                } else {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    ack(&d, false).await;
                }
            }
            // Nothing more arrives.
            if let Ok(item) = tokio::time::timeout(QUIET, consumer.next()).await {
                panic!("delivery beyond the {MESSAGES} published: {item:?}");
            }
            // Handed back: dropping lapin's last Consumer handle cancels the consumer.
            consumer
        })
    };

    let pconn = connect(&url).await;
    let pch = confirm_channel(&pconn).await;
    let started = Instant::now();
    let mut confirms = Vec::with_capacity(MESSAGES);
    for i in 0..MESSAGES {
        let mut body = vec![0u8; 1024];
        body[..8].copy_from_slice(&(i as u64).to_be_bytes());
        confirms.push(
            within(
                "basic.publish",
                pch.basic_publish(
                    "".into(),
                    "flood".into(),
                    BasicPublishOptions::default(),
                    &body,
                    BasicProperties::default(),
                ),
            )
            .await
            .expect("basic.publish"),
        );
    }
    let confirmed = tokio::time::timeout(Duration::from_secs(30), async {
        let mut acks = 0;
        for c in confirms {
            assert_eq!(c.await.expect("confirm"), Confirmation::Ack(None));
            acks += 1;
        }
        acks
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "publisher confirms still missing after {:?}",
            started.elapsed()
        )
    });
    assert_eq!(confirmed, MESSAGES);
    let consumed = seen.load(Ordering::SeqCst);
    assert!(
        consumed < MESSAGES / 2,
        "the slow consumer had already taken {consumed} messages; the test needs a backlog"
    );
    let ok = passive_queue(&pch, "flood").await.expect("passive");
    assert!(
        ok.message_count() as usize + consumed + 200 >= MESSAGES,
        "queue holds {} with {consumed} consumed",
        ok.message_count()
    );

    // Speed up the consumer and let it take everything.
    fast.store(true, Ordering::SeqCst);
    let _consumer = tokio::time::timeout(Duration::from_secs(40), reader)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "consumer received only {} of {MESSAGES}",
                seen.load(Ordering::SeqCst)
            )
        })
        .expect("consumer task");
    let ok = passive_queue(&pch, "flood").await.expect("passive");
    assert_eq!((ok.message_count(), ok.consumer_count()), (0, 1));
}

/// A no-ack consumer that stops reading its socket must not make the broker buffer every
/// message for it: deliveries stop once the connection's write backlog is full, the rest
/// stays in the queue, and everything arrives once the consumer reads again.
#[tokio::test]
async fn stalled_no_ack_consumer_gets_back_pressure() {
    let broker = Broker::start();
    let mut stalled = raw_open(broker.port, false).await;
    raw_queue_declare(&mut stalled, "stalled", false).await;
    let mut args = 0u16.to_be_bytes().to_vec();
    args.extend(shortstr("stalled"));
    args.extend(shortstr("slow"));
    args.push(0b10); // no-ack
    args.extend_from_slice(&0u32.to_be_bytes());
    write_method(&mut stalled, 1, 60, 20, &args).await;
    assert!(matches!(
        read_method(&mut stalled).await,
        (
            1,
            AMQPClass::Basic(protocol::basic::AMQPMethod::ConsumeOk(_))
        )
    ));
    // Publish 64 MiB while the consumer reads nothing.
    let conn = connect(&broker.amqp_url()).await;
    let ch = confirm_channel(&conn).await;
    let body = vec![7u8; 16 * 1024];
    let total = 4096usize;
    for _ in 0..total {
        publish(&ch, "", "stalled", &body).await;
    }
    let waiting = passive_queue(&ch, "stalled")
        .await
        .expect("passive declare");
    let in_queue = waiting.message_count() as usize;
    // At most the 8 MiB backlog plus socket buffers went out; most of it must still be queued.
    assert!(
        in_queue > total / 2,
        "only {in_queue} of {total} messages left in the queue: the broker kept pushing"
    );
    // Now read everything: every message arrives.
    let mut received = 0usize;
    while received < total {
        let frame = read_frame(&mut stalled).await;
        if frame.kind == FRAME_METHOD && frame.payload[..4] == [0, 60, 0, 60] {
            received += 1;
        }
    }
    assert_eq!(received, total);
    let after = passive_queue(&ch, "stalled")
        .await
        .expect("passive declare");
    assert_eq!(after.message_count(), 0);
}
