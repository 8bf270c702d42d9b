//! The management API endpoints and fields a UI and dashboards need, compared with what
//! RabbitMQ 3.10.8 answered to the same requests (tests/fixtures/management/
//! completeness.json, recorded by record_completeness.py), and the Prometheus metrics of
//! rabbitmq_prometheus's Grafana dashboard (tests/fixtures/grafana/RabbitMQ-Overview.json).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::BTreeSet,
    io::{Read, Write},
    net::TcpStream,
    path::PathBuf,
    process::Command,
    sync::OnceLock,
    time::Duration,
};

use lapin::options::{BasicAckOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions};
use serde_json::{json, Value};
use warren_integration::*;

fn fixture_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(rel)
}

/// RabbitMQ's recorded answers by name.
fn recorded() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let text = std::fs::read_to_string(fixture_path("management/completeness.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    })
}

fn rec(name: &str) -> &'static Value {
    let r = &recorded()[name];
    assert!(r.is_object(), "no recorded answer {name}");
    r
}

struct Resp {
    status: u16,
    headers: String,
    body: String,
}

impl Resp {
    fn json(&self) -> Value {
        if self.body.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&self.body)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
        }
    }
    fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

fn base64(data: &[u8]) -> String {
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

/// One HTTP/1.1 request with basic auth; a body the server refuses early may not be
/// written whole, which is fine: the answer is read either way.
fn request(
    port: u16,
    method: &str,
    path: &str,
    user: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Resp {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect HTTP");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let auth = base64(format!("{user}:{user}").as_bytes());
    let auth = if user == "guest" {
        base64(b"guest:guest")
    } else {
        auth
    };
    let ct = content_type
        .map(|c| format!("Content-Type: {c}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic {auth}\r\n{ct}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = s
        .write_all(head.as_bytes())
        .and_then(|()| s.write_all(body));
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (headers, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = headers
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {raw:?}"));
    Resp {
        status,
        headers: headers.to_string(),
        body: body.to_string(),
    }
}

/// Sends the request recorded as `name` (method, path, body, user) to warren.
fn replay(port: u16, name: &str) -> Resp {
    let r = rec(name);
    let (method, path) = r["request"].as_str().unwrap().split_once(' ').unwrap();
    let user = r["user"].as_str().unwrap();
    let body = match r.get("request_body") {
        Some(b) => serde_json::to_vec(b).unwrap(),
        None => Vec::new(),
    };
    let ct = (!body.is_empty()).then_some("application/json");
    request(port, method, path, user, ct, &body)
}

/// The recorded request gets RabbitMQ's status and exactly its body.
fn same(port: u16, name: &str) -> Resp {
    let got = replay(port, name);
    let want = rec(name);
    assert_eq!(
        u64::from(got.status),
        want["status"].as_u64().unwrap(),
        "{name}: {}",
        got.body
    );
    assert_eq!(got.json(), want["body"], "{name}");
    got
}

/// The recorded request gets RabbitMQ's status.
fn same_status(port: u16, name: &str) -> Resp {
    let got = replay(port, name);
    assert_eq!(
        u64::from(got.status),
        rec(name)["status"].as_u64().unwrap(),
        "{name}: {}",
        got.body
    );
    got
}

fn call(port: u16, method: &str, path: &str, body: Value) -> Resp {
    let raw = if body.is_null() {
        Vec::new()
    } else {
        serde_json::to_vec(&body).unwrap()
    };
    let r = request(port, method, path, "guest", Some("application/json"), &raw);
    assert!(r.status < 300, "{method} {path}: {} {}", r.status, r.body);
    r
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// Global parameters without RabbitMQ's own `internal_cluster_id` (warren has none).
fn without_cluster_id(v: &Value) -> Value {
    Value::Array(
        v.as_array()
            .unwrap()
            .iter()
            .filter(|p| p["name"] != "internal_cluster_id")
            .cloned()
            .collect(),
    )
}

#[test]
fn parameters_global_parameters_and_operator_policies_answer_as_rabbitmq() {
    let broker = Broker::start();
    let port = broker.http_port;
    call(port, "PUT", "/api/vhosts/dev", Value::Null);
    // Runtime parameters: vhost-limits is warren's component; federation and shovel are
    // refused as RabbitMQ refuses them without their plugins.
    for name in [
        "parameters_empty",
        "put_vhost_limit",
        "parameters_with_limit",
        "parameters_component",
        "parameters_component_vhost",
        "parameter_one",
        "parameter_missing",
        "parameter_put_limits",
        "parameter_after_put",
        "parameter_put_bad_limits",
        "parameter_delete_limits",
        "parameter_after_delete",
        "parameters_unknown_component",
        "parameters_federation_list",
        "parameters_federation_vhost",
        "parameter_put_federation",
        "parameter_put_shovel",
        "parameter_put_unknown",
        "parameter_put_no_value",
        "parameter_put_no_vhost",
        "parameter_delete_missing",
    ] {
        same(port, name);
    }
    // Global parameters.
    let got = same_status(port, "global_parameters");
    assert_eq!(
        got.json(),
        without_cluster_id(&rec("global_parameters")["body"])
    );
    for name in [
        "global_parameter_cluster_name",
        "global_parameter_put",
        "global_parameter_put_again",
        "global_parameter_get",
        "global_parameter_put_no_value",
    ] {
        same(port, name);
    }
    let got = same_status(port, "global_parameters_after");
    assert_eq!(
        got.json(),
        without_cluster_id(&rec("global_parameters_after")["body"])
    );
    // They are part of the definitions and survive a restart.
    let defs = api(port, "/api/definitions");
    assert_eq!(
        defs["global_parameters"],
        json!([{"name": "my_param", "value": 42}])
    );
    // Operator policies.
    for name in [
        "operator_policies_empty",
        "operator_policy_put",
        "operator_policy_put_again",
        "operator_policy_put_bad_key",
        "operator_policy_put_bad_apply",
        "operator_policies",
        "operator_policies_vhost",
        "operator_policy",
    ] {
        same(port, name);
    }
    let broker = broker.restart(false);
    let port = broker.http_port;
    same(port, "global_parameter_get");
    same(port, "operator_policy");
    for name in [
        "global_parameter_delete",
        "global_parameter_missing",
        "global_parameter_delete_missing",
        "operator_policy_delete",
        "operator_policy_missing",
        "operator_policy_delete_missing",
    ] {
        same(port, name);
    }
    // The lists of limits and topic permissions.
    same(port, "vhost_limits");
    call(
        port,
        "PUT",
        "/api/users/lim",
        json!({"password": "lim", "tags": ""}),
    );
    call(
        port,
        "PUT",
        "/api/user-limits/lim/max-channels",
        json!({"value": 7}),
    );
    same(port, "user_limits");
    call(
        port,
        "PUT",
        "/api/topic-permissions/%2F/lim",
        json!({"exchange": "amq.topic", "write": "^w", "read": ".*"}),
    );
    same(port, "topic_permissions");
    // Static answers.
    same(port, "extensions");
    same(port, "auth");
    same(port, "auth_unauthenticated");
    same(port, "feature_flags");
}

#[test]
fn who_sees_what() {
    let broker = Broker::start();
    let port = broker.http_port;
    call(port, "PUT", "/api/vhosts/dev", Value::Null);
    for (user, tags) in [
        ("mon1", "monitoring"),
        ("mgmt1", "management"),
        ("pol1", "policymaker"),
    ] {
        call(
            port,
            "PUT",
            &format!("/api/users/{user}"),
            json!({"password": user, "tags": tags}),
        );
        call(
            port,
            "PUT",
            &format!("/api/permissions/dev/{user}"),
            json!({"configure": ".*", "write": ".*", "read": ".*"}),
        );
    }
    call(port, "PUT", "/api/queues/%2F/q-root", json!({}));
    call(port, "PUT", "/api/queues/dev/devq", json!({}));
    call(
        port,
        "POST",
        "/api/bindings/dev/e/amq.direct/q/devq",
        json!({"routing_key": "k"}),
    );
    call(
        port,
        "PUT",
        "/api/vhost-limits/dev/max-queues",
        json!({"value": 10}),
    );
    call(
        port,
        "PUT",
        "/api/vhost-limits/%2F/max-queues",
        json!({"value": 1000}),
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _conn = rt.block_on(connect(&broker.amqp_url()));
    let _ch = rt.block_on(channel(&_conn));
    // A monitoring user lists queues, exchanges and bindings of its own vhosts only, as
    // RabbitMQ's filter_vhost does, but every vhost, connection and channel.
    for what in ["queues", "exchanges", "bindings", "channels", "connections"] {
        let name = format!("monitoring_{what}");
        let got = same_status(port, &name);
        let vhosts: BTreeSet<String> = got
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["vhost"].as_str().unwrap().to_string())
            .collect();
        let want: BTreeSet<String> = rec(&name)["body"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        assert_eq!(vhosts, want, "{name}");
    }
    let got = same_status(port, "monitoring_vhosts");
    let names: Vec<Value> = got
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("/"), json!("dev")]);
    for name in [
        "monitoring_queues_other_vhost",
        "monitoring_parameters",
        "monitoring_global_parameters",
        "monitoring_operator_policies",
        "monitoring_feature_flags",
        "monitoring_extensions",
        "management_parameters",
        "management_global_parameters",
        "management_operator_policies",
        "management_feature_flags",
        "management_topic_permissions",
        "policymaker_parameters",
        "policymaker_parameters_other_vhost",
        "policymaker_put_operator_policy",
        "policymaker_put_parameter",
    ] {
        same(port, name);
    }
    let got = same_status(port, "policymaker_global_parameters");
    assert_eq!(
        got.json(),
        without_cluster_id(&rec("policymaker_global_parameters")["body"])
    );
}

#[test]
fn queue_types_binding_keys_imports_names_and_error_bodies() {
    let broker = Broker::start();
    let port = broker.http_port;
    // Queue types.
    call(
        port,
        "PUT",
        "/api/queues/%2F/qq",
        json!({"durable": true, "arguments": {"x-queue-type": "quorum"}}),
    );
    call(port, "PUT", "/api/queues/%2F/cq", json!({"durable": true}));
    let qq = api(port, "/api/queues/%2F/qq");
    assert_eq!(qq["type"], rec("queue_quorum")["body"]["type"]);
    for k in ["leader", "members", "online"] {
        assert!(qq.get(k).is_some(), "quorum queue without {k}: {qq}");
    }
    assert_eq!(api(port, "/api/queues/%2F/cq")["type"], "classic");
    let listed = api(port, "/api/queues");
    let types: BTreeSet<(&str, &str)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|q| (q["name"].as_str().unwrap(), q["type"].as_str().unwrap()))
        .collect();
    assert_eq!(types, BTreeSet::from([("cq", "classic"), ("qq", "quorum")]));
    // Binding properties_key as RabbitMQ encodes it, and found again by it.
    for key in ["x.*", "order.#", "a/b c", "plain", ""] {
        call(
            port,
            "POST",
            "/api/bindings/%2F/e/amq.topic/q/cq",
            json!({"routing_key": key}),
        );
    }
    call(
        port,
        "POST",
        "/api/bindings/%2F/e/amq.topic/q/cq",
        json!({"routing_key": "args", "arguments": {"x": 1}}),
    );
    same_status(port, "binding_post_location");
    let got = same_status(port, "bindings_properties_keys").json();
    let pairs = |v: &Value| -> Vec<(String, String)> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|b| {
                let pk = b["properties_key"].as_str().unwrap();
                // The arguments' hash is RabbitMQ's erlang:phash2 there, warren's own here.
                let pk = pk.split_once('~').map_or(pk.to_string(), |(k, h)| {
                    format!("{k}~{}", if h.is_empty() { "" } else { "HASH" })
                });
                (b["routing_key"].as_str().unwrap().to_string(), pk)
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    };
    assert_eq!(pairs(&got), pairs(&rec("bindings_properties_keys")["body"]));
    for name in [
        "binding_get_by_key",
        "binding_delete_by_key",
        "binding_delete_by_key_plus",
        "binding_delete_missing",
    ] {
        same(port, name);
    }
    let args_key = got
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["routing_key"] == "args")
        .map(|b| b["properties_key"].as_str().unwrap().to_string())
        .unwrap();
    let path = format!(
        "/api/bindings/%2F/e/amq.topic/q/cq/{}",
        args_key.replace('%', "%25").replace('+', "%2B")
    );
    assert_eq!(
        request(port, "GET", &path, "guest", None, b"").json()["arguments"],
        json!({"x": 1})
    );
    let without_hash = "/api/bindings/%2F/e/amq.topic/q/cq/args";
    assert_eq!(
        request(port, "GET", without_hash, "guest", None, b"").status,
        404
    );
    // Definitions import over an existing queue with other arguments keeps the queue.
    call(
        port,
        "PUT",
        "/api/queues/%2F/defq",
        json!({"durable": true, "arguments": {"x-max-length": 100}}),
    );
    same(port, "definitions_import_inequivalent");
    let kept = api(port, "/api/queues/%2F/defq");
    assert_eq!(
        kept["arguments"],
        rec("definitions_import_kept_queue")["body"]["arguments"]
    );
    assert_eq!(api(port, "/api/queues/%2F/defq2")["arguments"], json!({}));
    // Names over 255 bytes.
    same(port, "long_queue_name");
    same_status(port, "max_queue_name");
    let long = "e".repeat(256);
    let r = request(
        port,
        "PUT",
        &format!("/api/exchanges/%2F/{long}"),
        "guest",
        Some("application/json"),
        br#"{"type":"direct"}"#,
    );
    assert_eq!(
        r.status, 400,
        "warren refuses exchange names no AMQP client could use"
    );
    assert_eq!(
        r.json(),
        json!({"error": "bad_request", "reason": "exchange should be less than 255 bytes, actually was 256\n"})
    );
    // Error bodies.
    same(port, "err_404_path");
    for name in ["err_405_overview", "err_405_queues"] {
        let r = same_status(port, name);
        assert_eq!(r.body, "", "{name}: RabbitMQ answers 405 with no body");
    }
    // Any content type is read as JSON, as RabbitMQ does (no 415).
    let r = request(
        port,
        "PUT",
        "/api/queues/%2F/ct",
        "guest",
        Some("text/plain"),
        br#"{"durable":true}"#,
    );
    assert_eq!(
        u64::from(r.status),
        rec("err_415_text_plain")["status"].as_u64().unwrap()
    );
    let r = request(
        port,
        "PUT",
        "/api/queues/%2F/ct2",
        "guest",
        Some("application/json"),
        b"nope",
    );
    assert_eq!(r.json(), rec("err_400_not_json")["body"]);
    assert!(r
        .header("content-type")
        .is_some_and(|c| c.starts_with("application/json")));
    // A request body over management.http.max_body_size (20 MiB) ...
    let big = format!(
        "{{\"queues\":[{{\"name\":\"x\",\"pad\":\"{}\"}}]}}",
        "p".repeat(21 << 20)
    );
    let r = request(
        port,
        "POST",
        "/api/definitions",
        "guest",
        Some("application/json"),
        big.as_bytes(),
    );
    assert_eq!(
        u64::from(r.status),
        rec("err_413_body")["status"].as_u64().unwrap()
    );
    assert_eq!(r.json(), rec("err_413_body")["body"]);
    // ... while a 3.8 MB definitions file with 12,000 queues imports (transient ones:
    // durable ones cost a metadata sync each, a minute here in a debug build).
    let queues: Vec<Value> = (0..12_000)
        .map(|i| {
            json!({"name": format!("bulk-queue-{i:05}-with-a-name-long-enough-for-a-file-of-that-size-as-the-issue-describes-it-here-xyz"), "vhost": "/", "durable": false,
                   "auto_delete": false, "arguments": {"x-queue-type": "classic", "x-max-length": 100000,
                   "x-message-ttl": 3600000, "x-dead-letter-exchange": "dead-letters-exchange", "x-overflow": "drop-head"}})
        })
        .collect();
    let defs = serde_json::to_vec(&json!({"queues": queues})).unwrap();
    assert!(defs.len() > 3_800_000, "{} bytes", defs.len());
    let r = request(
        port,
        "POST",
        "/api/definitions",
        "guest",
        Some("application/json"),
        &defs,
    );
    assert_eq!(r.status, 204, "{}", r.body);
    let count = api(port, "/api/overview")["object_totals"]["queues"]
        .as_u64()
        .unwrap();
    assert!(count >= 12_000, "{count} queues");
}

/// The recorded traffic, replayed with lapin: channel 1 publishes with confirms (one
/// returned, one dropped), 2 in a transaction, 3 gets and acks, 4 consumes, 5 rejects.
#[tokio::test]
async fn channel_exchange_and_queue_counters() {
    let broker = Broker::start();
    let port = broker.http_port;
    call(
        port,
        "PUT",
        "/api/exchanges/%2F/x.t",
        json!({"type": "direct"}),
    );
    call(port, "PUT", "/api/queues/%2F/tq", json!({"durable": false}));
    call(port, "PUT", "/api/queues/%2F/eq", json!({"durable": false}));
    call(port, "PUT", "/api/queues/%2F/rq", json!({"durable": false}));
    call(
        port,
        "POST",
        "/api/bindings/%2F/e/x.t/q/tq",
        json!({"routing_key": "k"}),
    );
    let conn = connect(&broker.amqp_url()).await;
    let cch = confirm_channel(&conn).await;
    for _ in 0..10 {
        publish(&cch, "x.t", "k", b"hello").await;
    }
    let mandatory = BasicPublishOptions {
        mandatory: true,
        ..Default::default()
    };
    cch.basic_publish(
        "x.t".into(),
        "nowhere".into(),
        mandatory,
        b"r",
        Default::default(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    publish(&cch, "x.t", "nowhere", b"d").await;
    let tch = channel(&conn).await;
    tch.tx_select().await.unwrap();
    publish(&tch, "x.t", "k", b"tx").await;
    tch.tx_commit().await.unwrap();
    let gch = channel(&conn).await;
    get(&gch, "tq", false).await.unwrap();
    let m = get(&gch, "tq", false).await.unwrap();
    gch.basic_ack(m.delivery.delivery_tag, BasicAckOptions { multiple: true })
        .await
        .unwrap();
    get(&gch, "tq", true).await.unwrap();
    assert!(get(&gch, "eq", true).await.is_none());
    let kch = channel(&conn).await;
    kch.basic_qos(2, Default::default()).await.unwrap();
    let mut consumer = consume(&kch, "tq", "ct1", false).await;
    for _ in 0..8 {
        let d = next_delivery(&mut consumer).await;
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    let rch = channel(&conn).await;
    for _ in 0..3 {
        publish(&cch, "", "rq", b"r").await;
    }
    let r1 = rch
        .basic_get("rq".into(), BasicGetOptions { no_ack: false })
        .await
        .unwrap()
        .unwrap();
    rch.basic_nack(
        r1.delivery.delivery_tag,
        BasicNackOptions {
            requeue: true,
            multiple: false,
        },
    )
    .await
    .unwrap();
    let again = get(&rch, "rq", false).await.unwrap();
    assert!(again.delivery.redelivered);
    sync(&rch).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let channels = api(port, "/api/channels");
    let by_number = |n: u64| {
        channels
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["number"] == n)
            .cloned()
            .unwrap_or_else(|| panic!("no channel {n}: {channels}"))
    };
    for n in 1..=3u64 {
        let got = by_number(n);
        let want = &rec(&format!("channel_{n}"))["body"];
        for flag in [
            "confirm",
            "transactional",
            "messages_unconfirmed",
            "messages_uncommitted",
            "acks_uncommitted",
        ] {
            assert_eq!(got[flag], want[flag], "channel {n} {flag}");
        }
        // The counters RabbitMQ showed for the same traffic, rates aside.
        let counts = |m: &Value| -> Value {
            Value::Object(
                m.as_object()
                    .unwrap()
                    .iter()
                    .filter(|(k, _)| !k.ends_with("_details"))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            )
        };
        assert_eq!(
            counts(&got["message_stats"]),
            counts(&want["message_stats"]),
            "channel {n}"
        );
        assert_eq!(
            keys(&got["message_stats"]),
            keys(&want["message_stats"]),
            "channel {n}"
        );
    }
    // The channel by name.
    let name = by_number(1)["name"].as_str().unwrap().to_string();
    let one = request(
        port,
        "GET",
        &format!("/api/channels/{}", pct(&name)),
        "guest",
        None,
        b"",
    );
    assert_eq!(one.status, 200, "{}", one.body);
    assert_eq!(one.json()["confirm"], true);
    // The exchange's in and out counts.
    let x = api(port, "/api/exchanges/%2F/x.t");
    let want = &rec("exchange_traffic")["body"]["message_stats"];
    assert_eq!(x["message_stats"]["publish_in"], want["publish_in"]);
    assert_eq!(x["message_stats"]["publish_out"], want["publish_out"]);
    assert_eq!(keys(&x["message_stats"]), keys(want));
    // Queue rates and consumer utilisation.
    let q = api(port, "/api/queues/%2F/tq");
    for k in [
        "messages_details",
        "messages_ready_details",
        "messages_unacknowledged_details",
    ] {
        assert!(q[k]["rate"].is_number(), "{k}: {q}");
    }
    let u = q["consumer_utilisation"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&u), "{u}");
    assert_eq!(u, 1.0, "its one consumer keeps up: nothing waits");
    assert_eq!(api(port, "/api/queues/%2F/eq")["consumer_utilisation"], 0.0);
    let rq = api(port, "/api/queues/%2F/rq");
    assert_eq!(
        rq["message_stats"]["redeliver"],
        rec("queue_redelivered")["body"]["message_stats"]["redeliver"]
    );
    drop(consumer);
    conn.close(200, "bye".into()).await.unwrap();
}

fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// Metric names of a PromQL expression: identifiers outside label matchers (`{...}`)
/// and label lists (`by (...)`, `on (...)`, `group_left (...)`, ...), minus functions
/// and keywords, and range selectors.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let chars: Vec<char> = expr.chars().collect();
    let mut i = 0;
    let mut last_word = String::new();
    while i < chars.len() {
        let c = chars[i];
        if c == '{' || c == '[' {
            let close = if c == '{' { '}' } else { ']' };
            while i < chars.len() && chars[i] != close {
                i += 1;
            }
            i += 1;
            continue;
        }
        if c == '('
            && [
                "by",
                "on",
                "without",
                "ignoring",
                "group_left",
                "group_right",
            ]
            .contains(&last_word.as_str())
        {
            while i < chars.len() && chars[i] != ')' {
                i += 1;
            }
            i += 1;
            last_word.clear();
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut j = i;
            while j < chars.len() && chars[j] == ' ' {
                j += 1;
            }
            let is_call = chars.get(j) == Some(&'(');
            if word.starts_with("rabbitmq_") && !is_call {
                out.insert(word.clone());
            }
            last_word = word;
            continue;
        }
        if !c.is_whitespace() {
            last_word.clear();
        }
        i += 1;
    }
    out
}

fn exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr", Value::String(s)) => out.push(s.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

fn metrics_page(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    raw.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

/// Families with at least one sample line, with each sample's label names.
fn samples(page: &str) -> std::collections::BTreeMap<String, BTreeSet<Vec<String>>> {
    let mut out: std::collections::BTreeMap<String, BTreeSet<Vec<String>>> = Default::default();
    for line in page
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let name = &line[..name_end];
        let mut labels: Vec<String> = Vec::new();
        if let Some(rest) = line[name_end..].strip_prefix('{') {
            let inner = &rest[..rest.rfind('}').unwrap()];
            let mut in_value = false;
            let mut escaped = false;
            let mut current = String::new();
            for ch in inner.chars() {
                if in_value {
                    match (escaped, ch) {
                        (true, _) => escaped = false,
                        (false, '\\') => escaped = true,
                        (false, '"') => in_value = false,
                        _ => {}
                    }
                } else if ch == '"' {
                    in_value = true;
                } else if ch == '=' {
                    labels.push(std::mem::take(&mut current));
                } else if ch != ',' {
                    current.push(ch);
                }
            }
        }
        labels.sort();
        out.entry(name.to_string()).or_default().insert(labels);
    }
    out
}

#[tokio::test]
async fn grafana_dashboard_metrics_are_exported() {
    let text = std::fs::read_to_string(fixture_path("grafana/RabbitMQ-Overview.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&text).unwrap();
    let mut all = Vec::new();
    exprs(&dashboard, &mut all);
    assert!(all.len() > 30, "{} expressions", all.len());
    let wanted: BTreeSet<String> = all.iter().flat_map(|e| metric_names(e)).collect();
    assert!(wanted.contains("rabbitmq_channel_consumers"));
    assert!(
        !wanted.contains("rabbitmq_cluster"),
        "a label, not a metric"
    );
    assert_eq!(wanted.len(), 36, "{wanted:?}");

    let broker = Broker::start();
    // Some traffic: a consumer, publishes with confirms, a get.
    let conn = connect(&broker.amqp_url()).await;
    let ch = confirm_channel(&conn).await;
    declare_queue(&ch, "mq", Default::default()).await;
    for _ in 0..5 {
        publish(&ch, "", "mq", b"m").await;
    }
    let gch = channel(&conn).await;
    get(&gch, "mq", true).await.unwrap();
    let kch = channel(&conn).await;
    let mut consumer = consume(&kch, "mq", "c1", false).await;
    next_delivery(&mut consumer).await;

    let page = metrics_page(broker.metrics_port, "/metrics");
    let have = samples(&page);
    let missing: Vec<&String> = wanted.iter().filter(|n| !have.contains_key(*n)).collect();
    assert!(missing.is_empty(), "missing from /metrics: {missing:?}");
    // The families issue 16 names, with RabbitMQ's values for this traffic.
    let value = |name: &str| -> f64 {
        page.lines()
            .find(|l| l.split([' ', '{']).next() == Some(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name}"))
    };
    assert_eq!(value("rabbitmq_channel_consumers"), 1.0);
    assert_eq!(value("rabbitmq_channel_messages_published_total"), 5.0);
    assert_eq!(value("rabbitmq_channel_messages_confirmed_total"), 5.0);
    assert_eq!(value("rabbitmq_channel_get_total"), 1.0);
    assert_eq!(value("rabbitmq_channel_messages_delivered_ack_total"), 4.0);
    assert_eq!(value("rabbitmq_queue_messages_published_total"), 5.0);
    assert!(value("rabbitmq_process_max_fds") > value("rabbitmq_process_open_fds"));
    assert!(value("rabbitmq_process_max_tcp_sockets") > 0.0);
    assert_eq!(value("rabbitmq_process_open_tcp_sockets"), 1.0);
    // Every channel family RabbitMQ exports aggregated is there too, and per object each
    // carries the channel label.
    let recorded_prom: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture_path("management/prometheus_after_traffic.json")).unwrap(),
    )
    .unwrap();
    let rabbit_families = recorded_prom["/metrics"].as_object().unwrap();
    for fam in rabbit_families
        .keys()
        .filter(|f| f.starts_with("rabbitmq_channel_") && !f.contains("reductions"))
    {
        assert!(have.contains_key(fam), "/metrics lacks {fam}");
    }
    let per_object = samples(&metrics_page(broker.metrics_port, "/metrics/per-object"));
    for (fam, label_sets) in per_object
        .iter()
        .filter(|(f, _)| f.starts_with("rabbitmq_channel_"))
    {
        assert!(
            label_sets
                .iter()
                .all(|l| l.contains(&"channel".to_string())),
            "{fam}: {label_sets:?}"
        );
    }
    for fam in [
        "rabbitmq_queue_messages_ready",
        "rabbitmq_queue_consumers",
        "rabbitmq_queue_messages",
    ] {
        let want: BTreeSet<Vec<String>> = recorded_prom["/metrics/per-object"][fam]["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| serde_json::from_value(l.clone()).unwrap())
            .collect();
        assert_eq!(per_object.get(fam), Some(&want), "{fam}");
    }
    drop(consumer);
    conn.close(200, "bye".into()).await.unwrap();
}

/// `rabbitmqadmin delete binding ... properties_key=...` with the key the API lists, for
/// warren's rabbitmqadmin and, where installed, RabbitMQ's own script.
#[test]
fn rabbitmqadmin_deletes_bindings_by_properties_key() {
    let broker = Broker::start();
    let port = broker.http_port;
    call(port, "PUT", "/api/queues/%2F/bq", json!({}));
    let tools = std::env::temp_dir().join(format!("warren-mc-tools-{}", std::process::id()));
    let out = Command::new(warren_bin())
        .arg("install-tools")
        .arg(&tools)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut admins: Vec<(String, Vec<String>)> = vec![(
        tools.join("rabbitmqadmin").display().to_string(),
        Vec::new(),
    )];
    if std::path::Path::new("/usr/bin/rabbitmqadmin").exists() {
        admins.push((
            "/usr/bin/rabbitmqadmin".into(),
            vec![
                "-P".into(),
                port.to_string(),
                "-u".into(),
                "guest".into(),
                "-p".into(),
                "guest".into(),
            ],
        ));
    }
    for (admin, args) in &admins {
        for key in ["x.*", "order.#", "a/b c"] {
            call(
                port,
                "POST",
                "/api/bindings/%2F/e/amq.topic/q/bq",
                json!({"routing_key": key}),
            );
            let listed = api(port, "/api/queues/%2F/bq/bindings");
            let pk = listed
                .as_array()
                .unwrap()
                .iter()
                .find(|b| b["routing_key"] == key)
                .map(|b| b["properties_key"].as_str().unwrap().to_string())
                .unwrap();
            let out = Command::new(admin)
                .args(args)
                .args([
                    "delete",
                    "binding",
                    "source=amq.topic",
                    "destination=bq",
                    "destination_type=queue",
                    &format!("properties_key={pk}"),
                ])
                .env("WARREN_CTL_HOST", format!("127.0.0.1:{port}"))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{admin} {key} ({pk}): {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(String::from_utf8_lossy(&out.stdout), "binding deleted\n");
            let left = api(port, "/api/queues/%2F/bq/bindings");
            assert!(
                left.as_array()
                    .unwrap()
                    .iter()
                    .all(|b| b["routing_key"] != key),
                "{admin}: {key} still bound: {left}"
            );
        }
    }
}

#[test]
fn metric_names_skip_labels_and_functions() {
    let e = "sum(rate(rabbitmq_channel_messages_published_total[60s]) * on(instance) group_left(rabbitmq_cluster, rabbitmq_node) rabbitmq_identity_info{rabbitmq_cluster=\"$c\"}) by(rabbitmq_node)";
    let names: Vec<String> = metric_names(e).into_iter().collect();
    assert_eq!(
        names,
        vec![
            "rabbitmq_channel_messages_published_total",
            "rabbitmq_identity_info"
        ]
    );
}
