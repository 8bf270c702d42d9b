//! Messaging model: exchanges and routing, queues and their lifecycles, publishing with
//! returns, confirms and transactions, consuming with acks, qos and cancellation, message
//! properties and bodies, direct reply-to and CC/BCC. The expected texts are RabbitMQ 3.10's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures_lite::StreamExt;
use lapin::{
    options::*,
    types::{AMQPValue, ByteArray, DecimalValue, FieldArray, FieldTable, LongString},
    BasicProperties, Channel, Confirmation, ExchangeKind,
};
use warren_integration::{client::*, Broker};

async fn declare_exchange(ch: &Channel, name: &str, kind: ExchangeKind) {
    declare_exchange_with(
        ch,
        name,
        kind,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await;
}

async fn declare_exchange_with(
    ch: &Channel,
    name: &str,
    kind: ExchangeKind,
    options: ExchangeDeclareOptions,
    args: FieldTable,
) {
    within(
        "exchange.declare",
        ch.exchange_declare(name.into(), kind, options, args),
    )
    .await
    .expect("exchange.declare");
}

async fn bind(ch: &Channel, queue: &str, exchange: &str, key: &str) {
    bind_with(ch, queue, exchange, key, FieldTable::default()).await;
}

async fn bind_with(ch: &Channel, queue: &str, exchange: &str, key: &str, args: FieldTable) {
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
    .expect("queue.bind");
}

async fn exchange_bind(ch: &Channel, destination: &str, source: &str, key: &str) {
    within(
        "exchange.bind",
        ch.exchange_bind(
            destination.into(),
            source.into(),
            key.into(),
            ExchangeBindOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .expect("exchange.bind");
}

/// Publishes `m0`..`m{n-1}` to `queue` through the default exchange.
async fn fill(ch: &Channel, queue: &str, n: usize) {
    for i in 0..n {
        publish(ch, "", queue, format!("m{i}").as_bytes()).await;
    }
}

async fn passive_exchange(ch: &Channel, name: &str) -> lapin::Result<()> {
    within(
        "passive exchange.declare",
        ch.exchange_declare(
            name.into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        ),
    )
    .await
}

fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert((*k).into(), v.clone());
    }
    t
}

fn long_str(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

// ---------------------------------------------------------------------------------------
// exchanges and routing
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn default_exchange_routes_by_queue_name() {
    let broker = Broker::start();
    let conn = connect(&broker.amqp_url()).await;
    let ch = confirm_channel(&conn).await;
    let q1 = exclusive_queue(&ch).await;
    let q2 = exclusive_queue(&ch).await;
    publish(&ch, "", &q1, b"for q1").await;
    publish(&ch, "", &q2, b"for q2").await;
    // Unroutable, not mandatory: silently dropped.
    publish(&ch, "", "warren-no-such-queue", b"lost").await;
    assert_eq!(drain(&ch, &q1).await, ["for q1"]);
    assert_eq!(drain(&ch, &q2).await, ["for q2"]);
    publish(&ch, "", &q1, b"again").await;
    let m = get(&ch, &q1, true).await.expect("message");
    assert_eq!(m.delivery.exchange.as_str(), "");
    assert_eq!(m.delivery.routing_key.as_str(), q1);
}

#[tokio::test]
async fn direct_exchange_routes_by_exact_key() {
    let broker = Broker::start();
    let conn = connect(&broker.amqp_url()).await;
    let ch = confirm_channel(&conn).await;
    declare_exchange(&ch, "direct-x", ExchangeKind::Direct).await;
    let (q1, q2, q3) = (
        exclusive_queue(&ch).await,
        exclusive_queue(&ch).await,
        exclusive_queue(&ch).await,
    );
    bind(&ch, &q1, "direct-x", "k1").await;
    bind(&ch, &q2, "direct-x", "k2").await;
    bind(&ch, &q3, "direct-x", "k1").await;
    bind(&ch, &q3, "direct-x", "k2").await;
    publish(&ch, "direct-x", "k1", b"one").await;
    publish(&ch, "direct-x", "k2", b"two").await;
    publish(&ch, "direct-x", "k3", b"three").await;
    publish(&ch, "direct-x", "K1", b"case").await;
    assert_eq!(drain(&ch, &q1).await, ["one"]);
    assert_eq!(drain(&ch, &q2).await, ["two"]);
    assert_eq!(drain(&ch, &q3).await, ["one", "two"]);
    // The pre-declared amq.direct behaves the same.
    bind(&ch, &q1, "amq.direct", "rk").await;
    publish(&ch, "amq.direct", "rk", b"via amq.direct").await;
    let m = get(&ch, &q1, true).await.expect("message");
    assert_eq!(m.delivery.exchange.as_str(), "amq.direct");
    assert_eq!(m.delivery.routing_key.as_str(), "rk");
}

#[tokio::test]
async fn fanout_exchange_routes_to_all_bound_queues() {
    let broker = Broker::start();
    let conn = connect(&broker.amqp_url()).await;
    let ch = confirm_channel(&conn).await;
    declare_exchange(&ch, "fan", ExchangeKind::Fanout).await;
    let (q1, q2, unbound) = (
        exclusive_queue(&ch).await,
        exclusive_queue(&ch).await,
        exclusive_queue(&ch).await,
    );
    bind(&ch, &q1, "fan", "").await;
    bind(&ch, &q2, "fan", "ignored-key").await;
    publish(&ch, "fan", "whatever", b"a").await;
    publish(&ch, "fan", "", b"b").await;
    assert_eq!(drain(&ch, &q1).await, ["a", "b"]);
    assert_eq!(drain(&ch, &q2).await, ["a", "b"]);
    assert!(drain(&ch, &unbound).await.is_empty());
}

#[tokio::test]
async fn topic_exchange_wildcards() {
    let broker = Broker::start();
    let conn = connect(&broker.amqp_url()).await;
    let ch = confirm_channel(&conn).await;
    declare_exchange(&ch, "topics", ExchangeKind::Topic).await;
    let patterns = ["*", "a.*", "a.#", "a.#.#.b", "#", "a.b.c"];
    let mut queues = Vec::new();
    for p in patterns {
        let q = exclusive_queue(&ch).await;
        bind(&ch, &q, "topics", p).await;
        queues.push(q);
    }
    let keys = ["a", "a.b", "a.x.b", "a.x.y.b", "a.b.c", "b", "x.y", ""];
    for k in keys {
        publish(&ch, "topics", k, format!("<{k}>").as_bytes()).await;
    }
    let expect: [(&str, &[&str]); 6] = [
        ("*", &["<a>", "<b>"]),
        ("a.*", &["<a.b>"]),
        ("a.#", &["<a>", "<a.b>", "<a.x.b>", "<a.x.y.b>", "<a.b.c>"]),
        ("a.#.#.b", &["<a.b>", "<a.x.b>", "<a.x.y.b>"]),
        (
            "#",
            &[
                "<a>",
                "<a.b>",
                "<a.x.b>",
                "<a.x.y.b>",
                "<a.b.c>",
                "<b>",
                "<x.y>",
                "<>",
            ],
        ),
        ("a.b.c", &["<a.b.c>"]),
    ];
    for ((pattern, want), q) in expect.iter().zip(&queues) {
        assert_eq!(&drain(&ch, q).await, want, "binding {pattern:?}");
    }
}

#[tokio::test]
async fn headers_exchange_all_and_any() {
    let broker = Broker::start();
    let conn = connect(&broker.amqp_url()).await;
    let ch = confirm_channel(&conn).await;
    declare_exchange(&ch, "hdrs", ExchangeKind::Headers).await;
    let (q_all, q_any, q_default) = (
        exclusive_queue(&ch).await,
        exclusive_queue(&ch).await,
        exclusive_queue(&ch).await,
    );
    bind_with(
        &ch,
        &q_all,
        "hdrs",
        "",
        table(&[
            ("x-match", long_str("all")),
            ("h1", long_str("v1")),
            ("h2", long_str("v2")),
        ]),
    )
    .await;
    bind_with(
        &ch,
        &q_any,
        "hdrs",
        "",
        table(&[
            ("x-match", long_str("any")),
            ("h1", long_str("v1")),
            ("h2", long_str("v2")),
        ]),
    )
    .await;
    // Without x-match the default is "all".
    bind_with(
        &ch,
        &q_default,
        "hdrs",
        "",
        table(&[("h1", long_str("v1"))]),
    )
    .await;
    let cases: [(&str, FieldTable); 5] = [
        (
            "both",
            table(&[
                ("h1", long_str("v1")),
                ("h2", long_str("v2")),
                ("extra", long_str("x")),
            ]),
        ),
        ("h1-only", table(&[("h1", long_str("v1"))])),
        ("h2-only", table(&[("h2", long_str("v2"))])),
        (
            "wrong-values",
            table(&[("h1", long_str("nope")), ("h2", long_str("nope"))]),
        ),
        ("no-headers", FieldTable::default()),
    ];
    for (body, headers) in cases {
        let props = if headers.inner().is_empty() {
            BasicProperties::default()
        } else {
            BasicProperties::default().with_headers(headers)
        };
        let c = publish_with(
            &ch,
            "hdrs",
            "routing-key-is-ignored",
            BasicPublishOptions::default(),
            body.as_bytes(),
            props,
        )
        .await;
        assert_eq!(c, Confirmation::Ack(None));
    }
    assert_eq!(drain(&ch, &q_all).await, ["both"]);
    assert_eq!(drain(&ch, &q_any).await, ["both", "h1-only", "h2-only"]);
    assert_eq!(drain(&ch, &q_default).await, ["both", "h1-only"]);
}

#[tokio::test]
async fn exchange_to_exchange_bindings() {
    let broker = Broker::start();
    let conn = connect(&broker.amqp_url()).await;
    let ch = confirm_channel(&conn).await;
    declare_exchange(&ch, "e2e-src", ExchangeKind::Direct).await;
    declare_exchange(&ch, "e2e-dst", ExchangeKind::Fanout).await;
    let q = exclusive_queue(&ch).await;
    bind(&ch, &q, "e2e-dst", "").await;
    exchange_bind(&ch, "e2e-dst", "e2e-src", "k").await;
    publish(&ch, "e2e-src", "k", b"forwarded").await;
    publish(&ch, "e2e-src", "other", b"not forwarded").await;
    let m = get(&ch, &q, true).await.expect("forwarded message");
    assert_eq!(m.delivery.data, b"forwarded");
    // The delivery reports the exchange the message was published to.
    assert_eq!(m.delivery.exchange.as_str(), "e2e-src");
    assert_eq!(m.delivery.routing_key.as_str(), "k");
    assert!(get(&ch, &q, true).await.is_none());

    within(
        "exchange.unbind",
        ch.exchange_unbind(
            "e2e-dst".into(),
            "e2e-src".into(),
            "k".into(),
            ExchangeUnbindOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .expect("exchange.unbind");
    publish(&ch, "e2e-src", "k", b"after unbind").await;
    assert!(drain(&ch, &q).await.is_empty());
}

#[tokio::test]
async fn exchange_binding_cycle_delivers_once() {
    let broker = Broker::start();
    let conn = connect(&broker.amqp_url()).await;
    let ch = confirm_channel(&conn).await;
    declare_exchange(&ch, "cycle-a", ExchangeKind::Fanout).await;
    declare_exchange(&ch, "cycle-b", ExchangeKind::Fanout).await;
    exchange_bind(&ch, "cycle-b", "cycle-a", "").await;
    exchange_bind(&ch, "cycle-a", "cycle-b", "").await;
    let qa = exclusive_queue(&ch).await;
    let qb = exclusive_queue(&ch).await;
    bind(&ch, &qa, "cycle-a", "").await;
    bind(&ch, &qb, "cycle-b", "").await;
    publish(&ch, "cycle-a", "", b"into a").await;
    publish(&ch, "cycle-b", "", b"into b").await;
    assert_eq!(drain(&ch, &qa).await, ["into a", "into b"]);
    assert_eq!(drain(&ch, &qb).await, ["into a", "into b"]);
}

#[tokio::test]
async fn alternate_exchange_receives_unroutable_messages() {
    let broker = Broker::start();
    let conn = connect(&broker.amqp_url()).await;
    let ch = confirm_channel(&conn).await;
    declare_exchange(&ch, "ae", ExchangeKind::Fanout).await;
    declare_exchange_with(
        &ch,
        "with-ae",
        ExchangeKind::Direct,
        ExchangeDeclareOptions::default(),
        table(&[("alternate-exchange", long_str("ae"))]),
    )
    .await;
    let q_ae = exclusive_queue(&ch).await;
    let q_k = exclusive_queue(&ch).await;
    bind(&ch, &q_ae, "ae", "").await;
    bind(&ch, &q_k, "with-ae", "k").await;
    publish(&ch, "with-ae", "k", b"routed").await;
    publish(&ch, "with-ae", "other", b"unroutable").await;
    // Mandatory is satisfied by the alternate exchange: no basic.return.
    let c = publish_with(
        &ch,
        "with-ae",
        "other",
        BasicPublishOptions {
            mandatory: true,
            ..Default::default()
        },
        b"mandatory",
        BasicProperties::default(),
    )
    .await;
    assert_eq!(c, Confirmation::Ack(None));
    assert_eq!(drain(&ch, &q_k).await, ["routed"]);
    let m = get(&ch, &q_ae, true).await.expect("message in AE queue");
    assert_eq!(m.delivery.data, b"unroutable");
    assert_eq!(m.delivery.exchange.as_str(), "with-ae");
    assert_eq!(m.delivery.routing_key.as_str(), "other");
    assert_eq!(drain(&ch, &q_ae).await, ["mandatory"]);
}

#[tokio::test]
async fn auto_delete_exchange_removed_after_last_unbind() {
    let broker = Broker::start();
    let conn = connect(&broker.amqp_url()).await;
    let ch = channel(&conn).await;
    declare_exchange_with(
        &ch,
        "ad-x",
        ExchangeKind::Direct,
        ExchangeDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await;
    let q = exclusive_queue(&ch).await;
    bind(&ch, &q, "ad-x", "k1").await;
    bind(&ch, &q, "ad-x", "k2").await;
    let unbind = |key: &'static str| {
        let ch = ch.clone();
        let q = q.clone();
        async move {
            within(
                "queue.unbind",
                ch.queue_unbind(
                    q.as_str().into(),
                    "ad-x".into(),
                    key.into(),
                    FieldTable::default(),
                ),
            )
            .await
            .expect("queue.unbind");
        }
    };
    unbind("k1").await;
    // One binding left: still there.
    passive_exchange(&ch, "ad-x")
        .await
        .expect("exchange still exists");
    unbind("k2").await;
    let err = passive_exchange(&ch, "ad-x")
        .await
        .expect_err("auto-delete exchange must be gone");
    assert_eq!(
        amqp_error(&err),
        expected(404, "NOT_FOUND - no exchange 'ad-x' in vhost '/'")
    );
}

#[tokio::test]
async fn exchange_redeclare_with_other_type_is_406() {
    let broker = Broker::start();
    let conn = connect(&broker.amqp_url()).await;
    let ch = channel(&conn).await;
    declare_exchange(&ch, "x", ExchangeKind::Direct).await;
    // An equivalent redeclare is fine.
    declare_exchange(&ch, "x", ExchangeKind::Direct).await;
    let err = within(
        "exchange.declare",
        ch.exchange_declare(
            "x".into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .expect_err("inequivalent type must fail");
    assert_eq!(
        amqp_error(&err),
        expected(
            406,
            "PRECONDITION_FAILED - inequivalent arg 'type' for exchange 'x' in vhost '/': \
             received 'fanout' but current is 'direct'"
        )
    );
    assert!(!ch.status().connected());
    // The exchange is unchanged.
    let ch2 = channel(&conn).await;
    declare_exchange(&ch2, "x", ExchangeKind::Direct).await;
}

#[tokio::test]
async fn exchange_amq_prefix_is_reserved_403() {
    let broker = Broker::start();
    let conn = connect(&broker.amqp_url()).await;
    let ch = channel(&conn).await;
    let err = within(
        "exchange.declare",
        ch.exchange_declare(
            "amq.foo".into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .expect_err("amq.* names are reserved");
    assert_eq!(
        amqp_error(&err),
        expected(
            403,
            "ACCESS_REFUSED - exchange name 'amq.foo' contains reserved prefix 'amq.*'"
        )
    );
    assert!(conn.status().connected());
}

// ---------------------------------------------------------------------------------------
// queues
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn server_named_queue_and_declare_ok_counts() {
    let broker = Broker::start();
    let conn = connect(&broker.amqp_url()).await;
    let ch = confirm_channel(&conn).await;
    let q = declare_queue(
        &ch,
        "",
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
    )
    .await;
    let name = q.name().to_string();
    assert!(name.starts_with("amq.gen-"), "{name}");
    assert_eq!(name.len(), "amq.gen-".len() + 22, "{name}");
    assert!(
        name["amq.gen-".len()..]
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
        "{name}"
    );
    assert_eq!((q.message_count(), q.consumer_count()), (0, 0));
    let other = exclusive_queue(&ch).await;
    assert_ne!(other, name);

    declare_queue(&ch, "counted", QueueDeclareOptions::default()).await;
    fill(&ch, "counted", 3).await;
    let ok = declare_queue(&ch, "counted", QueueDeclareOptions::default()).await;
    assert_eq!((ok.message_count(), ok.consumer_count()), (3, 0));

    // One consumer holding one unacknowledged message: message_count counts ready ones.
    let cons_ch = channel(&conn).await;
    within(
        "basic.qos",
        cons_ch.basic_qos(1, BasicQosOptions::default()),
    )
    .await
    .expect("basic.qos");
    let mut consumer = consume(&cons_ch, "counted", "c1", false).await;
    let d = next_delivery(&mut consumer).await;
    assert_eq!(d.data, b"m0");
    let ok = passive_queue(&ch, "counted")
        .await
        .expect("passive declare");
    assert_eq!((ok.message_count(), ok.consumer_count()), (2, 1));
}

#[tokio::test]
async fn exclusive_queue_is_locked_to_its_connection() {
    let broker = Broker::start();
    let owner = connect(&broker.amqp_url()).await;
    let owner_ch = channel(&owner).await;
    declare_queue(
        &owner_ch,
        "locked",
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
    )
    .await;
    let locked = expected(
        405,
        "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue 'locked' in vhost '/'. \
         It could be originally declared on another connection or the exclusive property value \
         does not match that of the original declaration.",
    );

    let other = connect(&broker.amqp_url()).await;
    let ch = channel(&other).await;
    let err = within(
        "queue.declare",
        ch.queue_declare(
            "locked".into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .expect_err("declaring another connection's exclusive queue must fail");
    assert_eq!(amqp_error(&err), locked);
    let ch = channel(&other).await;
    let err = passive_queue(&ch, "locked")
        .await
        .expect_err("passive declare of another connection's exclusive queue must fail");
    assert_eq!(amqp_error(&err), locked);
    // Only channels failed; both connections carry on, and the owner still uses its queue.
    assert!(other.status().connected());
    publish(&owner_ch, "", "locked", b"mine").await;
    assert_eq!(drain(&owner_ch, "locked").await, ["mine"]);
}

#[tokio::test]
async fn exclusive_queue_deleted_when_connection_closes() {
    let broker = Broker::start();
    let owner = connect(&broker.amqp_url()).await;
    let owner_ch = channel(&owner).await;
    declare_queue(
        &owner_ch,
        "excl",
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
    )
    .await;
    let conn = connect(&broker.amqp_url()).await;
    let ch = channel(&conn).await;
    within("connection.close", owner.close(200, "bye".into()))
        .await
        .expect("connection.close");
    let err = passive_queue(&ch, "excl")
        .await
        .expect_err("exclusive queue must be gone with its connection");
    assert_eq!(
        amqp_error(&err),
        expected(404, "NOT_FOUND - no queue 'excl' in vhost '/'")
    );
}

#[tokio::test]
async fn auto_delete_queue_deleted_after_last_consumer_cancels() {
    let broker = Broker::start();
    let conn = connect(&broker.amqp_url()).await;
    let ch = channel(&conn).await;
    declare_queue(
        &ch,
        "ad-q",
        QueueDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
    )
    .await;
    let _c1 = consume(&ch, "ad-q", "t1", false).await;
    let _c2 = consume(&ch, "ad-q", "t2", false).await;
    within(
        "basic.cancel",
        ch.basic_cancel("t1".into(), BasicCancelOptions::default()),
    )
    .await
    .expect("basic.cancel");
    let ok = passive_queue(&ch, "ad-q").await.expect("still there");
    assert_eq!(ok.consumer_count(), 1);
    within(
        "basic.cancel",
        ch.basic_cancel("t2".into(), BasicCancelOptions::default()),
    )
    .await
    .expect("basic.cancel");
    let err = passive_queue(&ch, "ad-q")
        .await
        .expect_err("auto-delete queue must be gone");
    assert_eq!(
        amqp_error(&err),
        expected(404, "NOT_FOUND - no queue 'ad-q' in vhost '/'")
    );
}

#[tokio::test]
async fn purge_returns_message_count() {
    let broker = Broker::start();
    let conn = connect(&broker.amqp_url()).await;
    let ch = confirm_channel(&conn).await;
    let q = exclusive_queue(&ch).await;
    fill(&ch, &q, 5).await;
    let purged = within(
        "queue.purge",
        ch.queue_purge(q.as_str().into(), QueuePurgeOptions::default()),
    )
    .await
    .expect("queue.purge");
    assert_eq!(purged, 5);
    assert!(get(&ch, &q, true).await.is_none());
    let purged = within(
        "queue.purge",
        ch.queue_purge(q.as_str().into(), QueuePurgeOptions::default()),
    )
    .await
    .expect("queue.purge");
    assert_eq!(purged, 0);
}

#[tokio::test]
async fn delete_if_unused_and_if_empty() {
    let broker = Broker::start();
    let conn = connect(&broker.amqp_url()).await;
    let ch = confirm_channel(&conn).await;
    let q = exclusive_queue(&ch).await;
    let _consumer = consume(&ch, &q, "busy", false).await;
    let err = within(
        "queue.delete",
        ch.queue_delete(
            q.as_str().into(),
            QueueDeleteOptions {
                if_unused: true,
                ..Default::default()
            },
        ),
    )
    .await
    .expect_err("queue with a consumer is in use");
    assert_eq!(
        amqp_error(&err),
        (
            406,
            format!("PRECONDITION_FAILED - queue '{q}' in vhost '/' in use")
        )
    );

    // The consumer went away with its channel: now the queue is unused.
    let ch = confirm_channel(&conn).await;
    fill(&ch, &q, 2).await;
    let err = within(
        "queue.delete",
        ch.queue_delete(
            q.as_str().into(),
            QueueDeleteOptions {
                if_empty: true,
                ..Default::default()
            },
        ),
    )
    .await
    .expect_err("queue with messages is not empty");
    assert_eq!(
        amqp_error(&err),
        (
            406,
            format!("PRECONDITION_FAILED - queue '{q}' in vhost '/' not empty")
        )
    );

    let ch = channel(&conn).await;
    let count = within(
        "queue.delete",
        ch.queue_delete(
            q.as_str().into(),
            QueueDeleteOptions {
                if_unused: true,
                ..Default::default()
            },
        ),
    )
    .await
    .expect("unused queue can be deleted");
    assert_eq!(count, 2);
    let err = passive_queue(&ch, &q).await.expect_err("queue deleted");
    assert_eq!(amqp_error(&err).0, 404);
}

// ---------------------------------------------------------------------------------------
// publishing: returns, confirms, transactions
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn mandatory_unroutable_publish_is_returned() {
    let broker = Broker::start();
    let conn = connect(&broker.amqp_url()).await;
    let ch = confirm_channel(&conn).await;
    let props = BasicProperties::default().with_message_id("ret-1".into());
    let c = publish_with(
        &ch,
        "amq.direct",
        "warren-nobody-bound-here",
        BasicPublishOptions {
            mandatory: true,
            ..Default::default()
        },
        b"returned body",
        props.clone(),
    )
    .await;
    // RabbitMQ sends basic.return and then basic.ack (an unroutable message is "handled").
    assert!(c.is_ack(), "{c:?}");
    let ret = c.take_message().expect("basic.return");
    assert_eq!(ret.reply_code, 312);
    assert_eq!(ret.reply_text.as_str(), "NO_ROUTE");
    assert_eq!(ret.delivery.exchange.as_str(), "amq.direct");
    assert_eq!(
        ret.delivery.routing_key.as_str(),
        "warren-nobody-bound-here"
    );
    assert_eq!(ret.delivery.data, b"returned body");
    assert_eq!(ret.delivery.properties, props);

    // Through the default exchange, too.
    let c = publish_with(
        &ch,
        "",
        "warren-no-such-queue",
        BasicPublishOptions {
            mandatory: true,
            ..Default::default()
        },
        b"x",
        BasicProperties::default(),
    )
    .await;
    let ret = c.take_message().expect("basic.return");
    assert_eq!(
        (
            ret.reply_code,
            ret.reply_text.as_str(),
            ret.delivery.exchange.as_str(),
            ret.delivery.routing_key.as_str()
        ),
        (312, "NO_ROUTE", "", "warren-no-such-queue")
    );

    // A routable mandatory message is simply acked.
    let q = exclusive_queue(&ch).await;
    let c = publish_with(
        &ch,
        "",
        &q,
        BasicPublishOptions {
            mandatory: true,
            ..Default::default()
        },
        b"routed",
        BasicProperties::default(),
    )
    .await;
    assert_eq!(c, Confirmation::Ack(None));
}

#[tokio::test]
async fn ten_thousand_publisher_confirms_all_acked() {
    let broker = Broker::start();
    let conn = connect(&broker.amqp_url()).await;
    let ch = confirm_channel(&conn).await;
    let q = exclusive_queue(&ch).await;
    let mut confirms = Vec::with_capacity(10_000);
    for i in 0..10_000u32 {
        confirms.push(
            within(
                "basic.publish",
                ch.basic_publish(
                    "".into(),
                    q.as_str().into(),
                    BasicPublishOptions::default(),
                    &i.to_be_bytes(),
                    BasicProperties::default(),
                ),
            )
            .await
            .expect("basic.publish"),
        );
    }
    let all = tokio::time::timeout(Duration::from_secs(60), async {
        let mut out = Vec::with_capacity(confirms.len());
        for c in confirms {
            out.push(c.await.expect("confirm"));
        }
        out
    })
    .await
    .expect("all confirms in time");
    assert_eq!(all.len(), 10_000);
    assert!(all.iter().all(|c| *c == Confirmation::Ack(None)));
    let ok = passive_queue(&ch, &q).await.expect("passive declare");
    assert_eq!(ok.message_count(), 10_000);
}

#[tokio::test]
async fn tx_commit_delivers_and_rollback_discards() {
    let broker = Broker::start();
    let conn = connect(&broker.amqp_url()).await;
    let observer = channel(&conn).await;
    let q = exclusive_queue(&observer).await;
    let tx = channel(&conn).await;
    within("tx.select", tx.tx_select())
        .await
        .expect("tx.select");

    publish(&tx, "", &q, b"t1").await;
    publish(&tx, "", &q, b"t2").await;
    sync(&tx).await.expect("sync");
    assert!(
        get(&observer, &q, true).await.is_none(),
        "uncommitted messages are not enqueued"
    );
    within("tx.commit", tx.tx_commit())
        .await
        .expect("tx.commit");
    assert_eq!(drain(&observer, &q).await, ["t1", "t2"]);

    publish(&tx, "", &q, b"t3").await;
    within("tx.rollback", tx.tx_rollback())
        .await
        .expect("tx.rollback");
    within("tx.commit", tx.tx_commit())
        .await
        .expect("tx.commit");
    assert!(drain(&observer, &q).await.is_empty(), "rolled back");

    // Acks are transactional too: a rolled-back ack leaves the message unacked.
    publish(&observer, "", &q, b"t4").await;
    let m = get(&tx, &q, false).await.expect("t4");
    m.delivery
        .ack(BasicAckOptions::default())
        .await
        .expect("basic.ack");
    within("tx.rollback", tx.tx_rollback())
        .await
        .expect("tx.rollback");
    within(
        "basic.recover",
        tx.basic_recover(BasicRecoverOptions { requeue: true }),
    )
    .await
    .expect("basic.recover");
    let m = get(&observer, &q, true).await.expect("t4 requeued");
    assert_eq!(
        (m.delivery.data.as_slice(), m.delivery.redelivered),
        (&b"t4"[..], true)
    );
}

// ---------------------------------------------------------------------------------------
// consuming and acknowledgements
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn prefetch_limits_unacked_deliveries() {
    let broker = Broker::start();
    let conn = connect(&broker.amqp_url()).await;
    let publisher = confirm_channel(&conn).await;
    let q = exclusive_queue(&publisher).await;
    fill(&publisher, &q, 25).await;
    let ch = channel(&conn).await;
    within("basic.qos", ch.basic_qos(10, BasicQosOptions::default()))
        .await
        .expect("basic.qos");
    let mut consumer = consume(&ch, &q, "prefetch", false).await;
    let mut got = Vec::new();
    for _ in 0..10 {
        got.push(next_delivery(&mut consumer).await);
    }
    assert_eq!(
        got.iter().map(body_str).collect::<Vec<_>>(),
        (0..10).map(|i| format!("m{i}")).collect::<Vec<_>>()
    );
    assert_no_delivery(&mut consumer).await;
    // Acking one frees exactly one slot.
    got[0]
        .ack(BasicAckOptions::default())
        .await
        .expect("basic.ack");
    let d = next_delivery(&mut consumer).await;
    assert_eq!(body_str(&d), "m10");
    assert_no_delivery(&mut consumer).await;
    // Acking everything outstanding lets the next ten through.
    d.ack(BasicAckOptions { multiple: true })
        .await
        .expect("basic.ack multiple");
    for i in 11..21 {
        assert_eq!(
            body_str(&next_delivery(&mut consumer).await),
            format!("m{i}")
        );
    }
    assert_no_delivery(&mut consumer).await;
}

#[tokio::test]
async fn round_robin_between_two_consumers() {
    let broker = Broker::start();
    let conn = connect(&broker.amqp_url()).await;
    let ch1 = confirm_channel(&conn).await;
    let ch2 = channel(&conn).await;
    let q = exclusive_queue(&ch1).await;
    let mut a = consume(&ch1, &q, "a", true).await;
    let mut b = consume(&ch2, &q, "b", true).await;
    fill(&ch1, &q, 10).await;
    let mut got_a = Vec::new();
    let mut got_b = Vec::new();
    for _ in 0..5 {
        got_a.push(body_str(&next_delivery(&mut a).await));
        got_b.push(body_str(&next_delivery(&mut b).await));
    }
    assert_no_delivery(&mut a).await;
    assert_no_delivery(&mut b).await;
    let mut both = [got_a, got_b];
    both.sort();
    assert_eq!(
        both,
        [
            ["m0", "m2", "m4", "m6", "m8"].map(String::from).to_vec(),
            ["m1", "m3", "m5", "m7", "m9"].map(String::from).to_vec(),
        ]
    );
}

#[tokio::test]
async fn ack_multiple() {
    let broker = Broker::start();
    let conn = connect(&broker.amqp_url()).await;
    let ch = confirm_channel(&conn).await;
    let q = exclusive_queue(&ch).await;
    fill(&ch, &q, 4).await;
    let mut msgs = Vec::new();
    for _ in 0..4 {
        msgs.push(get(&ch, &q, false).await.expect("message"));
    }
    let tags: Vec<u64> = msgs.iter().map(|m| m.delivery.delivery_tag).collect();
    assert_eq!(tags, [1, 2, 3, 4]);
    msgs[2]
        .delivery
        .ack(BasicAckOptions { multiple: true })
        .await
        .expect("basic.ack multiple");
    sync(&ch).await.expect("sync");
    within("channel.close", ch.close(200, "bye".into()))
        .await
        .expect("channel.close");
    // Only m3 was still unacked: it alone comes back.
    let ch = channel(&conn).await;
    let m = get(&ch, &q, true).await.expect("m3");
    assert_eq!(
        (m.delivery.data.as_slice(), m.delivery.redelivered),
        (&b"m3"[..], true)
    );
    assert!(get(&ch, &q, true).await.is_none());
}

#[tokio::test]
async fn nack_with_requeue_redelivers_in_original_order() {
    let broker = Broker::start();
    let conn = connect(&broker.amqp_url()).await;
    let ch = confirm_channel(&conn).await;
    let q = exclusive_queue(&ch).await;
    fill(&ch, &q, 4).await;
    let mut msgs = Vec::new();
    for _ in 0..3 {
        msgs.push(get(&ch, &q, false).await.expect("message"));
    }
    msgs[2]
        .delivery
        .nack(BasicNackOptions {
            multiple: true,
            requeue: true,
        })
        .await
        .expect("basic.nack");
    let mut again = Vec::new();
    while let Some(m) = get(&ch, &q, true).await {
        again.push((
            String::from_utf8(m.delivery.data.clone()).unwrap(),
            m.delivery.redelivered,
        ));
    }
    assert_eq!(
        again,
        [
            ("m0".to_string(), true),
            ("m1".to_string(), true),
            ("m2".to_string(), true),
            ("m3".to_string(), false),
        ]
    );

    // A consumer sees the same: a nacked delivery comes back first, flagged redelivered.
    fill(&ch, &q, 2).await;
    let mut consumer = consume(&ch, &q, "c", false).await;
    let d0 = next_delivery(&mut consumer).await;
    let d1 = next_delivery(&mut consumer).await;
    assert_eq!((body_str(&d0), d0.redelivered), ("m0".into(), false));
    assert_eq!((body_str(&d1), d1.redelivered), ("m1".into(), false));
    d0.nack(BasicNackOptions {
        multiple: false,
        requeue: true,
    })
    .await
    .expect("basic.nack");
    let r = next_delivery(&mut consumer).await;
    assert_eq!((body_str(&r), r.redelivered), ("m0".into(), true));
}

#[tokio::test]
async fn reject_without_requeue_drops() {
    let broker = Broker::start();
    let conn = connect(&broker.amqp_url()).await;
    let ch = confirm_channel(&conn).await;
    let q = exclusive_queue(&ch).await;
    fill(&ch, &q, 3).await;
    let m0 = get(&ch, &q, false).await.expect("m0");
    m0.delivery
        .reject(BasicRejectOptions { requeue: false })
        .await
        .expect("basic.reject");
    let m1 = get(&ch, &q, false).await.expect("m1");
    assert_eq!(
        (m1.delivery.data.as_slice(), m1.delivery.redelivered),
        (&b"m1"[..], false)
    );
    m1.delivery
        .nack(BasicNackOptions {
            multiple: false,
            requeue: false,
        })
        .await
        .expect("basic.nack");
    let m2 = get(&ch, &q, false).await.expect("m2");
    m2.delivery
        .reject(BasicRejectOptions { requeue: true })
        .await
        .expect("basic.reject requeue");
    within(
        "basic.recover",
        ch.basic_recover(BasicRecoverOptions { requeue: true }),
    )
    .await
    .expect("basic.recover");
    let left = get(&ch, &q, true).await.expect("m2 requeued");
    assert_eq!(
        (left.delivery.data.as_slice(), left.delivery.redelivered),
        (&b"m2"[..], true)
    );
    assert!(get(&ch, &q, true).await.is_none());
    let ok = passive_queue(&ch, &q).await.expect("passive declare");
    assert_eq!(ok.message_count(), 0);
}

#[tokio::test]
async fn basic_get_and_get_empty() {
    let broker = Broker::start();
    let conn = connect(&broker.amqp_url()).await;
    let ch = confirm_channel(&conn).await;
    let q = exclusive_queue(&ch).await;
    assert!(get(&ch, &q, false).await.is_none(), "get-empty");
    fill(&ch, &q, 2).await;
    let m = get(&ch, &q, false).await.expect("m0");
    assert_eq!(m.delivery.data, b"m0");
    assert_eq!(m.message_count, 1);
    assert_eq!(m.delivery.delivery_tag, 1);
    assert!(!m.delivery.redelivered);
    assert_eq!(m.delivery.exchange.as_str(), "");
    assert_eq!(m.delivery.routing_key.as_str(), q);
    m.delivery
        .ack(BasicAckOptions::default())
        .await
        .expect("basic.ack");
    let m = get(&ch, &q, true).await.expect("m1");
    assert_eq!(m.delivery.data, b"m1");
    assert_eq!(m.message_count, 0);
    assert_eq!(m.delivery.delivery_tag, 2);
    assert!(get(&ch, &q, true).await.is_none(), "get-empty");
    let ok = passive_queue(&ch, &q).await.expect("passive declare");
    assert_eq!(ok.message_count(), 0);
}

#[tokio::test]
async fn unacked_messages_requeued_when_channel_closes() {
    let broker = Broker::start();
    let conn = connect(&broker.amqp_url()).await;
    let publisher = confirm_channel(&conn).await;
    let q = exclusive_queue(&publisher).await;
    fill(&publisher, &q, 3).await;
    let ch = channel(&conn).await;
    let mut consumer = consume(&ch, &q, "first", false).await;
    for i in 0..3 {
        let d = next_delivery(&mut consumer).await;
        assert_eq!((body_str(&d), d.redelivered), (format!("m{i}"), false));
    }
    within("channel.close", ch.close(200, "bye".into()))
        .await
        .expect("channel.close");
    let ch = channel(&conn).await;
    let mut consumer = consume(&ch, &q, "second", false).await;
    for i in 0..3 {
        let d = next_delivery(&mut consumer).await;
        assert_eq!((body_str(&d), d.redelivered), (format!("m{i}"), true));
        d.ack(BasicAckOptions::default()).await.expect("basic.ack");
    }
    assert_no_delivery(&mut consumer).await;
}

#[tokio::test]
async fn unknown_delivery_tag_is_406() {
    let broker = Broker::start();
    let conn = connect(&broker.amqp_url()).await;
    let mut events = conn.events_listener();
    let ch = channel(&conn).await;
    within("basic.ack", ch.basic_ack(42, BasicAckOptions::default()))
        .await
        .expect("basic.ack is asynchronous");
    // The broker closes the channel; the next synchronous command cannot succeed.
    assert!(sync(&ch).await.is_err());
    let err = next_error_event(&mut events).await;
    assert_eq!(
        amqp_error(&err),
        expected(406, "PRECONDITION_FAILED - unknown delivery tag 42")
    );
    assert!(!ch.status().connected());
    assert!(conn.status().connected());
    let ch = channel(&conn).await;
    sync(&ch).await.expect("connection still usable");
}

#[tokio::test]
async fn server_cancels_consumer_when_queue_deleted() {
    let broker = Broker::start();
    let conn = connect(&broker.amqp_url()).await;
    let ch = channel(&conn).await;
    declare_queue(&ch, "doomed", QueueDeclareOptions::default()).await;
    let mut consumer = consume(&ch, "doomed", "watcher", false).await;

    let other = connect(&broker.amqp_url()).await;
    let other_ch = channel(&other).await;
    within(
        "queue.delete",
        other_ch.queue_delete("doomed".into(), QueueDeleteOptions::default()),
    )
    .await
    .expect("queue.delete");
    // basic.cancel from the broker (consumer_cancel_notify) ends lapin's consumer stream.
    let end = within("server-sent basic.cancel", consumer.next()).await;
    assert!(end.is_none(), "expected the consumer to end, got {end:?}");
    // The channel stays open.
    sync(&ch).await.expect("channel still open");
    assert!(ch.status().connected());
}

// ---------------------------------------------------------------------------------------
// message contents
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn all_basic_properties_round_trip() {
    let broker = Broker::start();
    let conn = connect(&broker.amqp_url()).await;
    let ch = confirm_channel(&conn).await;
    let q = exclusive_queue(&ch).await;
    let nested = table(&[("inner", long_str("value")), ("n", AMQPValue::LongInt(7))]);
    let headers = table(&[
        ("bool", AMQPValue::Boolean(true)),
        ("false", AMQPValue::Boolean(false)),
        ("i8", AMQPValue::ShortShortInt(-5)),
        ("u8", AMQPValue::ShortShortUInt(250)),
        ("i16", AMQPValue::ShortInt(-300)),
        ("u16", AMQPValue::ShortUInt(60_000)),
        ("i32", AMQPValue::LongInt(-70_000)),
        ("u32", AMQPValue::LongUInt(4_000_000_000)),
        ("i64", AMQPValue::LongLongInt(-(1 << 40))),
        ("f32", AMQPValue::Float(1.5)),
        ("f64", AMQPValue::Double(2.25)),
        (
            "decimal",
            AMQPValue::DecimalValue(DecimalValue {
                scale: 2,
                value: 314,
            }),
        ),
        ("short", long_str("s")),
        ("long", long_str(&"long string ".repeat(40))),
        (
            "array",
            AMQPValue::FieldArray(FieldArray::from(vec![
                AMQPValue::LongInt(1),
                long_str("a"),
                AMQPValue::Boolean(false),
            ])),
        ),
        ("timestamp", AMQPValue::Timestamp(1_700_000_000)),
        ("table", AMQPValue::FieldTable(nested)),
        (
            "bytes",
            AMQPValue::ByteArray(ByteArray::from(vec![0u8, 1, 2, 255])),
        ),
        ("void", AMQPValue::Void),
    ]);
    let props = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_content_encoding("gzip".into())
        .with_headers(headers)
        .with_delivery_mode(2)
        .with_priority(5)
        .with_correlation_id("corr-1".into())
        .with_reply_to("reply-q".into())
        .with_expiration("60000".into())
        .with_message_id("msg-1".into())
        .with_timestamp(1_700_000_000)
        .with_type("my.type".into())
        .with_user_id("guest".into())
        .with_app_id("my-app".into())
        .with_cluster_id("cluster-x".into());
    let c = publish_with(
        &ch,
        "",
        &q,
        BasicPublishOptions::default(),
        b"body",
        props.clone(),
    )
    .await;
    assert_eq!(c, Confirmation::Ack(None));
    let m = get(&ch, &q, true).await.expect("message");
    assert_eq!(m.delivery.data, b"body");
    assert_eq!(m.delivery.properties.headers(), props.headers());
    assert_eq!(m.delivery.properties, props);

    // Through a consumer as well.
    let mut consumer = consume(&ch, &q, "props", true).await;
    publish_with(
        &ch,
        "",
        &q,
        BasicPublishOptions::default(),
        b"body2",
        props.clone(),
    )
    .await;
    let d = next_delivery(&mut consumer).await;
    assert_eq!(d.properties, props);

    // And no properties at all stay absent.
    publish(&ch, "", &q, b"bare").await;
    let d = next_delivery(&mut consumer).await;
    assert_eq!(d.properties, BasicProperties::default());
}

#[tokio::test]
async fn bodies_of_many_sizes_round_trip() {
    let broker = Broker::start();
    let conn = connect(&broker.amqp_url()).await;
    let frame_max = conn.configuration().frame_max() as usize;
    assert_eq!(frame_max, 131_072);
    let ch = confirm_channel(&conn).await;
    let q = exclusive_queue(&ch).await;
    let mut consumer = consume(&ch, &q, "bodies", true).await;
    for size in [
        0,
        1,
        frame_max - 9,
        frame_max - 8,
        frame_max - 7,
        1024 * 1024,
        16 * 1024 * 1024,
    ] {
        let body: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        publish(&ch, "", &q, &body).await;
        let d = next_delivery(&mut consumer).await;
        assert_eq!(d.data.len(), size, "body size");
        assert!(d.data == body, "body of {size} bytes corrupted");
    }
    // basic.get path for the frame-sized and large bodies.
    within(
        "basic.cancel",
        ch.basic_cancel("bodies".into(), BasicCancelOptions::default()),
    )
    .await
    .expect("basic.cancel");
    for size in [frame_max - 8, 1024 * 1024] {
        let body: Vec<u8> = (0..size).map(|i| (i % 241) as u8).collect();
        publish(&ch, "", &q, &body).await;
        let m = get(&ch, &q, true).await.expect("message");
        assert!(m.delivery.data == body, "basic.get body of {size} bytes");
    }
}

#[tokio::test]
async fn direct_reply_to_round_trip() {
    let broker = Broker::start();
    // The responder owns the request queue.
    let server_conn = connect(&broker.amqp_url()).await;
    let server = confirm_channel(&server_conn).await;
    let rpc_q = exclusive_queue(&server).await;
    let mut requests = consume(&server, &rpc_q, "rpc-server", false).await;

    let client_conn = connect(&broker.amqp_url()).await;
    let client = channel(&client_conn).await;
    let mut replies = consume(&client, "amq.rabbitmq.reply-to", "replies", true).await;
    publish_with(
        &client,
        "",
        &rpc_q,
        BasicPublishOptions::default(),
        b"request",
        BasicProperties::default()
            .with_reply_to("amq.rabbitmq.reply-to".into())
            .with_correlation_id("c-1".into()),
    )
    .await;

    let req = next_delivery(&mut requests).await;
    assert_eq!(req.data, b"request");
    assert_eq!(
        req.properties.correlation_id().as_ref().map(|s| s.as_str()),
        Some("c-1")
    );
    // The broker rewrites reply_to into a routable pseudo-queue name.
    let reply_to = req
        .properties
        .reply_to()
        .as_ref()
        .expect("reply_to")
        .to_string();
    assert!(
        reply_to.starts_with("amq.rabbitmq.reply-to.") && reply_to.len() > 22,
        "{reply_to}"
    );
    let c = publish_with(
        &server,
        "",
        &reply_to,
        BasicPublishOptions {
            mandatory: true,
            ..Default::default()
        },
        b"response",
        BasicProperties::default().with_correlation_id("c-1".into()),
    )
    .await;
    assert_eq!(c, Confirmation::Ack(None), "reply is routable");
    req.ack(BasicAckOptions::default()).await.expect("ack");

    let reply = next_delivery(&mut replies).await;
    assert_eq!(reply.data, b"response");
    assert_eq!(
        reply
            .properties
            .correlation_id()
            .as_ref()
            .map(|s| s.as_str()),
        Some("c-1")
    );
    assert_eq!(reply.exchange.as_str(), "");
    assert_eq!(reply.routing_key.as_str(), reply_to);
    assert!(!reply.redelivered);
}

#[tokio::test]
async fn cc_and_bcc_route_to_extra_queues_and_bcc_is_hidden() {
    let broker = Broker::start();
    let conn = connect(&broker.amqp_url()).await;
    let ch = confirm_channel(&conn).await;
    declare_exchange(&ch, "ccx", ExchangeKind::Direct).await;
    let mut qs = Vec::new();
    for key in ["a", "b", "c", "d"] {
        let q = exclusive_queue(&ch).await;
        bind(&ch, &q, "ccx", key).await;
        qs.push(q);
    }
    let cc = AMQPValue::FieldArray(FieldArray::from(vec![long_str("b")]));
    let bcc = AMQPValue::FieldArray(FieldArray::from(vec![long_str("c")]));
    let sent = table(&[
        ("CC", cc.clone()),
        ("BCC", bcc),
        ("other", long_str("kept")),
    ]);
    publish_with(
        &ch,
        "ccx",
        "a",
        BasicPublishOptions::default(),
        b"ccbcc",
        BasicProperties::default().with_headers(sent),
    )
    .await;
    let seen = table(&[("CC", cc), ("other", long_str("kept"))]);
    for q in &qs[..3] {
        let m = get(&ch, q, true).await.expect("copy");
        assert_eq!(m.delivery.data, b"ccbcc");
        assert_eq!(m.delivery.routing_key.as_str(), "a", "original routing key");
        assert_eq!(m.delivery.properties.headers().as_ref(), Some(&seen));
    }
    assert!(get(&ch, &qs[3], true).await.is_none());

    // CC on the default exchange names queues directly.
    let (q1, q2) = (exclusive_queue(&ch).await, exclusive_queue(&ch).await);
    publish_with(
        &ch,
        "",
        &q1,
        BasicPublishOptions::default(),
        b"x",
        BasicProperties::default().with_headers(table(&[(
            "CC",
            AMQPValue::FieldArray(FieldArray::from(vec![long_str(&q2)])),
        )])),
    )
    .await;
    assert_eq!(drain(&ch, &q1).await, ["x"]);
    assert_eq!(drain(&ch, &q2).await, ["x"]);
}
