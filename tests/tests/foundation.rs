//! Broker foundation: handshake, server properties, authentication, vhosts, heartbeats,
//! channels, channel- and connection-level errors, graceful shutdown and many concurrent
//! connections. The expected texts are RabbitMQ 3.10's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures_lite::StreamExt;
use lapin::{
    options::*,
    protocol::{self, AMQPClass},
    types::{AMQPValue, FieldTable},
    Channel, Connection, ConnectionProperties, Event,
};
use tokio::io::AsyncReadExt;
use warren_integration::{client::*, raw::*, Broker};

async fn get_body(ch: &Channel, queue: &str) -> Option<Vec<u8>> {
    within(
        "basic.get",
        ch.basic_get(queue.into(), BasicGetOptions { no_ack: true }),
    )
    .await
    .expect("basic.get")
    .map(|m| m.delivery.data)
}

/// A full publish / basic.get round trip proving the channel (and its connection) works.
async fn assert_channel_works(ch: &Channel) {
    let q = exclusive_queue(ch).await;
    publish(ch, "", &q, b"ping").await;
    assert_eq!(get_body(ch, &q).await.as_deref(), Some(&b"ping"[..]));
}

/// Reads the broker's connection.start after sending the protocol header.
async fn read_connection_start(port: u16) -> protocol::connection::Start {
    let mut sock = raw_connect(port).await;
    match read_channel0_method(&mut sock).await {
        AMQPClass::Connection(protocol::connection::AMQPMethod::Start(start)) => start,
        other => panic!("expected connection.start, got {other:?}"),
    }
}

#[tokio::test]
async fn handshake_with_lapin_defaults() {
    let broker = Broker::start();
    let conn = connect(&broker.amqp_url()).await;
    assert!(conn.status().connected());
    // What RabbitMQ proposes in connection.tune; lapin's defaults accept the server's values.
    let cfg = conn.configuration();
    assert_eq!(cfg.channel_max(), 2047);
    assert_eq!(cfg.frame_max(), 131_072);
    assert_eq!(cfg.heartbeat(), 60);
    let ch = channel(&conn).await;
    assert_eq!(ch.id(), 1);
    assert_channel_works(&ch).await;
    within("connection.close", conn.close(200, "bye".into()))
        .await
        .expect("connection.close");
}

/// RabbitMQ answers the client's connection.close with close-ok and then leaves the TCP
/// connection open until the client closes it (or a timeout passes): the client, not the
/// broker, closes the socket first. lapin relies on this; if the broker drops the socket
/// right after close-ok, lapin can see the EOF before it has processed close-ok and ends up
/// in the error state with an IO error instead of cleanly closed.
#[tokio::test]
async fn client_close_ends_cleanly_closed() {
    let broker = Broker::start();
    for _ in 0..5 {
        let conn = connect(&broker.amqp_url()).await;
        let mut events = conn.events_listener();
        let ch = channel(&conn).await;
        assert_channel_works(&ch).await;
        within("connection.close", conn.close(200, "bye".into()))
            .await
            .expect("connection.close");
        // lapin records the final state from its IO loop, just after close-ok.
        for _ in 0..200 {
            if !conn.status().connected() && !conn.status().closing() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        while let Some(Some(event)) = futures_lite::future::poll_once(events.next()).await {
            assert!(
                !matches!(event, Event::Error(_)),
                "connection event after a client-initiated close: {event:?}"
            );
        }
        assert!(conn.status().closed(), "status {:?}", conn.status());
    }
}

/// The same at the protocol level: after connection.close / close-ok, RabbitMQ keeps the
/// socket open and waits (up to its closing timeout) for the client to close it.
#[tokio::test]
async fn broker_leaves_socket_for_client_to_close_after_close_ok() {
    let broker = Broker::start();
    let mut sock = raw_open_connection(broker.port, false).await;
    // connection.close 200 "bye".
    let mut args = 200u16.to_be_bytes().to_vec();
    args.extend(shortstr("bye"));
    args.extend_from_slice(&[0, 0, 0, 0]);
    write_method(&mut sock, 0, 10, 50, &args).await;
    assert!(matches!(
        read_channel0_method(&mut sock).await,
        AMQPClass::Connection(protocol::connection::AMQPMethod::CloseOk(_))
    ));
    let mut byte = [0u8; 1];
    match tokio::time::timeout(Duration::from_millis(500), sock.read(&mut byte)).await {
        Err(_) => {} // still open: the client gets to close it
        Ok(Ok(0)) => panic!("broker closed the socket right after connection.close-ok"),
        Ok(other) => panic!("unexpected data or error after close-ok: {other:?}"),
    }
}

#[tokio::test]
async fn server_properties_in_connection_start() {
    let broker = Broker::start();
    let start = read_connection_start(broker.port).await;
    assert_eq!((start.version_major, start.version_minor), (0, 9));
    let mechanisms = start.mechanisms.to_string();
    assert!(
        mechanisms.split_whitespace().any(|m| m == "PLAIN"),
        "mechanisms: {mechanisms}"
    );
    assert!(
        start
            .locales
            .to_string()
            .split_whitespace()
            .any(|l| l == "en_US"),
        "locales: {}",
        start.locales
    );
    let props = start.server_properties.inner();
    match props.get("product") {
        Some(AMQPValue::LongString(s)) => assert_eq!(s.to_string(), "warren"),
        other => panic!("product: {other:?}"),
    }
    match props.get("version") {
        Some(AMQPValue::LongString(s)) => assert!(!s.is_empty(), "empty version"),
        other => panic!("version: {other:?}"),
    }
    let caps = match props.get("capabilities") {
        Some(AMQPValue::FieldTable(t)) => t.inner().clone(),
        other => panic!("capabilities: {other:?}"),
    };
    let expected = [
        "authentication_failure_close",
        "basic.nack",
        "connection.blocked",
        "consumer_cancel_notify",
        "consumer_priorities",
        "direct_reply_to",
        "exchange_exchange_bindings",
        "per_consumer_qos",
        "publisher_confirms",
    ];
    let mut names: Vec<&str> = caps.keys().map(|k| k.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, expected, "capability names");
    for (name, value) in &caps {
        assert_eq!(value, &AMQPValue::Boolean(true), "capability {name}");
    }
}

#[tokio::test]
async fn bad_password_is_refused_with_403() {
    let broker = Broker::start();
    let url = format!("amqp://guest:wrong@127.0.0.1:{}/%2f", broker.port);
    let err = within(
        "refused connection",
        Connection::connect(&url, ConnectionProperties::default()),
    )
    .await
    .expect_err("login with a wrong password must fail");
    assert_eq!(
        amqp_error(&err),
        (
            403,
            "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. \
             For details see the broker logfile."
                .to_string()
        )
    );
    // The broker is still fine for correct credentials.
    let conn = connect(&broker.amqp_url()).await;
    assert_channel_works(&channel(&conn).await).await;
}

#[tokio::test]
async fn unknown_user_is_refused_with_403() {
    let broker = Broker::start();
    let url = format!("amqp://nobody:secret@127.0.0.1:{}/%2f", broker.port);
    let err = within(
        "refused connection",
        Connection::connect(&url, ConnectionProperties::default()),
    )
    .await
    .expect_err("login as an unknown user must fail");
    assert_eq!(
        amqp_error(&err),
        (
            403,
            "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. \
             For details see the broker logfile."
                .to_string()
        )
    );
}

#[tokio::test]
async fn unknown_vhost_is_refused_with_530() {
    let broker = Broker::start();
    let url = format!("amqp://guest:guest@127.0.0.1:{}/nosuchvhost", broker.port);
    let err = within(
        "refused connection",
        Connection::connect(&url, ConnectionProperties::default()),
    )
    .await
    .expect_err("opening an unknown vhost must fail");
    assert_eq!(
        amqp_error(&err),
        (530, "NOT_ALLOWED - vhost nosuchvhost not found".to_string())
    );
}

#[tokio::test]
async fn heartbeat_keeps_idle_connection_alive() {
    let broker = Broker::start();
    let url = format!("{}?heartbeat=1", broker.amqp_url());
    let conn = connect(&url).await;
    assert_eq!(conn.configuration().heartbeat(), 1);
    let mut events = conn.events_listener();
    // Idle for well over three heartbeat intervals: both sides must keep heartbeating
    // (lapin itself errors out the connection when the server's heartbeats stop).
    tokio::time::sleep(Duration::from_millis(3500)).await;
    while let Some(Some(event)) = futures_lite::future::poll_once(events.next()).await {
        assert!(
            !matches!(event, Event::Error(_)),
            "connection event during idle period: {event:?}"
        );
    }
    assert!(conn.status().connected(), "status {:?}", conn.status());
    let ch = channel(&conn).await;
    assert_channel_works(&ch).await;
    within("connection.close", conn.close(200, "bye".into()))
        .await
        .expect("connection.close");
}

#[tokio::test]
async fn many_channels_on_one_connection() {
    let broker = Broker::start();
    let conn = connect(&broker.amqp_url()).await;
    let mut chans = Vec::with_capacity(500);
    for _ in 0..500 {
        chans.push(channel(&conn).await);
    }
    let mut ids: Vec<u16> = chans.iter().map(Channel::id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 500, "distinct channel ids");

    // Every channel can publish; all 500 messages arrive.
    let q = exclusive_queue(&chans[0]).await;
    for (i, ch) in chans.iter().enumerate() {
        publish(ch, "", &q, i.to_string().as_bytes()).await;
    }
    // Each channel's publish has been processed once a synchronous method on that same
    // channel returns.
    for ch in &chans {
        within(
            "exchange.declare passive",
            ch.exchange_declare(
                "amq.direct".into(),
                lapin::ExchangeKind::Direct,
                ExchangeDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            ),
        )
        .await
        .expect("passive declare");
    }
    let mut got = Vec::new();
    while let Some(body) = get_body(&chans[499], &q).await {
        got.push(String::from_utf8(body).unwrap().parse::<usize>().unwrap());
    }
    got.sort_unstable();
    assert_eq!(got, (0..500).collect::<Vec<_>>());

    // Close every other channel; the rest stay usable.
    for ch in chans.iter().step_by(2) {
        within("channel.close", ch.close(200, "done".into()))
            .await
            .expect("channel.close");
    }
    for ch in chans.iter().skip(1).step_by(2) {
        assert!(ch.status().connected(), "channel {} still open", ch.id());
    }
    assert_channel_works(&chans[1]).await;

    // Reopen 250 channels (channel ids are reused) and use them.
    let mut reopened = Vec::with_capacity(250);
    for _ in 0..250 {
        reopened.push(channel(&conn).await);
    }
    for ch in &reopened {
        publish(ch, "", &q, b"again").await;
    }
    assert_channel_works(reopened.last().unwrap()).await;
    // Close them all, then reopen once more.
    for ch in chans.iter().skip(1).step_by(2).chain(reopened.iter()) {
        within("channel.close", ch.close(200, "done".into()))
            .await
            .expect("channel.close");
    }
    let ch = channel(&conn).await;
    let mut again = 0;
    while let Some(body) = get_body(&ch, &q).await {
        assert_eq!(body, b"again");
        again += 1;
    }
    assert_eq!(again, 250);
    assert!(conn.status().connected());
}

#[tokio::test]
async fn channel_error_closes_only_that_channel() {
    let broker = Broker::start();
    let conn = connect(&broker.amqp_url()).await;
    let bystander = channel(&conn).await;
    let q = exclusive_queue(&bystander).await;
    let ch = channel(&conn).await;
    let err = within(
        "passive queue.declare",
        ch.queue_declare(
            "warren-no-such-queue".into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        ),
    )
    .await
    .expect_err("passive declare of a missing queue must fail");
    assert_eq!(
        amqp_error(&err),
        (
            404,
            "NOT_FOUND - no queue 'warren-no-such-queue' in vhost '/'".to_string()
        )
    );
    assert!(!ch.status().connected(), "errored channel is closed");
    // The connection and the other channel carry on.
    assert!(conn.status().connected());
    assert!(bystander.status().connected());
    publish(&bystander, "", &q, b"still here").await;
    assert_eq!(
        get_body(&bystander, &q).await.as_deref(),
        Some(&b"still here"[..])
    );
    let fresh = channel(&conn).await;
    assert!(exclusive_queue(&fresh).await.starts_with("amq.gen-"));
}

#[tokio::test]
async fn connection_error_closes_the_connection_only() {
    let broker = Broker::start();
    let other = connect(&broker.amqp_url()).await;
    let other_ch = channel(&other).await;
    let other_q = exclusive_queue(&other_ch).await;

    let conn = connect(&broker.amqp_url()).await;
    let ch = channel(&conn).await;
    let q = exclusive_queue(&ch).await;
    let _first = within(
        "basic.consume",
        ch.basic_consume(
            q.as_str().into(),
            "dup".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .expect("first consumer");
    let err = within(
        "duplicate basic.consume",
        ch.basic_consume(
            q.as_str().into(),
            "dup".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .expect_err("reusing a consumer tag must fail");
    assert_eq!(
        amqp_error(&err),
        (
            530,
            "NOT_ALLOWED - attempt to reuse consumer tag 'dup'".to_string()
        )
    );
    // The whole connection is gone...
    within("connection to close", async {
        while conn.status().connected() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(within("channel.open", conn.create_channel()).await.is_err());
    // ...while the other connection is unaffected.
    assert!(other.status().connected());
    publish(&other_ch, "", &other_q, b"unaffected").await;
    assert_eq!(
        get_body(&other_ch, &other_q).await.as_deref(),
        Some(&b"unaffected"[..])
    );
    assert_channel_works(&channel(&other).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_closes_clients_with_320() {
    let broker = Broker::start();
    let conn = connect(&broker.amqp_url()).await;
    let mut events = conn.events_listener();
    let ch = channel(&conn).await;
    let q = exclusive_queue(&ch).await;
    let mut consumer = within(
        "basic.consume",
        ch.basic_consume(
            q.as_str().into(),
            "c".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .expect("basic.consume");

    // SIGTERM; terminate() blocks, so run it off the async worker threads.
    let (broker, exited_ok) = tokio::task::spawn_blocking(move || {
        let mut broker = broker;
        let ok = broker.terminate();
        (broker, ok)
    })
    .await
    .unwrap();
    assert!(
        exited_ok,
        "broker exit status on SIGTERM; log: {:?}",
        broker.log()
    );

    let expected = (
        320,
        "CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'".to_string(),
    );
    // The consumer sees the connection.close error...
    let delivery = within("consumer to see the close", consumer.next()).await;
    match delivery {
        Some(Err(err)) => assert_eq!(amqp_error(&err), expected),
        other => panic!("expected the consumer to fail with 320, got {other:?}"),
    }
    // ...and so does the connection's event stream.
    let event = within("connection error event", async {
        loop {
            match events.next().await {
                Some(Event::Error(err)) => break err,
                Some(_) => continue,
                None => panic!("event stream ended without an error"),
            }
        }
    })
    .await;
    assert_eq!(amqp_error(&event), expected);
    assert!(!conn.status().connected());
    assert!(
        broker
            .log()
            .iter()
            .any(|l| l.contains("Server startup complete")),
        "log: {:?}",
        broker.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_connections_publish_and_consume() {
    let broker = Broker::start();
    let url = broker.amqp_url();
    let mut tasks = Vec::new();
    for i in 0..100u32 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let conn = connect(&url).await;
            let ch = channel(&conn).await;
            let q = exclusive_queue(&ch).await;
            let mut consumer = within(
                "basic.consume",
                ch.basic_consume(
                    q.as_str().into(),
                    "".into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                ),
            )
            .await
            .expect("basic.consume");
            for j in 0..10u32 {
                publish(&ch, "", &q, format!("{i}-{j}").as_bytes()).await;
            }
            for j in 0..10u32 {
                let d = within("delivery", consumer.next())
                    .await
                    .expect("consumer open")
                    .expect("delivery");
                assert_eq!(d.data, format!("{i}-{j}").as_bytes());
                d.ack(BasicAckOptions::default()).await.expect("ack");
            }
            within("connection.close", conn.close(200, "bye".into()))
                .await
                .expect("connection.close");
        }));
    }
    for t in tasks {
        within("client task", t).await.expect("client task");
    }
    // The broker is still healthy afterwards.
    let conn = connect(&url).await;
    assert_channel_works(&channel(&conn).await).await;
}
