//! The testkit through lapin: a broker in the test process, per-test vhosts, the clock.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use lapin::{
    options::*,
    types::{AMQPValue, FieldTable, LongString},
    BasicProperties, Connection, ConnectionProperties,
};
use warren_testkit::Broker;

async fn connect(url: &str) -> Connection {
    Connection::connect(url, ConnectionProperties::default())
        .await
        .expect("connect")
}

fn ttl_args(ttl: i32, dead: &str) -> FieldTable {
    let mut t = FieldTable::default();
    t.insert("x-message-ttl".into(), AMQPValue::LongInt(ttl));
    t.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(LongString::from("")),
    );
    t.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString(LongString::from(dead)),
    );
    t
}

#[tokio::test]
async fn a_client_publishes_and_gets_on_the_embedded_broker() {
    let began = Instant::now();
    let broker = Broker::start().await.unwrap();
    let conn = connect(&broker.amqp_url()).await;
    println!("start to open connection: {:?}", began.elapsed());
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare(
        "q".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    ch.basic_publish(
        "".into(),
        "q".into(),
        BasicPublishOptions::default(),
        b"hi",
        BasicProperties::default(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    assert!(broker
        .wait_for_messages("/", "q", 1, Duration::from_secs(5))
        .await
        .unwrap());
    assert_eq!(broker.peek("/", "q", 5).unwrap(), vec![b"hi".to_vec()]);
    let got = ch
        .basic_get("q".into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("message");
    assert_eq!(got.delivery.data, b"hi");
    assert!(!got.delivery.redelivered, "peek left it as it was");
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn each_vhost_is_separate_and_goes_with_its_guard() {
    let broker = Broker::start().await.unwrap();
    let a = broker.vhost().await.unwrap();
    let b = broker.vhost().await.unwrap();
    assert_ne!(a.name(), b.name());
    let conn_a = connect(a.amqp_url()).await;
    let ch = conn_a.create_channel().await.unwrap();
    ch.queue_declare(
        "only-in-a".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let conn_b = connect(b.amqp_url()).await;
    let ch_b = conn_b.create_channel().await.unwrap();
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let err = ch_b
        .queue_declare("only-in-a".into(), passive, FieldTable::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("NOT_FOUND"), "{err}");
    let name = a.name().to_string();
    drop(a);
    assert!(
        broker.core().vhost(&name).is_none(),
        "vhost deleted on drop"
    );
    assert!(broker.core().vhost(b.name()).is_some());
}

#[tokio::test]
async fn a_30_second_ttl_dead_letters_on_advance() {
    let broker = Broker::start().await.unwrap();
    let vhost = broker.vhost().await.unwrap();
    let conn = connect(vhost.amqp_url()).await;
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    ch.queue_declare(
        "dead".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_declare(
        "work".into(),
        QueueDeclareOptions::default(),
        ttl_args(30_000, "dead"),
    )
    .await
    .unwrap();
    let began = Instant::now();
    broker.freeze(true).unwrap();
    ch.basic_publish(
        "".into(),
        "work".into(),
        BasicPublishOptions::default(),
        b"late",
        BasicProperties::default(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    broker.advance(Duration::from_millis(29_999)).unwrap();
    assert_eq!(broker.queue_depth(vhost.name(), "dead").unwrap(), 0);
    broker.advance(Duration::from_millis(1)).unwrap();
    // Moved before advance returned.
    assert_eq!(broker.queue_depth(vhost.name(), "work").unwrap(), 0);
    assert_eq!(
        broker.peek(vhost.name(), "dead", 1).unwrap(),
        vec![b"late".to_vec()]
    );
    assert!(began.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn the_management_api_and_the_real_clock_option() {
    let broker = Broker::start().await.unwrap();
    let addr = broker.http_addr().expect("http");
    let overview = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(
            s,
            "GET /api/overview HTTP/1.1\r\nHost: x\r\nAuthorization: Basic Z3Vlc3Q6Z3Vlc3Q=\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).unwrap();
        raw
    })
    .await
    .unwrap();
    assert!(overview.starts_with("HTTP/1.1 200"), "{overview}");
    assert!(
        overview.contains("\"warren_test_clock\":true"),
        "{overview}"
    );

    let real = Broker::start_with(warren_testkit::Options {
        test_clock: false,
        http: false,
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(real.http_addr().is_none());
    assert!(real.advance(Duration::from_secs(1)).is_err());
    let conn = connect(&real.amqp_url()).await;
    assert!(conn.status().connected());
}
