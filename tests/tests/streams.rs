//! Stream queues over AMQP 0-9-1, against the answers RabbitMQ 3.10.8 gave
//! (tests/fixtures/streams/rabbitmq_3.10.8.json, recorded by record.py there).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_lite::StreamExt;
use lapin::{
    options::*,
    types::{AMQPValue, FieldTable, LongString},
    BasicProperties, Channel, Connection, Consumer,
};
use serde_json::Value;
use warren_integration::{api, client::*, http_request, Broker};

fn fixtures() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/streams/rabbitmq_3.10.8.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json")
}

/// What RabbitMQ answered for one case: `Ok(())`, or the code and text of the close.
fn recorded(section: &str, case: &str) -> Result<(), (u16, String)> {
    let f = fixtures();
    let v = &f[section][case];
    assert!(!v.is_null(), "no fixture {section}/{case}");
    if v.get("ok").is_some() {
        return Ok(());
    }
    let code = v
        .get("code")
        .or_else(|| v.get("connection_code"))
        .and_then(Value::as_u64)
        .expect("a code") as u16;
    Err((code, v["text"].as_str().expect("text").to_string()))
}

fn s(v: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(v))
}

fn stream_args(extra: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    t.insert("x-queue-type".into(), s("stream"));
    for (k, v) in extra {
        t.insert((*k).into(), v.clone());
    }
    t
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..Default::default()
    }
}

async fn declare(
    conn: &Connection,
    name: &str,
    options: QueueDeclareOptions,
    args: FieldTable,
) -> Result<(), (u16, String)> {
    let ch = channel(conn).await;
    let r = within(
        "queue.declare",
        ch.queue_declare(name.into(), options, args),
    )
    .await;
    match r {
        Ok(_) => {
            let _ = ch.close(200, "bye".into()).await;
            Ok(())
        }
        Err(e) => Err(amqp_error(&e)),
    }
}

async fn delete(conn: &Connection, name: &str) {
    let ch = channel(conn).await;
    within(
        "queue.delete",
        ch.queue_delete(name.into(), QueueDeleteOptions::default()),
    )
    .await
    .expect("queue.delete");
}

#[tokio::test]
async fn declaration_edges_match_rabbitmq() {
    let broker = Broker::start();
    let mut conn = connect(&broker.amqp_url()).await;
    let cases: Vec<(&str, QueueDeclareOptions, FieldTable, &str)> = vec![
        (
            "non_durable",
            QueueDeclareOptions::default(),
            stream_args(&[]),
            "s-nd",
        ),
        (
            "exclusive",
            QueueDeclareOptions {
                exclusive: true,
                ..durable()
            },
            stream_args(&[]),
            "s-ex",
        ),
        (
            "auto_delete",
            QueueDeclareOptions {
                auto_delete: true,
                ..durable()
            },
            stream_args(&[]),
            "s-ad",
        ),
    ];
    for (case, options, args, name) in cases {
        assert_eq!(
            declare(&conn, name, options, args).await,
            recorded("declare", case),
            "{case}"
        );
    }
    // Values of x-max-age, good and bad (the bad ones without digits close the
    // connection with 541, as RabbitMQ's crash does).
    let f = fixtures();
    let ages: Vec<String> = f["declare"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| k.starts_with("max_age ") && *k != "max_age int")
        .cloned()
        .collect();
    assert!(ages.len() >= 15, "{ages:?}");
    for case in ages {
        let raw = case.trim_start_matches("max_age ");
        let value = raw.trim_matches('\'');
        let got = declare(
            &conn,
            "s-age",
            durable(),
            stream_args(&[("x-max-age", s(value))]),
        )
        .await;
        assert_eq!(got, recorded("declare", &case), "{case}");
        if got.is_ok() {
            delete(&conn, "s-age").await;
        }
        if conn.status().connected() {
            continue;
        }
        conn = connect(&broker.amqp_url()).await;
    }
    let int_cases: Vec<(&str, &str, AMQPValue, &str)> = vec![
        ("max_age int", "x-max-age", AMQPValue::LongInt(60), "s-age"),
        (
            "max_length_bytes -1",
            "x-max-length-bytes",
            AMQPValue::LongInt(-1),
            "s-mlb",
        ),
        (
            "max_length_bytes str",
            "x-max-length-bytes",
            s("10"),
            "s-mlb",
        ),
        (
            "segment -1",
            "x-stream-max-segment-size-bytes",
            AMQPValue::LongInt(-1),
            "s-seg",
        ),
        (
            "segment str",
            "x-stream-max-segment-size-bytes",
            s("10"),
            "s-seg",
        ),
        (
            "x-message-ttl=1000",
            "x-message-ttl",
            AMQPValue::LongInt(1000),
            "s-arg",
        ),
        (
            "x-dead-letter-exchange='dlx'",
            "x-dead-letter-exchange",
            s("dlx"),
            "s-arg",
        ),
        (
            "x-max-length=10",
            "x-max-length",
            AMQPValue::LongInt(10),
            "s-arg",
        ),
        (
            "x-overflow='reject-publish'",
            "x-overflow",
            s("reject-publish"),
            "s-arg",
        ),
        (
            "x-max-priority=5",
            "x-max-priority",
            AMQPValue::LongInt(5),
            "s-arg",
        ),
        (
            "x-expires=10000",
            "x-expires",
            AMQPValue::LongInt(10000),
            "s-arg",
        ),
        (
            "x-single-active-consumer=True",
            "x-single-active-consumer",
            AMQPValue::Boolean(true),
            "s-arg",
        ),
        ("x-queue-mode='lazy'", "x-queue-mode", s("lazy"), "s-arg"),
        (
            "x-delivery-limit=3",
            "x-delivery-limit",
            AMQPValue::LongInt(3),
            "s-arg",
        ),
        (
            "x-initial-cluster-size=0",
            "x-initial-cluster-size",
            AMQPValue::LongInt(0),
            "s-arg",
        ),
        (
            "x-queue-leader-locator='bogus'",
            "x-queue-leader-locator",
            s("bogus"),
            "s-arg",
        ),
    ];
    for (case, key, value, name) in int_cases {
        let got = declare(&conn, name, durable(), stream_args(&[(key, value)])).await;
        assert_eq!(got, recorded("declare", case), "{case}");
    }
    // Accepted arguments.
    for (key, value) in [
        ("x-max-length-bytes", AMQPValue::LongInt(1000)),
        ("x-stream-max-segment-size-bytes", AMQPValue::LongInt(1000)),
        ("x-initial-cluster-size", AMQPValue::LongInt(1)),
        ("x-queue-leader-locator", s("client-local")),
    ] {
        let got = declare(&conn, "s-ok", durable(), stream_args(&[(key, value)])).await;
        assert_eq!(got, Ok(()), "{key}");
        delete(&conn, "s-ok").await;
    }
    // Redeclaration: same is fine, other arguments or type are not.
    assert_eq!(
        declare(&conn, "s-plain", durable(), stream_args(&[])).await,
        Ok(())
    );
    assert_eq!(
        declare(&conn, "s-plain", durable(), stream_args(&[])).await,
        Ok(())
    );
    assert_eq!(
        declare(
            &conn,
            "s-plain",
            durable(),
            stream_args(&[("x-max-age", s("1h"))])
        )
        .await,
        recorded("declare", "redeclare_other_max_age")
    );
    assert_eq!(
        declare(&conn, "s-plain", durable(), FieldTable::default()).await,
        recorded("declare", "redeclare_classic")
    );
    // Classic queues refuse stream arguments.
    let mut t = FieldTable::default();
    t.insert("x-max-age".into(), s("1h"));
    assert_eq!(
        declare(&conn, "c-age", durable(), t).await,
        recorded("declare", "classic with x-max-age")
    );
}

/// A channel with a prefetch, consuming `queue` from `offset` (manual acks).
async fn stream_consumer(
    conn: &Connection,
    queue: &str,
    offset: Option<AMQPValue>,
    prefetch: u16,
) -> (Channel, Consumer) {
    let ch = channel(conn).await;
    within(
        "basic.qos",
        ch.basic_qos(prefetch, BasicQosOptions::default()),
    )
    .await
    .expect("qos");
    let mut args = FieldTable::default();
    if let Some(o) = offset {
        args.insert("x-stream-offset".into(), o);
    }
    let consumer = within(
        "basic.consume",
        ch.basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            args,
        ),
    )
    .await
    .expect("basic.consume");
    (ch, consumer)
}

fn offset_of(d: &lapin::message::Delivery) -> i64 {
    let headers = d.properties.headers().as_ref().expect("headers");
    match headers.inner().get("x-stream-offset") {
        Some(AMQPValue::LongLongInt(n)) => *n,
        other => panic!("x-stream-offset is {other:?}"),
    }
}

/// Reads `n` deliveries, acking each; returns (offset, body).
async fn read_n(consumer: &mut Consumer, n: usize) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    for _ in 0..n {
        let d = next_delivery(consumer).await;
        out.push((offset_of(&d), body_str(&d)));
        within("ack", d.ack(BasicAckOptions::default()))
            .await
            .expect("ack");
    }
    out
}

async fn publish_n(ch: &Channel, queue: &str, from: usize, to: usize) {
    for i in from..to {
        publish(ch, "", queue, format!("m{i}").as_bytes()).await;
    }
}

fn expect_range(got: &[(i64, String)], from: usize) {
    for (k, (offset, body)) in got.iter().enumerate() {
        assert_eq!(*offset, (from + k) as i64);
        assert_eq!(body, &format!("m{}", from + k));
    }
}

#[tokio::test]
async fn offsets_first_last_next_numeric_timestamp_interval() {
    let broker = Broker::start();
    let conn = connect(&broker.amqp_url()).await;
    declare(&conn, "s", durable(), stream_args(&[]))
        .await
        .unwrap();
    let pub_ch = confirm_channel(&conn).await;
    publish_n(&pub_ch, "s", 0, 10).await;

    let (_c1, mut first) = stream_consumer(&conn, "s", Some(s("first")), 10).await;
    expect_range(&read_n(&mut first, 10).await, 0);
    assert_no_delivery(&mut first).await;

    // Each confirmed publish was its own chunk: `last` is the last message.
    let (_c2, mut last) = stream_consumer(&conn, "s", Some(s("last")), 10).await;
    expect_range(&read_n(&mut last, 1).await, 9);
    assert_no_delivery(&mut last).await;

    let (_c3, mut next) = stream_consumer(&conn, "s", Some(s("next")), 10).await;
    let (_c4, mut default) = stream_consumer(&conn, "s", None, 10).await;
    assert_no_delivery(&mut next).await;
    assert_no_delivery(&mut default).await;

    let (_c5, mut numeric) = stream_consumer(&conn, "s", Some(AMQPValue::LongLongInt(5)), 10).await;
    expect_range(&read_n(&mut numeric, 5).await, 5);
    let (_c6, mut negative) = stream_consumer(&conn, "s", Some(AMQPValue::LongInt(-1)), 10).await;
    expect_range(&read_n(&mut negative, 10).await, 0);
    let (_c7, mut beyond) = stream_consumer(&conn, "s", Some(AMQPValue::LongInt(100)), 10).await;
    assert_no_delivery(&mut beyond).await;

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (_c8, mut ts_past) =
        stream_consumer(&conn, "s", Some(AMQPValue::Timestamp(now - 60)), 10).await;
    expect_range(&read_n(&mut ts_past, 10).await, 0);
    let (_c9, mut ts_future) =
        stream_consumer(&conn, "s", Some(AMQPValue::Timestamp(now + 3600)), 10).await;
    assert_no_delivery(&mut ts_future).await;
    let (_c10, mut interval) = stream_consumer(&conn, "s", Some(s("1h")), 10).await;
    expect_range(&read_n(&mut interval, 10).await, 0);

    // New messages reach every live consumer, `next` and `beyond` included.
    publish_n(&pub_ch, "s", 10, 12).await;
    expect_range(&read_n(&mut next, 2).await, 10);
    expect_range(&read_n(&mut default, 2).await, 10);
    expect_range(&read_n(&mut first, 2).await, 10);
    expect_range(&read_n(&mut ts_future, 2).await, 10);
}

#[tokio::test]
async fn headers_are_sorted_with_the_offset_as_a_long() {
    let broker = Broker::start();
    let conn = connect(&broker.amqp_url()).await;
    declare(&conn, "s-hdr", durable(), stream_args(&[]))
        .await
        .unwrap();
    let ch = confirm_channel(&conn).await;
    let mut headers = FieldTable::default();
    headers.insert("zz".into(), AMQPValue::LongInt(1));
    headers.insert("aa".into(), AMQPValue::LongInt(2));
    headers.insert("x-stream-offset".into(), s("mine"));
    let props = BasicProperties::default().with_headers(headers);
    publish_with(
        &ch,
        "",
        "s-hdr",
        BasicPublishOptions::default(),
        b"x",
        props,
    )
    .await;
    let (_c, mut consumer) = stream_consumer(&conn, "s-hdr", Some(s("first")), 1).await;
    let d = next_delivery(&mut consumer).await;
    let keys: Vec<String> = d
        .properties
        .headers()
        .as_ref()
        .unwrap()
        .inner()
        .keys()
        .map(|k| k.to_string())
        .collect();
    let f = fixtures();
    let want: Vec<String> = f["header_order"]["ok"]["headers"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|kv| kv[0].as_str().unwrap().to_string())
        .collect();
    assert_eq!(keys, want);
    assert_eq!(offset_of(&d), 0);
    assert!(!d.redelivered);
    // declare-ok says 0 messages and 0 consumers for a stream, as RabbitMQ does.
    let ch2 = channel(&conn).await;
    let q = within(
        "queue.declare",
        ch2.queue_declare("s-hdr".into(), durable(), stream_args(&[])),
    )
    .await
    .unwrap();
    let want = &f["header_order"]["ok"]["declare_ok_with_consumer"];
    assert_eq!(
        [u64::from(q.message_count()), u64::from(q.consumer_count())],
        [want[0].as_u64().unwrap(), want[1].as_u64().unwrap()]
    );
}

/// The close an operation on a stream got (channel or connection).
async fn refusal(
    conn: &Connection,
    op: impl AsyncFnOnce(&Channel) -> lapin::Result<()>,
) -> Result<(), (u16, String)> {
    let ch = channel(conn).await;
    let mut events = conn.events_listener();
    match op(&ch).await {
        Ok(()) => match channel_error_after(&mut events, &ch).await {
            None => Ok(()),
            Some(e) => Err(e),
        },
        Err(e) => Err(amqp_error(&e)),
    }
}

#[tokio::test]
async fn refused_operations_match_rabbitmq() {
    let broker = Broker::start();
    let url = broker.amqp_url();
    let conn = connect(&url).await;
    declare(&conn, "s-plain", durable(), stream_args(&[]))
        .await
        .unwrap();
    let ch = confirm_channel(&conn).await;
    publish_n(&ch, "s-plain", 0, 3).await;

    // No prefetch.
    let got = refusal(&conn, async |ch| {
        ch.basic_consume(
            "s-plain".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map(|_| ())
    })
    .await;
    assert_eq!(got, recorded("consume", "no_qos"));
    // A global prefetch is not a consumer prefetch.
    let got = refusal(&conn, async |ch| {
        ch.basic_qos(10, BasicQosOptions { global: true }).await?;
        ch.basic_consume(
            "s-plain".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map(|_| ())
    })
    .await;
    assert_eq!(got, recorded("consume", "global_qos_only"));
    let mut t = FieldTable::default();
    t.insert("x-priority".into(), AMQPValue::LongInt(5));
    let got = refusal(&conn, async |ch| {
        ch.basic_qos(1, BasicQosOptions::default()).await?;
        ch.basic_consume(
            "s-plain".into(),
            "".into(),
            BasicConsumeOptions::default(),
            t,
        )
        .await
        .map(|_| ())
    })
    .await;
    assert_eq!(got, recorded("consume", "consume_priority"));

    // The rest close the connection.
    let conn = connect(&url).await;
    let got = refusal(&conn, async |ch| {
        ch.basic_qos(10, BasicQosOptions::default()).await?;
        ch.basic_consume(
            "s-plain".into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map(|_| ())
    })
    .await;
    assert_eq!(got, recorded("consume", "no_ack"));
    let conn = connect(&url).await;
    let got = refusal(&conn, async |ch| {
        ch.basic_get("s-plain".into(), BasicGetOptions::default())
            .await
            .map(|_| ())
    })
    .await;
    assert_eq!(got, recorded("consume", "get"));
    let conn = connect(&url).await;
    let got = refusal(&conn, async |ch| {
        ch.queue_purge("s-plain".into(), QueuePurgeOptions::default())
            .await
            .map(|_| ())
    })
    .await;
    assert_eq!(got, recorded("consume", "purge"));
    for bad in [s("bogus"), AMQPValue::Boolean(true)] {
        let conn = connect(&url).await;
        let got = refusal(&conn, async |ch| {
            ch.basic_qos(10, BasicQosOptions::default()).await?;
            let mut t = FieldTable::default();
            t.insert("x-stream-offset".into(), bad);
            ch.basic_consume(
                "s-plain".into(),
                "".into(),
                BasicConsumeOptions::default(),
                t,
            )
            .await
            .map(|_| ())
        })
        .await;
        assert_eq!(got, recorded("consume", "bogus string"));
    }
    // nack and reject, with or without requeue.
    for requeue in [true, false] {
        let conn = connect(&url).await;
        let (ch, mut consumer) = stream_consumer(&conn, "s-plain", Some(s("first")), 3).await;
        let d = next_delivery(&mut consumer).await;
        let mut events = conn.events_listener();
        ch.basic_nack(
            d.delivery_tag,
            BasicNackOptions {
                multiple: false,
                requeue,
            },
        )
        .await
        .unwrap();
        let err = next_error_event(&mut events).await;
        assert_eq!(
            Err(amqp_error(&err)),
            recorded("consume", "nack_reject_requeue"),
            "requeue {requeue}"
        );
    }
    // Management: get and purge are refused with RabbitMQ's reasons.
    let (status, body) = http_request(
        broker.http_port,
        "POST",
        "/api/queues/%2F/s-plain/get",
        Some(r#"{"count":1,"ackmode":"ack_requeue_true","encoding":"auto"}"#),
    );
    let f = fixtures();
    assert_eq!(
        u64::from(status),
        f["management_get_messages"][0].as_u64().unwrap()
    );
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["reason"], f["management_get_messages"][1]["reason"]);
    let (status, body) = http_request(
        broker.http_port,
        "DELETE",
        "/api/queues/%2F/s-plain/contents",
        None,
    );
    assert_eq!(
        u64::from(status),
        f["management_purge"][0].as_u64().unwrap()
    );
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["reason"], f["management_purge"][1]["reason"]);
}

#[tokio::test]
async fn acks_move_credit_and_consumers_read_independently() {
    let broker = Broker::start();
    let conn = connect(&broker.amqp_url()).await;
    declare(&conn, "s", durable(), stream_args(&[]))
        .await
        .unwrap();
    let ch = confirm_channel(&conn).await;
    publish_n(&ch, "s", 0, 20).await;
    // Prefetch 2: two deliveries, then nothing until an ack.
    let (_ca, mut a) = stream_consumer(&conn, "s", Some(s("first")), 2).await;
    let d0 = next_delivery(&mut a).await;
    let d1 = next_delivery(&mut a).await;
    assert_eq!((offset_of(&d0), offset_of(&d1)), (0, 1));
    assert_no_delivery(&mut a).await;
    d0.ack(BasicAckOptions::default()).await.unwrap();
    let d2 = next_delivery(&mut a).await;
    assert_eq!(offset_of(&d2), 2);
    assert_no_delivery(&mut a).await;
    // Another consumer, another connection: its own cursor, from the start.
    let conn2 = connect(&broker.amqp_url()).await;
    let (_cb, mut b) = stream_consumer(&conn2, "s", Some(s("first")), 50).await;
    expect_range(&read_n(&mut b, 20).await, 0);
    // Acks removed nothing: the stream still holds all 20.
    let (_cc, mut c) = stream_consumer(&conn2, "s", Some(AMQPValue::LongInt(0)), 50).await;
    expect_range(&read_n(&mut c, 20).await, 0);
    // A consumer that leaves with unacked deliveries puts nothing back.
    drop(a);
    let q = wait_for_api(&broker, "/api/queues/%2F/s", |q| q["messages"] == 20).await;
    assert_eq!(q["type"], "stream");
    assert_eq!(q["messages_ready"], 20);
    assert_eq!(q["messages_unacknowledged"], 0);
    assert_eq!(q["durable"], true);
}

/// Polls an API path until `ok` holds (statistics are sampled).
async fn wait_for_api(broker: &Broker, path: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let v = api(broker.http_port, path);
        if ok(&v) || std::time::Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn segment_files(broker: &Broker) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let root = broker.data_dir().join("streams");
    for dir in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        for f in std::fs::read_dir(dir.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if f.path().extension().is_some_and(|e| e == "sseg") {
                out.push(f.path());
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn retention_by_bytes_removes_whole_segments() {
    let broker = Broker::start();
    let conn = connect(&broker.amqp_url()).await;
    declare(
        &conn,
        "s-ret",
        durable(),
        stream_args(&[
            ("x-max-length-bytes", AMQPValue::LongInt(20_000)),
            ("x-stream-max-segment-size-bytes", AMQPValue::LongInt(5_000)),
        ]),
    )
    .await
    .unwrap();
    let ch = confirm_channel(&conn).await;
    let body = vec![b'x'; 1000];
    for _ in 0..100 {
        publish(&ch, "", "s-ret", &body).await;
    }
    let files = segment_files(&broker);
    assert!(files.len() >= 4 && files.len() <= 6, "{files:?}");
    let total: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();
    assert!(total <= 20_000 + 6_200, "{total} bytes on disk");
    // Reading from `first` starts at the first offset of the oldest segment kept.
    let first_kept: i64 = files[0]
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(first_kept > 0);
    let (_c, mut consumer) = stream_consumer(&conn, "s-ret", Some(s("first")), 5).await;
    let d = next_delivery(&mut consumer).await;
    assert_eq!(offset_of(&d), first_kept);
    // A numeric offset retention removed starts at the first kept one too.
    let (_c2, mut old) = stream_consumer(&conn, "s-ret", Some(AMQPValue::LongInt(1)), 5).await;
    assert_eq!(offset_of(&next_delivery(&mut old).await), first_kept);
    let q = wait_for_api(&broker, "/api/queues/%2F/s-ret", |q| {
        q["messages"].as_i64() == Some(100 - first_kept)
    })
    .await;
    assert_eq!(q["messages"].as_i64(), Some(100 - first_kept));
}

#[tokio::test]
async fn policies_set_max_age_and_segment_size() {
    let broker = Broker::start();
    let (status, body) = http_request(
        broker.http_port,
        "PUT",
        "/api/policies/%2F/sp",
        Some(
            r#"{"pattern":"^s-pol","apply-to":"queues","definition":{"max-age":"1h","stream-max-segment-size-bytes":3000,"max-length-bytes":10000}}"#,
        ),
    );
    assert!(status == 201 || status == 204, "{status} {body}");
    let f = fixtures();
    for case in ["policy_bad_segment", "policy_bad_segment_neg"] {
        let def = if case.ends_with("neg") { "-1" } else { "\"x\"" };
        let (status, body) = http_request(
            broker.http_port,
            "PUT",
            "/api/policies/%2F/sp3",
            Some(&format!(
                r#"{{"pattern":"^zz","apply-to":"queues","definition":{{"stream-max-segment-size-bytes":{def}}}}}"#
            )),
        );
        assert_eq!(u64::from(status), f[case][0].as_u64().unwrap(), "{case}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["reason"], f[case][1]["reason"], "{case}");
    }
    let conn = connect(&broker.amqp_url()).await;
    declare(&conn, "s-pol1", durable(), stream_args(&[]))
        .await
        .unwrap();
    let ch = confirm_channel(&conn).await;
    let body = vec![b'y'; 1000];
    for _ in 0..60 {
        publish(&ch, "", "s-pol1", &body).await;
    }
    // Segments of ~3 kB, at most ~10 kB kept.
    let files = segment_files(&broker);
    assert!(files.len() >= 3 && files.len() <= 5, "{files:?}");
    let q = api(broker.http_port, "/api/queues/%2F/s-pol1");
    assert_eq!(q["policy"], "sp");
}

#[tokio::test]
async fn confirmed_messages_survive_restart_and_sigkill() {
    let broker = Broker::start();
    {
        let conn = connect(&broker.amqp_url()).await;
        declare(&conn, "s-dur", durable(), stream_args(&[]))
            .await
            .unwrap();
        let ch = confirm_channel(&conn).await;
        // Transient messages too: a stream keeps everything.
        for i in 0..50 {
            let props =
                BasicProperties::default().with_delivery_mode(if i % 2 == 0 { 2 } else { 1 });
            publish_with(
                &ch,
                "",
                "s-dur",
                BasicPublishOptions::default(),
                format!("m{i}").as_bytes(),
                props,
            )
            .await;
        }
    }
    let broker = broker.restart(false);
    {
        let conn = connect(&broker.amqp_url()).await;
        let (_c, mut consumer) = stream_consumer(&conn, "s-dur", Some(s("first")), 100).await;
        expect_range(&read_n(&mut consumer, 50).await, 0);
        let ch = confirm_channel(&conn).await;
        publish_n(&ch, "s-dur", 50, 300).await;
    }
    // Killed right after the last confirm: every confirmed message is there.
    let broker = broker.restart(true);
    let conn = connect(&broker.amqp_url()).await;
    let (_c, mut consumer) = stream_consumer(&conn, "s-dur", Some(s("first")), 500).await;
    expect_range(&read_n(&mut consumer, 300).await, 0);
    // And the stream goes on from the next offset.
    let ch = confirm_channel(&conn).await;
    publish_n(&ch, "s-dur", 300, 301).await;
    expect_range(&read_n(&mut consumer, 1).await, 300);
    // Deleting the stream removes its files.
    delete(&conn, "s-dur").await;
    assert!(segment_files(&broker).is_empty());
}

#[tokio::test]
async fn a_sigkill_mid_publish_loses_nothing_confirmed() {
    let broker = Broker::start();
    let url = broker.amqp_url();
    let conn = connect(&url).await;
    declare(&conn, "s-kill", durable(), stream_args(&[]))
        .await
        .unwrap();
    let ch = confirm_channel(&conn).await;
    // Publish without waiting for each confirm; count what was confirmed by the kill.
    let mut pending = Vec::new();
    for i in 0..2000 {
        let c = ch
            .basic_publish(
                "".into(),
                "s-kill".into(),
                BasicPublishOptions::default(),
                format!("m{i}").as_bytes(),
                BasicProperties::default(),
            )
            .await
            .unwrap();
        pending.push(c);
    }
    let mut confirmed = 0usize;
    for c in pending.drain(..1000) {
        if c.await.map(|c| c.is_ack()).unwrap_or(false) {
            confirmed += 1;
        }
    }
    assert_eq!(confirmed, 1000);
    let broker = broker.restart(true);
    drop(pending);
    let conn = connect(&broker.amqp_url()).await;
    let (_c, mut consumer) = stream_consumer(&conn, "s-kill", Some(s("first")), 1000).await;
    let got = read_n(&mut consumer, confirmed).await;
    expect_range(&got, 0);
}

#[tokio::test]
async fn consumer_cancel_and_queue_delete() {
    let broker = Broker::start();
    let conn = connect(&broker.amqp_url()).await;
    declare(&conn, "s-c", durable(), stream_args(&[]))
        .await
        .unwrap();
    let ch = confirm_channel(&conn).await;
    publish_n(&ch, "s-c", 0, 3).await;
    let (cch, mut consumer) = stream_consumer(&conn, "s-c", Some(s("first")), 10).await;
    expect_range(&read_n(&mut consumer, 3).await, 0);
    within(
        "basic.cancel",
        cch.basic_cancel(consumer.tag(), BasicCancelOptions::default()),
    )
    .await
    .unwrap();
    publish_n(&ch, "s-c", 3, 4).await;
    // The cancelled consumer gets nothing more.
    let next = tokio::time::timeout(QUIET, consumer.next()).await;
    assert!(!matches!(next, Ok(Some(Ok(_)))), "{next:?}");
    let (_c2, mut other) = stream_consumer(&conn, "s-c", Some(s("first")), 10).await;
    expect_range(&read_n(&mut other, 4).await, 0);
    delete(&conn, "s-c").await;
}
