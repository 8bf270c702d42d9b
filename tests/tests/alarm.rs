//! Resource alarms: a broker whose disk_free_limit no disk can meet (1000 TB) has its
//! disk alarm in effect from boot, so publishers are blocked the way RabbitMQ 3.10.8
//! blocks them (measured against a real one, see docs/compatibility.md):
//! connection.blocked "low on disk" after the first publish, not at open; the socket is
//! no longer read; consumers keep working; the management API shows the alarm and the
//! `blocking`/`blocked` states. The limits change at runtime (`warren ctl
//! set_disk_free_limit` / `set_vm_memory_high_watermark`, as with rabbitmqctl), which
//! drives the whole cycle from outside: alarm, blocked, limit lowered, unblocked.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    io::{Read, Write},
    time::Duration,
};

use lapin::{
    options::*,
    protocol::{self, AMQPClass},
};
use serde_json::Value;
use tokio::net::TcpStream;
use warren_integration::{api, client::*, raw::*, Broker};

/// A broker started with a TOML config file holding `config`.
fn broker_with_config(test: &str, config: &str) -> Broker {
    let path =
        std::env::temp_dir().join(format!("warren-alarm-{}-{test}.toml", std::process::id()));
    std::fs::write(&path, config).expect("write config");
    let broker = Broker::start_with(&["--config", path.to_str().unwrap()], &[]);
    let _ = std::fs::remove_file(&path);
    broker
}

/// Polls /api/nodes until the sampler has run (it samples once a second).
async fn node_when_sampled(port: u16) -> Value {
    for _ in 0..50 {
        let nodes = api(port, "/api/nodes");
        if nodes[0]["disk_free"].as_u64().unwrap_or(0) > 0 {
            return nodes[0].clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("disk_free never sampled");
}

/// The next method frame, or `None` if none arrives within `limit`.
async fn method_within(sock: &mut TcpStream, limit: Duration) -> Option<(u16, AMQPClass)> {
    tokio::time::timeout(limit, read_method(sock)).await.ok()
}

/// Waits until some connection is in `state` according to the management API.
async fn wait_for_state(http_port: u16, state: &str) {
    for _ in 0..100 {
        if connection_states(http_port).iter().any(|s| s == state) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "no connection became {state}: {:?}",
        connection_states(http_port)
    );
}

/// Ready plus unacknowledged messages of a queue in vhost `/`.
fn queue_messages(http_port: u16, queue: &str) -> u64 {
    api(http_port, &format!("/api/queues/%2F/{queue}"))["messages"]
        .as_u64()
        .unwrap()
}

fn connection_states(http_port: u16) -> Vec<String> {
    let conns = api(http_port, "/api/connections");
    let mut states: Vec<String> = conns
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["state"].as_str().unwrap().to_string())
        .collect();
    states.sort();
    states
}

#[tokio::test]
async fn disk_alarm_blocks_publishers_but_not_consumers() {
    let broker = broker_with_config(
        "blocks",
        "disk_free_limit.absolute = \"1000TB\"\nvm_memory_high_watermark = 0.4\n",
    );
    let node = node_when_sampled(broker.http_port).await;
    assert_eq!(node["disk_free_alarm"], Value::Bool(true), "{node}");
    assert_eq!(node["mem_alarm"], Value::Bool(false), "{node}");
    assert_eq!(
        node["disk_free_limit"].as_u64(),
        Some(1_000_000_000_000_000)
    );
    assert!(node["mem_limit"].as_u64().unwrap() > 0, "{node}");

    // A consumer-only connection: declares, consumes, gets; none of it is blocked.
    let consumer_conn = connect(&broker.amqp_url()).await;
    let ch = channel(&consumer_conn).await;
    declare_queue(&ch, "alarm-q", QueueDeclareOptions::default()).await;
    let mut consumer = consume(&ch, "alarm-q", "c1", true).await;

    // The publisher: nothing arrives at open (RabbitMQ waits for a publish)...
    let mut publisher = raw_open(broker.port, true).await;
    assert!(method_within(&mut publisher, QUIET).await.is_none());
    raw_publish(&mut publisher, "alarm-q", b"must wait").await;
    // ...and the publish brings connection.blocked with RabbitMQ's reason text.
    match method_within(&mut publisher, WAIT).await {
        Some((0, AMQPClass::Connection(protocol::connection::AMQPMethod::Blocked(b)))) => {
            assert_eq!(b.reason.as_str(), "low on disk");
        }
        other => panic!("expected connection.blocked, got {other:?}"),
    }
    // The message is not routed: the API shows the publisher blocked (the broker has taken
    // the publish in and is holding it), the queue empty, and the consumer gets nothing in
    // QUIET (300 ms; a routed message reaches a local auto-ack consumer within
    // milliseconds, and the unblock test below shows a held message arriving once let go).
    wait_for_state(broker.http_port, "blocked").await;
    assert_eq!(queue_messages(broker.http_port, "alarm-q"), 0);
    assert_no_delivery(&mut consumer).await;
    // The broker no longer reads the publisher: a queue.declare goes unanswered.
    let mut args = 0u16.to_be_bytes().to_vec();
    args.extend(shortstr("alarm-other"));
    args.push(0);
    args.extend_from_slice(&0u32.to_be_bytes());
    write_method(&mut publisher, 1, 50, 10, &args).await;
    assert!(method_within(&mut publisher, Duration::from_millis(700))
        .await
        .is_none());

    // A client without the capability is blocked just the same, silently.
    let mut silent = raw_open(broker.port, false).await;
    raw_publish(&mut silent, "alarm-q", b"also waits").await;
    assert!(method_within(&mut silent, QUIET).await.is_none());

    // The consumer connection still works.
    let ch2 = channel(&consumer_conn).await;
    assert!(get(&ch2, "alarm-q", true).await.is_none());
    assert_no_delivery(&mut consumer).await;

    // The management API: two blocked publishers, the consumer `blocking`.
    assert_eq!(
        connection_states(broker.http_port),
        vec!["blocked", "blocked", "blocking"]
    );
    // Health checks fail as RabbitMQ's do (503, measured on 3.10.8).
    let health = api(broker.http_port, "/api/health/checks/alarms");
    assert_eq!(health["status"], "failed", "{health}");
    assert_eq!(
        health["reason"], "There are alarms in effect in the cluster",
        "{health}"
    );
    assert_eq!(health["alarms"][0]["resource"], "disk space", "{health}");
    assert_eq!(health["alarms"].as_array().unwrap().len(), 1, "{health}");
    let local = api(broker.http_port, "/api/health/checks/local-alarms");
    assert_eq!(local["reason"], "There are alarms in effect on the node");
    let metrics = {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", broker.metrics_port)).unwrap();
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).unwrap();
        raw
    };
    assert!(
        metrics.contains("\nrabbitmq_alarms_free_disk_space_watermark 1\n"),
        "{metrics}"
    );
}

#[tokio::test]
async fn default_limit_publishes_freely() {
    let broker = Broker::start();
    let node = node_when_sampled(broker.http_port).await;
    assert_eq!(node["disk_free_alarm"], Value::Bool(false), "{node}");
    assert_eq!(node["mem_alarm"], Value::Bool(false), "{node}");
    assert_eq!(node["disk_free_limit"].as_u64(), Some(50_000_000));
    assert_eq!(
        api(broker.http_port, "/api/health/checks/alarms"),
        serde_json::json!({"status": "ok"})
    );

    let conn = connect(&broker.amqp_url()).await;
    let ch = channel(&conn).await;
    declare_queue(&ch, "free-q", QueueDeclareOptions::default()).await;
    let mut consumer = consume(&ch, "free-q", "c1", true).await;

    let mut publisher = raw_open(broker.port, true).await;
    raw_publish(&mut publisher, "free-q", b"flows").await;
    assert_eq!(body_str(&next_delivery(&mut consumer).await), "flows");
    assert!(method_within(&mut publisher, QUIET).await.is_none());
    assert_eq!(
        connection_states(broker.http_port),
        vec!["running", "running"]
    );
}

#[tokio::test]
async fn memory_and_disk_alarms_are_both_named() {
    // A 1 MB watermark: any broker is above it.
    let broker = broker_with_config(
        "both",
        "disk_free_limit = \"1000TB\"\nvm_memory_high_watermark.absolute = \"1MB\"\n",
    );
    let node = node_when_sampled(broker.http_port).await;
    assert_eq!(node["mem_alarm"], Value::Bool(true), "{node}");
    assert_eq!(node["mem_limit"].as_u64(), Some(1_000_000));
    let health = api(broker.http_port, "/api/health/checks/alarms");
    let resources: Vec<&str> = health["alarms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["resource"].as_str().unwrap())
        .collect();
    assert_eq!(resources, ["disk space", "memory"], "{health}");
    let mut publisher = raw_open(broker.port, true).await;
    raw_publish(&mut publisher, "", b"x").await;
    match method_within(&mut publisher, WAIT).await {
        Some((0, AMQPClass::Connection(protocol::connection::AMQPMethod::Blocked(b)))) => {
            // RabbitMQ 3.10.8 names them in this order whichever came first.
            assert_eq!(b.reason.as_str(), "low on disk & memory");
        }
        other => panic!("expected connection.blocked, got {other:?}"),
    }
}

#[test]
fn bad_alarm_settings_stop_the_boot() {
    for (config, text) in [
        ("disk_free_limit = \"12XB\"\n", "disk_free_limit"),
        (
            "vm_memory_high_watermark = -1.0\n",
            "vm_memory_high_watermark",
        ),
    ] {
        let path =
            std::env::temp_dir().join(format!("warren-alarm-{}-bad.toml", std::process::id()));
        std::fs::write(&path, config).unwrap();
        let out = std::process::Command::new(warren_integration::warren_bin())
            .args([
                "--config",
                path.to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
            ])
            .args(["--http-listen", "off", "--prometheus-listen", "off"])
            .env("NO_COLOR", "1")
            .env("WARREN_RABBITMQ_ETC", "off")
            .output()
            .unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(out.status.code(), Some(2), "{config}");
        let log = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(log.contains(text), "{config}: {log}");
    }
}

/// `warren ctl` against this broker's API.
fn ctl(broker: &Broker, args: &[&str]) -> std::process::Output {
    std::process::Command::new(warren_integration::warren_bin())
        .args(["ctl", "--host", &format!("127.0.0.1:{}", broker.http_port)])
        .args(args)
        .output()
        .expect("run warren ctl")
}

/// Polls /api/nodes until `key` is `value` (the sampler runs once a second).
async fn node_until(port: u16, key: &str, value: bool) -> Value {
    for _ in 0..60 {
        let node = api(port, "/api/nodes")[0].clone();
        if node[key] == Value::Bool(value) {
            return node;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{key} never became {value}");
}

#[tokio::test]
async fn alarm_limits_change_at_runtime_and_publishers_are_unblocked() {
    let broker = Broker::start();
    let mut publisher = raw_open(broker.port, true).await;
    // A disk limit no disk meets: the alarm comes on within a sample.
    let out = ctl(&broker, &["set_disk_free_limit", "1000TB"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let node = node_until(broker.http_port, "disk_free_alarm", true).await;
    assert_eq!(
        node["disk_free_limit"].as_u64(),
        Some(1_000_000_000_000_000)
    );
    let conn = connect(&broker.amqp_url()).await;
    let ch = channel(&conn).await;
    declare_queue(&ch, "held-q", QueueDeclareOptions::default()).await;
    let mut consumer = consume(&ch, "held-q", "c1", true).await;
    raw_publish(&mut publisher, "held-q", b"held").await;
    match method_within(&mut publisher, WAIT).await {
        Some((0, AMQPClass::Connection(protocol::connection::AMQPMethod::Blocked(b)))) => {
            assert_eq!(b.reason.as_str(), "low on disk");
        }
        other => panic!("expected connection.blocked, got {other:?}"),
    }
    wait_for_state(broker.http_port, "blocked").await;
    assert_eq!(queue_messages(broker.http_port, "held-q"), 0);
    // Lowered again: connection.unblocked, and the connection is read again: the held
    // publish goes through.
    assert!(ctl(&broker, &["set_disk_free_limit", "1"]).status.success());
    match method_within(&mut publisher, WAIT).await {
        Some((0, AMQPClass::Connection(protocol::connection::AMQPMethod::Unblocked(_)))) => {}
        other => panic!("expected connection.unblocked, got {other:?}"),
    }
    assert_eq!(body_str(&next_delivery(&mut consumer).await), "held");
    node_until(broker.http_port, "disk_free_alarm", false).await;

    // The memory watermark: one byte sets the alarm, a fraction clears it.
    let out = ctl(&broker, &["set_vm_memory_high_watermark", "absolute", "1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let node = node_until(broker.http_port, "mem_alarm", true).await;
    assert_eq!(node["mem_limit"].as_u64(), Some(1));
    assert!(ctl(&broker, &["set_vm_memory_high_watermark", "0.9"])
        .status
        .success());
    node_until(broker.http_port, "mem_alarm", false).await;
    // Refused as rabbitmqctl would be given nonsense.
    assert!(!ctl(&broker, &["set_vm_memory_high_watermark", "lots"])
        .status
        .success());
}
