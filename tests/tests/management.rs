//! Boot-time definitions (RABBITMQ_DEFINITIONS_FILE / --load-definitions) and the HTTP
//! listeners of the binary. The API itself is covered by tests/python/test_management.py.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::PathBuf,
    process::Command,
};

use lapin::{Connection, ConnectionProperties};
use warren_integration::{channel, passive_queue, warren_bin, Broker};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/management")
        .join(name)
}

/// One blocking HTTP/1.1 GET with basic auth (guest:guest); returns status and body.
fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect HTTP");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic Z3Vlc3Q6Z3Vlc3Q=\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let status = raw.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The `body` of a recorded fixture, written to a temporary file as a definitions file.
fn definitions_file(name: &str) -> PathBuf {
    let recorded: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture(name)).unwrap()).unwrap();
    let path = std::env::temp_dir().join(format!("warren-defs-{}-{name}", std::process::id()));
    std::fs::write(&path, recorded["body"].to_string()).unwrap();
    path
}

#[tokio::test]
async fn rabbitmq_definitions_load_at_boot() {
    let file = definitions_file("definitions.json");
    let broker = Broker::start_with(
        &[],
        &[("RABBITMQ_DEFINITIONS_FILE", file.to_str().unwrap())],
    );
    assert!(
        broker
            .log()
            .iter()
            .any(|l| l.contains("imported definitions from")),
        "{:?}",
        broker.log()
    );
    // "mon" was created on RabbitMQ 3.10 with password "monpw": its hash logs in here.
    let url = format!("amqp://mon:monpw@127.0.0.1:{}/%2f", broker.port);
    let conn = Connection::connect(&url, ConnectionProperties::default())
        .await
        .expect("RabbitMQ's password hash is accepted");
    let ch = channel(&conn).await;
    passive_queue(&ch, "q1")
        .await
        .expect("q1 from the file exists");
    let (status, body) = http_get(broker.http_port, "/api/queues/%2F/q1");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"x-max-length\":100"), "{body}");
    let (status, body) = http_get(broker.http_port, "/api/vhosts/dev");
    assert_eq!(status, 200, "{body}");
    std::fs::remove_file(file).ok();
}

#[test]
fn bad_definitions_file_stops_the_boot_naming_the_entry() {
    let path = std::env::temp_dir().join(format!("warren-bad-defs-{}.json", std::process::id()));
    std::fs::write(
        &path,
        r#"{"vhosts": [{"name": "v"}],
            "queues": [{"name": "ok", "vhost": "v", "durable": true, "auto_delete": false, "arguments": {}},
                       {"name": "broken", "vhost": "missing", "durable": true, "auto_delete": false, "arguments": {}}]}"#,
    )
    .unwrap();
    let data = std::env::temp_dir().join(format!("warren-bad-defs-data-{}", std::process::id()));
    let out = Command::new(warren_bin())
        .args([
            "--listen",
            "127.0.0.1:0",
            "--http-listen",
            "off",
            "--prometheus-listen",
            "off",
        ])
        .arg("--data-dir")
        .arg(&data)
        .arg("--load-definitions")
        .arg(&path)
        .env("NO_COLOR", "1")
        .output()
        .expect("run warren");
    let log =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{log}");
    assert!(
        log.contains("queues[1] (queue 'broken' in vhost 'missing'): no vhost 'missing'"),
        "{log}"
    );
    assert!(!log.contains("Server startup complete"), "{log}");
    std::fs::remove_file(path).ok();
    std::fs::remove_dir_all(data).ok();
}

#[test]
fn http_and_metrics_listen_where_asked() {
    let broker = Broker::start();
    assert_ne!(broker.http_port, 0);
    assert_ne!(broker.metrics_port, 0);
    let (status, body) = http_get(broker.http_port, "/api/overview");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"rabbitmq_version\""), "{body}");
    let (status, body) = http_get(broker.metrics_port, "/metrics");
    assert_eq!(status, 200);
    assert!(body.contains("\nrabbitmq_queues 0\n"), "{body}");
    let off = Broker::start_with(&["--http-listen", "off", "--prometheus-listen", "off"], &[]);
    assert!(!off.log().iter().any(|l| l.contains("listening for HTTP")));
}
