//! The x-delayed-message exchange (the rabbitmq_delayed_message_exchange plugin's
//! semantics, release 3.10.2; the plugin is not in Debian's RabbitMQ, so these tests
//! follow its source and documentation, written down in docs/compatibility.md).
//! Most use the test clock: a delayed message is routed once an advance answers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use lapin::{
    message::BasicGetMessage,
    options::*,
    types::{AMQPValue, FieldTable, LongString, ShortString},
    BasicProperties, Channel, ExchangeKind,
};
use serde_json::Value;
use warren_integration::{api, client::*, http_request, Broker};

const PLUGINS: (&str, &str) = (
    "RABBITMQ_ENABLED_PLUGINS",
    "rabbitmq_management,rabbitmq_delayed_message_exchange",
);

fn broker() -> Broker {
    Broker::start_with(&["--test-clock"], &[PLUGINS])
}

fn table(pairs: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in pairs {
        t.insert(ShortString::from(*k), v.clone());
    }
    t
}

fn s(v: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(v))
}

async fn clock(b: &Broker, body: &str) {
    let (port, body) = (b.http_port, body.to_string());
    let (status, text) = tokio::task::spawn_blocking(move || {
        http_request(port, "POST", "/api/warren/clock", Some(&body))
    })
    .await
    .unwrap();
    assert_eq!(status, 200, "{text}");
}

async fn advance(b: &Broker, ms: u64) {
    clock(b, &format!(r#"{{"advance_ms": {ms}}}"#)).await;
}

async fn declare_delayed(
    ch: &Channel,
    name: &str,
    arguments: FieldTable,
    durable: bool,
) -> lapin::Result<()> {
    within(
        "exchange.declare",
        ch.exchange_declare(
            name.into(),
            ExchangeKind::Custom("x-delayed-message".into()),
            ExchangeDeclareOptions {
                durable,
                ..Default::default()
            },
            arguments,
        ),
    )
    .await
}

async fn delayed_of_type(ch: &Channel, name: &str, kind: &str, durable: bool) {
    declare_delayed(ch, name, table(&[("x-delayed-type", s(kind))]), durable)
        .await
        .expect("declare");
}

async fn bind(ch: &Channel, queue: &str, exchange: &str, key: &str, args: FieldTable) {
    within(
        "queue.bind",
        ch.queue_bind(
            queue.into(),
            exchange.into(),
            key.into(),
            QueueBindOptions::default(),
            args,
        ),
    )
    .await
    .expect("bind");
}

fn props(headers: &[(&str, AMQPValue)]) -> BasicProperties {
    BasicProperties::default().with_headers(table(headers))
}

async fn send(ch: &Channel, x: &str, key: &str, body: &str, p: BasicProperties) {
    let c = publish_with(
        ch,
        x,
        key,
        BasicPublishOptions::default(),
        body.as_bytes(),
        p,
    )
    .await;
    assert!(c.is_ack(), "{c:?}");
}

async fn ready(ch: &Channel, q: &str) -> u32 {
    passive_queue(ch, q).await.expect("queue").message_count()
}

fn x_delay(m: &BasicGetMessage) -> Option<AMQPValue> {
    m.delivery
        .properties
        .headers()
        .as_ref()?
        .inner()
        .get("x-delay")
        .cloned()
}

fn messages_delayed(b: &Broker, name: &str) -> Value {
    api(b.http_port, &format!("/api/exchanges/%2F/{name}"))["messages_delayed"].clone()
}

#[tokio::test]
async fn messages_are_routed_in_due_order_once_the_clock_passes() {
    let b = broker();
    let conn = connect(&b.amqp_url()).await;
    let ch = confirm_channel(&conn).await;
    delayed_of_type(&ch, "dx", "direct", false).await;
    declare_queue(&ch, "q", QueueDeclareOptions::default()).await;
    bind(&ch, "q", "dx", "k", FieldTable::default()).await;
    clock(&b, r#"{"freeze": true}"#).await;
    send(
        &ch,
        "dx",
        "k",
        "c",
        props(&[("x-delay", AMQPValue::LongInt(3000))]),
    )
    .await;
    send(
        &ch,
        "dx",
        "k",
        "a",
        props(&[("x-delay", AMQPValue::LongInt(1000))]),
    )
    .await;
    send(&ch, "dx", "k", "b", props(&[("x-delay", s("2000"))])).await;
    // Without the header, or with zero or a negative delay: routed at once, unchanged.
    send(&ch, "dx", "k", "now", BasicProperties::default()).await;
    send(
        &ch,
        "dx",
        "k",
        "zero",
        props(&[("x-delay", AMQPValue::LongInt(0))]),
    )
    .await;
    send(
        &ch,
        "dx",
        "k",
        "neg",
        props(&[("x-delay", AMQPValue::LongInt(-5))]),
    )
    .await;
    assert_eq!(drain(&ch, "q").await, ["now", "zero", "neg"]);
    assert_eq!(messages_delayed(&b, "dx"), 3);

    advance(&b, 999).await;
    assert_eq!(ready(&ch, "q").await, 0, "one millisecond early");
    advance(&b, 1).await;
    let a = get(&ch, "q", true).await.expect("a is due");
    assert_eq!(a.delivery.data, b"a");
    // The plugin puts the negated delay back, as a signed 32-bit integer.
    assert_eq!(x_delay(&a), Some(AMQPValue::LongInt(-1000)));
    assert_eq!(messages_delayed(&b, "dx"), 2);
    advance(&b, 5000).await;
    let b2 = get(&ch, "q", true).await.expect("b");
    assert_eq!(b2.delivery.data, b"b");
    assert_eq!(
        x_delay(&b2),
        Some(AMQPValue::LongInt(-2000)),
        "string delays too"
    );
    assert_eq!(drain(&ch, "q").await, ["c"]);
    assert_eq!(messages_delayed(&b, "dx"), 0);
}

#[tokio::test]
async fn each_delayed_type_routes_as_that_type_with_the_bindings_of_release_time() {
    let b = broker();
    let conn = connect(&b.amqp_url()).await;
    let ch = confirm_channel(&conn).await;
    clock(&b, r#"{"freeze": true}"#).await;
    for kind in ["direct", "fanout", "topic", "headers"] {
        delayed_of_type(&ch, kind, kind, false).await;
        for q in ["hit", "miss"] {
            declare_queue(&ch, &format!("{kind}-{q}"), QueueDeclareOptions::default()).await;
        }
    }
    // Published before any binding exists: bindings are read when the delay is over.
    let delay = AMQPValue::LongInt(500);
    send(
        &ch,
        "direct",
        "a.b",
        "m",
        props(&[("x-delay", delay.clone())]),
    )
    .await;
    send(
        &ch,
        "fanout",
        "any",
        "m",
        props(&[("x-delay", delay.clone())]),
    )
    .await;
    send(
        &ch,
        "topic",
        "a.b",
        "m",
        props(&[("x-delay", delay.clone())]),
    )
    .await;
    let h = [("x-delay", delay.clone()), ("color", s("red"))];
    send(&ch, "headers", "", "m", props(&h)).await;
    let none = FieldTable::default;
    bind(&ch, "direct-hit", "direct", "a.b", none()).await;
    bind(&ch, "direct-miss", "direct", "a", none()).await;
    bind(&ch, "fanout-hit", "fanout", "x", none()).await;
    bind(&ch, "topic-hit", "topic", "a.*", none()).await;
    bind(&ch, "topic-miss", "topic", "b.#", none()).await;
    let red = table(&[("x-match", s("all")), ("color", s("red"))]);
    bind(&ch, "headers-hit", "headers", "", red).await;
    let blue = table(&[("x-match", s("all")), ("color", s("blue"))]);
    bind(&ch, "headers-miss", "headers", "", blue).await;
    for kind in ["direct", "fanout", "topic", "headers"] {
        assert_eq!(ready(&ch, &format!("{kind}-hit")).await, 0, "{kind} held");
    }
    advance(&b, 500).await;
    for kind in ["direct", "fanout", "topic", "headers"] {
        assert_eq!(ready(&ch, &format!("{kind}-hit")).await, 1, "{kind}");
        assert_eq!(ready(&ch, &format!("{kind}-miss")).await, 0, "{kind}");
    }
}

#[tokio::test]
async fn declarations_are_checked_as_the_plugin_checks_them() {
    let b = broker();
    let conn = connect(&b.amqp_url()).await;
    let cases: [(FieldTable, (u16, &str)); 4] = [
        (
            FieldTable::default(),
            (406, "PRECONDITION_FAILED - Invalid argument, 'x-delayed-type' must be an existing exchange type"),
        ),
        (
            table(&[("x-delayed-type", AMQPValue::LongInt(1))]),
            (406, "PRECONDITION_FAILED - Invalid argument, 'x-delayed-type' must be an existing exchange type"),
        ),
        (
            table(&[("x-delayed-type", s("x-delayed-message"))]),
            (406, "PRECONDITION_FAILED - Invalid argument, 'x-delayed-message' can't be used for 'x-delayed-type'"),
        ),
        (
            table(&[("x-delayed-type", s("x-nope"))]),
            (503, "COMMAND_INVALID - unknown exchange type 'x-nope'"),
        ),
    ];
    for (args, (code, text)) in cases {
        let conn = connect(&b.amqp_url()).await;
        let ch = channel(&conn).await;
        let err = declare_delayed(&ch, "bad", args, false)
            .await
            .expect_err("refused");
        assert_eq!(amqp_error(&err), expected(code, text));
    }
    // Redeclaring with the same arguments is fine; another type is not.
    let ch = channel(&conn).await;
    delayed_of_type(&ch, "ok", "topic", true).await;
    delayed_of_type(&ch, "ok", "topic", true).await;
    let err = within(
        "exchange.declare",
        ch.exchange_declare(
            "ok".into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        ),
    )
    .await
    .expect_err("inequivalent");
    assert_eq!(
        amqp_error(&err),
        expected(406, "PRECONDITION_FAILED - inequivalent arg 'type' for exchange 'ok' in vhost '/': received 'topic' but current is 'x-delayed-message'")
    );
}

#[tokio::test]
async fn the_type_needs_the_plugin() {
    let b = Broker::start();
    let conn = connect(&b.amqp_url()).await;
    let ch = channel(&conn).await;
    let err = declare_delayed(&ch, "dx", table(&[("x-delayed-type", s("direct"))]), false)
        .await
        .expect_err("unknown without the plugin");
    assert_eq!(
        amqp_error(&err),
        expected(
            503,
            "COMMAND_INVALID - unknown exchange type 'x-delayed-message'"
        )
    );
    let types = |b: &Broker| -> Vec<String> {
        api(b.http_port, "/api/overview")["exchange_types"]
            .as_array()
            .expect("exchange_types")
            .iter()
            .map(|t| t["name"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    assert!(!types(&b).contains(&"x-delayed-message".to_string()));
    assert!(types(&broker()).contains(&"x-delayed-message".to_string()));
}

#[tokio::test]
async fn mandatory_delayed_messages_are_confirmed_and_not_returned() {
    let b = broker();
    let conn = connect(&b.amqp_url()).await;
    let ch = confirm_channel(&conn).await;
    delayed_of_type(&ch, "dx", "direct", false).await;
    clock(&b, r#"{"freeze": true}"#).await;
    let c = publish_with(
        &ch,
        "dx",
        "nowhere",
        BasicPublishOptions {
            mandatory: true,
            ..Default::default()
        },
        b"m",
        props(&[("x-delay", AMQPValue::LongInt(100))]),
    )
    .await;
    // Acked on hold, with no basic.return (lapin attaches one to the ack).
    assert!(matches!(c, lapin::Confirmation::Ack(None)), "{c:?}");
    assert_eq!(messages_delayed(&b, "dx"), 1);
    // Released into no binding: dropped, as the plugin drops it.
    advance(&b, 100).await;
    assert_eq!(messages_delayed(&b, "dx"), 0);
    // A mandatory publish routed at once still gets its basic.return.
    let c = publish_with(
        &ch,
        "dx",
        "nowhere",
        BasicPublishOptions {
            mandatory: true,
            ..Default::default()
        },
        b"m",
        BasicProperties::default(),
    )
    .await;
    assert!(matches!(c, lapin::Confirmation::Ack(Some(_))), "{c:?}");
}

#[tokio::test]
async fn the_management_api_shows_the_held_count() {
    let b = broker();
    let conn = connect(&b.amqp_url()).await;
    let ch = confirm_channel(&conn).await;
    delayed_of_type(&ch, "dx", "fanout", true).await;
    clock(&b, r#"{"freeze": true}"#).await;
    for i in 0..4 {
        let p = props(&[("x-delay", AMQPValue::LongInt(1000 + i))]);
        send(&ch, "dx", "", "m", p).await;
    }
    let all = api(b.http_port, "/api/exchanges");
    let dx = all
        .as_array()
        .expect("list")
        .iter()
        .find(|x| x["name"] == "dx")
        .expect("dx listed")
        .clone();
    assert_eq!(dx["type"], "x-delayed-message");
    assert_eq!(dx["messages_delayed"], 4);
    assert_eq!(dx["arguments"]["x-delayed-type"], "fanout");
    // Only delayed exchanges carry the field.
    let direct = api(b.http_port, "/api/exchanges/%2F/amq.direct");
    assert!(direct.get("messages_delayed").is_none(), "{direct}");
    advance(&b, 1001).await;
    assert_eq!(messages_delayed(&b, "dx"), 2);
}

/// Persistent messages held by a durable exchange, confirmed: none lost to SIGKILL or a
/// clean restart, and each routed when due afterwards.
#[tokio::test]
async fn confirmed_durable_delayed_messages_survive_restarts() {
    for kill in [true, false] {
        let b = broker();
        let conn = connect(&b.amqp_url()).await;
        let ch = confirm_channel(&conn).await;
        delayed_of_type(&ch, "dx", "direct", true).await;
        declare_queue(
            &ch,
            "q",
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
        )
        .await;
        bind(&ch, "q", "dx", "k", FieldTable::default()).await;
        clock(&b, r#"{"freeze": true}"#).await;
        let n = 50;
        for i in 0..n {
            let p = props(&[("x-delay", AMQPValue::LongInt(600_000 + i))]).with_delivery_mode(2);
            send(&ch, "dx", "k", &format!("p{i}"), p).await;
        }
        // A transient one is held in memory only.
        send(
            &ch,
            "dx",
            "k",
            "t",
            props(&[("x-delay", AMQPValue::LongInt(600_000))]),
        )
        .await;
        assert_eq!(messages_delayed(&b, "dx"), n + 1);
        drop(conn);
        let b = b.restart(kill);
        assert_eq!(messages_delayed(&b, "dx"), n, "kill={kill}");
        let conn = connect(&b.amqp_url()).await;
        let ch = channel(&conn).await;
        assert_eq!(ready(&ch, "q").await, 0, "still held");
        clock(&b, r#"{"freeze": true}"#).await;
        advance(&b, 600_000 + n as u64).await;
        let want: Vec<String> = (0..n).map(|i| format!("p{i}")).collect();
        let first = get(&ch, "q", false).await.expect("released");
        assert_eq!(x_delay(&first), Some(AMQPValue::LongInt(-600_000)));
        assert!(first.delivery.properties.delivery_mode() == &Some(2));
        within(
            "nack",
            first.delivery.nack(BasicNackOptions {
                requeue: true,
                ..Default::default()
            }),
        )
        .await
        .expect("requeue");
        assert_eq!(drain(&ch, "q").await, want, "kill={kill}");
        assert_eq!(messages_delayed(&b, "dx"), 0);
        // Released records are gone from the store: nothing comes back after another restart.
        drop(conn);
        b.sync_store();
        let b = b.restart(false);
        assert_eq!(messages_delayed(&b, "dx"), 0, "kill={kill}");
    }
}

/// A test suite's vhost reset drops held messages: a redeclared exchange does not get
/// those of the one the reset deleted.
#[tokio::test]
async fn a_vhost_reset_drops_held_messages() {
    let b = broker();
    let conn = connect(&b.amqp_url()).await;
    let ch = confirm_channel(&conn).await;
    delayed_of_type(&ch, "dx", "fanout", true).await;
    clock(&b, r#"{"freeze": true}"#).await;
    let p = props(&[("x-delay", AMQPValue::LongInt(1000))]).with_delivery_mode(2);
    send(&ch, "dx", "", "old", p).await;
    let port = b.http_port;
    let (status, text) = tokio::task::spawn_blocking(move || {
        http_request(port, "POST", "/api/warren/vhosts/%2F/reset", None)
    })
    .await
    .unwrap();
    assert_eq!(status, 200, "{text}");
    delayed_of_type(&ch, "dx", "fanout", true).await;
    assert_eq!(messages_delayed(&b, "dx"), 0);
    declare_queue(&ch, "q", QueueDeclareOptions::default()).await;
    bind(&ch, "q", "dx", "", FieldTable::default()).await;
    advance(&b, 1000).await;
    assert_eq!(ready(&ch, "q").await, 0);
    // Nor after a restart: the stored record went with it.
    drop(conn);
    b.sync_store();
    let b = b.restart(true);
    assert_eq!(messages_delayed(&b, "dx"), 0);
}

/// The alternate exchange gets a held message only if it is unroutable when released
/// (the plugin hands it over at publish time as well).
#[tokio::test]
async fn the_alternate_exchange_is_consulted_at_release() {
    let b = broker();
    let conn = connect(&b.amqp_url()).await;
    let ch = confirm_channel(&conn).await;
    within(
        "exchange.declare",
        ch.exchange_declare(
            "ae".into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .expect("ae");
    declare_queue(&ch, "aeq", QueueDeclareOptions::default()).await;
    bind(&ch, "aeq", "ae", "", FieldTable::default()).await;
    let args = table(&[
        ("x-delayed-type", s("direct")),
        ("alternate-exchange", s("ae")),
    ]);
    declare_delayed(&ch, "dx", args, false).await.expect("dx");
    declare_queue(&ch, "q", QueueDeclareOptions::default()).await;
    bind(&ch, "q", "dx", "k", FieldTable::default()).await;
    clock(&b, r#"{"freeze": true}"#).await;
    send(
        &ch,
        "dx",
        "k",
        "routed",
        props(&[("x-delay", AMQPValue::LongInt(10))]),
    )
    .await;
    send(
        &ch,
        "dx",
        "none",
        "alt",
        props(&[("x-delay", AMQPValue::LongInt(10))]),
    )
    .await;
    assert_eq!(ready(&ch, "aeq").await, 0, "not while held");
    advance(&b, 10).await;
    assert_eq!(drain(&ch, "q").await, ["routed"]);
    assert_eq!(drain(&ch, "aeq").await, ["alt"]);
}
