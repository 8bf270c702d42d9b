//! Firehose tracing (`rabbitmqctl trace_on`, the API's vhost `tracing`): trace copies on
//! `amq.rabbitmq.trace` compared with RabbitMQ 3.10.8's, recorded in
//! tests/fixtures/plugins/firehose_trace_3.10.8.json and firehose_trace_more_3.10.8.json.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{path::PathBuf, process::Command, time::Duration};

use lapin::{
    options::{BasicAckOptions, BasicPublishOptions, BasicRecoverOptions, QueueBindOptions},
    types::{AMQPValue, FieldTable, LongString, ShortString},
    BasicProperties, Channel,
};
use serde_json::{json, Value};
use warren_integration::*;

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/fixtures/plugins/{name}",
        env!("CARGO_MANIFEST_DIR").trim_end_matches('/')
    );
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// A field value as pika decodes it (the fixtures' form): strings, numbers, lists, maps.
fn plain(v: &AMQPValue) -> Value {
    match v {
        AMQPValue::LongString(s) => json!(String::from_utf8_lossy(s.as_bytes())),
        AMQPValue::ShortString(s) => json!(s.as_str()),
        AMQPValue::LongInt(n) => json!(n),
        AMQPValue::LongLongInt(n) => json!(n),
        AMQPValue::ShortShortUInt(n) => json!(n),
        AMQPValue::ShortShortInt(n) => json!(n),
        AMQPValue::ShortInt(n) => json!(n),
        AMQPValue::ShortUInt(n) => json!(n),
        AMQPValue::LongUInt(n) => json!(n),
        AMQPValue::Timestamp(n) => json!(n),
        AMQPValue::Boolean(b) => json!(b),
        AMQPValue::FieldArray(a) => Value::Array(a.as_slice().iter().map(plain).collect()),
        AMQPValue::FieldTable(t) => table(t),
        other => json!(format!("{other:?}")),
    }
}

fn table(t: &FieldTable) -> Value {
    Value::Object(
        t.inner()
            .iter()
            .map(|(k, v)| (k.to_string(), plain(v)))
            .collect(),
    )
}

/// The wire type RabbitMQ gives each trace header (rabbit_trace: longstr, array,
/// table, signedint).
fn expected_kind(name: &str) -> &'static str {
    match name {
        "routing_keys" | "routed_queues" => "array",
        "properties" => "table",
        "channel" | "redelivered" => "signedint",
        _ => "longstr",
    }
}

fn kind(v: &AMQPValue) -> &'static str {
    match v {
        AMQPValue::LongString(_) => "longstr",
        AMQPValue::FieldArray(_) => "array",
        AMQPValue::FieldTable(_) => "table",
        AMQPValue::LongInt(_) => "signedint",
        _ => "other",
    }
}

/// One trace message as taken from the trace queue.
#[derive(Debug)]
struct Traced {
    routing_key: String,
    headers: FieldTable,
    props: BasicProperties,
    body: String,
}

impl Traced {
    fn header(&self, name: &str) -> Value {
        self.headers
            .inner()
            .get(name)
            .map(plain)
            .unwrap_or(Value::Null)
    }
}

/// Everything on the trace queue now (after a round trip, so the broker has routed it).
async fn take_traces(ch: &Channel, queue: &str) -> Vec<Traced> {
    sync(ch).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut out = Vec::new();
    while let Some(m) = get(ch, queue, true).await {
        let d = m.delivery;
        assert_eq!(d.exchange.as_str(), "amq.rabbitmq.trace");
        out.push(Traced {
            routing_key: d.routing_key.to_string(),
            headers: d.properties.headers().clone().unwrap_or_default(),
            props: d.properties.clone(),
            body: String::from_utf8_lossy(&d.data).into_owned(),
        });
    }
    out
}

/// An exclusive queue bound to `amq.rabbitmq.trace` with `#`.
async fn trace_queue(ch: &Channel) -> String {
    let q = exclusive_queue(ch).await;
    ch.queue_bind(
        q.as_str().into(),
        "amq.rabbitmq.trace".into(),
        "#".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    q
}

fn set_tracing(broker: &Broker, vhost: &str, on: bool) {
    let (status, body) = http_request(
        broker.http_port,
        "PUT",
        &format!("/api/vhosts/{vhost}"),
        Some(&json!({ "tracing": on }).to_string()),
    );
    assert_eq!(status, 204, "{body}");
    assert_eq!(
        api(broker.http_port, &format!("/api/vhosts/{vhost}"))["tracing"],
        json!(on)
    );
}

/// Compares a trace message with RabbitMQ's: routing key, header names and wire types,
/// values (node and connection are per run: the node must be warren's own, the
/// connection this client's), body, and no properties but the headers.
fn assert_like(got: &Traced, want: &Value, broker: &Broker) {
    assert_eq!(
        got.routing_key,
        want["routing_key"].as_str().unwrap(),
        "{got:?}"
    );
    let want_headers = want["headers"].as_object().unwrap();
    let mut names: Vec<&str> = got.headers.inner().keys().map(|k| k.as_str()).collect();
    let mut want_names: Vec<&str> = want_headers.keys().map(String::as_str).collect();
    names.sort_unstable();
    want_names.sort_unstable();
    assert_eq!(names, want_names, "{}", got.routing_key);
    for (name, v) in got.headers.inner() {
        assert_eq!(kind(v), expected_kind(name.as_str()), "type of {name}");
    }
    for (name, value) in want_headers {
        match name.as_str() {
            "node" => assert_eq!(
                got.header("node"),
                api(broker.http_port, "/api/overview")["node"]
            ),
            "connection" => {
                let c = got.header("connection");
                let c = c.as_str().unwrap();
                assert!(c.starts_with("127.0.0.1:"), "{c}");
                assert!(
                    c.ends_with(&format!(" -> 127.0.0.1:{}", broker.port)),
                    "{c}"
                );
            }
            _ => assert_eq!(
                &got.header(name),
                value,
                "header {name} of {}",
                got.routing_key
            ),
        }
    }
    assert_eq!(got.body, want["body"].as_str().unwrap());
    let p = &got.props;
    assert!(
        p.content_type().is_none()
            && p.delivery_mode().is_none()
            && p.timestamp().is_none()
            && p.message_id().is_none()
            && p.priority().is_none(),
        "only headers: {p:?}"
    );
}

#[tokio::test]
async fn publish_and_get_are_traced_as_rabbitmq_traces_them() {
    let broker = Broker::start();
    let recorded = fixture("firehose_trace_3.10.8.json");
    assert_eq!(
        api(broker.http_port, "/api/vhosts/%2F")["tracing"],
        json!(false)
    );
    set_tracing(&broker, "%2F", true);
    let conn = connect(&broker.amqp_url()).await;
    let ch = channel(&conn).await;
    let tq = trace_queue(&ch).await;
    declare_queue(&ch, "tr-q", Default::default()).await;
    let mut h = FieldTable::default();
    h.insert(ShortString::from("h"), AMQPValue::LongInt(1));
    let props = BasicProperties::default()
        .with_content_type("text/plain".into())
        .with_headers(h)
        .with_delivery_mode(2);
    publish_with(
        &ch,
        "",
        "tr-q",
        BasicPublishOptions::default(),
        b"hello",
        props,
    )
    .await;
    publish(&ch, "amq.direct", "nowhere", b"unrouted").await;
    sync(&ch).await.unwrap();
    let m = get(&ch, "tr-q", false).await.expect("a message");
    m.delivery
        .acker
        .ack(BasicAckOptions::default())
        .await
        .unwrap();
    let got = take_traces(&ch, &tq).await;
    let want = recorded["messages"].as_array().unwrap();
    assert_eq!(got.len(), want.len(), "{got:#?}");
    for (g, w) in got.iter().zip(want) {
        assert_like(g, w, &broker);
    }
    // Off again: nothing more is copied.
    set_tracing(&broker, "%2F", false);
    publish(&ch, "", "tr-q", b"quiet").await;
    assert_eq!(
        get(&ch, "tr-q", true).await.map(|m| m.delivery.data),
        Some(b"quiet".to_vec())
    );
    assert!(take_traces(&ch, &tq).await.is_empty());
}

#[tokio::test]
async fn cc_bcc_properties_consumers_and_redeliveries_match_rabbitmq() {
    let broker = Broker::start();
    let recorded = fixture("firehose_trace_more_3.10.8.json");
    set_tracing(&broker, "%2F", true);
    let conn = connect(&broker.amqp_url()).await;
    let ch = channel(&conn).await;
    let tq = trace_queue(&ch).await;
    declare_queue(&ch, "p-q1", Default::default()).await;
    declare_queue(&ch, "p-q2", Default::default()).await;
    ch.queue_bind(
        "p-q2".into(),
        "amq.topic".into(),
        "cc.#".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let list =
        |k: &str| AMQPValue::FieldArray(vec![AMQPValue::LongString(LongString::from(k))].into());
    let mut h = FieldTable::default();
    h.insert("CC".into(), list("p-q1"));
    h.insert("BCC".into(), list("x.y"));
    h.insert("z".into(), AMQPValue::LongString("v".into()));
    let props = BasicProperties::default()
        .with_headers(h)
        .with_priority(3)
        .with_timestamp(1_700_000_000)
        .with_message_id("m1".into())
        .with_correlation_id("c1".into())
        .with_reply_to("r".into())
        .with_expiration("60000".into())
        .with_type("t".into())
        .with_app_id("a".into())
        .with_user_id("guest".into())
        .with_content_encoding("gzip".into());
    publish_with(
        &ch,
        "amq.topic",
        "cc.a",
        BasicPublishOptions::default(),
        b"ccbcc",
        props,
    )
    .await;
    ch.tx_select().await.unwrap();
    publish(&ch, "", "p-q1", b"intx").await;
    ch.tx_commit().await.unwrap();
    // A consumer gets it, then it comes back (recover) and a basic.get takes it again.
    let mut consumer = consume(&ch, "p-q2", "c", false).await;
    let first = next_delivery(&mut consumer).await;
    assert!(!first.redelivered);
    ch.basic_cancel("c".into(), Default::default())
        .await
        .unwrap();
    ch.basic_recover(BasicRecoverOptions { requeue: true })
        .await
        .unwrap();
    let again = get(&ch, "p-q2", true).await.expect("redelivered");
    assert!(again.delivery.redelivered);
    let got = take_traces(&ch, &tq).await;
    let want = recorded["messages"].as_array().unwrap();
    let keys: Vec<&str> = got.iter().map(|t| t.routing_key.as_str()).collect();
    assert_eq!(
        keys,
        want.iter()
            .map(|w| w["routing_key"].as_str().unwrap())
            .collect::<Vec<_>>()
    );
    for (g, w) in got.iter().zip(want) {
        assert_like(g, w, &broker);
    }
}

#[tokio::test]
async fn only_the_traced_vhost_is_copied_and_the_trace_exchange_is_internal() {
    let broker = Broker::start();
    let (status, _) = http_request(broker.http_port, "PUT", "/api/vhosts/other", None);
    assert_eq!(status, 201);
    // Every vhost has the exchange, durable, internal, topic (as RabbitMQ declares it).
    let x = api(broker.http_port, "/api/exchanges/other/amq.rabbitmq.trace");
    let want = &fixture("firehose_trace_more_3.10.8.json")["api"]["new_vhost_trace_exchange"];
    for field in ["type", "durable", "internal", "auto_delete", "arguments"] {
        assert_eq!(x[field], want[field], "{field}");
    }
    set_tracing(&broker, "%2F", true);
    let conn = connect(&broker.amqp_url()).await;
    let ch = channel(&conn).await;
    let tq = trace_queue(&ch).await;
    let other = connect(&format!(
        "amqp://guest:guest@127.0.0.1:{}/other",
        broker.port
    ))
    .await;
    let och = channel(&other).await;
    let otq = trace_queue(&och).await;
    declare_queue(&och, "oq", Default::default()).await;
    publish(&och, "", "oq", b"elsewhere").await;
    assert!(get(&och, "oq", true).await.is_some());
    assert!(
        take_traces(&och, &otq).await.is_empty(),
        "other is not traced"
    );
    assert!(take_traces(&ch, &tq).await.is_empty(), "nor copied to /");
    // Publishing to the trace exchange is refused (internal): no loop can start there.
    // The error is read as channel_error_after does: when the broker's channel.close
    // beats the round trip, lapin answers it with the channel's state (closing).
    let mut events = conn.events_listener();
    let confirm = ch
        .basic_publish(
            "amq.rabbitmq.trace".into(),
            "publish.x".into(),
            BasicPublishOptions::default(),
            b"x",
            BasicProperties::default(),
        )
        .await
        .unwrap();
    drop(confirm);
    let refused = channel_error_after(&mut events, &ch).await;
    assert_eq!(refused.map(|(code, _)| code), Some(403));
}

#[tokio::test]
async fn the_api_refuses_a_non_boolean_and_a_restart_forgets_tracing() {
    let broker = Broker::start();
    let recorded = &fixture("firehose_trace_more_3.10.8.json")["api"];
    let bad = &recorded["put_tracing_not_boolean"];
    let (status, body) = http_request(
        broker.http_port,
        "PUT",
        "/api/vhosts/%2F",
        Some(&bad["request"].to_string()),
    );
    assert_eq!(u64::from(status), bad["status"].as_u64().unwrap());
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), bad["body"]);
    let (status, _) = http_request(
        broker.http_port,
        "PUT",
        "/api/vhosts/%2F",
        Some(r#"{"tracing":"true"}"#),
    );
    assert_eq!(
        u64::from(status),
        recorded["put_tracing_string_true_status"].as_u64().unwrap()
    );
    assert_eq!(
        api(broker.http_port, "/api/vhosts")[0]["tracing"],
        json!(true)
    );
    // A PUT without the field leaves it as it is.
    let (status, _) = http_request(broker.http_port, "PUT", "/api/vhosts/%2F", Some("{}"));
    assert_eq!(status, 204);
    assert_eq!(
        api(broker.http_port, "/api/vhosts/%2F")["tracing"],
        json!(true)
    );
    let broker = broker.restart(false);
    assert_eq!(
        api(broker.http_port, "/api/vhosts/%2F")["tracing"],
        recorded["tracing_after_node_restart"]
    );
}

/// A directory with the rabbitmqctl name linked to the warren binary.
fn tools_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("warren-firehose-tools-{}", std::process::id()));
    let out = Command::new(warren_bin())
        .arg("install-tools")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

fn rabbitmqctl(broker: &Broker, dir: &std::path::Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(dir.join("rabbitmqctl"))
        .args(args)
        .env("WARREN_CTL_HOST", format!("127.0.0.1:{}", broker.http_port))
        .env_remove("WARREN_CTL_USER")
        .env_remove("WARREN_CTL_PASSWORD")
        .env_remove("RABBITMQ_DEFAULT_USER")
        .env_remove("RABBITMQ_DEFAULT_PASS")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test]
async fn rabbitmqctl_trace_on_and_off_say_what_rabbitmq_says() {
    let broker = Broker::start();
    let recorded = fixture("firehose_trace_3.10.8.json");
    let dir = tools_dir();
    let (code, out) = rabbitmqctl(&broker, &dir, &["trace_on", "-p", "/"]);
    assert_eq!(
        (code, out.as_str()),
        (0, recorded["trace_on_output"].as_str().unwrap())
    );
    assert_eq!(
        api(broker.http_port, "/api/vhosts/%2F")["tracing"],
        json!(true)
    );
    let conn = connect(&broker.amqp_url()).await;
    let ch = channel(&conn).await;
    let tq = trace_queue(&ch).await;
    declare_queue(&ch, "ctl-q", Default::default()).await;
    publish(&ch, "", "ctl-q", b"one").await;
    let mut consumer = consume(&ch, "ctl-q", "c", true).await;
    assert_eq!(body_str(&next_delivery(&mut consumer).await), "one");
    let got = take_traces(&ch, &tq).await;
    let keys: Vec<&str> = got.iter().map(|t| t.routing_key.as_str()).collect();
    assert_eq!(keys, ["publish.", "deliver.ctl-q"]);
    assert_eq!(got[1].header("redelivered"), json!(0));
    assert_eq!(got[1].header("routing_keys"), json!(["ctl-q"]));
    let (code, out) = rabbitmqctl(&broker, &dir, &["trace_off", "-p", "/"]);
    assert_eq!(
        (code, out.as_str()),
        (0, recorded["trace_off_output"].as_str().unwrap())
    );
    publish(&ch, "", "ctl-q", b"two").await;
    assert_eq!(body_str(&next_delivery(&mut consumer).await), "two");
    assert!(take_traces(&ch, &tq).await.is_empty());
    // Quiet: only the result line, as RabbitMQ prints it.
    let (code, out) = rabbitmqctl(&broker, &dir, &["-q", "trace_on"]);
    assert_eq!((code, out.as_str()), (0, "Trace enabled for vhost /\n"));
    let _ = std::fs::remove_dir_all(&dir);
}
