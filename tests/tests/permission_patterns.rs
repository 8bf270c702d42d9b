//! Permission patterns in RabbitMQ's (PCRE) syntax: look-ahead and back-references,
//! accepted by the API, definitions and rabbitmqctl, and enforced over AMQP with
//! RabbitMQ's ACCESS_REFUSED text (RabbitMQ 3.10.8 accepts them:
//! tests/fixtures/limits/rabbitmq_3.10.8.json, "permissions").
#![allow(clippy::unwrap_used, clippy::expect_used)]

use lapin::options::{ExchangeDeclareOptions, QueueDeclareOptions};
use serde_json::json;
use warren_integration::*;

fn put(broker: &Broker, path: &str, body: serde_json::Value) -> u16 {
    http_request(broker.http_port, "PUT", path, Some(&body.to_string())).0
}

/// Declares `name` on a fresh channel; the channel error, if any.
async fn try_declare(conn: &lapin::Connection, name: &str) -> Option<(u16, String)> {
    let ch = channel(conn).await;
    within(
        "queue.declare",
        ch.queue_declare(
            name.into(),
            QueueDeclareOptions::default(),
            Default::default(),
        ),
    )
    .await
    .err()
    .map(|e| amqp_error(&e))
}

fn refused(kind: &str, name: &str, vhost: &str) -> Option<(u16, String)> {
    Some(expected(
        403,
        &format!(
            "ACCESS_REFUSED - access to {kind} '{name}' in vhost '{vhost}' refused for user 'pu'"
        ),
    ))
}

/// Configure `^(?!private).*` (look-ahead); write `^(\w)\1` (a back-reference: names
/// starting with a doubled character).
async fn check(broker: &Broker, vhost: &str) {
    let conn = connect(&format!("amqp://pu:pp@127.0.0.1:{}/{vhost}", broker.port)).await;
    assert_eq!(try_declare(&conn, "public-q").await, None);
    assert_eq!(try_declare(&conn, "q-private").await, None);
    assert_eq!(
        try_declare(&conn, "private-q").await,
        refused("queue", "private-q", vhost)
    );
    // Publishing to an exchange needs write: `xx` matches ^(\w)\1, `xy` does not.
    let ch = channel(&conn).await;
    for x in ["xx", "xy"] {
        within(
            "exchange.declare",
            ch.exchange_declare(
                x.into(),
                lapin::ExchangeKind::Fanout,
                ExchangeDeclareOptions::default(),
                Default::default(),
            ),
        )
        .await
        .expect("exchange.declare");
    }
    let ch = channel(&conn).await;
    publish(&ch, "xx", "", b"m").await;
    assert!(sync(&ch).await.is_ok());
    let mut events = conn.events_listener();
    let ch = channel(&conn).await;
    within(
        "basic.publish",
        ch.basic_publish(
            "xy".into(),
            "".into(),
            Default::default(),
            b"m",
            Default::default(),
        ),
    )
    .await
    .expect("publish");
    assert_eq!(
        channel_error_after(&mut events, &ch).await,
        refused("exchange", "xy", vhost)
    );
}

#[tokio::test]
async fn look_ahead_and_back_references_through_api_and_definitions() {
    let broker = Broker::start();
    assert_eq!(
        put(
            &broker,
            "/api/users/pu",
            json!({"password": "pp", "tags": ""})
        ),
        201
    );
    assert_eq!(put(&broker, "/api/vhosts/pv", json!({})), 201);
    let perm = json!({"configure": "^(?!private).*", "write": "^(\\w)\\1", "read": ".*"});
    assert_eq!(put(&broker, "/api/permissions/pv/pu", perm.clone()), 201);
    let (_, body) = http_request(broker.http_port, "GET", "/api/permissions/pv/pu", None);
    let shown: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(shown["configure"], "^(?!private).*");
    assert_eq!(shown["write"], "^(\\w)\\1");
    check(&broker, "pv").await;
    // An invalid one is still refused.
    let bad = json!({"configure": "(?!", "write": ".*", "read": ".*"});
    assert_eq!(put(&broker, "/api/permissions/pv/pu", bad), 400);

    // A definitions file holding such patterns imports whole.
    let defs = json!({
        "vhosts": [{"name": "dv"}],
        "permissions": [{"user": "pu", "vhost": "dv", "configure": "^(?!private).*",
                         "write": "^(\\w)\\1|^amq\\.topic$", "read": ".*"}],
        "topic_permissions": [{"user": "pu", "vhost": "dv", "exchange": "amq.topic",
                               "write": "^(?!secret\\.)", "read": ".*"}],
    });
    let (s, b) = http_request(
        broker.http_port,
        "POST",
        "/api/definitions",
        Some(&defs.to_string()),
    );
    assert!(s < 300, "{s} {b}");
    check(&broker, "dv").await;
    // The topic permission's look-ahead holds on publishes to amq.topic.
    let conn = connect(&format!("amqp://pu:pp@127.0.0.1:{}/dv", broker.port)).await;
    let ch = channel(&conn).await;
    publish(&ch, "amq.topic", "public.a", b"m").await;
    assert!(sync(&ch).await.is_ok());
    let mut events = conn.events_listener();
    let ch = channel(&conn).await;
    within(
        "basic.publish",
        ch.basic_publish(
            "amq.topic".into(),
            "secret.a".into(),
            Default::default(),
            b"m",
            Default::default(),
        ),
    )
    .await
    .expect("publish");
    assert_eq!(
        channel_error_after(&mut events, &ch).await,
        Some(expected(
            403,
            "ACCESS_REFUSED - access to topic 'secret.a' in exchange 'amq.topic' in vhost 'dv' refused for user 'pu'"
        ))
    );
}

#[tokio::test]
async fn rabbitmqctl_set_permissions_takes_a_look_ahead() {
    let broker = Broker::start();
    assert_eq!(
        put(
            &broker,
            "/api/users/pu",
            json!({"password": "pp", "tags": ""})
        ),
        201
    );
    assert_eq!(put(&broker, "/api/vhosts/cv", json!({})), 201);
    let dir = std::env::temp_dir().join(format!("warren-pattern-tools-{}", std::process::id()));
    let installed = std::process::Command::new(warren_bin())
        .arg("install-tools")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(installed.status.success());
    let out = std::process::Command::new(dir.join("rabbitmqctl"))
        .args([
            "set_permissions",
            "-p",
            "cv",
            "pu",
            "^(?!private).*",
            "^(\\w)\\1",
            ".*",
        ])
        .env("WARREN_CTL_HOST", format!("127.0.0.1:{}", broker.http_port))
        .env_remove("WARREN_CTL_USER")
        .env_remove("WARREN_CTL_PASSWORD")
        .env_remove("RABBITMQ_DEFAULT_USER")
        .env_remove("RABBITMQ_DEFAULT_PASS")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Setting permissions for user \"pu\" in vhost \"cv\" ...\n"
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    check(&broker, "cv").await;
}
