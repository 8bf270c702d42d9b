//! One set of broker operations: each declaration and publish below goes through AMQP
//! (lapin) and through the management API, and both must come to the same result. An
//! AMQP refusal `CODE NAME - text` is the API's status with `text` as its reason (406 and
//! 405 are 400; RabbitMQ's API publish keeps the code in the reason).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use lapin::{
    options::{BasicPublishOptions, ExchangeDeclareOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable, LongString},
    BasicProperties, ExchangeKind,
};
use serde_json::json;
use warren_integration::{client::*, http_request, Broker};

/// An AMQP error on a fresh channel of `conn`, or `None` when the call succeeded.
async fn amqp_declare_queue(
    conn: &lapin::Connection,
    name: &str,
    durable: bool,
    args: FieldTable,
) -> Option<(u16, String)> {
    let ch = channel(conn).await;
    let options = QueueDeclareOptions {
        durable,
        ..QueueDeclareOptions::default()
    };
    within(
        "queue.declare",
        ch.queue_declare(name.into(), options, args),
    )
    .await
    .err()
    .map(|e| amqp_error(&e))
}

fn http_declare_queue(
    broker: &Broker,
    name: &str,
    durable: bool,
    args: serde_json::Value,
) -> (u16, String) {
    let body = json!({"durable": durable, "arguments": args}).to_string();
    http_request(
        broker.http_port,
        "PUT",
        &format!("/api/queues/%2F/{name}"),
        Some(&body),
    )
}

fn reason(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["reason"].as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The AMQP error `(code, "NAME - text")` and the API answer `(status, body)` agree.
fn assert_same_refusal(amqp: Option<(u16, String)>, http: (u16, String), what: &str) {
    let (code, text) = amqp.unwrap_or_else(|| panic!("{what}: AMQP accepted it"));
    let detail = text.split_once(" - ").map(|(_, d)| d).unwrap_or(&text);
    let (status, detail) = match code {
        404 => (404, "Not Found"),
        // RabbitMQ's API: 401 and no detail for an operation's ACCESS_REFUSED.
        403 => (401, "Access refused."),
        541 => (500, detail),
        _ => (400, detail),
    };
    assert_eq!(http.0, status, "{what}: {}", http.1);
    assert_eq!(reason(&http.1), detail, "{what}");
}

fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert((*k).into(), v.clone());
    }
    t
}

fn long(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

#[tokio::test]
async fn queue_declarations_agree() {
    let broker = Broker::start();
    let conn = connect(&broker.amqp_url()).await;
    // Created by one path, redeclared by the other.
    assert_eq!(
        amqp_declare_queue(&conn, "ops-q", true, FieldTable::default()).await,
        None
    );
    assert_eq!(http_declare_queue(&broker, "ops-q", true, json!({})).0, 204);
    assert_eq!(http_declare_queue(&broker, "ops-h", true, json!({})).0, 201);
    assert_eq!(
        amqp_declare_queue(&conn, "ops-h", true, FieldTable::default()).await,
        None
    );

    let cases: Vec<(&str, &str, bool, FieldTable, serde_json::Value)> = vec![
        (
            "inequivalent durable",
            "ops-q",
            false,
            FieldTable::default(),
            json!({}),
        ),
        (
            "inequivalent argument",
            "ops-q",
            true,
            table(&[("x-max-length", AMQPValue::LongLongInt(5))]),
            json!({"x-max-length": 5}),
        ),
        (
            "quorum queue that is not durable",
            "ops-qq",
            false,
            table(&[("x-queue-type", long("quorum"))]),
            json!({"x-queue-type": "quorum"}),
        ),
        (
            "stream queue that is not durable",
            "ops-stream",
            false,
            table(&[("x-queue-type", long("stream"))]),
            json!({"x-queue-type": "stream"}),
        ),
        (
            "invalid argument value",
            "ops-bad",
            true,
            table(&[("x-max-length", long("many"))]),
            json!({"x-max-length": "many"}),
        ),
        (
            "reserved name",
            "amq.ops",
            true,
            FieldTable::default(),
            json!({}),
        ),
    ];
    for (what, name, durable, amqp_args, http_args) in cases {
        let amqp = amqp_declare_queue(&conn, name, durable, amqp_args).await;
        let http = http_declare_queue(&broker, name, durable, http_args);
        assert_same_refusal(amqp, http, what);
    }
}

#[tokio::test]
async fn exchange_declarations_agree() {
    let broker = Broker::start();
    let conn = connect(&broker.amqp_url()).await;
    let conn = &conn;
    let declare = |name: &'static str, kind: ExchangeKind, args: FieldTable| async move {
        let ch = channel(conn).await;
        within(
            "exchange.declare",
            ch.exchange_declare(name.into(), kind, ExchangeDeclareOptions::default(), args),
        )
        .await
        .err()
        .map(|e| amqp_error(&e))
    };
    let http = |name: &str, body: serde_json::Value| {
        http_request(
            broker.http_port,
            "PUT",
            &format!("/api/exchanges/%2F/{name}"),
            Some(&body.to_string()),
        )
    };
    assert_eq!(
        declare("ops-x", ExchangeKind::Direct, FieldTable::default()).await,
        None
    );
    assert_same_refusal(
        declare("ops-x", ExchangeKind::Fanout, FieldTable::default()).await,
        http("ops-x", json!({"type": "fanout", "durable": false})),
        "inequivalent type",
    );
    assert_same_refusal(
        declare(
            "ops-x",
            ExchangeKind::Direct,
            table(&[("alternate-exchange", long("ops-ae"))]),
        )
        .await,
        http(
            "ops-x",
            json!({"type": "direct", "durable": false, "arguments": {"alternate-exchange": "ops-ae"}}),
        ),
        "inequivalent alternate-exchange",
    );
    assert_same_refusal(
        declare("amq.ops", ExchangeKind::Direct, FieldTable::default()).await,
        http("amq.ops", json!({"type": "direct"})),
        "reserved name",
    );
}

#[tokio::test]
async fn publishes_agree() {
    let broker = Broker::start();
    let conn = connect(&broker.amqp_url()).await;
    let ch = confirm_channel(&conn).await;
    for q in ["ops-main", "ops-cc"] {
        declare_queue(&ch, q, QueueDeclareOptions::default()).await;
    }
    // CC routes through both paths; the copies are the same.
    let headers = table(&[("CC", AMQPValue::FieldArray(vec![long("ops-cc")].into()))]);
    publish_with(
        &ch,
        "",
        "ops-main",
        BasicPublishOptions::default(),
        b"amqp",
        BasicProperties::default().with_headers(headers),
    )
    .await;
    let body = json!({
        "routing_key": "ops-main", "payload": "http", "payload_encoding": "string",
        "properties": {"headers": {"CC": ["ops-cc"]}}
    });
    let (status, text) = http_request(
        broker.http_port,
        "POST",
        "/api/exchanges/%2F/amq.default/publish",
        Some(&body.to_string()),
    );
    assert_eq!((status, text.as_str()), (200, r#"{"routed":true}"#));
    assert_eq!(drain(&ch, "ops-main").await, vec!["amqp", "http"]);
    assert_eq!(drain(&ch, "ops-cc").await, vec!["amqp", "http"]);

    // An invalid expiration: 406 on the channel, 400 with the code in the API's reason.
    let mut events = conn.events_listener();
    let bad = channel(&conn).await;
    let confirm = within(
        "basic.publish",
        bad.basic_publish(
            "".into(),
            "ops-main".into(),
            BasicPublishOptions::default(),
            b"x",
            BasicProperties::default().with_expiration("abc".into()),
        ),
    )
    .await;
    let amqp = match confirm {
        Err(e) => amqp_error(&e),
        Ok(_) => channel_error_after(&mut events, &bad)
            .await
            .expect("the channel was closed"),
    };
    assert_eq!(
        amqp,
        expected(
            406,
            "PRECONDITION_FAILED - invalid expiration 'abc': no_integer"
        )
    );
    let body = json!({
        "routing_key": "ops-main", "payload": "x", "payload_encoding": "string",
        "properties": {"expiration": "abc"}
    });
    let (status, text) = http_request(
        broker.http_port,
        "POST",
        "/api/exchanges/%2F/amq.default/publish",
        Some(&body.to_string()),
    );
    assert_eq!(status, 400, "{text}");
    assert_eq!(reason(&text), format!("{} {}", amqp.0, amqp.1));
    assert!(get(&ch, "ops-main", true).await.is_none());
}

/// An AMQP refusal on a fresh channel, or `None` when the call succeeded.
async fn on_fresh_channel<F, Fut, T>(conn: &lapin::Connection, call: F) -> Option<(u16, String)>
where
    F: FnOnce(lapin::Channel) -> Fut,
    Fut: std::future::Future<Output = lapin::Result<T>>,
{
    let ch = channel(conn).await;
    within("operation", call(ch))
        .await
        .err()
        .map(|e| amqp_error(&e))
}

#[tokio::test]
async fn bindings_and_deletions_agree() {
    use lapin::options::{ExchangeDeleteOptions, QueueBindOptions};
    let broker = Broker::start();
    let conn = connect(&broker.amqp_url()).await;
    let ch = channel(&conn).await;
    declare_queue(&ch, "ops-bq", QueueDeclareOptions::default()).await;
    let http = |method: &str, path: &str, body: Option<serde_json::Value>| {
        let body = body.map(|b| b.to_string());
        http_request(broker.http_port, method, path, body.as_deref())
    };

    // A headers binding with a bad x-match: 406 / 400, same text.
    let bad = table(&[("x-match", long("bogus"))]);
    let amqp = on_fresh_channel(&conn, |c| async move {
        c.queue_bind(
            "ops-bq".into(),
            "amq.headers".into(),
            "".into(),
            QueueBindOptions::default(),
            bad,
        )
        .await
    })
    .await;
    let api = http(
        "POST",
        "/api/bindings/%2F/e/amq.headers/q/ops-bq",
        Some(json!({"routing_key": "", "arguments": {"x-match": "bogus"}})),
    );
    assert_same_refusal(amqp, api, "headers binding with a bad x-match");

    // Binding from a missing exchange: 404 both ways.
    let amqp = on_fresh_channel(&conn, |c| async move {
        c.queue_bind(
            "ops-bq".into(),
            "ops-missing".into(),
            "k".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
    })
    .await;
    let api = http(
        "POST",
        "/api/bindings/%2F/e/ops-missing/q/ops-bq",
        Some(json!({"routing_key": "k"})),
    );
    assert_same_refusal(amqp, api, "binding from a missing exchange");

    // Deleting a system exchange: 403 / 401.
    let amqp = on_fresh_channel(&conn, |c| async move {
        c.exchange_delete("amq.direct".into(), ExchangeDeleteOptions::default())
            .await
    })
    .await;
    let api = http("DELETE", "/api/exchanges/%2F/amq.direct", None);
    assert_same_refusal(amqp, api, "deleting a system exchange");

    // if-unused on an exchange in use: 406 / 400, same text.
    let ch = channel(&conn).await;
    within(
        "exchange.declare",
        ch.exchange_declare(
            "ops-used".into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .expect("declare");
    within(
        "queue.bind",
        ch.queue_bind(
            "ops-bq".into(),
            "ops-used".into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .expect("bind");
    let amqp = on_fresh_channel(&conn, |c| async move {
        let options = ExchangeDeleteOptions {
            if_unused: true,
            ..ExchangeDeleteOptions::default()
        };
        c.exchange_delete("ops-used".into(), options).await
    })
    .await;
    let api = http("DELETE", "/api/exchanges/%2F/ops-used?if-unused=true", None);
    assert_same_refusal(amqp, api, "if-unused on an exchange in use");

    // Unbinding through the API, then a publish through the exchange reaches nobody.
    let (status, _) = http("DELETE", "/api/bindings/%2F/e/ops-used/q/ops-bq/~", None);
    assert_eq!(status, 204);
    publish(&ch, "ops-used", "", b"unbound").await;
    assert!(get(&ch, "ops-bq", true).await.is_none());
}

#[tokio::test]
async fn purge_and_get_agree() {
    let broker = Broker::start();
    let conn = connect(&broker.amqp_url()).await;
    let ch = confirm_channel(&conn).await;
    declare_queue(&ch, "ops-pg", QueueDeclareOptions::default()).await;
    for body in ["one", "two", "three"] {
        publish(&ch, "", "ops-pg", body.as_bytes()).await;
    }
    // The API's get (requeue) and basic.get see the same first message.
    let (status, text) = http_request(
        broker.http_port,
        "POST",
        "/api/queues/%2F/ops-pg/get",
        Some(r#"{"count":1,"ackmode":"ack_requeue_true","encoding":"auto"}"#),
    );
    assert_eq!(status, 200, "{text}");
    let got: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(got[0]["payload"], "one");
    assert_eq!(got[0]["message_count"], 2);
    let first = get(&ch, "ops-pg", true).await.expect("a message");
    assert_eq!(first.delivery.data, b"one");
    // Purge through the API empties what purge over AMQP would.
    let (status, _) = http_request(
        broker.http_port,
        "DELETE",
        "/api/queues/%2F/ops-pg/contents",
        None,
    );
    assert_eq!(status, 204);
    assert!(get(&ch, "ops-pg", true).await.is_none());
    publish(&ch, "", "ops-pg", b"again").await;
    let purged = within(
        "queue.purge",
        ch.queue_purge("ops-pg".into(), Default::default()),
    )
    .await
    .expect("purge");
    assert_eq!(purged, 1);
}
