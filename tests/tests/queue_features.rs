//! Queue features through a real client: priorities, TTL and x-expires, dead-lettering
//! with RabbitMQ's x-death, length limits and overflow, quorum delivery limits, consumer
//! priorities and single active consumer. Expected texts are RabbitMQ 3.10's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use lapin::{
    options::*,
    types::{AMQPValue, FieldTable, LongString},
    BasicProperties, Channel, Confirmation,
};
use warren_integration::{client::*, http_request, Broker};

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

async fn declare_with(ch: &Channel, name: &str, table: FieldTable) -> lapin::Result<lapin::Queue> {
    within(
        "queue.declare",
        ch.queue_declare(name.into(), QueueDeclareOptions::default(), table),
    )
    .await
}

async fn publish_props(ch: &Channel, key: &str, body: &str, props: BasicProperties) {
    let c = publish_with(
        ch,
        "",
        key,
        BasicPublishOptions::default(),
        body.as_bytes(),
        props,
    )
    .await;
    assert!(matches!(c, Confirmation::Ack(None)), "{c:?}");
}

/// Waits until the queue holds `n` ready messages (TTL expiry runs on timers).
async fn wait_for_count(ch: &Channel, queue: &str, n: u32) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let count = passive_queue(ch, queue).await.unwrap().message_count();
        if count == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "queue {queue} has {count}, want {n}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn header<'a>(props: &'a BasicProperties, key: &str) -> Option<&'a AMQPValue> {
    props.headers().as_ref()?.inner().get(key)
}

fn text(v: Option<&AMQPValue>) -> String {
    match v {
        Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        other => panic!("expected a longstr, got {other:?}"),
    }
}

#[tokio::test]
async fn priority_queue_delivers_highest_first() {
    let broker = Broker::start();
    let conn = connect(&broker.amqp_url()).await;
    let ch = confirm_channel(&conn).await;
    declare_with(
        &ch,
        "prio",
        args(&[("x-max-priority", AMQPValue::ShortShortUInt(5))]),
    )
    .await
    .unwrap();
    for (body, p) in [
        ("p0", None),
        ("p9", Some(9)),
        ("p3", Some(3)),
        ("p5", Some(5)),
    ] {
        let mut props = BasicProperties::default();
        if let Some(p) = p {
            props = props.with_priority(p);
        }
        publish_props(&ch, "prio", body, props).await;
    }
    // 9 counts as the maximum, 5, and keeps its place before the later 5.
    assert_eq!(drain(&ch, "prio").await, ["p9", "p5", "p3", "p0"]);
}

#[tokio::test]
async fn invalid_arguments_are_refused_with_rabbitmq_texts() {
    let broker = Broker::start();
    let conn = connect(&broker.amqp_url()).await;
    for (arg, value, detail) in [
        (
            "x-max-priority",
            AMQPValue::LongInt(256),
            "{max_value_exceeded,256}",
        ),
        (
            "x-message-ttl",
            AMQPValue::LongInt(-1),
            "{value_negative,-1}",
        ),
        ("x-expires", AMQPValue::LongInt(0), "{value_zero,0}"),
        (
            "x-max-length",
            s("ten"),
            "\"expected integer, got longstr\"",
        ),
        ("x-overflow", s("sideways"), "invalid_overflow"),
    ] {
        let ch = channel(&conn).await;
        let err = declare_with(&ch, "bad-args", args(&[(arg, value)]))
            .await
            .unwrap_err();
        assert_eq!(
            amqp_error(&err),
            expected(
                406,
                &format!(
                    "PRECONDITION_FAILED - invalid arg '{arg}' for queue 'bad-args' in vhost '/': {detail}"
                )
            )
        );
    }
}

#[tokio::test]
async fn message_ttl_expires_without_a_consumer_and_lower_ttl_wins() {
    let broker = Broker::start();
    let conn = connect(&broker.amqp_url()).await;
    let ch = confirm_channel(&conn).await;
    declare_with(
        &ch,
        "ttl",
        args(&[("x-message-ttl", AMQPValue::LongInt(300))]),
    )
    .await
    .unwrap();
    publish_props(&ch, "ttl", "queue-ttl", BasicProperties::default()).await;
    publish_props(
        &ch,
        "ttl",
        "short",
        BasicProperties::default().with_expiration("50".into()),
    )
    .await;
    publish_props(
        &ch,
        "ttl",
        "long",
        BasicProperties::default().with_expiration("100000".into()),
    )
    .await;
    // The second message expires first, from the middle of the queue.
    wait_for_count(&ch, "ttl", 2).await;
    wait_for_count(&ch, "ttl", 0).await;
    assert!(get(&ch, "ttl", true).await.is_none());
}

#[tokio::test]
async fn queue_with_x_expires_is_deleted_when_unused() {
    let broker = Broker::start();
    let conn = connect(&broker.amqp_url()).await;
    let ch = channel(&conn).await;
    declare_with(
        &ch,
        "expiring",
        args(&[("x-expires", AMQPValue::LongInt(200))]),
    )
    .await
    .unwrap();
    // Any declare, passive included, renews the lease: watch through the management API
    // (which does not) until the queue is gone, however late the expiry timer runs.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) =
            http_request(broker.http_port, "GET", "/api/queues/%2F/expiring", None);
        if status == 404 {
            break;
        }
        assert_eq!(status, 200, "{body}");
        assert!(Instant::now() < deadline, "the unused queue never expired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let probe = channel(&conn).await;
    let err = passive_queue(&probe, "expiring").await.unwrap_err();
    assert_eq!(
        amqp_error(&err),
        expected(404, "NOT_FOUND - no queue 'expiring' in vhost '/'")
    );
}

#[tokio::test]
async fn rejected_and_expired_messages_are_dead_lettered_with_x_death() {
    let broker = Broker::start();
    let conn = connect(&broker.amqp_url()).await;
    let ch = confirm_channel(&conn).await;
    within(
        "exchange.declare",
        ch.exchange_declare(
            "dlx".into(),
            lapin::ExchangeKind::Fanout,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .unwrap();
    declare_with(&ch, "dead", FieldTable::default())
        .await
        .unwrap();
    within(
        "queue.bind",
        ch.queue_bind(
            "dead".into(),
            "dlx".into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .unwrap();
    declare_with(&ch, "work", args(&[("x-dead-letter-exchange", s("dlx"))]))
        .await
        .unwrap();
    publish_props(
        &ch,
        "work",
        "rejected",
        BasicProperties::default()
            .with_expiration("60000".into())
            .with_correlation_id("c1".into()),
    )
    .await;
    let m = get(&ch, "work", false).await.expect("message");
    within(
        "basic.reject",
        m.delivery.reject(BasicRejectOptions { requeue: false }),
    )
    .await
    .unwrap();
    wait_for_count(&ch, "dead", 1).await;
    let d = get(&ch, "dead", true).await.expect("dead-lettered");
    assert_eq!(d.delivery.exchange.as_str(), "dlx");
    assert_eq!(d.delivery.routing_key.as_str(), "work");
    let props = &d.delivery.properties;
    assert_eq!(props.expiration(), &None);
    assert_eq!(
        props.correlation_id().as_ref().map(|c| c.as_str()),
        Some("c1")
    );
    assert_eq!(text(header(props, "x-first-death-reason")), "rejected");
    assert_eq!(text(header(props, "x-first-death-queue")), "work");
    assert_eq!(text(header(props, "x-first-death-exchange")), "");
    let Some(AMQPValue::FieldArray(deaths)) = header(props, "x-death") else {
        panic!("no x-death: {props:?}");
    };
    let [AMQPValue::FieldTable(death)] = deaths.as_slice() else {
        panic!("one x-death entry expected: {deaths:?}");
    };
    let d = death.inner();
    assert_eq!(d.get("count"), Some(&AMQPValue::LongLongInt(1)));
    assert_eq!(text(d.get("reason")), "rejected");
    assert_eq!(text(d.get("queue")), "work");
    assert_eq!(text(d.get("exchange")), "");
    assert_eq!(text(d.get("original-expiration")), "60000");
    assert!(matches!(d.get("time"), Some(AMQPValue::Timestamp(_))));
    assert_eq!(
        d.get("routing-keys"),
        Some(&AMQPValue::FieldArray(vec![s("work")].into()))
    );
}

#[tokio::test]
async fn expiry_dead_letters_to_a_routing_key_and_counts_repeat_deaths() {
    let broker = Broker::start();
    let conn = connect(&broker.amqp_url()).await;
    let ch = confirm_channel(&conn).await;
    // "bounce" expires into "catch" through the default exchange; "catch" rejects back.
    declare_with(
        &ch,
        "bounce",
        args(&[
            ("x-message-ttl", AMQPValue::LongInt(20)),
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s("catch")),
        ]),
    )
    .await
    .unwrap();
    declare_with(
        &ch,
        "catch",
        args(&[
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s("bounce")),
        ]),
    )
    .await
    .unwrap();
    publish_props(&ch, "bounce", "m", BasicProperties::default()).await;
    for round in 1..=2i64 {
        wait_for_count(&ch, "catch", 1).await;
        let m = get(&ch, "catch", false).await.expect("message");
        let Some(AMQPValue::FieldArray(deaths)) = header(&m.delivery.properties, "x-death") else {
            panic!("no x-death");
        };
        let AMQPValue::FieldTable(first) = &deaths.as_slice()[0] else {
            panic!("not a table");
        };
        // Most recent first, and the (bounce, expired) entry counts each round.
        assert_eq!(text(first.inner().get("queue")), "bounce");
        assert_eq!(text(first.inner().get("reason")), "expired");
        assert_eq!(
            first.inner().get("count"),
            Some(&AMQPValue::LongLongInt(round))
        );
        assert_eq!(m.delivery.routing_key.as_str(), "catch");
        within(
            "basic.reject",
            m.delivery.reject(BasicRejectOptions { requeue: false }),
        )
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn expiry_cycle_without_rejection_drops_the_message() {
    let broker = Broker::start();
    let conn = connect(&broker.amqp_url()).await;
    let ch = confirm_channel(&conn).await;
    declare_with(
        &ch,
        "self-cycle",
        args(&[
            ("x-message-ttl", AMQPValue::LongInt(10)),
            ("x-dead-letter-exchange", s("")),
        ]),
    )
    .await
    .unwrap();
    publish_props(&ch, "self-cycle", "m", BasicProperties::default()).await;
    wait_for_count(&ch, "self-cycle", 0).await;
    // A message that kept cycling would sit in the queue for its 10 ms TTL every round and
    // show in most samples; 40 samples 10 ms apart (40 rounds) all at 0 mean it was dropped.
    for sample in 0..40 {
        let q = passive_queue(&ch, "self-cycle").await.unwrap();
        assert_eq!(
            q.message_count(),
            0,
            "the message came back (sample {sample})"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn max_length_drops_head_and_reject_publish_nacks() {
    let broker = Broker::start();
    let conn = connect(&broker.amqp_url()).await;
    let ch = confirm_channel(&conn).await;
    declare_with(
        &ch,
        "bounded",
        args(&[("x-max-length", AMQPValue::LongInt(2))]),
    )
    .await
    .unwrap();
    for b in ["a", "b", "c"] {
        publish_props(&ch, "bounded", b, BasicProperties::default()).await;
    }
    assert_eq!(drain(&ch, "bounded").await, ["b", "c"]);

    declare_with(
        &ch,
        "strict",
        args(&[
            ("x-max-length", AMQPValue::LongInt(1)),
            ("x-overflow", s("reject-publish")),
        ]),
    )
    .await
    .unwrap();
    publish_props(&ch, "strict", "first", BasicProperties::default()).await;
    let c = publish_with(
        &ch,
        "",
        "strict",
        BasicPublishOptions::default(),
        b"second",
        BasicProperties::default(),
    )
    .await;
    assert!(matches!(c, Confirmation::Nack(None)), "{c:?}");
    publish_props(&ch, "bounded", "after-nack", BasicProperties::default()).await;
    assert_eq!(drain(&ch, "strict").await, ["first"]);
}

#[tokio::test]
async fn quorum_queue_counts_deliveries_and_dead_letters_over_the_limit() {
    let broker = Broker::start();
    let conn = connect(&broker.amqp_url()).await;
    let ch = confirm_channel(&conn).await;
    let err = declare_with(&ch, "qq-transient", args(&[("x-queue-type", s("quorum"))]))
        .await
        .unwrap_err();
    assert_eq!(
        amqp_error(&err),
        expected(
            406,
            "PRECONDITION_FAILED - invalid property 'non-durable' for queue 'qq-transient' in vhost '/'"
        )
    );
    let ch = confirm_channel(&conn).await;
    declare_with(&ch, "qq-dead", FieldTable::default())
        .await
        .unwrap();
    within(
        "queue.declare",
        ch.queue_declare(
            "qq".into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            args(&[
                ("x-queue-type", s("quorum")),
                ("x-delivery-limit", AMQPValue::LongInt(1)),
                ("x-dead-letter-exchange", s("")),
                ("x-dead-letter-routing-key", s("qq-dead")),
            ]),
        ),
    )
    .await
    .unwrap();
    publish_props(&ch, "qq", "m", BasicProperties::default()).await;
    let first = get(&ch, "qq", false).await.expect("first delivery");
    // basic.get on a quorum queue always carries the count, 0 the first time.
    assert_eq!(
        header(&first.delivery.properties, "x-delivery-count"),
        Some(&AMQPValue::LongLongInt(0))
    );
    within(
        "basic.nack",
        first.delivery.nack(BasicNackOptions {
            requeue: true,
            ..Default::default()
        }),
    )
    .await
    .unwrap();
    let second = get(&ch, "qq", false).await.expect("redelivery");
    assert!(second.delivery.redelivered);
    assert_eq!(
        header(&second.delivery.properties, "x-delivery-count"),
        Some(&AMQPValue::LongLongInt(1))
    );
    within(
        "basic.nack",
        second.delivery.nack(BasicNackOptions {
            requeue: true,
            ..Default::default()
        }),
    )
    .await
    .unwrap();
    wait_for_count(&ch, "qq-dead", 1).await;
    let d = get(&ch, "qq-dead", true).await.expect("dead-lettered");
    assert_eq!(
        text(header(&d.delivery.properties, "x-first-death-reason")),
        "delivery_limit"
    );
    wait_for_count(&ch, "qq", 0).await;
}

#[tokio::test]
async fn higher_priority_consumer_is_served_while_it_has_credit() {
    let broker = Broker::start();
    let conn = connect(&broker.amqp_url()).await;
    let ch = confirm_channel(&conn).await;
    declare_with(&ch, "cp", FieldTable::default())
        .await
        .unwrap();
    let low_ch = channel(&conn).await;
    let high_ch = channel(&conn).await;
    within(
        "basic.qos",
        high_ch.basic_qos(2, BasicQosOptions::default()),
    )
    .await
    .unwrap();
    let mut low = consume(&low_ch, "cp", "low", false).await;
    let mut high = within(
        "basic.consume",
        high_ch.basic_consume(
            "cp".into(),
            "high".into(),
            BasicConsumeOptions::default(),
            args(&[("x-priority", AMQPValue::LongInt(10))]),
        ),
    )
    .await
    .unwrap();
    for i in 0..3 {
        publish_props(&ch, "cp", &i.to_string(), BasicProperties::default()).await;
    }
    assert_eq!(body_str(&next_delivery(&mut high).await), "0");
    assert_eq!(body_str(&next_delivery(&mut high).await), "1");
    // The high-priority consumer is full: the third goes to the low one.
    assert_eq!(body_str(&next_delivery(&mut low).await), "2");
}

#[tokio::test]
async fn single_active_consumer_takes_over_on_cancel() {
    let broker = Broker::start();
    let conn = connect(&broker.amqp_url()).await;
    let ch = confirm_channel(&conn).await;
    declare_with(
        &ch,
        "sac",
        args(&[("x-single-active-consumer", AMQPValue::Boolean(true))]),
    )
    .await
    .unwrap();
    let c1 = channel(&conn).await;
    let c2 = channel(&conn).await;
    let mut first = consume(&c1, "sac", "first", true).await;
    let mut second = consume(&c2, "sac", "second", true).await;
    for i in 0..3 {
        publish_props(&ch, "sac", &i.to_string(), BasicProperties::default()).await;
    }
    for i in 0..3 {
        assert_eq!(body_str(&next_delivery(&mut first).await), i.to_string());
    }
    assert_no_delivery(&mut second).await;
    within(
        "basic.cancel",
        c1.basic_cancel("first".into(), BasicCancelOptions::default()),
    )
    .await
    .unwrap();
    publish_props(&ch, "sac", "after", BasicProperties::default()).await;
    assert_eq!(body_str(&next_delivery(&mut second).await), "after");
}
