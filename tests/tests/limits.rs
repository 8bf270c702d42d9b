//! Vhost and user limits: the management API, enforcement over AMQP (raw frames, to see
//! class and method ids) and lapin, a restart, and definitions, with the texts and codes
//! recorded from RabbitMQ 3.10.8 (tests/fixtures/limits/rabbitmq_3.10.8.json).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use lapin::{
    options::QueueDeclareOptions,
    protocol::{connection, AMQPClass},
};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use warren_integration::*;

fn put(broker: &Broker, path: &str, body: Value) -> (u16, String) {
    http_request(broker.http_port, "PUT", path, Some(&body.to_string()))
}

fn get_json(broker: &Broker, path: &str) -> (u16, Value) {
    let (status, body) = http_request(broker.http_port, "GET", path, None);
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn delete(broker: &Broker, path: &str) -> (u16, String) {
    http_request(broker.http_port, "DELETE", path, None)
}

fn error_body(status: u16, body: &str) -> (u16, Value) {
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// User `lu` (password `lp`, no tags) with full permissions in vhost `lv`.
fn setup(broker: &Broker) {
    let user = json!({"password": "lp", "tags": ""});
    assert_eq!(put(broker, "/api/users/lu", user).0, 201);
    assert_eq!(put(broker, "/api/vhosts/lv", json!({})).0, 201);
    let all = json!({"configure": ".*", "write": ".*", "read": ".*"});
    assert_eq!(put(broker, "/api/permissions/lv/lu", all).0, 201);
}

fn set_vhost_limit(broker: &Broker, name: &str, value: i64) {
    let path = format!("/api/vhost-limits/lv/{name}");
    assert_eq!(put(broker, &path, json!({ "value": value })).0, 204);
}

fn set_user_limit(broker: &Broker, name: &str, value: i64) {
    let path = format!("/api/user-limits/lu/{name}");
    assert_eq!(put(broker, &path, json!({ "value": value })).0, 204);
}

/// connection.start-ok arguments for `user`/`password` (PLAIN).
fn start_ok_as(user: &str, password: &str) -> Vec<u8> {
    let mut args = client_properties(false);
    args.extend(shortstr("PLAIN"));
    let response = format!("\0{user}\0{password}");
    args.extend_from_slice(&(response.len() as u32).to_be_bytes());
    args.extend_from_slice(response.as_bytes());
    args.extend(shortstr("en_US"));
    args
}

/// The handshake as `user` into `vhost` up to the broker's answer to connection.open:
/// the socket when it was open-ok, else the connection.close's (code, text, class,
/// method).
async fn open_as(
    broker: &Broker,
    user: &str,
    password: &str,
    vhost: &str,
) -> Result<TcpStream, (u16, String, u16, u16)> {
    let mut sock = raw_connect(broker.port).await;
    let _start = read_method(&mut sock).await;
    write_method(&mut sock, 0, 10, 11, &start_ok_as(user, password)).await;
    let _tune = read_method(&mut sock).await;
    write_method(&mut sock, 0, 10, 31, &tune_ok_args(2047, 131_072)).await;
    write_method(&mut sock, 0, 10, 40, &open_args(vhost)).await;
    match read_method(&mut sock).await {
        (0, AMQPClass::Connection(connection::AMQPMethod::OpenOk(_))) => Ok(sock),
        (0, AMQPClass::Connection(connection::AMQPMethod::Close(c))) => Err((
            c.reply_code,
            c.reply_text.to_string(),
            c.class_id,
            c.method_id,
        )),
        other => panic!("expected open-ok or close, got {other:?}"),
    }
}

/// Opens channel `id`: None when open-ok came, else the connection.close's fields.
async fn open_channel(sock: &mut TcpStream, id: u16) -> Option<(u16, String, u16, u16)> {
    write_method(sock, id, 20, 10, &shortstr("")).await;
    match read_method(sock).await {
        (_, AMQPClass::Channel(lapin::protocol::channel::AMQPMethod::OpenOk(_))) => None,
        (0, AMQPClass::Connection(connection::AMQPMethod::Close(c))) => Some((
            c.reply_code,
            c.reply_text.to_string(),
            c.class_id,
            c.method_id,
        )),
        other => panic!("expected channel.open-ok or connection.close, got {other:?}"),
    }
}

fn refusal(text: &str, class_id: u16, method_id: u16) -> (u16, String, u16, u16) {
    (530, text.to_string(), class_id, method_id)
}

#[test]
fn vhost_limit_api_is_rabbitmqs() {
    let broker = Broker::start();
    setup(&broker);
    assert_eq!(get_json(&broker, "/api/vhost-limits"), (200, json!([])));
    assert_eq!(get_json(&broker, "/api/vhost-limits/lv"), (200, json!([])));
    set_vhost_limit(&broker, "max-connections", 1);
    set_vhost_limit(&broker, "max-queues", 2);
    let lv = json!([{"vhost": "lv", "value": {"max-connections": 1, "max-queues": 2}}]);
    assert_eq!(get_json(&broker, "/api/vhost-limits"), (200, lv.clone()));
    assert_eq!(get_json(&broker, "/api/vhost-limits/lv"), (200, lv));
    let (s, b) = put(
        &broker,
        "/api/vhost-limits/lv/max-bogus",
        json!({"value": 2}),
    );
    assert_eq!(
        error_body(s, &b),
        (
            400,
            json!({"error": "bad_request", "reason": "Validation failed\n\nUnrecognised terms [{<<\"max-bogus\">>,2}] in limits\n"})
        )
    );
    let (s, b) = put(
        &broker,
        "/api/vhost-limits/lv/max-queues",
        json!({"value": "x"}),
    );
    assert_eq!(
        error_body(s, &b),
        (
            400,
            json!({"error": "bad_request", "reason": "Validation failed\n\nmax-queues should be a number, actually was <<\"x\">>\n"})
        )
    );
    let (s, b) = put(&broker, "/api/vhost-limits/lv/max-queues", json!({}));
    assert_eq!(
        error_body(s, &b),
        (
            400,
            json!({"error": "bad_request", "reason": "[{key_missing,value}]"})
        )
    );
    let (s, b) = put(
        &broker,
        "/api/vhost-limits/nov/max-queues",
        json!({"value": 1}),
    );
    assert_eq!(
        error_body(s, &b),
        (
            404,
            json!({"error": "not_found", "reason": "vhost_not_found"})
        )
    );
    assert_eq!(get_json(&broker, "/api/vhost-limits/nov").0, 404);
    assert_eq!(delete(&broker, "/api/vhost-limits/lv/max-bogus").0, 204);
    assert_eq!(
        delete(&broker, "/api/vhost-limits/nov/max-queues"),
        (500, String::new())
    );
    assert_eq!(
        delete(&broker, "/api/vhost-limits/lv/max-connections").0,
        204
    );
    assert_eq!(
        get_json(&broker, "/api/vhost-limits/lv"),
        (200, json!([{"vhost": "lv", "value": {"max-queues": 2}}]))
    );
}

#[test]
fn user_limit_api_is_rabbitmqs() {
    let broker = Broker::start();
    setup(&broker);
    assert_eq!(get_json(&broker, "/api/user-limits/lu"), (200, json!([])));
    set_user_limit(&broker, "max-channels", 2);
    set_user_limit(&broker, "max-connections", -1);
    let lu = json!([{"user": "lu", "value": {"max-channels": 2, "max-connections": -1}}]);
    assert_eq!(get_json(&broker, "/api/user-limits"), (200, lu.clone()));
    assert_eq!(get_json(&broker, "/api/user-limits/lu"), (200, lu));
    assert_eq!(
        get_json(&broker, "/api/users/lu").1["limits"],
        json!({"max-channels": 2, "max-connections": -1})
    );
    let (s, b) = put(
        &broker,
        "/api/user-limits/lu/max-queues",
        json!({"value": 2}),
    );
    assert_eq!(
        error_body(s, &b),
        (
            400,
            json!({"error": "bad_request", "reason": "Unrecognised terms [{<<\"max-queues\">>,2}] in user-limits"})
        )
    );
    let (s, b) = put(
        &broker,
        "/api/user-limits/lu/max-channels",
        json!({"value": 1.5}),
    );
    assert_eq!(
        error_body(s, &b),
        (
            400,
            json!({"error": "bad_request", "reason": "max-channels should be a number, actually was 1.5"})
        )
    );
    let (s, b) = put(
        &broker,
        "/api/user-limits/nou/max-channels",
        json!({"value": 2}),
    );
    assert_eq!(
        error_body(s, &b),
        (
            400,
            json!({"error": "bad_request", "reason": ["no_such_user", "nou"]})
        )
    );
    assert_eq!(get_json(&broker, "/api/user-limits/nou").0, 404);
    assert_eq!(
        delete(&broker, "/api/user-limits/nou/max-channels"),
        (500, String::new())
    );
    assert_eq!(delete(&broker, "/api/user-limits/lu/max-channels").0, 204);
    assert_eq!(
        get_json(&broker, "/api/users/lu").1["limits"],
        json!({"max-connections": -1})
    );
    // Setting them is for administrators; a management user reads them.
    let mu = json!({"password": "mp", "tags": "management"});
    assert_eq!(put(&broker, "/api/users/mu", mu).0, 201);
    let as_mu = |method: &str, path: &str, body: Option<&str>| {
        raw_http(broker.http_port, method, path, body, "mu:mp").0
    };
    assert_eq!(as_mu("GET", "/api/user-limits", None), 200);
    assert_eq!(as_mu("GET", "/api/vhost-limits/lv", None), 401);
    assert_eq!(
        as_mu(
            "PUT",
            "/api/vhost-limits/lv/max-queues",
            Some("{\"value\":1}")
        ),
        401
    );
}

/// A request as `credentials` (user:password).
fn raw_http(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&str>,
    credentials: &str,
) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let body = body.unwrap_or("");
    let auth = base64_encode(credentials.as_bytes());
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic {auth}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap();
    (status, raw)
}

fn base64_encode(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[tokio::test]
async fn connection_limits_refuse_at_open_as_rabbitmq() {
    let broker = Broker::start();
    setup(&broker);
    set_vhost_limit(&broker, "max-connections", 1);
    let first = open_as(&broker, "lu", "lp", "lv").await.expect("first");
    let vhost_text =
        "NOT_ALLOWED - access to vhost 'lv' refused for user 'lu': connection limit (1) is reached";
    assert_eq!(
        open_as(&broker, "lu", "lp", "lv").await.err(),
        Some(refusal(vhost_text, 10, 40))
    );
    // Any user: the vhost's limit counts every connection to it.
    assert_eq!(
        open_as(&broker, "guest", "guest", "lv").await.err(),
        Some(refusal(
            "NOT_ALLOWED - access to vhost 'lv' refused for user 'guest': connection limit (1) is reached",
            10,
            40
        ))
    );
    // Both limits reached: the vhost's is checked first.
    set_user_limit(&broker, "max-connections", 1);
    assert_eq!(
        open_as(&broker, "lu", "lp", "lv").await.err(),
        Some(refusal(vhost_text, 10, 40))
    );
    // The user's limit holds in other vhosts, and comes before vhost access.
    let user_text =
        "NOT_ALLOWED - connection refused for user 'lu': user connection limit (1) is reached";
    assert_eq!(
        open_as(&broker, "lu", "lp", "/").await.err(),
        Some(refusal(user_text, 10, 40))
    );
    drop(first);
    // The closed connection no longer counts.
    let mut again = None;
    for _ in 0..50 {
        if let Ok(s) = open_as(&broker, "lu", "lp", "lv").await {
            again = Some(s);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(again.is_some(), "a closed connection is not counted");
    drop(again);
    // -1 is no limit; 0 allows none.
    set_vhost_limit(&broker, "max-connections", -1);
    set_user_limit(&broker, "max-connections", 0);
    assert_eq!(
        open_as(&broker, "lu", "lp", "lv").await.err(),
        Some(refusal(
            "NOT_ALLOWED - connection refused for user 'lu': user connection limit (0) is reached",
            10,
            40
        ))
    );
    set_user_limit(&broker, "max-connections", -5);
    set_vhost_limit(&broker, "max-connections", 0);
    assert_eq!(
        open_as(&broker, "lu", "lp", "lv").await.err(),
        Some(refusal(
            "NOT_ALLOWED - access to vhost 'lv' refused for user 'lu': connection limit (0) is reached",
            10,
            40
        ))
    );
    assert_eq!(
        delete(&broker, "/api/vhost-limits/lv/max-connections").0,
        204
    );
    assert!(open_as(&broker, "lu", "lp", "lv").await.is_ok());
}

#[tokio::test]
async fn channel_limit_counts_all_of_a_users_connections() {
    let broker = Broker::start();
    setup(&broker);
    set_user_limit(&broker, "max-channels", 3);
    let mut a = open_as(&broker, "lu", "lp", "lv").await.expect("a");
    let mut b = open_as(&broker, "lu", "lp", "lv").await.expect("b");
    assert_eq!(open_channel(&mut a, 1).await, None);
    assert_eq!(open_channel(&mut a, 2).await, None);
    assert_eq!(open_channel(&mut b, 1).await, None);
    assert_eq!(
        open_channel(&mut b, 2).await,
        Some(refusal(
            "NOT_ALLOWED - number of channels opened for user 'lu' has reached the maximum allowed user limit of (3)",
            0,
            0
        ))
    );
    // guest is not limited; 0 allows none.
    let mut g = open_as(&broker, "guest", "guest", "lv")
        .await
        .expect("guest");
    assert_eq!(open_channel(&mut g, 1).await, None);
    set_user_limit(&broker, "max-channels", 0);
    let mut c = open_as(&broker, "lu", "lp", "lv").await.expect("c");
    assert_eq!(
        open_channel(&mut c, 1).await,
        Some(refusal(
            "NOT_ALLOWED - number of channels opened for user 'lu' has reached the maximum allowed user limit of (0)",
            0,
            0
        ))
    );
    drop(a);
}

#[tokio::test]
async fn queue_limit_refuses_new_queues_only() {
    let broker = Broker::start();
    setup(&broker);
    set_vhost_limit(&broker, "max-queues", 2);
    let conn = connect(&format!("amqp://lu:lp@127.0.0.1:{}/lv", broker.port)).await;
    let ch = channel(&conn).await;
    declare_queue(&ch, "q1", QueueDeclareOptions::default()).await;
    declare_queue(&ch, "q2", QueueDeclareOptions::default()).await;
    // A redeclare and a passive declare at the limit are fine.
    declare_queue(&ch, "q2", QueueDeclareOptions::default()).await;
    assert!(passive_queue(&ch, "q1").await.is_ok());
    let refused = |q: &str| {
        expected(
            406,
            &format!("PRECONDITION_FAILED - cannot declare queue '{q}': queue limit in vhost 'lv' (2) is reached"),
        )
    };
    let ch = channel(&conn).await;
    let err = within(
        "queue.declare",
        ch.queue_declare(
            "q3".into(),
            QueueDeclareOptions::default(),
            Default::default(),
        ),
    )
    .await
    .expect_err("over the limit");
    assert_eq!(amqp_error(&err), refused("q3"));
    // A server-named queue is counted too.
    let ch = channel(&conn).await;
    let err = within(
        "queue.declare",
        ch.queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            Default::default(),
        ),
    )
    .await
    .expect_err("over the limit");
    let (code, text) = amqp_error(&err);
    assert_eq!(code, 406);
    assert!(
        text.starts_with("PRECONDITION_FAILED - cannot declare queue 'amq.gen-")
            && text.ends_with("': queue limit in vhost 'lv' (2) is reached"),
        "{text}"
    );
    // Through the API as well: 400 with the text.
    let (s, b) = put(&broker, "/api/queues/lv/api-q", json!({"durable": true}));
    assert_eq!(
        error_body(s, &b),
        (
            400,
            json!({"error": "bad_request", "reason": "cannot declare queue 'api-q': queue limit in vhost 'lv' (2) is reached"})
        )
    );
    // -1 lifts it.
    set_vhost_limit(&broker, "max-queues", -1);
    let ch = channel(&conn).await;
    declare_queue(&ch, "q3", QueueDeclareOptions::default()).await;
    // 0 allows no new queue but the existing ones can be redeclared.
    set_vhost_limit(&broker, "max-queues", 0);
    declare_queue(&ch, "q1", QueueDeclareOptions::default()).await;
    let err = within(
        "queue.declare",
        ch.queue_declare(
            "q4".into(),
            QueueDeclareOptions::default(),
            Default::default(),
        ),
    )
    .await
    .expect_err("none allowed");
    assert_eq!(
        amqp_error(&err),
        expected(
            406,
            "PRECONDITION_FAILED - cannot declare queue 'q4': queue limit in vhost 'lv' (0) is reached"
        )
    );
}

#[tokio::test]
async fn limits_survive_a_restart_and_round_trip_through_definitions() {
    let broker = Broker::start();
    setup(&broker);
    set_vhost_limit(&broker, "max-queues", 0);
    set_user_limit(&broker, "max-connections", 0);
    let broker = broker.restart(true);
    assert_eq!(
        get_json(&broker, "/api/vhost-limits/lv"),
        (200, json!([{"vhost": "lv", "value": {"max-queues": 0}}]))
    );
    assert_eq!(
        get_json(&broker, "/api/user-limits/lu"),
        (
            200,
            json!([{"user": "lu", "value": {"max-connections": 0}}])
        )
    );
    assert_eq!(
        open_as(&broker, "lu", "lp", "lv").await.err().map(|e| e.0),
        Some(530)
    );
    let (_, defs) = get_json(&broker, "/api/definitions");
    assert_eq!(
        defs["parameters"],
        json!([{"value": {"max-queues": 0}, "vhost": "lv", "component": "vhost-limits", "name": "limits"}])
    );
    let lu = defs["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "lu")
        .unwrap();
    assert_eq!(lu["limits"], json!({"max-connections": 0}));

    // Into a fresh broker: the same limits, enforced.
    let other = Broker::start();
    let (s, b) = http_request(
        other.http_port,
        "POST",
        "/api/definitions",
        Some(&defs.to_string()),
    );
    assert!(s < 300, "{s} {b}");
    assert_eq!(
        get_json(&other, "/api/definitions").1["parameters"],
        defs["parameters"]
    );
    assert_eq!(
        open_as(&other, "lu", "lp", "lv").await.err().map(|e| e.0),
        Some(530)
    );
    // A parameter warren cannot apply fails the whole import.
    let doc = json!({
        "vhosts": [{"name": "never"}],
        "parameters": [{"vhost": "lv", "component": "federation-upstream", "name": "up", "value": {"uri": "amqp://x"}}],
    });
    let (s, b) = http_request(
        other.http_port,
        "POST",
        "/api/definitions",
        Some(&doc.to_string()),
    );
    assert_eq!(s, 400, "{b}");
    assert!(b.contains("component federation-upstream not found"), "{b}");
    assert_eq!(get_json(&other, "/api/vhosts/never").0, 404);
}

/// rabbitmqctl (the warren binary under that name) against `broker`: exit code, stdout,
/// stderr.
fn rabbitmqctl(broker: &Broker, args: &[&str]) -> (i32, String, String) {
    static DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("warren-limits-tools-{}", std::process::id()));
        let out = std::process::Command::new(warren_bin())
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
    });
    let out = std::process::Command::new(dir.join("rabbitmqctl"))
        .args(args)
        .env("WARREN_CTL_HOST", format!("127.0.0.1:{}", broker.http_port))
        .env_remove("WARREN_CTL_USER")
        .env_remove("WARREN_CTL_PASSWORD")
        .env_remove("RABBITMQ_DEFAULT_USER")
        .env_remove("RABBITMQ_DEFAULT_PASS")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn rabbitmqctl_vhost_limit_commands_as_rabbitmq() {
    let broker = Broker::start();
    setup(&broker);
    let run = |args: &[&str]| rabbitmqctl(&broker, args);
    let out =
        |code: i32, stdout: &str, stderr: &str| (code, stdout.to_string(), stderr.to_string());
    assert_eq!(
        run(&["list_vhost_limits", "-p", "lv"]),
        out(0, "Listing limits for vhost \"lv\" ...\n\n", "")
    );
    assert_eq!(
        run(&["set_vhost_limits", "-p", "lv", "{\"max-connections\": 1}"]),
        out(
            0,
            "Setting vhost limits to \"{\"max-connections\": 1}\" for vhost \"lv\" ...\n",
            ""
        )
    );
    // A definition replaces the vhost's limits.
    assert_eq!(
        run(&[
            "set_vhost_limits",
            "-p",
            "lv",
            "{\"max-queues\": 2, \"max-connections\": 3}"
        ])
        .0,
        0
    );
    assert_eq!(
        run(&["set_vhost_limits", "-p", "lv", "{\"max-queues\": 2}"]).0,
        0
    );
    assert_eq!(
        run(&[
            "set_vhost_limits",
            "-p",
            "lv",
            "{\"max-queues\": 2, \"max-connections\": 1}"
        ])
        .0,
        0
    );
    assert_eq!(
        run(&["list_vhost_limits", "-p", "lv"]),
        out(
            0,
            "Listing limits for vhost \"lv\" ...\n{\"max-connections\":1,\"max-queues\":2}\n",
            ""
        )
    );
    assert_eq!(
        run(&["list_vhost_limits", "--global"]),
        out(0, "Listing limits for all vhosts ...\nvhost\tlimits\nlv\t{\"max-connections\":1,\"max-queues\":2}\n", "")
    );
    assert_eq!(
        run(&["list_vhost_limits", "--global", "--formatter", "json"]),
        out(0, "[\n{\"vhost\":\"lv\",\"limits\":\"{\\\"max-connections\\\":1,\\\"max-queues\\\":2}\"}\n]\n", "")
    );
    assert_eq!(
        run(&["set_vhost_limits", "-p", "lv", "{\"max-bogus\": 1}"]),
        out(
            69,
            "Setting vhost limits to \"{\"max-bogus\": 1}\" for vhost \"lv\" ...\n",
            "Error:\nValidation failed\n\nUnrecognised terms [{<<\"max-bogus\">>,1}] in limits\n\n"
        )
    );
    assert_eq!(
        run(&["set_vhost_limits", "-p", "lv", "notjson"]),
        out(
            69,
            "Setting vhost limits to \"notjson\" for vhost \"lv\" ...\n",
            "Error:\nJSON decoding error. Reason: badarg\n"
        )
    );
    assert_eq!(
        run(&["set_vhost_limits", "-p", "nov", "{\"max-queues\": 1}"]),
        out(
            65,
            "Setting vhost limits to \"{\"max-queues\": 1}\" for vhost \"nov\" ...\n",
            "Virtual host 'nov' does not exist\n"
        )
    );
    assert_eq!(
        run(&["clear_vhost_limits", "-p", "lv"]),
        out(0, "Clearing vhost \"lv\" limits ...\n", "")
    );
    assert_eq!(get_json(&broker, "/api/vhost-limits/lv"), (200, json!([])));
    assert_eq!(
        run(&["clear_vhost_limits", "-p", "lv"]),
        out(
            69,
            "Clearing vhost \"lv\" limits ...\n",
            "Error:\nParameter does not exist\n"
        )
    );
}

#[test]
fn rabbitmqctl_user_limit_commands_as_rabbitmq() {
    let broker = Broker::start();
    setup(&broker);
    let run = |args: &[&str]| rabbitmqctl(&broker, args);
    let out =
        |code: i32, stdout: &str, stderr: &str| (code, stdout.to_string(), stderr.to_string());
    // A definition is merged into the user's limits.
    assert_eq!(
        run(&["list_user_limits"]),
        out(0, "Listing limits for user \"guest\" ...\n{}\n", "")
    );
    assert_eq!(
        run(&["set_user_limits", "lu", "{\"max-connections\": 1}"]),
        out(
            0,
            "Setting user limits to \"{\"max-connections\": 1}\" for user \"lu\" ...\n",
            ""
        )
    );
    assert_eq!(
        run(&["set_user_limits", "lu", "{\"max-channels\": 2}"]).0,
        0
    );
    assert_eq!(
        run(&["list_user_limits", "--user", "lu"]),
        out(
            0,
            "Listing limits for user \"lu\" ...\n{\"max-channels\":2,\"max-connections\":1}\n",
            ""
        )
    );
    assert_eq!(
        run(&["list_user_limits", "--global", "-q"]),
        out(
            0,
            "user\tlimits\nlu\t{\"max-channels\":2,\"max-connections\":1}\n",
            ""
        )
    );
    assert_eq!(
        run(&["set_user_limits", "lu", "{\"max-queues\": 2}"]),
        out(
            69,
            "Setting user limits to \"{\"max-queues\": 2}\" for user \"lu\" ...\n",
            "Error:\nUnrecognised terms [{<<\"max-queues\">>,2}] in user-limits\n"
        )
    );
    assert_eq!(
        run(&["set_user_limits", "nou", "{\"max-channels\": 2}"]),
        out(
            69,
            "Setting user limits to \"{\"max-channels\": 2}\" for user \"nou\" ...\n",
            "Error:\n{:no_such_user, \"nou\"}\n"
        )
    );
    assert_eq!(
        run(&["clear_user_limits", "lu", "max-channels"]),
        out(
            0,
            "Clearing \"max-channels\" limit for user \"lu\" ...\n",
            ""
        )
    );
    assert_eq!(
        run(&["list_user_limits", "--user", "lu", "--formatter", "json"]),
        out(0, "{\"message\":\"{\\\"max-connections\\\":1}\"}\n", "")
    );
    assert_eq!(
        run(&["clear_user_limits", "lu", "all"]),
        out(0, "Clearing all limits for user \"lu\" ...\n", "")
    );
    assert_eq!(get_json(&broker, "/api/user-limits"), (200, json!([])));
    assert_eq!(
        run(&["clear_user_limits", "nou", "all"]),
        out(
            69,
            "Clearing all limits for user \"nou\" ...\n",
            "Error:\n{:no_such_user, \"nou\"}\n"
        )
    );
}

#[tokio::test]
async fn concurrent_opens_do_not_overshoot_a_limit() {
    let broker = Broker::start();
    setup(&broker);
    set_vhost_limit(&broker, "max-connections", 3);
    let opens: Vec<_> = (0..16)
        .map(|_| open_as(&broker, "lu", "lp", "lv"))
        .collect();
    let results = join_all(opens).await;
    let open: Vec<_> = results.into_iter().filter_map(Result::ok).collect();
    assert_eq!(open.len(), 3);
}

/// Polls every future to completion together.
async fn join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let handles: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = handles.iter().map(|_| None).collect();
    let mut handles: Vec<Option<_>> = handles.into_iter().map(Some).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (h, out) in handles.iter_mut().zip(outputs.iter_mut()) {
            if let Some(f) = h {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        *out = Some(v);
                        *h = None;
                    }
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}
