//! Durability across restarts: durable entities come back with their arguments and
//! bindings, transient and exclusive ones do not.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use lapin::{
    options::*,
    types::{AMQPValue, FieldTable, LongString},
    ExchangeKind,
};
use warren_integration::{client::*, Broker};

fn args(pairs: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in pairs {
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

async fn declare_topology(broker: &Broker) {
    let conn = connect(&broker.amqp_url()).await;
    let ch = confirm_channel(&conn).await;
    let x_opts = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    for (name, kind) in [
        ("d.topic", ExchangeKind::Topic),
        ("d.fanout", ExchangeKind::Fanout),
        ("d.headers", ExchangeKind::Headers),
    ] {
        within(
            "exchange.declare",
            ch.exchange_declare(name.into(), kind, x_opts, FieldTable::default()),
        )
        .await
        .unwrap();
    }
    within(
        "exchange.declare",
        ch.exchange_declare(
            "t.direct".into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .unwrap();
    let q_args = args(&[
        ("x-max-priority", AMQPValue::ShortShortUInt(7)),
        ("x-message-ttl", AMQPValue::LongInt(600_000)),
        (
            "x-dead-letter-exchange",
            AMQPValue::LongString(LongString::from("d.fanout")),
        ),
    ]);
    within(
        "queue.declare",
        ch.queue_declare("d.q".into(), durable(), q_args),
    )
    .await
    .unwrap();
    declare_queue(&ch, "d.other", durable()).await;
    declare_queue(&ch, "t.q", QueueDeclareOptions::default()).await;
    let bind = |q: &'static str, x: &'static str, k: &'static str, a: FieldTable| {
        let ch = ch.clone();
        async move {
            within(
                "queue.bind",
                ch.queue_bind(q.into(), x.into(), k.into(), QueueBindOptions::default(), a),
            )
            .await
            .unwrap()
        }
    };
    bind("d.q", "d.topic", "a.#", FieldTable::default()).await;
    bind("d.other", "d.fanout", "", FieldTable::default()).await;
    bind(
        "d.q",
        "d.headers",
        "",
        args(&[
            ("x-match", AMQPValue::LongString(LongString::from("any"))),
            ("k", AMQPValue::LongString(LongString::from("v"))),
        ]),
    )
    .await;
    // Transient ends: these bindings are not durable.
    bind("t.q", "d.topic", "t.#", FieldTable::default()).await;
    within(
        "exchange.bind",
        ch.exchange_bind(
            "d.fanout".into(),
            "d.topic".into(),
            "f.#".into(),
            ExchangeBindOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .unwrap();
    // Deleted before the restart: must stay deleted.
    declare_queue(&ch, "d.gone", durable()).await;
    within(
        "queue.delete",
        ch.queue_delete("d.gone".into(), QueueDeleteOptions::default()),
    )
    .await
    .unwrap();
    conn.close(200, "bye".into()).await.unwrap();
}

async fn check_topology(broker: &Broker) {
    let conn = connect(&broker.amqp_url()).await;
    let ch = confirm_channel(&conn).await;
    // Same arguments (same AMQP types): redeclaring is equivalent.
    let q_args = args(&[
        ("x-max-priority", AMQPValue::ShortShortUInt(7)),
        ("x-message-ttl", AMQPValue::LongInt(600_000)),
        (
            "x-dead-letter-exchange",
            AMQPValue::LongString(LongString::from("d.fanout")),
        ),
    ]);
    within(
        "queue.declare",
        ch.queue_declare("d.q".into(), durable(), q_args),
    )
    .await
    .expect("d.q restored with the same arguments");
    passive_queue(&ch, "d.other").await.expect("d.other");
    let err = passive_queue(&ch, "t.q").await.unwrap_err();
    assert_eq!(amqp_error(&err).0, 404, "transient queue must be gone");
    let ch = confirm_channel(&conn).await;
    let err = passive_queue(&ch, "d.gone").await.unwrap_err();
    assert_eq!(amqp_error(&err).0, 404, "deleted queue must stay deleted");
    let ch = confirm_channel(&conn).await;
    // Bindings route again: topic -> d.q, topic -> fanout (e2e) -> d.other, headers -> d.q.
    publish(&ch, "d.topic", "a.b", b"via-topic").await;
    publish(&ch, "d.topic", "f.x", b"via-e2e").await;
    let headers = {
        let mut h = FieldTable::default();
        h.insert("k".into(), AMQPValue::LongString(LongString::from("v")));
        h
    };
    publish_with(
        &ch,
        "d.headers",
        "",
        BasicPublishOptions::default(),
        b"via-headers",
        lapin::BasicProperties::default().with_headers(headers),
    )
    .await;
    let mut got = drain(&ch, "d.q").await;
    got.sort();
    assert_eq!(got, ["via-headers", "via-topic"]);
    assert_eq!(drain(&ch, "d.other").await, ["via-e2e"]);
    let err = within(
        "exchange.declare passive",
        ch.exchange_declare(
            "t.direct".into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(amqp_error(&err).0, 404, "transient exchange must be gone");
}

#[tokio::test]
async fn durable_topology_survives_a_clean_restart() {
    let broker = Broker::start();
    declare_topology(&broker).await;
    let broker = broker.restart(false);
    check_topology(&broker).await;
    // And a second restart from the compacted snapshot.
    let broker = broker.restart(false);
    check_topology(&broker).await;
}

#[tokio::test]
async fn durable_topology_survives_sigkill() {
    let broker = Broker::start();
    declare_topology(&broker).await;
    let broker = broker.restart(true);
    check_topology(&broker).await;
}

#[tokio::test]
async fn exclusive_durable_queue_is_not_restored() {
    let broker = Broker::start();
    {
        let conn = connect(&broker.amqp_url()).await;
        let ch = channel(&conn).await;
        declare_queue(
            &ch,
            "d.excl",
            QueueDeclareOptions {
                durable: true,
                exclusive: true,
                ..Default::default()
            },
        )
        .await;
    }
    let broker = broker.restart(true);
    let conn = connect(&broker.amqp_url()).await;
    let ch = channel(&conn).await;
    let err = passive_queue(&ch, "d.excl").await.unwrap_err();
    assert_eq!(amqp_error(&err).0, 404);
}

fn persistent() -> lapin::BasicProperties {
    lapin::BasicProperties::default().with_delivery_mode(2)
}

async fn publish_persistent(ch: &lapin::Channel, queue: &str, body: &str) {
    let c = publish_with(
        ch,
        "",
        queue,
        BasicPublishOptions::default(),
        body.as_bytes(),
        persistent(),
    )
    .await;
    assert!(matches!(c, lapin::Confirmation::Ack(None)), "{c:?}");
}

#[tokio::test]
async fn persistent_messages_survive_restarts_and_acks_are_remembered() {
    for kill in [false, true] {
        let broker = Broker::start();
        {
            let conn = connect(&broker.amqp_url()).await;
            let ch = confirm_channel(&conn).await;
            declare_queue(&ch, "dq", durable()).await;
            declare_queue(&ch, "dq2", durable()).await;
            for i in 0..20 {
                publish_persistent(&ch, "dq", &format!("p{i}")).await;
            }
            // Transient messages in a durable queue are dropped at restart.
            publish(&ch, "", "dq", b"transient").await;
            // The same persistent message in two durable queues (fanout through amq.fanout).
            within(
                "queue.bind",
                ch.queue_bind(
                    "dq2".into(),
                    "amq.fanout".into(),
                    "".into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                ),
            )
            .await
            .unwrap();
            let c = publish_with(
                &ch,
                "amq.fanout",
                "",
                BasicPublishOptions::default(),
                b"shared",
                persistent(),
            )
            .await;
            assert!(matches!(c, lapin::Confirmation::Ack(None)));
            // Ack the first five: they must not come back.
            for _ in 0..5 {
                let m = get(&ch, "dq", false).await.expect("message");
                within("ack", m.delivery.ack(BasicAckOptions::default()))
                    .await
                    .unwrap();
            }
            // Deliver two more without acking: they come back marked redelivered.
            let _held1 = get(&ch, "dq", false).await.expect("message");
            let _held2 = get(&ch, "dq", false).await.expect("message");
            sync(&ch).await.unwrap();
            if !kill {
                conn.close(200, "bye".into()).await.unwrap();
            } else {
                // The round trip proves the gets were handled, not that the journal's
                // writer thread has had its turn: the "delivered" marks (a redelivery
                // hint, not data) are written on that turn, and a SIGKILL in the same
                // instant can beat it. Ask the broker to say when they are on disk.
                broker.sync_store();
            }
        }
        let broker = broker.restart(kill);
        let conn = connect(&broker.amqp_url()).await;
        let ch = confirm_channel(&conn).await;
        let q = passive_queue(&ch, "dq").await.unwrap();
        assert_eq!(q.message_count(), 15, "kill={kill}");
        let mut got = Vec::new();
        while let Some(m) = get(&ch, "dq", true).await {
            got.push((
                String::from_utf8(m.delivery.data.clone()).unwrap(),
                m.delivery.redelivered,
            ));
        }
        let expected: Vec<(String, bool)> = (5..20).map(|i| (format!("p{i}"), i < 7)).collect();
        assert_eq!(got, expected, "kill={kill}");
        assert_eq!(drain(&ch, "dq2").await, ["shared"]);
        // And what was consumed now stays consumed. Acks are synced lazily (a SIGKILL may
        // bring back what was acked a moment before, as in RabbitMQ): once the broker says
        // its store caught up, they are on disk.
        broker.sync_store();
        let broker = broker.restart(kill);
        let conn = connect(&broker.amqp_url()).await;
        let ch = channel(&conn).await;
        assert_eq!(passive_queue(&ch, "dq").await.unwrap().message_count(), 0);
        assert_eq!(passive_queue(&ch, "dq2").await.unwrap().message_count(), 0);
    }
}

#[tokio::test]
async fn tx_commit_of_persistent_messages_survives_sigkill() {
    let broker = Broker::start();
    {
        let conn = connect(&broker.amqp_url()).await;
        let ch = channel(&conn).await;
        declare_queue(&ch, "txq", durable()).await;
        within("tx.select", ch.tx_select()).await.unwrap();
        for i in 0..10 {
            within(
                "basic.publish",
                ch.basic_publish(
                    "".into(),
                    "txq".into(),
                    BasicPublishOptions::default(),
                    format!("t{i}").as_bytes(),
                    persistent(),
                ),
            )
            .await
            .unwrap();
        }
        within("tx.commit", ch.tx_commit()).await.unwrap();
    }
    let broker = broker.restart(true);
    let conn = connect(&broker.amqp_url()).await;
    let ch = channel(&conn).await;
    let got = drain(&ch, "txq").await;
    assert_eq!(got, (0..10).map(|i| format!("t{i}")).collect::<Vec<_>>());
}

/// One publisher of the crash test: persistent messages `"{id}:{n}"` with up to 64
/// confirms outstanding, until the broker dies. Returns the highest confirmed `n`.
async fn crash_publisher(url: String, id: usize, queue: String, start: u64) -> u64 {
    let conn = match lapin::Connection::connect(&url, lapin::ConnectionProperties::default()).await
    {
        Ok(c) => c,
        Err(_) => return start,
    };
    let Ok(ch) = conn.create_channel().await else {
        return start;
    };
    if ch
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .is_err()
    {
        return start;
    }
    let mut outstanding = std::collections::VecDeque::new();
    let mut confirmed = start;
    let mut n = start;
    loop {
        n += 1;
        let publish = ch
            .basic_publish(
                "".into(),
                queue.as_str().into(),
                BasicPublishOptions::default(),
                format!("{id}:{n}").as_bytes(),
                persistent(),
            )
            .await;
        let Ok(confirm) = publish else {
            return confirmed;
        };
        outstanding.push_back((n, confirm));
        while outstanding.len() > 64 {
            let Some((seq, c)) = outstanding.pop_front() else {
                break;
            };
            match c.await {
                Ok(lapin::Confirmation::Ack(_)) => confirmed = seq,
                _ => return confirmed,
            }
        }
    }
}

/// A tiny deterministic generator for kill times, seeded from the clock (printed).
fn lcg(state: &mut u64) -> u64 {
    *state = state
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    *state >> 33
}

#[tokio::test]
async fn confirmed_messages_survive_sigkill_at_random_moments() {
    const PUBLISHERS: usize = 4;
    const ROUNDS: usize = 4;
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    println!("crash test seed {seed}");
    let mut broker = Broker::start();
    {
        let conn = connect(&broker.amqp_url()).await;
        let ch = channel(&conn).await;
        for q in 0..2 {
            declare_queue(&ch, &format!("crash-{q}"), durable()).await;
        }
    }
    // Per publisher: highest n confirmed, and highest n seen in a queue.
    let mut confirmed = [0u64; PUBLISHERS];
    let mut seen = [0u64; PUBLISHERS];
    for round in 0..ROUNDS {
        let url = broker.amqp_url();
        let tasks: Vec<_> = (0..PUBLISHERS)
            .map(|id| {
                tokio::spawn(crash_publisher(
                    url.clone(),
                    id,
                    format!("crash-{}", id % 2),
                    seen[id].max(confirmed[id]),
                ))
            })
            .collect();
        let delay = 300 + lcg(&mut seed) % 900;
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
        broker = broker.restart(true);
        for (id, t) in tasks.into_iter().enumerate() {
            confirmed[id] = t.await.unwrap();
        }
        println!("round {round}: killed after {delay} ms, confirmed {confirmed:?}");
        // Everything confirmed is there, once, in publish order per publisher.
        let conn = connect(&broker.amqp_url()).await;
        let ch = channel(&conn).await;
        let mut found: Vec<Vec<u64>> = vec![Vec::new(); PUBLISHERS];
        for q in 0..2 {
            for body in drain(&ch, &format!("crash-{q}")).await {
                let (id, n) = body.split_once(':').unwrap();
                found[id.parse::<usize>().unwrap()].push(n.parse().unwrap());
            }
        }
        for id in 0..PUBLISHERS {
            let got = &found[id];
            assert!(
                got.windows(2).all(|w| w[0] < w[1]),
                "round {round} publisher {id}: out of order or duplicated: {got:?}"
            );
            let first_expected = seen[id] + 1;
            let missing: Vec<u64> = (first_expected..=confirmed[id])
                .filter(|n| got.binary_search(n).is_err())
                .collect();
            assert!(
                missing.is_empty(),
                "round {round} publisher {id}: confirmed but lost: {missing:?} (confirmed up to {}, seed {})",
                confirmed[id],
                seed
            );
            if let Some(last) = got.last() {
                seen[id] = *last;
            }
            seen[id] = seen[id].max(confirmed[id]);
        }
        assert!(
            confirmed.iter().sum::<u64>() > 0,
            "round {round}: nothing was confirmed before the kill"
        );
    }
}

fn segment_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join("msgs"))
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "seg"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

async fn fill_durable(broker: &Broker, queue: &str, n: usize) {
    let conn = connect(&broker.amqp_url()).await;
    let ch = confirm_channel(&conn).await;
    declare_queue(&ch, queue, durable()).await;
    for i in 0..n {
        publish_persistent(&ch, queue, &format!("{i:04}-{}", "x".repeat(200))).await;
    }
    conn.close(200, "bye".into()).await.unwrap();
}

#[tokio::test]
async fn damaged_store_files_lose_only_the_damaged_records() {
    let broker = Broker::start();
    fill_durable(&broker, "dmg", 100).await;
    // Flip a byte in the middle of the segment, and cut its tail mid-record.
    let broker = broker.restart_with(false, |dir| {
        let seg = segment_files(dir).pop().expect("a segment file");
        let mut data = std::fs::read(&seg).unwrap();
        let len = data.len();
        // Inside the body of message 0050: its header stays readable, so the queue that
        // lost it is known.
        let at = data
            .windows(5)
            .position(|w| w == b"0050-")
            .expect("message 0050 in the segment");
        data[at + 20] ^= 0xff;
        data.truncate(len - 100);
        std::fs::write(&seg, data).unwrap();
    });
    let conn = connect(&broker.amqp_url()).await;
    let ch = channel(&conn).await;
    let got = drain(&ch, "dmg").await;
    // One record damaged, one torn: the other 98 survive, in order.
    assert_eq!(
        got.len(),
        98,
        "{:?}",
        got.iter().map(|b| &b[..4]).collect::<Vec<_>>()
    );
    assert!(got.windows(2).all(|w| w[0] < w[1]));
    assert!(got[0].starts_with("0000"));
    // The log names the queue and how many messages it lost.
    assert!(
        broker
            .log()
            .iter()
            .any(|l| l.contains("queue 'dmg' in vhost '/'") && l.contains("lost=1")),
        "{:?}",
        broker.log()
    );
}

#[tokio::test]
async fn garbage_in_the_data_directory_does_not_stop_the_broker() {
    let broker = Broker::start();
    fill_durable(&broker, "g", 10).await;
    let broker = broker.restart_with(true, |dir| {
        std::fs::write(dir.join("msgs").join("zzzz.seg"), b"not a segment").unwrap();
        std::fs::write(dir.join("msgs").join("0000000000000000.acks"), [0xffu8; 7]).unwrap();
        // A torn, garbled tail on the metadata log.
        let log = dir.join("meta").join("meta.log");
        let mut data = std::fs::read(&log).unwrap();
        data.extend_from_slice(b"\x00\x01garbage\n0123");
        std::fs::write(&log, data).unwrap();
    });
    let conn = connect(&broker.amqp_url()).await;
    let ch = channel(&conn).await;
    assert_eq!(drain(&ch, "g").await.len(), 10);
}

#[tokio::test]
async fn bodies_beyond_the_memory_budget_are_paged_out_and_read_back_in_order() {
    let config = std::env::temp_dir().join(format!("warren-budget-{}.toml", std::process::id()));
    std::fs::write(&config, "memory_budget_mb = 1\n").unwrap();
    let broker = Broker::start_with(&["--config", config.to_str().unwrap()], &[]);
    let conn = connect(&broker.amqp_url()).await;
    let ch = confirm_channel(&conn).await;
    declare_queue(&ch, "big", durable()).await;
    declare_queue(&ch, "big-transient", QueueDeclareOptions::default()).await;
    // 4 MiB of bodies, four times the budget; every third message persistent.
    let body = |i: usize| {
        format!(
            "{i:05}:{}",
            char::from(b'a' + (i % 26) as u8).to_string().repeat(2048)
        )
    };
    for i in 0..2000 {
        let props = if i % 3 == 0 {
            persistent()
        } else {
            lapin::BasicProperties::default()
        };
        for q in ["big", "big-transient"] {
            let c = publish_with(
                &ch,
                "",
                q,
                BasicPublishOptions::default(),
                body(i).as_bytes(),
                props.clone(),
            )
            .await;
            assert!(matches!(c, lapin::Confirmation::Ack(None)));
        }
    }
    // Everything comes back, intact and in order, from memory and from disk alike.
    for q in ["big", "big-transient"] {
        let mut consumer = consume(&ch, q, "", false).await;
        for i in 0..1000 {
            let d = next_delivery(&mut consumer).await;
            assert_eq!(body_str(&d), body(i), "{q} message {i}");
            d.ack(BasicAckOptions::default()).await.unwrap();
        }
        ch.basic_cancel(
            consumer.tag().as_str().into(),
            BasicCancelOptions::default(),
        )
        .await
        .unwrap();
    }
    sync(&ch).await.unwrap();
    drop(conn);
    // After a restart the persistent half of what was left is back, in order.
    let broker = broker.restart(false);
    let conn = connect(&broker.amqp_url()).await;
    let ch = channel(&conn).await;
    let expected: Vec<String> = (1000..2000).filter(|i| i % 3 == 0).map(body).collect();
    assert_eq!(drain(&ch, "big").await, expected);
    let _ = std::fs::remove_file(&config);
}

fn resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn tail_files(data: &std::path::Path) -> usize {
    let Ok(dirs) = std::fs::read_dir(data.join("spill")) else {
        return 0;
    };
    dirs.flatten()
        .filter_map(|d| std::fs::read_dir(d.path()).ok())
        .map(|files| files.count())
        .sum()
}

/// Publishes `n` messages numbered from `start` with confirms, a batch at a time; every
/// second one persistent.
async fn publish_numbered(ch: &lapin::Channel, queue: &str, start: usize, n: usize) {
    let filler = "x".repeat(500);
    for batch in (start..start + n).collect::<Vec<_>>().chunks(1000) {
        let mut confirms = Vec::with_capacity(batch.len());
        for &i in batch {
            let props = if i % 2 == 0 {
                persistent()
            } else {
                lapin::BasicProperties::default()
            };
            let body = format!("{i:08}:{filler}");
            confirms.push(
                ch.basic_publish(
                    "".into(),
                    queue.into(),
                    BasicPublishOptions::default(),
                    body.as_bytes(),
                    props,
                )
                .await
                .unwrap(),
            );
        }
        for c in confirms {
            assert!(matches!(c.await.unwrap(), lapin::Confirmation::Ack(None)));
        }
    }
}

/// Consumes `n` messages and returns their numbers, acking every 500.
async fn consume_numbers(ch: &lapin::Channel, queue: &str, n: usize) -> Vec<usize> {
    ch.basic_qos(2000, BasicQosOptions::default())
        .await
        .unwrap();
    let mut consumer = consume(ch, queue, "", false).await;
    let mut seen = Vec::with_capacity(n);
    for k in 0..n {
        let d = next_delivery(&mut consumer).await;
        seen.push(body_str(&d)[..8].parse().unwrap());
        if k % 500 == 499 || k == n - 1 {
            d.ack(BasicAckOptions { multiple: true }).await.unwrap();
        }
    }
    ch.basic_cancel(
        consumer.tag().as_str().into(),
        BasicCancelOptions::default(),
    )
    .await
    .unwrap();
    seen
}

#[tokio::test]
async fn a_queue_far_longer_than_the_memory_budget_keeps_its_tail_on_disk() {
    let config = std::env::temp_dir().join(format!("warren-tail-{}.toml", std::process::id()));
    std::fs::write(&config, "memory_budget_mb = 2\n").unwrap();
    let broker = Broker::start_with(&["--config", config.to_str().unwrap()], &[]);
    let data = broker.data_dir().to_path_buf();
    let conn = connect(&broker.amqp_url()).await;
    let ch = confirm_channel(&conn).await;
    declare_queue(&ch, "long", durable()).await;
    let rss_before = resident_kib(broker.pid());
    // Held in memory, 150,000 entries grew the broker by ~48 MiB (measured with the tail
    // turned off); with the tail on disk it keeps a window of them (~8 MiB growth).
    let n = 150_000;
    publish_numbered(&ch, "long", 0, n).await;
    let grown = resident_kib(broker.pid()).saturating_sub(rss_before);
    assert!(tail_files(&data) > 0, "the queue's tail went to disk");
    assert!(
        grown < 24 * 1024,
        "resident memory grew by {grown} KiB for {n} queued messages"
    );
    let q = passive_queue(&ch, "long").await.unwrap();
    assert_eq!(q.message_count() as usize, n);
    // The first third comes back in order, from memory and the tail alike.
    let first = consume_numbers(&ch, "long", n / 3).await;
    assert_eq!(first, (0..n / 3).collect::<Vec<_>>());
    sync(&ch).await.unwrap();
    drop(conn);
    // After a restart the persistent messages left come back in order, through the
    // tail again; the transient ones are gone.
    let broker = broker.restart(false);
    let conn = connect(&broker.amqp_url()).await;
    let ch = confirm_channel(&conn).await;
    let expected: Vec<usize> = (n / 3..n).filter(|i| i % 2 == 0).collect();
    let q = passive_queue(&ch, "long").await.unwrap();
    assert_eq!(q.message_count() as usize, expected.len());
    assert!(tail_files(&data) > 0, "recovery put the tail on disk");
    // New messages queue up behind the recovered ones.
    publish_numbered(&ch, "long", n, 10).await;
    let rest = consume_numbers(&ch, "long", expected.len() + 10).await;
    let mut all = expected.clone();
    all.extend(n..n + 10);
    assert_eq!(rest, all);
    sync(&ch).await.unwrap();
    assert_eq!(tail_files(&data), 0, "a drained tail leaves no files");
    let _ = std::fs::remove_file(&config);
}

/// Two brokers on one data directory would overwrite each other's logs: the second
/// refuses to start and names the PID that holds the directory; after a SIGKILL the
/// directory is free at once (the kernel drops the lock with the process).
#[tokio::test]
async fn a_second_broker_on_the_same_data_directory_refuses_to_start() {
    let broker = Broker::start();
    let second = std::process::Command::new(warren_integration::warren_bin())
        .args(["--listen", "127.0.0.1:0", "--http-listen", "off"])
        .args(["--prometheus-listen", "off", "--data-dir"])
        .arg(broker.data_dir())
        .env("NO_COLOR", "1")
        .env("WARREN_RABBITMQ_ETC", "off")
        .output()
        .expect("run a second warren");
    assert!(!second.status.success(), "the second broker must not start");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&second.stdout),
        String::from_utf8_lossy(&second.stderr)
    );
    assert!(
        said.contains(&format!("in use by another warren (PID {})", broker.pid())),
        "{said}"
    );
    // The first one is unharmed, and a restart after SIGKILL takes the directory.
    let broker = broker.restart(true);
    let conn = connect(&broker.amqp_url()).await;
    let ch = channel(&conn).await;
    let q = exclusive_queue(&ch).await;
    publish(&ch, "", &q, b"after the restart").await;
    assert_eq!(drain(&ch, &q).await, vec!["after the restart".to_string()]);
}

/// A flipped byte in the metadata log stops the start, naming the file, the line and the
/// durable queue it held, and changes nothing: with the byte put back, the queue and its
/// confirmed messages are all there (warren used to drop the queue and its messages).
#[tokio::test]
async fn damaged_metadata_stops_the_start_and_changes_nothing() {
    let broker = Broker::start();
    fill_durable(&broker, "meta-dmg", 200).await;
    let bin = warren_integration::warren_bin();
    let broker = broker.restart_with(true, |dir| {
        let log = dir.join("meta").join("meta.log");
        let original = std::fs::read(&log).unwrap();
        let at = original
            .windows(8)
            .position(|w| w == b"meta-dmg")
            .expect("the queue's record is in the log");
        let mut damaged = original.clone();
        damaged[at + 2] ^= 0x01;
        std::fs::write(&log, &damaged).unwrap();
        let out = std::process::Command::new(&bin)
            .args(["--listen", "127.0.0.1:0", "--http-listen", "off"])
            .args(["--prometheus-listen", "off", "--data-dir"])
            .arg(dir)
            .env("NO_COLOR", "1")
            .env("WARREN_RABBITMQ_ETC", "off")
            .output()
            .expect("run warren");
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !out.status.success(),
            "a damaged log must stop the start: {said}"
        );
        assert!(
            said.contains("meta.log") && said.contains("(line "),
            "{said}"
        );
        assert!(
            said.contains("queue 'me"),
            "names what the line held: {said}"
        );
        assert!(said.contains("--repair-metadata"), "{said}");
        assert_eq!(
            std::fs::read(&log).unwrap(),
            damaged,
            "the damaged file is untouched"
        );
        std::fs::write(&log, &original).unwrap();
    });
    let conn = connect(&broker.amqp_url()).await;
    let ch = channel(&conn).await;
    assert_eq!(drain(&ch, "meta-dmg").await.len(), 200);
}

/// `/api/warren/orphans` as a list of (id, messages).
fn orphans(broker: &Broker) -> Vec<(u64, u64)> {
    warren_integration::api(broker.http_port, "/api/warren/orphans")
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["id"].as_u64().unwrap(), o["messages"].as_u64().unwrap()))
        .collect()
}

#[tokio::test]
async fn messages_of_a_queue_the_metadata_lost_are_kept_until_the_operator_decides() {
    let broker = Broker::start();
    fill_durable(&broker, "lost-q", 30).await;
    fill_durable(&broker, "other-lost-q", 5).await;
    {
        let conn = connect(&broker.amqp_url()).await;
        let ch = confirm_channel(&conn).await;
        // A deleted durable queue and a transient queue: neither leaves orphans behind.
        declare_queue(&ch, "deleted-q", durable()).await;
        publish_persistent(&ch, "deleted-q", "gone").await;
        within(
            "queue.delete",
            ch.queue_delete("deleted-q".into(), QueueDeleteOptions::default()),
        )
        .await
        .unwrap();
        declare_queue(&ch, "transient-q", QueueDeclareOptions::default()).await;
        publish_persistent(&ch, "transient-q", "transient").await;
        conn.close(200, "bye".into()).await.unwrap();
    }
    broker.sync_store();
    // The metadata is lost (an old backup put back, say): the store still has the messages.
    let broker = broker.restart_with(false, |data| {
        std::fs::remove_dir_all(data.join("meta")).unwrap();
    });
    let found = orphans(&broker);
    let mut counts: Vec<u64> = found.iter().map(|(_, n)| *n).collect();
    counts.sort_unstable();
    assert_eq!(counts, vec![5, 30], "{found:?}");
    let log = broker.log().join("\n");
    assert!(
        log.contains("persistent messages of a queue the metadata does not know"),
        "{log}"
    );
    let (lost, _) = *found.iter().find(|(_, n)| *n == 30).unwrap();
    let (other, _) = *found.iter().find(|(_, n)| *n == 5).unwrap();

    // Attached to a durable queue: all of them, in order, and they stay there.
    let conn = connect(&broker.amqp_url()).await;
    let ch = confirm_channel(&conn).await;
    declare_queue(&ch, "rescued", durable()).await;
    conn.close(200, "bye".into()).await.unwrap();
    let (status, body) = warren_integration::http_request(
        broker.http_port,
        "POST",
        &format!("/api/warren/orphans/{lost}/attach"),
        Some(r#"{"vhost": "/", "queue": "rescued"}"#),
    );
    assert_eq!((status, body.as_str()), (200, r#"{"moved":30}"#));
    // Dropped: the operator's decision.
    let (status, body) = warren_integration::http_request(
        broker.http_port,
        "DELETE",
        &format!("/api/warren/orphans/{other}"),
        None,
    );
    assert_eq!((status, body.as_str()), (200, r#"{"dropped":5}"#));
    assert!(orphans(&broker).is_empty());
    broker.sync_store();

    let broker = broker.restart(true);
    assert!(orphans(&broker).is_empty(), "{:?}", orphans(&broker));
    let conn = connect(&broker.amqp_url()).await;
    let ch = channel(&conn).await;
    let mut got = Vec::new();
    while let Some(m) = get(&ch, "rescued", true).await {
        got.push(String::from_utf8(m.delivery.data.clone()).unwrap());
    }
    let want: Vec<String> = (0..30)
        .map(|i| format!("{i:04}-{}", "x".repeat(200)))
        .collect();
    assert_eq!(got, want);
}

/// Publishes `count` copies of `body` to `queue` on a confirm channel, 100 at a time, and
/// checks that each was acked.
async fn publish_confirmed(ch: &lapin::Channel, queue: &str, body: &[u8], count: usize) {
    for batch in 0..count.div_ceil(100) {
        let mut confirms = Vec::new();
        for _ in 0..(count - batch * 100).min(100) {
            confirms.push(
                ch.basic_publish(
                    "".into(),
                    queue.into(),
                    BasicPublishOptions::default(),
                    body,
                    lapin::BasicProperties::default(),
                )
                .await
                .unwrap(),
            );
        }
        for c in confirms {
            assert!(
                matches!(c.await.unwrap(), lapin::Confirmation::Ack(None)),
                "batch {batch}"
            );
        }
    }
}

/// Waits up to 15 s (the trimmer looks once a second) for the broker's resident memory to
/// fall back to within a third of the way from `idle` to `peak`; returns it.
async fn resident_falls_back(broker: &Broker, idle: u64, peak: u64) -> u64 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let mut now = resident_kib(broker.pid());
    while now > idle + (peak - idle) / 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "memory stayed: idle {idle} KiB, peak {peak} KiB, now {now} KiB; {}",
            broker.log().join("\n")
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        now = resident_kib(broker.pid());
    }
    now
}

#[tokio::test]
async fn memory_freed_after_a_flood_goes_back_to_the_system() {
    let config = std::env::temp_dir().join(format!("warren-trim-{}.toml", std::process::id()));
    std::fs::write(&config, "memory_budget_mb = 64\n").unwrap();
    let broker = Broker::start_with(
        &[
            "--config",
            config.to_str().unwrap(),
            "--log",
            "info,warren=debug",
        ],
        &[],
    );
    let _ = std::fs::remove_file(&config);
    let idle = resident_kib(broker.pid());
    let conn = connect(&broker.amqp_url()).await;
    let ch = confirm_channel(&conn).await;
    declare_queue(&ch, "flood", QueueDeclareOptions::default()).await;
    // 1,200 bodies of 64 KiB, 75 MiB: past the budget, the rest goes to disk.
    let body = vec![b'f'; 64 * 1024];
    publish_confirmed(&ch, "flood", &body, 1_200).await;
    let peak = resident_kib(broker.pid());
    assert!(
        peak > idle + 40 * 1024,
        "the flood shows: {idle} -> {peak} KiB"
    );
    within(
        "queue.delete",
        ch.queue_delete("flood".into(), QueueDeleteOptions::default()),
    )
    .await
    .unwrap();
    // glibc alone would keep the peak.
    let now = resident_falls_back(&broker, idle, peak).await;
    println!("idle {idle} KiB, peak {peak} KiB, after deleting {now} KiB");
}

/// Bodies of several frames are read into buffers the broker keeps for reuse while busy
/// (the body pool). Once the traffic stops those buffers go back to the system too.
#[tokio::test]
async fn pooled_body_buffers_go_back_to_the_system_when_quiet() {
    let broker = Broker::start();
    let idle = resident_kib(broker.pid());
    let conn = connect(&broker.amqp_url()).await;
    let ch = confirm_channel(&conn).await;
    declare_queue(&ch, "large-flood", QueueDeclareOptions::default()).await;
    // 48 bodies of 1 MiB (9 frames each), all queued, then all fetched.
    let body = vec![b'p'; 1 << 20];
    publish_confirmed(&ch, "large-flood", &body, 48).await;
    let peak = resident_kib(broker.pid());
    assert!(
        peak > idle + 40 * 1024,
        "the flood shows: {idle} -> {peak} KiB"
    );
    for _ in 0..48 {
        let m = get(&ch, "large-flood", true)
            .await
            .expect("a queued message");
        assert_eq!(m.delivery.data.len(), body.len());
    }
    let now = resident_falls_back(&broker, idle, peak).await;
    println!("idle {idle} KiB, peak {peak} KiB, after consuming {now} KiB");
}
