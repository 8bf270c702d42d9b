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
    http_get_as(port, path, "guest:guest")
}

fn http_get_as(port: u16, path: &str, credentials: &str) -> (u16, String) {
    let auth = base64_encode(credentials.as_bytes());
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect HTTP");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic {auth}\r\nConnection: close\r\n\r\n"
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

fn base64_encode(input: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            out.push(if i <= chunk.len() {
                A[((n >> (18 - 6 * i)) & 63) as usize] as char
            } else {
                '='
            });
        }
    }
    out
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

/// RabbitMQ 3.10 booted with load_definitions creates neither guest nor "/" (recorded in
/// boot_definitions.json): only what the file defines exists.
#[tokio::test]
async fn boot_definitions_replace_the_default_user_and_vhost() {
    let recorded: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("boot_definitions.json")).unwrap())
            .unwrap();
    let path = std::env::temp_dir().join(format!("warren-boot-defs-{}.json", std::process::id()));
    std::fs::write(&path, recorded["definitions"].to_string()).unwrap();
    let broker = Broker::start_with(&["--load-definitions", path.to_str().unwrap()], &[]);
    // guest does not exist: AMQP login is refused.
    let guest = Connection::connect(
        &format!("amqp://guest:guest@127.0.0.1:{}/appvh", broker.port),
        ConnectionProperties::default(),
    )
    .await;
    assert!(guest.is_err(), "guest must not exist");
    // The file's user (password "app", hashed in the file) works in the file's vhost.
    let url = format!("amqp://app:app@127.0.0.1:{}/appvh", broker.port);
    let conn = Connection::connect(&url, ConnectionProperties::default())
        .await
        .expect("app logs in");
    let ch = channel(&conn).await;
    passive_queue(&ch, "boot-q")
        .await
        .expect("boot-q from the file");
    // Over HTTP as app: only the file's vhost and user.
    let (status, body) = http_get_as(broker.http_port, "/api/vhosts", "app:app");
    assert_eq!(status, 200, "{body}");
    let names: Vec<String> = serde_json::from_str::<Vec<serde_json::Value>>(&body)
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        serde_json::json!(names),
        recorded["observed"]["vhosts_as_app"]
    );
    let (status, body) = http_get(broker.http_port, "/api/whoami");
    assert_eq!(
        (
            status,
            serde_json::from_str::<serde_json::Value>(&body).unwrap()
        ),
        (401, recorded["observed"]["guest_whoami"]["body"].clone())
    );
    std::fs::remove_file(path).ok();
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
        .env("WARREN_RABBITMQ_ETC", "off")
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
