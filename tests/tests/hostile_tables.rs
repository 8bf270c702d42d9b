//! Field tables nested thousands of levels deep, on every path a client can send one:
//! connection.start-ok's client properties, an AMQPLAIN response, queue.declare arguments
//! and message headers. RabbitMQ 3.10 accepts them all and stays up; warren used to
//! overflow a worker's stack and abort the whole process. Also: a routing key longer than
//! a shortstr through the management API's publish.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use lapin::{
    options::QueueDeclareOptions,
    protocol::{self, AMQPClass},
};
use tokio::{io::AsyncWriteExt, net::TcpStream};
use warren_integration::{client::*, http_request, raw::*, Broker};

/// `{"k": {"k": ... {}}}`, `depth` tables in all, with its length prefix.
fn nested_table(depth: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(depth * 7);
    for level in (1..=depth).rev() {
        out.extend_from_slice(&(((level - 1) * 7) as u32).to_be_bytes());
        if level > 1 {
            out.extend_from_slice(&[1, b'k', b'F']);
        }
    }
    out
}

/// One table entry: key, then a tagged value.
fn entry(key: &str, tag: u8, value: &[u8]) -> Vec<u8> {
    let mut e = shortstr(key);
    e.push(tag);
    e.extend_from_slice(value);
    e
}

fn table(entries: &[Vec<u8>]) -> Vec<u8> {
    let body: Vec<u8> = entries.concat();
    let mut t = (body.len() as u32).to_be_bytes().to_vec();
    t.extend(body);
    t
}

fn long_str(s: &str) -> Vec<u8> {
    let mut v = (s.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(s.as_bytes());
    v
}

/// An array of long strings (the value of a CC or BCC header).
fn str_array(items: &[&str]) -> Vec<u8> {
    let body: Vec<u8> = items
        .iter()
        .flat_map(|s| {
            let mut v = vec![b'S'];
            v.extend(long_str(s));
            v
        })
        .collect();
    let mut a = (body.len() as u32).to_be_bytes().to_vec();
    a.extend(body);
    a
}

/// Reads connection.start, sends start-ok with these client properties and credentials.
async fn start_ok(
    sock: &mut TcpStream,
    client_properties: &[u8],
    mechanism: &str,
    response: &[u8],
) {
    match read_method(sock).await {
        (0, AMQPClass::Connection(protocol::connection::AMQPMethod::Start(_))) => {}
        other => panic!("expected connection.start, got {other:?}"),
    }
    let mut args = client_properties.to_vec();
    args.extend(shortstr(mechanism));
    args.extend(long_str_bytes(response));
    args.extend(shortstr("en_US"));
    write_method(sock, 0, 10, 11, &args).await;
}

fn long_str_bytes(b: &[u8]) -> Vec<u8> {
    let mut v = (b.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(b);
    v
}

async fn expect_tune(sock: &mut TcpStream) {
    match read_method(sock).await {
        (0, AMQPClass::Connection(protocol::connection::AMQPMethod::Tune(_))) => {}
        other => panic!("expected connection.tune, got {other:?}"),
    }
}

/// The broker still serves a new client: declare, publish, get.
async fn assert_broker_serves(broker: &Broker) {
    let conn = connect(&broker.amqp_url()).await;
    let ch = channel(&conn).await;
    let q = exclusive_queue(&ch).await;
    publish(&ch, "", &q, b"still here").await;
    assert_eq!(drain(&ch, &q).await, vec!["still here".to_string()]);
}

/// basic.publish on channel 1 with a raw property block.
async fn publish_raw(sock: &mut TcpStream, exchange: &str, key: &str, props: &[u8], body: &[u8]) {
    let mut args = 0u16.to_be_bytes().to_vec();
    args.extend(shortstr(exchange));
    args.extend(shortstr(key));
    args.push(0);
    let mut bytes = method_frame(1, 60, 40, &args);
    let mut header = 60u16.to_be_bytes().to_vec();
    header.extend_from_slice(&0u16.to_be_bytes());
    header.extend_from_slice(&(body.len() as u64).to_be_bytes());
    header.extend_from_slice(props);
    bytes.extend(frame_bytes(FRAME_HEADER, 1, &header));
    bytes.extend(frame_bytes(FRAME_BODY, 1, body));
    within("publish", sock.write_all(&bytes)).await.unwrap();
}

/// A property block holding only these headers (a table with its length prefix).
fn headers_only(headers: &[u8]) -> Vec<u8> {
    let mut p = 0x2000u16.to_be_bytes().to_vec();
    p.extend_from_slice(headers);
    p
}

/// basic.get on channel 1: the delivery tag, the raw property block and the body.
async fn get_raw(sock: &mut TcpStream, queue: &str) -> Option<(u64, Vec<u8>, Vec<u8>)> {
    let mut args = 0u16.to_be_bytes().to_vec();
    args.extend(shortstr(queue));
    args.push(0);
    write_method(sock, 1, 60, 70, &args).await;
    let tag = match read_method(sock).await {
        (1, AMQPClass::Basic(protocol::basic::AMQPMethod::GetOk(ok))) => ok.delivery_tag,
        (1, AMQPClass::Basic(protocol::basic::AMQPMethod::GetEmpty(_))) => return None,
        other => panic!("expected basic.get-ok, got {other:?}"),
    };
    let header = read_frame(sock).await;
    assert_eq!(header.kind, FRAME_HEADER);
    let size = u64::from_be_bytes(header.payload[4..12].try_into().unwrap()) as usize;
    let props = header.payload[12..].to_vec();
    let mut body = Vec::new();
    while body.len() < size {
        let frame = read_frame(sock).await;
        assert_eq!(frame.kind, FRAME_BODY);
        body.extend(frame.payload);
    }
    Some((tag, props, body))
}

async fn raw_declare(sock: &mut TcpStream, name: &str, arguments: &[u8]) -> (u16, AMQPClass) {
    let mut args = 0u16.to_be_bytes().to_vec();
    args.extend(shortstr(name));
    args.push(0);
    args.extend_from_slice(arguments);
    write_method(sock, 1, 50, 10, &args).await;
    read_method(sock).await
}

#[tokio::test]
async fn start_ok_with_deeply_nested_client_properties() {
    let broker = Broker::start();
    for depth in [1_500, 10_000] {
        // Wrong credentials: refused as usual, nothing more.
        let props = table(&[entry("deep", b'F', &nested_table(depth))]);
        let mut sock = raw_connect(broker.port).await;
        start_ok(&mut sock, &props, "PLAIN", b"\0guest\0wrong").await;
        let mut rest = Vec::new();
        let _ = within(
            "close after a refused login",
            tokio::io::AsyncReadExt::read_to_end(&mut sock, &mut rest),
        )
        .await;
        // Right credentials: the handshake goes on, as with RabbitMQ.
        let mut sock = raw_connect(broker.port).await;
        start_ok(&mut sock, &props, "PLAIN", b"\0guest\0guest").await;
        expect_tune(&mut sock).await;
    }
    assert_broker_serves(&broker).await;
}

#[tokio::test]
async fn amqplain_response_nested_3000_deep_logs_in() {
    let broker = Broker::start();
    let table = table(&[
        entry("LOGIN", b'S', &long_str("guest")),
        entry("PASSWORD", b'S', &long_str("guest")),
        entry("deep", b'F', &nested_table(3_000)),
    ]);
    // AMQPLAIN's response is the table without its length prefix.
    let mut sock = raw_connect(broker.port).await;
    start_ok(
        &mut sock,
        &client_properties(false),
        "AMQPLAIN",
        &table[4..],
    )
    .await;
    expect_tune(&mut sock).await;
    assert_broker_serves(&broker).await;
}

#[tokio::test]
async fn queue_arguments_too_deep_close_only_that_connection() {
    let broker = Broker::start();
    let bystander = connect(&broker.amqp_url()).await;
    let bystander_ch = channel(&bystander).await;
    declare_queue(&bystander_ch, "bystander", QueueDeclareOptions::default()).await;

    // At the bound (100 levels, the arguments table included) the declaration works.
    let mut sock = raw_open(broker.port, false).await;
    let args = table(&[entry("x-app-deep", b'F', &nested_table(99))]);
    match raw_declare(&mut sock, "at-the-bound", &args).await {
        (1, AMQPClass::Queue(protocol::queue::AMQPMethod::DeclareOk(_))) => {}
        other => panic!("expected queue.declare-ok, got {other:?}"),
    }
    // 10,000 levels: 501 on this connection, naming queue.declare.
    let args = table(&[entry("x-app-deep", b'F', &nested_table(10_000))]);
    match raw_declare(&mut sock, "too-deep", &args).await {
        (0, AMQPClass::Connection(protocol::connection::AMQPMethod::Close(close))) => {
            assert_eq!(close.reply_code, 501);
            assert!(
                close
                    .reply_text
                    .as_str()
                    .starts_with("FRAME_ERROR - cannot decode a field table nested"),
                "{}",
                close.reply_text.as_str()
            );
            assert_eq!((close.class_id, close.method_id), (50, 10));
        }
        other => panic!("expected connection.close, got {other:?}"),
    }
    // The other connection carries on.
    publish(&bystander_ch, "", "bystander", b"unaffected").await;
    assert_eq!(
        drain(&bystander_ch, "bystander").await,
        vec!["unaffected".to_string()]
    );
    assert!(passive_queue(&bystander_ch, "too-deep").await.is_err());
    assert_broker_serves(&broker).await;
}

#[tokio::test]
async fn deep_message_headers_are_forwarded_as_received() {
    let broker = Broker::start();
    let mut sock = raw_open(broker.port, false).await;
    for q in ["deep-main", "deep-cc", "deep-bcc"] {
        match raw_declare(&mut sock, q, &table(&[])).await {
            (1, AMQPClass::Queue(protocol::queue::AMQPMethod::DeclareOk(_))) => {}
            other => panic!("expected queue.declare-ok, got {other:?}"),
        }
    }
    let deep = entry("deep", b'F', &nested_table(1_500));
    let cc = entry("CC", b'A', &str_array(&["deep-cc"]));
    let bcc = entry("BCC", b'A', &str_array(&["deep-bcc"]));
    let sent = table(&[cc.clone(), deep.clone(), bcc]);
    publish_raw(&mut sock, "", "deep-main", &headers_only(&sent), b"payload").await;
    // BCC is removed; everything else, the 1,500-level table included, is byte for byte
    // what the publisher sent, in its order.
    let expected = headers_only(&table(&[cc, deep]));
    // A round trip on the publishing channel: the publish has been routed when it ends.
    raw_declare(&mut sock, "deep-main", &table(&[])).await;
    // The management API shows the message (its too-deep part left out) and requeues it.
    let (status, text) = http_request(
        broker.http_port,
        "POST",
        "/api/queues/%2F/deep-main/get",
        Some(r#"{"count":1,"ackmode":"ack_requeue_true","encoding":"auto"}"#),
    );
    assert_eq!(status, 200, "{text}");
    assert!(text.contains(r#""payload":"payload""#), "{text}");
    for q in ["deep-main", "deep-cc", "deep-bcc"] {
        let (_, props, body) = get_raw(&mut sock, q).await.expect("a message");
        assert_eq!(body, b"payload");
        assert!(props == expected, "headers of the copy in {q} differ");
    }
    assert_broker_serves(&broker).await;
}

#[tokio::test]
async fn deep_headers_survive_dead_lettering() {
    let broker = Broker::start();
    let mut sock = raw_open(broker.port, false).await;
    match raw_declare(&mut sock, "dl-target", &table(&[])).await {
        (1, AMQPClass::Queue(protocol::queue::AMQPMethod::DeclareOk(_))) => {}
        other => panic!("expected queue.declare-ok, got {other:?}"),
    }
    let args = table(&[
        entry("x-dead-letter-exchange", b'S', &long_str("")),
        entry("x-dead-letter-routing-key", b'S', &long_str("dl-target")),
    ]);
    match raw_declare(&mut sock, "dl-source", &args).await {
        (1, AMQPClass::Queue(protocol::queue::AMQPMethod::DeclareOk(_))) => {}
        other => panic!("expected queue.declare-ok, got {other:?}"),
    }
    let deep = entry("deep", b'F', &nested_table(1_500));
    publish_raw(
        &mut sock,
        "",
        "dl-source",
        &headers_only(&table(std::slice::from_ref(&deep))),
        b"x",
    )
    .await;
    let (tag, _, _) = get_raw(&mut sock, "dl-source").await.expect("a message");
    // basic.reject, requeue = false: dead-lettered.
    let mut args = tag.to_be_bytes().to_vec();
    args.push(0);
    write_method(&mut sock, 1, 60, 90, &args).await;
    let mut dead = None;
    for _ in 0..100 {
        dead = get_raw(&mut sock, "dl-target").await;
        if dead.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (_, props, _) = dead.expect("the message reaches the dead-letter queue");
    assert!(
        props.windows(deep.len()).any(|w| w == deep.as_slice()),
        "the deep header is kept byte for byte"
    );
    assert!(
        props.windows(7).any(|w| w == b"x-death"),
        "x-death is added"
    );
    assert_broker_serves(&broker).await;
}

#[tokio::test]
async fn api_publish_refuses_a_routing_key_longer_than_a_shortstr() {
    let broker = Broker::start();
    let conn = connect(&broker.amqp_url()).await;
    let ch = channel(&conn).await;
    declare_queue(&ch, "fanned", QueueDeclareOptions::default()).await;
    let (status, _) = http_request(
        broker.http_port,
        "POST",
        "/api/bindings/%2F/e/amq.fanout/q/fanned",
        Some(r#"{"routing_key":""}"#),
    );
    assert_eq!(status, 201);
    let long_key = "k".repeat(300);
    let body = format!(
        r#"{{"routing_key":"{long_key}","payload":"x","payload_encoding":"string","properties":{{}}}}"#
    );
    let (status, text) = http_request(
        broker.http_port,
        "POST",
        "/api/exchanges/%2F/amq.fanout/publish",
        Some(&body),
    );
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("routing_key"), "{text}");
    // Nothing was queued, and a 255-byte key still goes through.
    assert!(get(&ch, "fanned", true).await.is_none());
    let body = body.replace(&long_key, &"k".repeat(255));
    let (status, text) = http_request(
        broker.http_port,
        "POST",
        "/api/exchanges/%2F/amq.fanout/publish",
        Some(&body),
    );
    assert_eq!((status, text.as_str()), (200, r#"{"routed":true}"#));
    let got = get(&ch, "fanned", true).await.expect("the message");
    assert_eq!(got.delivery.routing_key.as_str().len(), 255);
    assert_broker_serves(&broker).await;
}
