//! The last protocol differences to RabbitMQ 3.10.8 (issue 19, part 5) and
//! consumer_timeout (part 4), on raw frames so that codes, texts, class/method ids and
//! the socket's closing are seen exactly as a client sees them. Every expectation comes
//! from tests/fixtures/protocol/rabbitmq_3.10.8.json, recorded from a real node.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use lapin::protocol::{self, AMQPClass};
use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use warren_integration::{raw::*, Broker};

fn fixture() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/protocol/rabbitmq_3.10.8.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json")
}

/// A close as (code, text, class id, method id).
type Close = (u16, String, u16, u16);

fn close_of(v: &Value) -> Option<Close> {
    let a = v.as_array()?;
    Some((
        a[0].as_u64()? as u16,
        a[1].as_str()?.to_string(),
        a[2].as_u64()? as u16,
        a[3].as_u64()? as u16,
    ))
}

fn long(v: u64) -> [u8; 8] {
    v.to_be_bytes()
}

/// A raw connection through the handshake with the given heartbeat, channel 1 open.
async fn open(port: u16, heartbeat: u16) -> TcpStream {
    let mut sock = raw_connect(port).await;
    read_method(&mut sock).await; // start
    write_method(&mut sock, 0, 10, 11, &start_ok_args(false)).await;
    let tune = match read_method(&mut sock).await {
        (0, AMQPClass::Connection(protocol::connection::AMQPMethod::Tune(t))) => t,
        other => panic!("expected connection.tune, got {other:?}"),
    };
    let mut args = tune.channel_max.to_be_bytes().to_vec();
    args.extend_from_slice(&tune.frame_max.to_be_bytes());
    args.extend_from_slice(&heartbeat.to_be_bytes());
    write_method(&mut sock, 0, 10, 31, &args).await;
    write_method(&mut sock, 0, 10, 40, &open_args("/")).await;
    read_method(&mut sock).await; // open-ok
    write_method(&mut sock, 1, 20, 10, &shortstr("")).await;
    read_method(&mut sock).await; // channel.open-ok
    sock
}

/// The next method, skipping heartbeats and content frames.
async fn next_method(sock: &mut TcpStream) -> (u16, AMQPClass) {
    loop {
        let f = read_frame(sock).await;
        if f.kind == FRAME_METHOD {
            return (f.channel, decode_method(&f.payload));
        }
    }
}

fn close_tuple(m: &AMQPClass) -> Option<Close> {
    match m {
        AMQPClass::Channel(protocol::channel::AMQPMethod::Close(c)) => Some((
            c.reply_code,
            c.reply_text.to_string(),
            c.class_id,
            c.method_id,
        )),
        AMQPClass::Connection(protocol::connection::AMQPMethod::Close(c)) => Some((
            c.reply_code,
            c.reply_text.to_string(),
            c.class_id,
            c.method_id,
        )),
        _ => None,
    }
}

async fn declare(sock: &mut TcpStream, ch: u16, name: &str, passive: bool) -> AMQPClass {
    let mut args = 0u16.to_be_bytes().to_vec();
    args.extend(shortstr(name));
    args.push(u8::from(passive));
    args.extend_from_slice(&0u32.to_be_bytes());
    write_method(sock, ch, 50, 10, &args).await;
    next_method(sock).await.1
}

fn message_count(m: &AMQPClass) -> u32 {
    match m {
        AMQPClass::Queue(protocol::queue::AMQPMethod::DeclareOk(ok)) => ok.message_count,
        other => panic!("expected queue.declare-ok, got {other:?}"),
    }
}

async fn consume(sock: &mut TcpStream, queue: &str) {
    let mut args = 0u16.to_be_bytes().to_vec();
    args.extend(shortstr(queue));
    args.extend(shortstr("ct"));
    args.push(0); // no-local, no-ack, exclusive, no-wait all false
    args.extend_from_slice(&0u32.to_be_bytes());
    write_method(sock, 1, 60, 20, &args).await;
    match next_method(sock).await.1 {
        AMQPClass::Basic(protocol::basic::AMQPMethod::ConsumeOk(_)) => {}
        other => panic!("expected consume-ok, got {other:?}"),
    }
}

async fn expect_deliveries(sock: &mut TcpStream, n: usize) {
    for _ in 0..n {
        match next_method(sock).await.1 {
            AMQPClass::Basic(protocol::basic::AMQPMethod::Deliver(_)) => {}
            other => panic!("expected basic.deliver, got {other:?}"),
        }
    }
}

/// Reads until the peer closes the socket; returns how long that took.
async fn time_to_eof(sock: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 512];
    loop {
        let left = limit.checked_sub(start.elapsed())?;
        match tokio::time::timeout(left, sock.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => continue,
            Err(_) => return None,
        }
    }
}

/// A connection-level error: a method on a channel that is not open.
async fn provoke_connection_error(sock: &mut TcpStream) -> Close {
    let mut args = 0u16.to_be_bytes().to_vec();
    args.extend(shortstr("q"));
    args.push(0);
    args.extend_from_slice(&0u32.to_be_bytes());
    write_method(sock, 5, 50, 10, &args).await;
    let (ch, m) = next_method(sock).await;
    assert_eq!(ch, 0);
    close_tuple(&m).expect("connection.close")
}

#[tokio::test]
async fn basic_ack_sequences_settle_as_rabbitmq_does() {
    let broker = Broker::start();
    let fx = fixture();
    for (i, case) in fx["basic_ack"]["cases"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let mut sock = open(broker.port, 0).await;
        let q = format!("ack-case-{i}");
        declare(&mut sock, 1, &q, false).await;
        for _ in 0..4 {
            raw_publish(&mut sock, &q, b"m").await;
        }
        consume(&mut sock, &q).await;
        expect_deliveries(&mut sock, 4).await;
        for ack in case["acks"].as_array().unwrap() {
            let mut args = long(ack[0].as_u64().unwrap()).to_vec();
            args.push(u8::from(ack[1].as_bool().unwrap()));
            write_method(&mut sock, 1, 60, 80, &args).await;
        }
        // A passive declare after the acks: answered when the channel survived them.
        let reply = declare(&mut sock, 1, &q, true).await;
        let want = close_of(&case["close"]);
        assert_eq!(close_tuple(&reply), want, "case {case}");
        if want.is_some() {
            write_method(&mut sock, 1, 20, 41, &[]).await; // close-ok
        } else {
            write_method(&mut sock, 1, 20, 40, &[0, 200, 0, 0, 0, 0, 0]).await;
            next_method(&mut sock).await; // close-ok
        }
        // The closed channel's deliveries went back to the queue; the rest were acked.
        write_method(&mut sock, 2, 20, 10, &shortstr("")).await;
        next_method(&mut sock).await;
        let left = message_count(&declare(&mut sock, 2, &q, true).await);
        assert_eq!(
            u64::from(left),
            case["left"].as_u64().unwrap(),
            "case {case}"
        );
    }
}

#[tokio::test]
async fn server_capabilities_are_rabbitmqs() {
    let broker = Broker::start();
    let mut sock = raw_connect(broker.port).await;
    let start = match read_method(&mut sock).await.1 {
        AMQPClass::Connection(protocol::connection::AMQPMethod::Start(s)) => s,
        other => panic!("expected connection.start, got {other:?}"),
    };
    let caps = match start.server_properties.inner().get("capabilities") {
        Some(lapin::types::AMQPValue::FieldTable(t)) => t.clone(),
        other => panic!("capabilities: {other:?}"),
    };
    let mut got: Vec<String> = caps.inner().keys().map(|k| k.to_string()).collect();
    let mut want: Vec<String> = fixture()["server_capabilities_in_wire_order"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    assert!(caps
        .inner()
        .values()
        .all(|v| *v == lapin::types::AMQPValue::Boolean(true)));
}

#[tokio::test]
async fn unknown_and_invalid_exchange_types() {
    let broker = Broker::start();
    let fx = fixture();
    for form in ["unknown", "invalid"] {
        for t in fx["exchange_type_errors"][form].as_array().unwrap() {
            let t = t.as_str().unwrap();
            let mut sock = open(broker.port, 0).await;
            let mut args = 0u16.to_be_bytes().to_vec();
            args.extend(shortstr("x-typed"));
            args.extend(shortstr(t));
            args.push(0);
            args.extend_from_slice(&0u32.to_be_bytes());
            write_method(&mut sock, 1, 40, 10, &args).await;
            let (ch, m) = next_method(&mut sock).await;
            assert_eq!(ch, 0, "{t:?}");
            assert_eq!(
                close_tuple(&m),
                Some((
                    503,
                    format!("COMMAND_INVALID - {form} exchange type '{t}'"),
                    40,
                    10
                )),
                "{t:?}"
            );
        }
    }
    // The management API words it the same way.
    for (t, form) in [("foo", "invalid"), ("x-foo", "unknown")] {
        let (status, body) = warren_integration::http_request(
            broker.http_port,
            "PUT",
            "/api/exchanges/%2F/api-typed",
            Some(&format!("{{\"type\":\"{t}\"}}")),
        );
        assert_eq!(status, 400);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["reason"], format!("{form} exchange type '{t}'"));
    }
}

#[tokio::test]
async fn close_ok_after_a_server_close_closes_the_socket_at_once() {
    let broker = Broker::start();
    let mut sock = open(broker.port, 0).await;
    let close = provoke_connection_error(&mut sock).await;
    assert_eq!(
        close,
        (
            504,
            "CHANNEL_ERROR - expected 'channel.open'".into(),
            50,
            10
        )
    );
    // Frames after the close are ignored: nothing answers this channel.open.
    write_method(&mut sock, 1, 20, 10, &shortstr("")).await;
    write_method(&mut sock, 0, 10, 51, &[]).await;
    let took = time_to_eof(&mut sock, Duration::from_secs(5)).await;
    assert!(took.is_some_and(|t| t < Duration::from_secs(1)), "{took:?}");
}

#[tokio::test]
async fn a_server_close_without_close_ok_waits_the_heartbeat_then_closes() {
    let broker = Broker::start();
    let mut sock = open(broker.port, 2).await;
    provoke_connection_error(&mut sock).await;
    // RabbitMQ waits the negotiated heartbeat (when under 30 s) for the close-ok,
    // sending heartbeats meanwhile.
    let took = time_to_eof(&mut sock, Duration::from_secs(10))
        .await
        .expect("closed");
    assert!(
        took >= Duration::from_millis(1700) && took < Duration::from_secs(4),
        "{took:?}"
    );
}

#[tokio::test]
async fn after_its_close_ok_the_server_waits_for_the_client_to_close() {
    let broker = Broker::start();
    let mut sock = open(broker.port, 2).await;
    write_method(&mut sock, 0, 10, 50, &[0, 200, 0, 0, 0, 0, 0]).await;
    assert!(matches!(
        next_method(&mut sock).await,
        (
            0,
            AMQPClass::Connection(protocol::connection::AMQPMethod::CloseOk(_))
        )
    ));
    let took = time_to_eof(&mut sock, Duration::from_secs(10))
        .await
        .expect("closed");
    assert!(
        took >= Duration::from_millis(1700) && took < Duration::from_secs(4),
        "{took:?}"
    );
}

#[tokio::test]
async fn a_client_close_crossing_the_server_close_gets_close_ok() {
    let broker = Broker::start();
    let mut sock = open(broker.port, 2).await;
    provoke_connection_error(&mut sock).await;
    let closed_at = Instant::now();
    write_method(&mut sock, 0, 10, 50, &[0, 200, 0, 0, 0, 0, 0]).await;
    assert!(matches!(
        next_method(&mut sock).await,
        (
            0,
            AMQPClass::Connection(protocol::connection::AMQPMethod::CloseOk(_))
        )
    ));
    // Only a close-ok ends the wait early; a crossing close does not.
    time_to_eof(&mut sock, Duration::from_secs(10))
        .await
        .expect("closed");
    let took = closed_at.elapsed();
    assert!(
        took >= Duration::from_millis(1700) && took < Duration::from_secs(4),
        "{took:?}"
    );
}

// ---------------------------------------------------------------------------------------
// consumer_timeout
// ---------------------------------------------------------------------------------------

fn broker_with(test: &str, toml: &str, conf: Option<&str>) -> Broker {
    let dir = std::env::temp_dir();
    let toml_path = dir.join(format!("warren-ct-{}-{test}.toml", std::process::id()));
    std::fs::write(&toml_path, toml).unwrap();
    let conf_path = dir.join(format!("warren-ct-{}-{test}.conf", std::process::id()));
    let mut env = Vec::new();
    if let Some(conf) = conf {
        std::fs::write(&conf_path, conf).unwrap();
        env.push(("RABBITMQ_CONFIG_FILE", conf_path.to_str().unwrap()));
    }
    let broker = Broker::start_with(&["--config", toml_path.to_str().unwrap()], &env);
    let _ = std::fs::remove_file(&toml_path);
    let _ = std::fs::remove_file(&conf_path);
    broker
}

fn timeout_text(channel: u16, ms: u64) -> String {
    let want = close_of(&fixture()["consumer_timeout"]["close"]).unwrap();
    want.1
        .replace("channel 1", &format!("channel {channel}"))
        .replace("5000 ms", &format!("{ms} ms"))
}

#[tokio::test]
async fn an_unacked_delivery_past_consumer_timeout_closes_its_channel() {
    let broker = broker_with(
        "consume",
        "consumer_timeout_ms = 1000\nchannel_tick_interval_ms = 500\n",
        None,
    );
    let mut sock = open(broker.port, 0).await;
    declare(&mut sock, 1, "ct", false).await;
    raw_publish(&mut sock, "ct", b"slow").await;
    consume(&mut sock, "ct").await;
    expect_deliveries(&mut sock, 1).await;
    let delivered = Instant::now();
    let (ch, m) = next_method(&mut sock).await;
    let took = delivered.elapsed();
    assert_eq!(ch, 1);
    let want = close_of(&fixture()["consumer_timeout"]["close"]).unwrap();
    assert_eq!(
        close_tuple(&m),
        Some((406, timeout_text(1, 1000), want.2, want.3))
    );
    // Checked every tick: after the timeout, within one more interval.
    assert!(
        took >= Duration::from_millis(950) && took < Duration::from_millis(2500),
        "{took:?}"
    );
    // The delivery went back to the queue.
    write_method(&mut sock, 1, 20, 41, &[]).await;
    write_method(&mut sock, 2, 20, 10, &shortstr("")).await;
    next_method(&mut sock).await;
    assert_eq!(message_count(&declare(&mut sock, 2, "ct", true).await), 1);
}

#[tokio::test]
async fn basic_get_deliveries_time_out_and_acked_ones_do_not() {
    let broker = broker_with(
        "get",
        "channel_tick_interval_ms = 300\n",
        Some("consumer_timeout = 1200\n"),
    );
    let mut sock = open(broker.port, 0).await;
    declare(&mut sock, 1, "ct", false).await;
    for _ in 0..3 {
        raw_publish(&mut sock, "ct", b"m").await;
    }
    // Acked in time: the channel lives on past the timeout.
    consume(&mut sock, "ct").await;
    expect_deliveries(&mut sock, 3).await;
    let mut args = long(3).to_vec();
    args.push(1);
    write_method(&mut sock, 1, 60, 80, &args).await;
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(message_count(&declare(&mut sock, 1, "ct", true).await), 0);

    // basic.get on channel 2: its delivery times out too (the close names channel 2).
    declare(&mut sock, 1, "ct2", false).await;
    raw_publish(&mut sock, "ct2", b"got").await;
    assert_eq!(message_count(&declare(&mut sock, 1, "ct2", true).await), 1);
    write_method(&mut sock, 2, 20, 10, &shortstr("")).await;
    next_method(&mut sock).await;
    let mut get = 0u16.to_be_bytes().to_vec();
    get.extend(shortstr("ct2"));
    get.push(0);
    write_method(&mut sock, 2, 60, 70, &get).await;
    match next_method(&mut sock).await {
        (2, AMQPClass::Basic(protocol::basic::AMQPMethod::GetOk(_))) => {}
        other => panic!("expected get-ok, got {other:?}"),
    }
    let got_at = Instant::now();
    let (ch, m) = next_method(&mut sock).await;
    assert_eq!(ch, 2);
    assert_eq!(close_tuple(&m), Some((406, timeout_text(2, 1200), 0, 0)));
    assert!(got_at.elapsed() >= Duration::from_millis(1100));
}

#[tokio::test]
async fn the_default_consumer_timeout_is_thirty_minutes() {
    // Nothing closes within a short wait under the default (1,800,000 ms).
    let broker = broker_with("default", "channel_tick_interval_ms = 200\n", None);
    let mut sock = open(broker.port, 0).await;
    declare(&mut sock, 1, "ct", false).await;
    raw_publish(&mut sock, "ct", b"m").await;
    consume(&mut sock, "ct").await;
    expect_deliveries(&mut sock, 1).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(message_count(&declare(&mut sock, 1, "ct", true).await), 0);
    let _ = sock.shutdown().await;
}

/// CPU time (user + system, in clock ticks) the broker process has used.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Fields after the command name (which may hold spaces) start after ") ".
    let rest = &stat[stat.rfind(") ").expect("stat layout") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[tokio::test]
async fn a_closing_connection_with_an_armed_consumer_tick_stays_idle() {
    let broker = broker_with(
        "idle",
        "consumer_timeout_ms = 60000\nchannel_tick_interval_ms = 100\n",
        None,
    );
    let mut sock = open(broker.port, 2).await;
    declare(&mut sock, 1, "ct", false).await;
    raw_publish(&mut sock, "ct", b"m").await;
    consume(&mut sock, "ct").await;
    expect_deliveries(&mut sock, 1).await;
    provoke_connection_error(&mut sock).await;
    // The close wait (2 s here) must not spin on the channel's past tick deadline.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = cpu_ticks(broker.pid());
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let used = cpu_ticks(broker.pid()) - before;
    assert!(
        used < 15,
        "broker used {used} ticks of CPU in 1.2 s while closing"
    );
}
