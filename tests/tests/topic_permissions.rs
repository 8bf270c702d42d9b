//! Topic permissions (RabbitMQ's "Topic Authorisation"): refusal texts and status codes
//! recorded from RabbitMQ 3.10.8. A publish to a topic exchange checks its routing key
//! against the write pattern, a binding's key against the read pattern; an exchange the
//! user has no topic permission for, or one that is not a topic exchange, is not checked.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use lapin::{
    options::{BasicPublishOptions, ExchangeDeclareOptions, QueueBindOptions},
    types::FieldTable,
    BasicProperties, ExchangeKind,
};
use serde_json::{json, Value};
use warren_integration::{client::*, http_request, Broker};

fn put(broker: &Broker, path: &str, body: Value) -> u16 {
    http_request(broker.http_port, "PUT", path, Some(&body.to_string())).0
}

fn get_json(broker: &Broker, path: &str) -> (u16, Value) {
    let (status, body) = http_request(broker.http_port, "GET", path, None);
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn refused(key: &str, exchange: &str) -> (u16, String) {
    expected(
        403,
        &format!(
            "ACCESS_REFUSED - access to topic '{key}' in exchange '{exchange}' in vhost 'tv' refused for user 'tu'"
        ),
    )
}

/// User `tu` (password `tp`) with full permissions in vhost `tv`.
fn setup(broker: &Broker) {
    assert_eq!(
        put(
            broker,
            "/api/users/tu",
            json!({"password": "tp", "tags": ""})
        ),
        201
    );
    assert_eq!(put(broker, "/api/vhosts/tv", json!({})), 201);
    let all = json!({"configure": ".*", "write": ".*", "read": ".*"});
    assert_eq!(put(broker, "/api/permissions/tv/tu", all), 201);
}

/// Publishes on a fresh channel; the channel error, if the broker closed it.
async fn try_publish(conn: &lapin::Connection, exchange: &str, key: &str) -> Option<(u16, String)> {
    // Listening before the publish: when the broker's channel.close beats the round trip
    // below, lapin answers that with the channel's state, and the error is an event.
    let mut events = conn.events_listener();
    let ch = channel(conn).await;
    within(
        "basic.publish",
        ch.basic_publish(
            exchange.into(),
            key.into(),
            BasicPublishOptions::default(),
            b"m",
            BasicProperties::default(),
        ),
    )
    .await
    .expect("basic.publish");
    channel_error_after(&mut events, &ch).await
}

/// Binds the queue `q` on a fresh channel; the channel error, if any.
async fn try_bind(conn: &lapin::Connection, exchange: &str, key: &str) -> Option<(u16, String)> {
    let mut events = conn.events_listener();
    let ch = channel(conn).await;
    let refused = within(
        "queue.bind",
        ch.queue_bind(
            "q".into(),
            exchange.into(),
            key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .err()
    .map(|e| amqp_error(&e));
    if refused.is_some() {
        // Take the close's event too, so that a later check cannot read it as its own.
        let _ = next_error_event(&mut events).await;
    }
    refused
}

async fn check_enforcement(broker: &Broker) {
    let conn = connect(&format!("amqp://tu:tp@127.0.0.1:{}/tv", broker.port)).await;
    let ch = channel(&conn).await;
    declare_queue(&ch, "q", Default::default()).await;
    for (name, kind) in [
        ("tx", ExchangeKind::Topic),
        ("tx2", ExchangeKind::Topic),
        ("dx", ExchangeKind::Direct),
    ] {
        let options = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        within(
            "exchange.declare",
            ch.exchange_declare(name.into(), kind, options, FieldTable::default()),
        )
        .await
        .expect("exchange.declare");
    }
    // amq.topic: write ^a, read ^r.
    assert_eq!(try_publish(&conn, "amq.topic", "a.1").await, None);
    assert_eq!(
        try_publish(&conn, "amq.topic", "b.1").await,
        Some(refused("b.1", "amq.topic"))
    );
    assert_eq!(try_bind(&conn, "amq.topic", "r.1").await, None);
    assert_eq!(
        try_bind(&conn, "amq.topic", "z.1").await,
        Some(refused("z.1", "amq.topic"))
    );
    // tx: write ^{username}\. expands to ^tu\.; the empty read pattern lets only the
    // empty key bind.
    assert_eq!(try_publish(&conn, "tx", "tu.x").await, None);
    assert_eq!(
        try_publish(&conn, "tx", "other").await,
        Some(refused("other", "tx"))
    );
    assert_eq!(try_bind(&conn, "tx", "").await, None);
    assert_eq!(try_bind(&conn, "tx", "k").await, Some(refused("k", "tx")));
    // A direct exchange is never checked, whatever its topic permission says.
    assert_eq!(try_publish(&conn, "dx", "anything").await, None);
    // A topic exchange the user has no topic permission for is not checked.
    assert_eq!(try_publish(&conn, "tx2", "any").await, None);
    let _ = conn.close(200, "bye".into()).await;
}

#[tokio::test]
async fn topic_permissions_refuse_publishes_and_bindings_and_survive_a_restart() {
    let broker = Broker::start();
    setup(&broker);
    let tp = |x: &str, w: &str, r: &str| json!({"exchange": x, "write": w, "read": r});
    // 201 for the user's first topic permission in the vhost, 204 after, as RabbitMQ.
    assert_eq!(
        put(
            &broker,
            "/api/topic-permissions/tv/tu",
            tp("amq.topic", "^a", "^r")
        ),
        201
    );
    assert_eq!(
        put(
            &broker,
            "/api/topic-permissions/tv/tu",
            tp("tx", "^{username}\\.", "")
        ),
        204
    );
    assert_eq!(
        put(
            &broker,
            "/api/topic-permissions/tv/tu",
            tp("dx", "^none$", "^none$")
        ),
        204
    );
    check_enforcement(&broker).await;

    // The lists, in RabbitMQ's shape.
    let entry = |x: &str, w: &str, r: &str| json!({"user": "tu", "vhost": "tv", "exchange": x, "write": w, "read": r});
    let expected_all = json!([
        entry("amq.topic", "^a", "^r"),
        entry("dx", "^none$", "^none$"),
        entry("tx", "^{username}\\.", ""),
    ]);
    for path in [
        "/api/topic-permissions",
        "/api/topic-permissions/tv/tu",
        "/api/users/tu/topic-permissions",
        "/api/vhosts/tv/topic-permissions",
    ] {
        assert_eq!(
            get_json(&broker, path),
            (200, expected_all.clone()),
            "{path}"
        );
    }
    assert_eq!(
        get_json(&broker, "/api/users/guest/topic-permissions"),
        (200, json!([]))
    );
    assert_eq!(get_json(&broker, "/api/topic-permissions/tv/guest").0, 404);
    assert_eq!(
        get_json(&broker, "/api/vhosts/nov/topic-permissions").0,
        404
    );
    assert_eq!(
        get_json(&broker, "/api/users/nobody/topic-permissions").0,
        404
    );
    // Refused puts.
    let (status, body) = http_request(
        broker.http_port,
        "PUT",
        "/api/topic-permissions/tv/tu",
        Some(r#"{"exchange": "x", "write": "a"}"#),
    );
    assert_eq!(status, 400);
    assert!(body.contains("key_missing,read"), "{body}");
    assert_eq!(
        put(
            &broker,
            "/api/topic-permissions/tv/nobody",
            tp("x", "a", "a")
        ),
        400
    );
    assert_eq!(
        put(&broker, "/api/topic-permissions/tv/tu", tp("x", "(", "a")),
        400
    );

    // Definitions: exported, and imported back after being cleared.
    let (_, defs) = get_json(&broker, "/api/definitions");
    assert_eq!(defs["topic_permissions"], expected_all);
    let (status, _) = http_request(
        broker.http_port,
        "DELETE",
        "/api/topic-permissions/tv/tu",
        None,
    );
    assert_eq!(status, 204);
    assert_eq!(get_json(&broker, "/api/topic-permissions").1, json!([]));
    let (status, body) = http_request(
        broker.http_port,
        "POST",
        "/api/definitions",
        Some(&defs.to_string()),
    );
    assert!(status == 201 || status == 204, "{status} {body}");
    assert_eq!(get_json(&broker, "/api/topic-permissions").1, expected_all);

    // Across a restart: recorded, replayed and enforced.
    let broker = broker.restart(false);
    assert_eq!(get_json(&broker, "/api/topic-permissions").1, expected_all);
    check_enforcement(&broker).await;
    let broker = broker.restart(true);
    assert_eq!(get_json(&broker, "/api/topic-permissions").1, expected_all);

    // Deleting one exchange's permission, then the rest.
    let path = "/api/topic-permissions/tv/tu/dx";
    assert_eq!(http_request(broker.http_port, "DELETE", path, None).0, 204);
    let (_, left) = get_json(&broker, "/api/topic-permissions/tv/tu");
    assert_eq!(left.as_array().map(Vec::len), Some(2));
    let path = "/api/topic-permissions/tv/tu";
    assert_eq!(http_request(broker.http_port, "DELETE", path, None).0, 204);
    assert_eq!(http_request(broker.http_port, "DELETE", path, None).0, 404);
    let conn = connect(&format!("amqp://tu:tp@127.0.0.1:{}/tv", broker.port)).await;
    assert_eq!(try_publish(&conn, "amq.topic", "b.1").await, None);
    let _ = conn.close(200, "bye".into()).await;
}

#[tokio::test]
async fn a_changed_topic_permission_applies_to_open_connections() {
    let broker = Broker::start();
    setup(&broker);
    let conn = connect(&format!("amqp://tu:tp@127.0.0.1:{}/tv", broker.port)).await;
    assert_eq!(try_publish(&conn, "amq.topic", "b.1").await, None);
    let body = json!({"exchange": "amq.topic", "write": "^a", "read": ".*"});
    assert_eq!(put(&broker, "/api/topic-permissions/tv/tu", body), 201);
    assert_eq!(
        try_publish(&conn, "amq.topic", "b.1").await,
        Some(refused("b.1", "amq.topic"))
    );
    // Deleting the user's topic permissions lifts the check on the same connection.
    let path = "/api/topic-permissions/tv/tu";
    assert_eq!(http_request(broker.http_port, "DELETE", path, None).0, 204);
    assert_eq!(try_publish(&conn, "amq.topic", "b.1").await, None);
    let _ = conn.close(200, "bye".into()).await;
}
