//! The event exchange (rabbitmq_event_exchange): the events warren publishes to
//! `amq.rabbitmq.event` against those RabbitMQ 3.10.8 published for the same operations
//! (tests/fixtures/plugins/event_exchange_3.10.8.json and, with each header's AMQP type,
//! event_exchange_types_3.10.8.json): routing keys in order, header names in order with
//! their types, the message properties and the empty body. Values that differ per run
//! (pids, ports, timestamps) are not compared; names and flags are.
//!
//! And switching plugins at runtime with `rabbitmq-plugins enable/disable` (texts and exit
//! codes from tests/fixtures/plugins/rabbitmq_plugins_3.10.8.txt).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{process::Command, time::Duration};

use lapin::{
    options::*,
    types::{AMQPValue, FieldTable},
    Channel, Connection, ConnectionProperties, ExchangeKind,
};
use serde_json::Value;
use warren_integration::{client::*, http_request, warren_bin, Broker};

const EVENTS: &str = "amq.rabbitmq.event";

fn fixture(name: &str) -> Value {
    let path = format!("{}/fixtures/plugins/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json")
}

/// The events RabbitMQ published for operation `op`: (routing key, [(header, type)]).
fn recorded(op: &str) -> Vec<(String, Vec<(String, char)>)> {
    // The typed recording first; the older one (JSON types) for what it lacks.
    for (file, typed) in [
        ("event_exchange_types_3.10.8.json", true),
        ("event_exchange_3.10.8.json", false),
    ] {
        let f = fixture(file);
        let Some(found) = f["operations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["op"] == op)
        else {
            continue;
        };
        return found["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| !e["routing_key"].as_str().unwrap().starts_with("node."))
            .map(|e| {
                let headers = e["headers"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| {
                        let t = if typed {
                            v[0].as_str().unwrap().chars().next().unwrap()
                        } else {
                            match v {
                                Value::Bool(_) => 't',
                                Value::Number(_) => 'l',
                                Value::String(_) => 'S',
                                Value::Array(_) => 'A',
                                Value::Object(_) => 'F',
                                Value::Null => 'V',
                            }
                        };
                        (k.clone(), t)
                    })
                    .collect();
                (e["routing_key"].as_str().unwrap().to_string(), headers)
            })
            .collect();
    }
    panic!("no recording of {op}")
}

fn type_code(v: &AMQPValue) -> char {
    match v {
        AMQPValue::Boolean(_) => 't',
        AMQPValue::LongLongInt(_) => 'l',
        AMQPValue::LongString(_) => 'S',
        AMQPValue::FieldArray(_) => 'A',
        AMQPValue::FieldTable(_) => 'F',
        AMQPValue::LongInt(_) => 'I',
        AMQPValue::Timestamp(_) => 'T',
        other => panic!("unexpected header type {other:?}"),
    }
}

struct Got {
    key: String,
    headers: Vec<(String, AMQPValue)>,
}

impl Got {
    fn shape(&self) -> (String, Vec<(String, char)>) {
        (
            self.key.clone(),
            self.headers
                .iter()
                .map(|(k, v)| (k.clone(), type_code(v)))
                .collect(),
        )
    }

    fn str(&self, name: &str) -> String {
        match self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v) {
            Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
            other => panic!("{name}: {other:?}"),
        }
    }
}

/// Waits a moment for the events of the last operation, then takes them all.
async fn events(ch: &Channel, q: &str) -> Vec<Got> {
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut out = Vec::new();
    while let Some(m) = get(ch, q, true).await {
        let props = &m.delivery.properties;
        assert_eq!(props.delivery_mode(), &Some(2));
        assert!(props.content_type().is_none());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let ts = props.timestamp().expect("timestamp");
        assert!(ts.abs_diff(now) < 10, "timestamp in seconds: {ts}");
        assert!(m.delivery.data.is_empty(), "empty body");
        let table = props.headers().clone().expect("headers");
        // lapin's FieldTable sorts; RabbitMQ's order is checked in the unit tests (the
        // encoder writes the fields in the order they are given).
        let headers: Vec<(String, AMQPValue)> = table
            .inner()
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        let ms = headers
            .iter()
            .find(|(k, _)| k == "timestamp_in_ms")
            .map(|(_, v)| v.clone());
        match ms {
            Some(AMQPValue::LongLongInt(ms)) => {
                assert_eq!(u64::try_from(ms).unwrap() / 1000, ts)
            }
            other => panic!("timestamp_in_ms: {other:?}"),
        }
        out.push(Got {
            key: m.delivery.routing_key.to_string(),
            headers,
        });
    }
    out
}

fn sorted(mut shape: (String, Vec<(String, char)>)) -> (String, Vec<(String, char)>) {
    shape.1.sort();
    shape
}

/// The events match the recording: keys in order, header names and types.
fn assert_like(op: &str, got: &[Got]) {
    let want: Vec<_> = recorded(op).into_iter().map(sorted).collect();
    let got: Vec<_> = got.iter().map(|g| sorted(g.shape())).collect();
    assert_eq!(got, want, "{op}");
}

fn with_plugin() -> Broker {
    Broker::start_with(
        &[],
        &[(
            "RABBITMQ_ENABLED_PLUGINS",
            "rabbitmq_management,rabbitmq_event_exchange",
        )],
    )
}

async fn listen(broker: &Broker) -> (Connection, Channel, String) {
    let conn = connect(&broker.amqp_url()).await;
    let ch = channel(&conn).await;
    let q = exclusive_queue(&ch).await;
    ch.queue_bind(
        q.as_str().into(),
        EVENTS.into(),
        "#".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    events(&ch, &q).await;
    (conn, ch, q)
}

#[tokio::test]
async fn amqp_operations_publish_rabbitmqs_events() {
    let broker = with_plugin();
    let (_conn, ch, q) = listen(&broker).await;

    let props = ConnectionProperties::default().with_connection_name("ev-conn".into());
    let c2 = Connection::connect(&broker.amqp_url(), props)
        .await
        .unwrap();
    let got = events(&ch, &q).await;
    assert_like("connection open", &got);
    assert_eq!(got[0].str("name"), "guest");
    assert_eq!(got[1].str("user_provided_name"), "ev-conn");
    assert_eq!(got[1].str("user_who_performed_action"), "guest");
    assert_eq!(got[1].str("protocol"), "{0,9,1}");
    assert!(got[1].str("pid").starts_with("<rabbit@"));
    assert!(got[1].str("peer_host").starts_with('{'));
    let conn_pid = got[1].str("pid");

    let ch2 = c2.create_channel().await.unwrap();
    let got = events(&ch, &q).await;
    assert_like("channel open", &got);
    assert_eq!(got[0].str("connection"), conn_pid);
    assert!(got[0].str("name").ends_with(&format!(" ({})", ch2.id())));

    ch2.queue_declare(
        "ev-q".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let got = events(&ch, &q).await;
    assert_like("queue.declare ev-q", &got);
    assert_eq!(got[0].str("name"), "ev-q");
    assert_eq!(got[0].str("vhost"), "/");

    ch2.exchange_declare(
        "ev-x".into(),
        ExchangeKind::Topic,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let got = events(&ch, &q).await;
    assert_like("exchange.declare ev-x topic", &got);
    assert_eq!(got[0].str("type"), "topic");

    ch2.queue_bind(
        "ev-q".into(),
        "ev-x".into(),
        "k".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let got = events(&ch, &q).await;
    assert_like("queue.bind ev-q ev-x k", &got);
    assert_eq!(got[0].str("source_name"), "ev-x");
    assert_eq!(got[0].str("destination_name"), "ev-q");

    let _consumer = consume(&ch2, "ev-q", "ev-ct", false).await;
    let got = events(&ch, &q).await;
    assert_like("basic.consume ev-q", &got);
    assert_eq!(got[0].str("consumer_tag"), "ev-ct");

    ch2.basic_cancel("ev-ct".into(), BasicCancelOptions::default())
        .await
        .unwrap();
    assert_like("basic.cancel", &events(&ch, &q).await);

    ch2.queue_unbind(
        "ev-q".into(),
        "ev-x".into(),
        "k".into(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    assert_like("queue.unbind", &events(&ch, &q).await);

    ch2.exchange_delete("ev-x".into(), ExchangeDeleteOptions::default())
        .await
        .unwrap();
    assert_like("exchange.delete ev-x", &events(&ch, &q).await);

    ch2.queue_delete("ev-q".into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    assert_like("queue.delete ev-q", &events(&ch, &q).await);

    ch2.close(200, "bye".into()).await.unwrap();
    assert_like("channel close", &events(&ch, &q).await);

    c2.close(200, "bye".into()).await.unwrap();
    let got = events(&ch, &q).await;
    assert_like("connection close", &got);
    assert_eq!(got[0].str("pid"), conn_pid);

    // A queue deleted with a binding: the binding goes as rmq-internal's, then the queue.
    declare_queue(&ch, "ev-q2", QueueDeclareOptions::default()).await;
    ch.queue_bind(
        "ev-q2".into(),
        "amq.direct".into(),
        "k".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    events(&ch, &q).await;
    ch.queue_delete("ev-q2".into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    let got = events(&ch, &q).await;
    let want: Vec<_> = recorded("queue.delete ev-q (with consumer)")
        .into_iter()
        .filter(|(k, _)| !k.starts_with("consumer."))
        .map(sorted)
        .collect();
    assert_eq!(
        got.iter().map(|g| sorted(g.shape())).collect::<Vec<_>>(),
        want
    );
    assert_eq!(got[0].str("user_who_performed_action"), "rmq-internal");
    assert_eq!(got[0].str("source_name"), "amq.direct");
    assert_eq!(got[1].str("user_who_performed_action"), "guest");

    // A refused login: user.authentication.failure (the reason as a char list) and
    // connection.closed.
    let bad = format!("amqp://nobody:x@127.0.0.1:{}/%2F", broker.port);
    assert!(Connection::connect(&bad, ConnectionProperties::default())
        .await
        .is_err());
    let got = events(&ch, &q).await;
    assert_like("authentication failure", &got);
    assert_eq!(got[0].str("name"), "nobody");
}

#[tokio::test]
async fn management_operations_publish_rabbitmqs_events() {
    let broker = with_plugin();
    let (_conn, ch, q) = listen(&broker).await;
    let port = broker.http_port;
    let call = |method: &str, path: &str, body: Option<&str>| {
        let (status, text) = http_request(port, method, path, body);
        assert!(status < 300, "{method} {path}: {status} {text}");
    };

    call(
        "PUT",
        "/api/users/ev-u",
        Some(r#"{"password":"pw","tags":""}"#),
    );
    let got = events(&ch, &q).await;
    let want: Vec<_> = recorded("add_user ev-u").into_iter().map(sorted).collect();
    assert_eq!(
        got.iter().map(|g| sorted(g.shape())).collect::<Vec<_>>(),
        want
    );
    // The API's user performed it (the recording's rmq-cli is rabbitmqctl's).
    assert_eq!(got[0].str("user_who_performed_action"), "guest");

    call(
        "PUT",
        "/api/users/ev-u",
        Some(r#"{"password":"pw","tags":"management"}"#),
    );
    let keys: Vec<String> = events(&ch, &q).await.into_iter().map(|g| g.key).collect();
    assert!(keys.contains(&"user.tags.set".to_string()), "{keys:?}");

    call("PUT", "/api/vhosts/ev-v", None);
    let mut got = events(&ch, &q).await;
    // The API grants its user full permissions on a vhost it creates, as RabbitMQ's does.
    let granted = got.pop().expect("events");
    assert_eq!(granted.key, "permission.created");
    assert_eq!(granted.str("user"), "guest");
    let recorded_vhost = recorded("add_vhost ev-v");
    // The default exchanges the vhost has (amq.rabbitmq.trace only where warren declares
    // it), then vhost.created.
    let last = got.last().expect("events");
    assert_eq!(
        sorted(last.shape()),
        sorted(recorded_vhost.last().unwrap().clone())
    );
    assert_eq!(last.str("name"), "ev-v");
    let exchange_shape = sorted(recorded_vhost[0].clone());
    for g in &got[..got.len() - 1] {
        assert_eq!(sorted(g.shape()), exchange_shape);
        assert_eq!(g.str("vhost"), "ev-v");
    }
    let names: Vec<String> = got[..got.len() - 1].iter().map(|g| g.str("name")).collect();
    assert_eq!(
        names[..6],
        [
            "",
            "amq.direct",
            "amq.topic",
            "amq.match",
            "amq.headers",
            "amq.fanout"
        ]
    );

    call(
        "PUT",
        "/api/permissions/ev-v/ev-u",
        Some(r#"{"configure":".*","write":".*","read":".*"}"#),
    );
    assert_like("set_permissions -p ev-v ev-u", &events(&ch, &q).await);
    call("DELETE", "/api/permissions/ev-v/ev-u", None);
    assert_like("clear_permissions -p ev-v ev-u", &events(&ch, &q).await);

    call(
        "PUT",
        "/api/policies/%2F/ev-p",
        Some(r#"{"pattern":"^ev","definition":{"max-length":5},"apply-to":"queues"}"#),
    );
    let got = events(&ch, &q).await;
    assert_like("set_policy ev-p", &got);
    match got[0].headers.iter().find(|(k, _)| k == "definition") {
        Some((_, AMQPValue::FieldTable(t))) => {
            assert_eq!(
                t.inner().get("max-length"),
                Some(&AMQPValue::LongLongInt(5))
            )
        }
        other => panic!("definition: {other:?}"),
    }
    call("DELETE", "/api/policies/%2F/ev-p", None);
    assert_like("clear_policy ev-p", &events(&ch, &q).await);

    call("DELETE", "/api/vhosts/ev-v", None);
    let keys: Vec<String> = events(&ch, &q).await.into_iter().map(|g| g.key).collect();
    let mut want: Vec<String> = recorded("delete_vhost ev-v")
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| !k.starts_with("parameter.") && k != "exchange.deleted")
        .collect();
    assert_eq!(
        keys.iter()
            .filter(|k| !k.starts_with("parameter.") && *k != "exchange.deleted")
            .cloned()
            .collect::<Vec<_>>(),
        std::mem::take(&mut want)
    );
    assert!(keys.iter().filter(|k| *k == "exchange.deleted").count() >= 6);

    call(
        "PUT",
        "/api/users/ev-t",
        Some(r#"{"password":"pw","tags":""}"#),
    );
    events(&ch, &q).await;
    call(
        "PUT",
        "/api/topic-permissions/%2F/ev-t",
        Some(r#"{"exchange":"amq.topic","write":"^a","read":"^b"}"#),
    );
    assert_like(
        "set_topic_permissions ev-u amq.topic",
        &events(&ch, &q).await,
    );
    call("DELETE", "/api/topic-permissions/%2F/ev-t", None);
    assert_like("clear_topic_permissions ev-u", &events(&ch, &q).await);

    call(
        "PUT",
        "/api/vhost-limits/%2F/max-connections",
        Some(r#"{"value": 100}"#),
    );
    assert_like("set_vhost_limits /", &events(&ch, &q).await);
    call("DELETE", "/api/vhost-limits/%2F/max-connections", None);
    assert_like("clear_vhost_limits /", &events(&ch, &q).await);

    call("DELETE", "/api/users/ev-u", None);
    assert_like("delete_user ev-u", &events(&ch, &q).await);
}

/// The memory alarm set and cleared (the monitor samples once a second).
#[tokio::test]
async fn alarms_publish_rabbitmqs_events() {
    let broker = with_plugin();
    let (_conn, ch, q) = listen(&broker).await;
    let port = broker.http_port;
    let watermark = |body: &str| {
        let (status, text) = http_request(
            port,
            "PUT",
            "/api/warren/vm-memory-high-watermark",
            Some(body),
        );
        assert!(status < 300, "{status} {text}");
    };
    let wait_for = |key: &'static str| {
        let (ch, q) = (ch.clone(), q.clone());
        async move {
            for _ in 0..20 {
                let got = events(&ch, &q).await;
                if !got.is_empty() {
                    assert_eq!(got[0].key, key);
                    return got;
                }
            }
            panic!("no {key}")
        }
    };
    watermark(r#"{"absolute": 1}"#);
    let got = wait_for("alarm.set").await;
    assert_like("set_vm_memory_high_watermark 0.0000001", &got);
    assert_eq!(got[0].str("source"), "memory");
    watermark(r#"{"relative": 0.4}"#);
    assert_like(
        "set_vm_memory_high_watermark 0.4",
        &wait_for("alarm.cleared").await,
    );
}

#[tokio::test]
async fn without_the_plugin_there_is_no_event_exchange() {
    let broker = Broker::start();
    let conn = connect(&broker.amqp_url()).await;
    let ch = channel(&conn).await;
    let err = ch
        .exchange_declare(
            EVENTS.into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(amqp_error(&err).0, 404);
}

struct Run {
    code: i32,
    stdout: String,
}

fn plugins(broker: &Broker, args: &[&str]) -> Run {
    let out = Command::new(warren_bin())
        .arg("rabbitmq-plugins")
        .args(args)
        .env("WARREN_CTL_HOST", format!("127.0.0.1:{}", broker.http_port))
        .env_remove("WARREN_CTL_USER")
        .env_remove("WARREN_CTL_PASSWORD")
        .env_remove("RABBITMQ_DEFAULT_USER")
        .env_remove("RABBITMQ_DEFAULT_PASS")
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
    }
}

/// The text RabbitMQ printed after `### {command}` up to `--stderr`.
fn recorded_stdout(command: &str) -> String {
    let text = std::fs::read_to_string(format!(
        "{}/fixtures/plugins/rabbitmq_plugins_3.10.8.txt",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let start = text.find(&format!("### {command}\n")).unwrap();
    let rest = &text[start..];
    let from = rest.find("--stdout\n").unwrap() + "--stdout\n".len();
    let to = rest.find("--stderr\n").unwrap();
    rest[from..to].to_string()
}

async fn exchange_exists(ch_conn: &Connection, name: &str) -> bool {
    let ch = channel(ch_conn).await;
    ch.exchange_declare(
        name.into(),
        ExchangeKind::Topic,
        ExchangeDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .is_ok()
}

#[tokio::test]
async fn rabbitmq_plugins_switches_plugins_at_runtime() {
    let dir = std::env::temp_dir().join(format!("warren-events-plugins-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("enabled_plugins");
    std::fs::write(&file, "[rabbitmq_management].\n").unwrap();
    let broker = Broker::start_with(
        &[],
        &[("RABBITMQ_ENABLED_PLUGINS_FILE", file.to_str().unwrap())],
    );
    let conn = connect(&broker.amqp_url()).await;
    assert!(!exchange_exists(&conn, EVENTS).await);

    let list = plugins(&broker, &["list", "-q", "event"]);
    assert_eq!(list.code, 0);
    assert_eq!(list.stdout, "[  ] rabbitmq_event_exchange 3.10.7\n");

    let on = plugins(&broker, &["enable", "rabbitmq_event_exchange"]);
    assert_eq!(on.code, 0, "{}", on.stdout);
    let want = recorded_stdout("enable rabbitmq_event_exchange");
    let tail = &want[want
        .find("The following plugins have been enabled:")
        .unwrap()..];
    assert!(on.stdout.ends_with(tail), "{}", on.stdout);
    assert!(on.stdout.starts_with("Enabling plugins on node "));
    assert!(on
        .stdout
        .contains("The following plugins have been configured:\n  rabbitmq_event_exchange\n  rabbitmq_management\n"));
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "[rabbitmq_event_exchange,rabbitmq_management].\n"
    );
    assert!(exchange_exists(&conn, EVENTS).await);
    let list = plugins(&broker, &["list", "-q", "event"]);
    assert_eq!(list.stdout, "[E*] rabbitmq_event_exchange 3.10.7\n");

    // Events flow at once.
    let ch = channel(&conn).await;
    let q = exclusive_queue(&ch).await;
    ch.queue_bind(
        q.as_str().into(),
        EVENTS.into(),
        "queue.*".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    declare_queue(&ch, "after-enable", QueueDeclareOptions::default()).await;
    let got = events(&ch, &q).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].key, "queue.created");

    // Enabling it again changes nothing.
    let again = plugins(&broker, &["enable", "rabbitmq_event_exchange"]);
    assert_eq!(again.code, 0);
    assert!(again.stdout.ends_with("Plugin configuration unchanged.\n"));

    // An exchange type plugin: the type is declarable at once.
    let chx = plugins(&broker, &["enable", "rabbitmq_consistent_hash_exchange"]);
    assert_eq!(chx.code, 0, "{}", chx.stdout);
    let ch2 = channel(&conn).await;
    ch2.exchange_declare(
        "hashed".into(),
        ExchangeKind::Custom("x-consistent-hash".into()),
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();

    let off = plugins(&broker, &["disable", "rabbitmq_event_exchange"]);
    assert_eq!(off.code, 0, "{}", off.stdout);
    let want = recorded_stdout("disable rabbitmq_event_exchange");
    let tail = &want[want
        .find("The following plugins have been disabled:")
        .unwrap()..];
    assert!(off.stdout.ends_with(tail), "{}", off.stdout);
    assert!(!exchange_exists(&conn, EVENTS).await);
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "[rabbitmq_consistent_hash_exchange,rabbitmq_management].\n"
    );

    let unknown = plugins(&broker, &["enable", "no_such_plugin"]);
    assert_eq!(unknown.code, 70);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A durable queue's binding to the event exchange survives a restart, as in RabbitMQ
/// (the exchange is durable).
#[tokio::test]
async fn durable_bindings_to_the_event_exchange_survive_a_restart() {
    let dir = std::env::temp_dir().join(format!("warren-events-restart-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let toml = dir.join("warren.toml");
    std::fs::write(&toml, "plugins = [\"rabbitmq_event_exchange\"]\n").unwrap();
    let broker = Broker::start_with(&["--config", toml.to_str().unwrap()], &[]);
    {
        let conn = connect(&broker.amqp_url()).await;
        let ch = channel(&conn).await;
        declare_queue(
            &ch,
            "audit",
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
        )
        .await;
        ch.queue_bind(
            "audit".into(),
            EVENTS.into(),
            "queue.created".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        conn.close(200, "bye".into()).await.unwrap();
    }
    let broker = broker.restart(false);
    let conn = connect(&broker.amqp_url()).await;
    let ch = channel(&conn).await;
    declare_queue(&ch, "after-restart", QueueDeclareOptions::default()).await;
    let got = events(&ch, "audit").await;
    let names: Vec<String> = got.iter().map(|g| g.str("name")).collect();
    assert_eq!(names, ["after-restart"]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The exchange as the plugin declares it, and nothing published while nothing is bound
/// (the plugin skips events then: no message stats).
#[tokio::test]
async fn the_event_exchange_as_declared_and_quiet_while_unbound() {
    let broker = with_plugin();
    let x = warren_integration::api(broker.http_port, "/api/exchanges/%2F/amq.rabbitmq.event");
    assert_eq!(x["type"], "topic");
    assert_eq!(x["durable"], true);
    assert_eq!(x["internal"], true);
    assert_eq!(x["auto_delete"], false);
    let conn = connect(&broker.amqp_url()).await;
    let ch = channel(&conn).await;
    declare_queue(&ch, "unheard", QueueDeclareOptions::default()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let x = warren_integration::api(broker.http_port, "/api/exchanges/%2F/amq.rabbitmq.event");
    let published = x["message_stats"]["publish_in"].as_u64().unwrap_or(0);
    assert_eq!(published, 0, "{x}");
    let overview = warren_integration::api(broker.http_port, "/api/overview");
    let publishes = overview["message_stats"]["publish"].as_u64().unwrap_or(0);
    assert_eq!(publishes, 0, "{overview}");
}
