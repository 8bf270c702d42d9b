//! The x-consistent-hash exchange (rabbitmq_consistent_hash_exchange), against the
//! distribution and texts RabbitMQ 3.10.8 gave for the same bindings and keys
//! (tests/fixtures/plugins/consistent_hash_3.10.8.json).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use lapin::{
    options::*,
    types::{AMQPValue, FieldTable, LongString, ShortString},
    BasicProperties, Channel, ExchangeKind,
};
use serde_json::Value;
use warren_integration::{client::*, Broker};

const CHX: &str = "x-consistent-hash";

fn fixture() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/plugins/consistent_hash_3.10.8.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json")
}

fn with_plugin() -> Broker {
    Broker::start_with(
        &[],
        &[(
            "RABBITMQ_ENABLED_PLUGINS",
            "rabbitmq_management,rabbitmq_consistent_hash_exchange",
        )],
    )
}

fn args(entries: &[(&str, &str)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert(
            ShortString::from(*k),
            AMQPValue::LongString(LongString::from(*v)),
        );
    }
    t
}

async fn declare_chx(ch: &Channel, name: &str, arguments: FieldTable) -> lapin::Result<()> {
    within(
        "exchange.declare",
        ch.exchange_declare(
            name.into(),
            ExchangeKind::Custom(CHX.into()),
            ExchangeDeclareOptions::default(),
            arguments,
        ),
    )
    .await
}

async fn bind(ch: &Channel, queue: &str, exchange: &str, key: &str) -> lapin::Result<()> {
    within(
        "queue.bind",
        ch.queue_bind(
            queue.into(),
            exchange.into(),
            key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
}

/// Declares an exchange and queues bound with the given weights.
async fn setup(ch: &Channel, x: &str, arguments: FieldTable, binds: &[(&str, &str)]) {
    declare_chx(ch, x, arguments).await.expect("declare");
    for (q, w) in binds {
        declare_queue(ch, q, QueueDeclareOptions::default()).await;
        bind(ch, q, x, w).await.expect("bind");
    }
}

/// Publishes everything, then waits for all the confirms.
async fn publish_all(ch: &Channel, x: &str, msgs: Vec<(String, BasicProperties)>) {
    let mut confirms = Vec::new();
    for (key, props) in msgs {
        let c = ch
            .basic_publish(
                x.into(),
                key.as_str().into(),
                BasicPublishOptions::default(),
                b"",
                props,
            )
            .await
            .expect("publish");
        confirms.push(c);
    }
    within("confirms", async {
        for c in confirms {
            c.await.expect("confirm");
        }
    })
    .await;
}

async fn counts(ch: &Channel, queues: &[&str]) -> Vec<u64> {
    let mut out = Vec::new();
    for q in queues {
        out.push(u64::from(
            passive_queue(ch, q).await.expect("queue").message_count(),
        ));
    }
    out
}

/// Each queue's share of the messages is within `tolerance` (a fraction of all) of the
/// share RabbitMQ gave it.
fn assert_shares(got: &[u64], rabbit: &Value, queues: &[&str], tolerance: f64) {
    let want: Vec<u64> = queues
        .iter()
        .map(|q| rabbit[*q].as_u64().expect("fixture count"))
        .collect();
    let (gt, wt) = (
        got.iter().sum::<u64>() as f64,
        want.iter().sum::<u64>() as f64,
    );
    for (g, w) in got.iter().zip(&want) {
        let diff = (*g as f64 / gt - *w as f64 / wt).abs();
        assert!(
            diff < tolerance,
            "shares {got:?} vs RabbitMQ's {want:?} (off by {diff:.3})"
        );
    }
}

#[tokio::test]
async fn the_type_needs_the_plugin() {
    let broker = Broker::start();
    let conn = connect(&broker.amqp_url()).await;
    let ch = channel(&conn).await;
    let err = declare_chx(&ch, "chx", FieldTable::default())
        .await
        .expect_err("type unknown without the plugin");
    assert_eq!(
        amqp_error(&err),
        expected(
            503,
            "COMMAND_INVALID - unknown exchange type 'x-consistent-hash'"
        )
    );
    assert!(!exchange_types(&broker).contains(&CHX.to_string()));
    let enabled = with_plugin();
    assert_eq!(
        exchange_types(&enabled),
        ["direct", "fanout", "headers", "topic", CHX]
    );
}

/// The types `/api/overview` lists, as RabbitMQ 3.10.8 lists them.
fn exchange_types(broker: &Broker) -> Vec<String> {
    warren_integration::api(broker.http_port, "/api/overview")["exchange_types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn routing_keys_spread_by_weight() {
    let broker = with_plugin();
    let fx = fixture();
    let conn = connect(&broker.amqp_url()).await;
    let ch = confirm_channel(&conn).await;
    let queues = ["chx-q1", "chx-q2", "chx-q3", "chx-q4"];
    setup(
        &ch,
        "chx-rk",
        FieldTable::default(),
        &[
            (queues[0], "1"),
            (queues[1], "1"),
            (queues[2], "2"),
            (queues[3], "2"),
        ],
    )
    .await;
    let msgs = (0..20_000)
        .map(|i| (i.to_string(), BasicProperties::default()))
        .collect();
    publish_all(&ch, "chx-rk", msgs).await;
    let got = counts(&ch, &queues).await;
    assert_eq!(
        got.iter().sum::<u64>(),
        20_000,
        "each message to exactly one queue"
    );
    assert_shares(&got, &fx["routing_key_weights_1_1_2_2"], &queues, 0.02);

    // Weights 1..5 over five queues.
    let five = ["chx-m0", "chx-m1", "chx-m2", "chx-m3", "chx-m4"];
    let binds: Vec<(&str, String)> = five
        .iter()
        .enumerate()
        .map(|(i, q)| (*q, (i + 1).to_string()))
        .collect();
    let binds: Vec<(&str, &str)> = binds.iter().map(|(q, w)| (*q, w.as_str())).collect();
    setup(&ch, "chx-m", FieldTable::default(), &binds).await;
    let msgs = (0..20_000)
        .map(|i| (format!("key-{i}"), BasicProperties::default()))
        .collect();
    publish_all(&ch, "chx-m", msgs).await;
    let got = counts(&ch, &five).await;
    assert_shares(&got, &fx["routing_key_weights_1_to_5"], &five, 0.02);

    // One key always lands on one queue.
    let same = ["chx-s1", "chx-s2", "chx-s3"];
    setup(
        &ch,
        "chx-same",
        FieldTable::default(),
        &[(same[0], "1"), (same[1], "1"), (same[2], "2")],
    )
    .await;
    let msgs = (0..100)
        .map(|_| ("fixed-key".to_string(), BasicProperties::default()))
        .collect();
    publish_all(&ch, "chx-same", msgs).await;
    let mut got = counts(&ch, &same).await;
    got.sort();
    assert_eq!(got, vec![0, 0, 100]);
}

#[tokio::test]
async fn a_header_or_a_property_can_be_hashed_instead() {
    let broker = with_plugin();
    let fx = fixture();
    let conn = connect(&broker.amqp_url()).await;
    let ch = confirm_channel(&conn).await;
    let hq = ["chx-h1", "chx-h2", "chx-h3"];
    setup(
        &ch,
        "chx-h",
        args(&[("hash-header", "hash-on")]),
        &[(hq[0], "1"), (hq[1], "1"), (hq[2], "1")],
    )
    .await;
    let msgs = (0..10_000)
        .map(|i| {
            let mut h = FieldTable::default();
            h.insert(
                "hash-on".into(),
                AMQPValue::LongString(format!("v{i}").into()),
            );
            (
                "same".to_string(),
                BasicProperties::default().with_headers(h),
            )
        })
        .collect();
    publish_all(&ch, "chx-h", msgs).await;
    assert_shares(
        &counts(&ch, &hq).await,
        &fx["header_weights_1_1_1"],
        &hq,
        0.02,
    );
    // Without the header every message goes to one queue, whatever its routing key.
    for q in hq {
        within(
            "purge",
            ch.queue_purge(q.into(), QueuePurgeOptions::default()),
        )
        .await
        .unwrap();
    }
    let msgs = (0..300)
        .map(|i| (i.to_string(), BasicProperties::default()))
        .collect();
    publish_all(&ch, "chx-h", msgs).await;
    let mut got = counts(&ch, &hq).await;
    got.sort();
    assert_eq!(got, vec![0, 0, 300]);

    let pq = ["chx-p1", "chx-p2"];
    setup(
        &ch,
        "chx-p",
        args(&[("hash-property", "message_id")]),
        &[(pq[0], "3"), (pq[1], "1")],
    )
    .await;
    let msgs = (0..10_000)
        .map(|i| {
            (
                "same".to_string(),
                BasicProperties::default().with_message_id(format!("id-{i}").into()),
            )
        })
        .collect();
    publish_all(&ch, "chx-p", msgs).await;
    assert_shares(
        &counts(&ch, &pq).await,
        &fx["property_message_id_weights_3_1"],
        &pq,
        0.02,
    );
}

#[tokio::test]
async fn binding_keys_and_arguments_are_checked_with_rabbitmqs_texts() {
    let broker = with_plugin();
    let fx = fixture();
    let conn = connect(&broker.amqp_url()).await;
    let mut ch = channel(&conn).await;
    setup(&ch, "chx-rk", FieldTable::default(), &[("chx-q1", "1")]).await;
    for (case, key) in [
        ("bind_key_abc", "abc"),
        ("bind_key_0", "0"),
        ("bind_key_-1", "-1"),
        ("bind_key_empty", ""),
        ("bind_key_1.5", "1.5"),
        ("bind_key_ 2", " 2"),
    ] {
        let want = &fx["errors"][case];
        let err = bind(&ch, "chx-q1", "chx-rk", key).await.expect_err(case);
        assert_eq!(
            amqp_error(&err),
            expected(want[0].as_u64().unwrap() as u16, want[1].as_str().unwrap()),
            "{case}"
        );
        ch = channel(&conn).await;
    }
    assert_eq!(fx["errors"]["bind_key_+2"], "ok");
    bind(&ch, "chx-q1", "chx-rk", "+2")
        .await
        .expect("+2 is a weight");
    for (case, a) in [
        (
            "declare_both_args",
            args(&[("hash-header", "a"), ("hash-property", "message_id")]),
        ),
        ("declare_bad_property", args(&[("hash-property", "app_id")])),
    ] {
        let want = &fx["errors"][case];
        let err = declare_chx(&ch, "chx-bad", a).await.expect_err(case);
        assert_eq!(
            amqp_error(&err),
            expected(want[0].as_u64().unwrap() as u16, want[1].as_str().unwrap()),
            "{case}"
        );
        ch = channel(&conn).await;
    }
}

#[tokio::test]
async fn a_second_binding_of_a_queue_adds_no_weight_and_its_removal_takes_all() {
    let broker = with_plugin();
    let fx = fixture();
    let conn = connect(&broker.amqp_url()).await;
    let ch = confirm_channel(&conn).await;
    let rq = ["chx-r1", "chx-r2"];
    setup(
        &ch,
        "chx-re",
        FieldTable::default(),
        &[(rq[0], "1"), (rq[1], "1")],
    )
    .await;
    bind(&ch, rq[0], "chx-re", "5").await.unwrap();
    let msgs: Vec<(String, BasicProperties)> = (0..2000)
        .map(|i| (i.to_string(), BasicProperties::default()))
        .collect();
    publish_all(&ch, "chx-re", msgs.clone()).await;
    assert_shares(
        &counts(&ch, &rq).await,
        &fx["rebind_other_key_ignored_weights_1_1_plus_5"],
        &rq,
        0.05,
    );
    for q in rq {
        within(
            "purge",
            ch.queue_purge(q.into(), QueuePurgeOptions::default()),
        )
        .await
        .unwrap();
    }
    within(
        "unbind",
        ch.queue_unbind(
            rq[0].into(),
            "chx-re".into(),
            "5".into(),
            FieldTable::default(),
        ),
    )
    .await
    .unwrap();
    publish_all(&ch, "chx-re", msgs).await;
    let got = counts(&ch, &rq).await;
    let want = &fx["after_unbinding_the_ignored_key"];
    assert_eq!(
        got,
        vec![want[rq[0]].as_u64().unwrap(), want[rq[1]].as_u64().unwrap()]
    );
}

#[tokio::test]
async fn durable_rings_come_back_after_a_restart() {
    let broker = with_plugin();
    let conn = connect(&broker.amqp_url()).await;
    let ch = confirm_channel(&conn).await;
    within(
        "exchange.declare",
        ch.exchange_declare(
            "chx-d".into(),
            ExchangeKind::Custom(CHX.into()),
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        ),
    )
    .await
    .unwrap();
    let dq = ["chx-d1", "chx-d2"];
    for (q, w) in [(dq[0], "1"), (dq[1], "3")] {
        declare_queue(
            &ch,
            q,
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
        )
        .await;
        bind(&ch, q, "chx-d", w).await.unwrap();
    }
    drop(conn);
    let broker = broker.restart(false);
    let conn = connect(&broker.amqp_url()).await;
    let ch = confirm_channel(&conn).await;
    let msgs = (0..4000)
        .map(|i| (i.to_string(), BasicProperties::default()))
        .collect();
    publish_all(&ch, "chx-d", msgs).await;
    let got = counts(&ch, &dq).await;
    assert_eq!(got.iter().sum::<u64>(), 4000);
    let share = got[1] as f64 / 4000.0;
    assert!((0.70..0.80).contains(&share), "{got:?}");
}
