//! warren's routes for test suites: reset a vhost, wait for a queue to fill, peek.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use lapin::{options::*, types::FieldTable};
use serde_json::Value;
use warren_integration::{api, client::*, http_request, Broker};

async fn request(
    port: u16,
    method: &'static str,
    path: String,
    body: Option<&'static str>,
) -> (u16, Value, Duration) {
    tokio::task::spawn_blocking(move || {
        let began = Instant::now();
        let (status, text) = http_request(port, method, &path, body);
        let took = began.elapsed();
        let v = serde_json::from_str(&text).unwrap_or(Value::Null);
        (status, v, took)
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn reset_empties_a_vhost_and_keeps_it_usable() {
    let broker = Broker::start();
    let port = broker.http_port;
    let conn = connect(&broker.amqp_url()).await;
    let ch = confirm_channel(&conn).await;
    declare_queue(
        &ch,
        "a",
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
    )
    .await;
    declare_queue(&ch, "b", QueueDeclareOptions::default()).await;
    within(
        "exchange.declare",
        ch.exchange_declare(
            "x".into(),
            lapin::ExchangeKind::Topic,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .unwrap();
    within(
        "queue.bind",
        ch.queue_bind(
            "a".into(),
            "x".into(),
            "k".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .unwrap();
    within(
        "exchange.bind",
        ch.exchange_bind(
            "amq.fanout".into(),
            "amq.topic".into(),
            "k".into(),
            ExchangeBindOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .unwrap();
    publish(&ch, "x", "k", b"m").await;
    let (status, _, _) = request(
        port,
        "PUT",
        "/api/policies/%2F/lim".into(),
        Some(r#"{"pattern": ".*", "definition": {"max-length": 10}, "apply-to": "queues"}"#),
    )
    .await;
    assert_eq!(status, 201);

    let (status, counts, took) =
        request(port, "POST", "/api/warren/vhosts/%2F/reset".into(), None).await;
    assert_eq!(status, 200, "{counts}");
    assert_eq!(
        counts,
        serde_json::json!({"queues": 2, "exchanges": 1, "bindings": 1, "policies": 1})
    );
    println!("reset answered in {took:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert_eq!(api(port, "/api/queues/%2F"), serde_json::json!([]));
    assert_eq!(api(port, "/api/policies/%2F"), serde_json::json!([]));
    let mut left: Vec<String> = api(port, "/api/exchanges/%2F")
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap().to_string())
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            "",
            "amq.direct",
            "amq.fanout",
            "amq.headers",
            "amq.match",
            "amq.rabbitmq.trace",
            "amq.topic"
        ]
    );
    let bindings = api(port, "/api/bindings/%2F");
    assert_eq!(bindings, serde_json::json!([]), "{bindings}");
    // The vhost is still there, connections included: the same channel declares anew.
    let fresh = channel(&conn).await;
    declare_queue(&fresh, "a", QueueDeclareOptions::default()).await;
    let (status, _, _) = request(port, "POST", "/api/warren/vhosts/nope/reset".into(), None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn wait_answers_when_the_queue_fills_or_times_out() {
    let broker = Broker::start();
    let port = broker.http_port;
    let conn = connect(&broker.amqp_url()).await;
    let ch = confirm_channel(&conn).await;
    declare_queue(&ch, "q", QueueDeclareOptions::default()).await;
    let waiting = tokio::spawn(request(
        port,
        "GET",
        "/api/warren/queues/%2F/q/wait?count=3&timeout_ms=10000".into(),
        None,
    ));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished(), "answered before the queue held 3");
    for _ in 0..3 {
        publish(&ch, "", "q", b"m").await;
    }
    let published = Instant::now();
    let (status, depth, _) = waiting.await.unwrap();
    assert_eq!(status, 200, "{depth}");
    assert_eq!(depth["messages"], 3);
    assert_eq!(depth["messages_ready"], 3);
    println!(
        "wait answered {:?} after the third publish",
        published.elapsed()
    );
    assert!(published.elapsed() < Duration::from_secs(1));

    let (status, body, took) = request(
        port,
        "GET",
        "/api/warren/queues/%2F/q/wait?count=4&timeout_ms=100".into(),
        None,
    )
    .await;
    assert_eq!(status, 408, "{body}");
    assert_eq!(body["messages"], 3);
    assert!(took >= Duration::from_millis(100), "{took:?}");
    let (status, _, _) = request(
        port,
        "GET",
        "/api/warren/queues/%2F/none/wait?count=1".into(),
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (status, _, _) = request(
        port,
        "GET",
        "/api/warren/queues/%2F/q/wait?count=x".into(),
        None,
    )
    .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn peek_shows_messages_without_taking_or_marking_them() {
    let broker = Broker::start();
    let port = broker.http_port;
    let conn = connect(&broker.amqp_url()).await;
    let ch = confirm_channel(&conn).await;
    declare_queue(&ch, "q", QueueDeclareOptions::default()).await;
    publish(&ch, "", "q", b"first").await;
    publish(&ch, "", "q", b"second").await;
    for _ in 0..2 {
        let (status, seen, took) = request(
            port,
            "GET",
            "/api/warren/queues/%2F/q/peek?count=5".into(),
            None,
        )
        .await;
        assert_eq!(status, 200, "{seen}");
        assert!(took < Duration::from_secs(1), "{took:?}");
        let seen = seen.as_array().unwrap().clone();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0]["payload"], "first");
        assert_eq!(seen[1]["payload"], "second");
        assert_eq!(seen[0]["redelivered"], false);
        assert_eq!(seen[0]["routing_key"], "q");
    }
    // The messages are where they were, and a consumer sees them as first deliveries.
    let m = get(&ch, "q", true).await.expect("message");
    assert_eq!(m.delivery.data, b"first");
    assert!(!m.delivery.redelivered, "peek marked it redelivered");
    // What RabbitMQ's get with requeue does instead: the next delivery is redelivered.
    let (status, _, _) = request(
        port,
        "POST",
        "/api/queues/%2F/q/get".into(),
        Some(r#"{"count": 1, "ackmode": "ack_requeue_true", "encoding": "auto"}"#),
    )
    .await;
    assert_eq!(status, 200);
    let (_, seen, _) = request(port, "GET", "/api/warren/queues/%2F/q/peek".into(), None).await;
    assert_eq!(seen[0]["payload"], "second");
    assert_eq!(seen[0]["redelivered"], true);
    let (status, _, _) =
        request(port, "GET", "/api/warren/queues/%2F/none/peek".into(), None).await;
    assert_eq!(status, 404);
}
