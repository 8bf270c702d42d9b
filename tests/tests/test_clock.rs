//! The test clock (`--test-clock`, `/api/warren/clock`): 30-second TTLs, x-expires and
//! dead-lettering by expiry run in milliseconds, deterministically: once an advance has
//! answered, every expiry it made due has happened and its dead letters are routed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use lapin::{
    options::*,
    types::{AMQPValue, FieldTable, LongString},
    BasicProperties, Channel,
};
use serde_json::Value;
use warren_integration::{api, client::*, http_request, Broker};

fn args(pairs: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in pairs {
        t.insert((*k).into(), v.clone());
    }
    t
}

fn s(v: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(v))
}

fn test_broker() -> Broker {
    Broker::start_with(&["--test-clock"], &[])
}

/// POSTs to the clock; the JSON it answers.
async fn clock(b: &Broker, body: &str) -> Value {
    let (port, body) = (b.http_port, body.to_string());
    let (status, text) = tokio::task::spawn_blocking(move || {
        http_request(port, "POST", "/api/warren/clock", Some(&body))
    })
    .await
    .unwrap();
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

async fn declare(ch: &Channel, name: &str, table: FieldTable) {
    within(
        "queue.declare",
        ch.queue_declare(name.into(), QueueDeclareOptions::default(), table),
    )
    .await
    .unwrap();
}

async fn ready(ch: &Channel, name: &str) -> u32 {
    passive_queue(ch, name).await.unwrap().message_count()
}

#[tokio::test]
async fn a_30_second_message_ttl_expires_on_an_advance() {
    let broker = test_broker();
    let conn = connect(&broker.amqp_url()).await;
    let ch = confirm_channel(&conn).await;
    declare(
        &ch,
        "q",
        args(&[("x-message-ttl", AMQPValue::LongInt(30_000))]),
    )
    .await;
    let began = Instant::now();
    clock(&broker, r#"{"freeze": true}"#).await;
    publish(&ch, "", "q", b"m").await;
    clock(&broker, r#"{"advance_ms": 29999}"#).await;
    assert_eq!(ready(&ch, "q").await, 1, "one millisecond early");
    clock(&broker, r#"{"advance_ms": 1}"#).await;
    assert_eq!(
        ready(&ch, "q").await,
        0,
        "expired once the advance answered"
    );
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "{:?}",
        began.elapsed()
    );
}

#[tokio::test]
async fn a_per_message_expiration_follows_the_clock() {
    let broker = test_broker();
    let conn = connect(&broker.amqp_url()).await;
    let ch = confirm_channel(&conn).await;
    declare(&ch, "q", FieldTable::default()).await;
    clock(&broker, r#"{"freeze": true}"#).await;
    let props = BasicProperties::default().with_expiration("30000".into());
    publish_with(
        &ch,
        "",
        "q",
        BasicPublishOptions::default(),
        b"short",
        props,
    )
    .await;
    publish(&ch, "", "q", b"forever").await;
    clock(&broker, r#"{"advance_ms": 20000}"#).await;
    assert_eq!(ready(&ch, "q").await, 2);
    clock(&broker, r#"{"advance_ms": 10000}"#).await;
    assert_eq!(drain(&ch, "q").await, ["forever"]);
}

#[tokio::test]
async fn x_expires_deletes_an_unused_queue_on_an_advance() {
    let broker = test_broker();
    let conn = connect(&broker.amqp_url()).await;
    let ch = channel(&conn).await;
    clock(&broker, r#"{"freeze": true}"#).await;
    declare(
        &ch,
        "gone",
        args(&[("x-expires", AMQPValue::LongInt(30_000))]),
    )
    .await;
    declare(
        &ch,
        "used",
        args(&[("x-expires", AMQPValue::LongInt(30_000))]),
    )
    .await;
    let _consumer = consume(&ch, "used", "c", true).await;
    clock(&broker, r#"{"advance_ms": 29000}"#).await;
    // Looked at through the API: a passive declare would count as a use and restart
    // x-expires (as in RabbitMQ).
    let (status, _) = http_request(broker.http_port, "GET", "/api/queues/%2F/gone", None);
    assert_eq!(status, 200, "not yet");
    clock(&broker, r#"{"advance_ms": 1000}"#).await;
    let (status, _) = http_request(broker.http_port, "GET", "/api/queues/%2F/gone", None);
    assert_eq!(status, 404, "deleted once the advance answered");
    let probe = channel(&conn).await;
    let err = passive_queue(&probe, "gone").await.unwrap_err();
    assert_eq!(amqp_error(&err).0, 404);
    // A queue with a consumer is in use: it stays however far the clock goes.
    clock(&broker, r#"{"advance_ms": 120000}"#).await;
    assert!(passive_queue(&ch, "used").await.is_ok());
}

#[tokio::test]
async fn expired_messages_are_dead_lettered_before_the_advance_answers() {
    let broker = test_broker();
    let conn = connect(&broker.amqp_url()).await;
    let ch = confirm_channel(&conn).await;
    declare(
        &ch,
        "work",
        args(&[
            ("x-message-ttl", AMQPValue::LongInt(30_000)),
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s("dead")),
        ]),
    )
    .await;
    declare(&ch, "dead", FieldTable::default()).await;
    let began = Instant::now();
    clock(&broker, r#"{"freeze": true}"#).await;
    for i in 0..3 {
        publish(&ch, "", "work", format!("m{i}").as_bytes()).await;
    }
    let moved = clock(&broker, r#"{"advance_ms": 30000}"#).await;
    // No polling: the dead letters are in place when the advance has answered.
    assert_eq!(ready(&ch, "work").await, 0);
    assert_eq!(ready(&ch, "dead").await, 3);
    let m = get(&ch, "dead", true).await.expect("dead letter");
    assert_eq!(m.delivery.data, b"m0");
    let headers = m.delivery.properties.headers().clone().expect("headers");
    let Some(AMQPValue::FieldArray(deaths)) = headers.inner().get("x-death") else {
        panic!("no x-death: {headers:?}");
    };
    let AMQPValue::FieldTable(death) = &deaths.as_slice()[0] else {
        panic!("x-death entry not a table");
    };
    assert_eq!(death.inner().get("reason"), Some(&s("expired")));
    // x-death's time is the test clock's.
    let now_secs = moved["now_ms"].as_u64().unwrap() / 1000;
    assert_eq!(
        death.inner().get("time"),
        Some(&AMQPValue::Timestamp(now_secs))
    );
    let took = began.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "a 30 s TTL test took {took:?}"
    );
}

#[tokio::test]
async fn a_frozen_clock_holds_expiry_until_it_runs_again() {
    let broker = test_broker();
    let conn = connect(&broker.amqp_url()).await;
    let ch = confirm_channel(&conn).await;
    declare(
        &ch,
        "q",
        args(&[("x-message-ttl", AMQPValue::LongInt(100))]),
    )
    .await;
    let frozen = clock(&broker, r#"{"freeze": true}"#).await;
    assert_eq!(frozen["frozen"], true);
    publish(&ch, "", "q", b"m").await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        ready(&ch, "q").await,
        1,
        "real time passed, the clock did not"
    );
    let state = api(broker.http_port, "/api/warren/clock");
    assert_eq!(state["now_ms"], frozen["now_ms"]);
    let running = clock(&broker, r#"{"freeze": false}"#).await;
    assert_eq!(running["frozen"], false);
    // Running again from where it stood: the 100 ms pass in real time.
    let deadline = Instant::now() + Duration::from_secs(5);
    while ready(&ch, "q").await != 0 {
        assert!(Instant::now() < deadline, "never expired after unfreezing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_clock_api_is_absent_without_the_flag_and_checks_its_input() {
    let plain = Broker::start();
    for (method, body) in [("GET", None), ("POST", Some(r#"{"advance_ms": 1000}"#))] {
        let (status, text) = http_request(plain.http_port, method, "/api/warren/clock", body);
        assert_eq!(status, 404, "{method}: {text}");
        assert!(text.contains("--test-clock"), "{text}");
    }
    assert!(api(plain.http_port, "/api/overview")
        .get("warren_test_clock")
        .is_none());

    let broker = test_broker();
    assert_eq!(
        api(broker.http_port, "/api/overview")["warren_test_clock"],
        true
    );
    assert!(
        broker
            .log()
            .iter()
            .any(|l| l.contains("test clock enabled")),
        "no start-up warning: {:?}",
        broker.log()
    );
    for bad in [
        r#"{}"#,
        r#"{"advance_ms": -5}"#,
        r#"{"advance_ms": "soon"}"#,
        r#"{"freeze": 3}"#,
    ] {
        let (status, text) = http_request(broker.http_port, "POST", "/api/warren/clock", Some(bad));
        assert_eq!(status, 400, "{bad}: {text}");
    }
    let before = api(broker.http_port, "/api/warren/clock");
    assert_eq!(before["enabled"], true);
    let (status, text) = http_request(
        broker.http_port,
        "POST",
        "/api/warren/clock",
        Some(r#"{"freeze": true, "advance_ms": 5000}"#),
    );
    assert_eq!(status, 200, "{text}");
    let after: Value = serde_json::from_str(&text).unwrap();
    let gap = after["now_ms"].as_u64().unwrap() - before["now_ms"].as_u64().unwrap();
    assert!((5000..6000).contains(&gap), "advanced by {gap} ms");
}

#[tokio::test]
async fn consumer_timeout_counts_the_test_clock() {
    // Default consumer_timeout (30 min); the channel tick (real time) every 50 ms.
    let toml = std::env::temp_dir().join(format!("warren-clock-ct-{}.toml", std::process::id()));
    std::fs::write(&toml, "test_clock = true\nchannel_tick_interval_ms = 50\n").unwrap();
    let broker = Broker::start_with(&["--config", toml.to_str().unwrap()], &[]);
    let _ = std::fs::remove_file(&toml);
    let conn = connect(&broker.amqp_url()).await;
    let ch = confirm_channel(&conn).await;
    declare(&ch, "slow", FieldTable::default()).await;
    publish(&ch, "", "slow", b"m").await;
    clock(&broker, r#"{"freeze": true}"#).await;
    let mut consumer = consume(&ch, "slow", "c", false).await;
    let _unacked = next_delivery(&mut consumer).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(ch.status().connected(), "closed before the clock moved");
    clock(&broker, r#"{"advance_ms": 1860000}"#).await;
    // Checked at the next channel tick (real time), against the moved clock.
    let deadline = Instant::now() + Duration::from_secs(5);
    while ch.status().connected() {
        assert!(
            Instant::now() < deadline,
            "channel still open 31 min (test clock) later"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let probe = channel(&conn).await;
    assert_eq!(
        ready(&probe, "slow").await,
        1,
        "the delivery went back to the queue"
    );
}
