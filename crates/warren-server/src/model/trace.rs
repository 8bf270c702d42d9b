//! Firehose tracing (RabbitMQ's `rabbit_trace`): while a vhost traces, every message
//! published in it is copied to its `amq.rabbitmq.trace` exchange as `publish.<exchange>`,
//! and every delivery (basic.deliver and basic.get) as `deliver.<queue>`, with the
//! original body and RabbitMQ's headers. The copies carry only those headers as
//! properties (non-persistent), and messages published to the trace exchange itself are
//! never traced, so tracing cannot loop.
//!
//! The header building is pure (unit tests below); [`emit`] routes a copy.

use std::sync::{Arc, OnceLock};

use bytes::{BufMut, Bytes, BytesMut};
use warren_codec::{PropertiesView, Table, Value};
use warren_store::Message;

use crate::model::vhost::VHost;

/// The topic exchange every vhost has for tracing (durable, internal).
pub const TRACE_EXCHANGE: &str = "amq.rabbitmq.trace";

/// Who published or received a traced message: the extra headers RabbitMQ adds.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    pub vhost: &'a str,
    /// The connection's name as the management API shows it (`peer -> local`).
    pub connection: &'a str,
    pub channel: u16,
    pub user: &'a str,
}

/// The node name the trace headers carry, as the management API reports it.
pub fn node_name() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "localhost".into());
        format!("rabbit@{host}")
    })
}

/// Turns tracing of `vhost` on or off (rabbit_trace:start/stop), logged as RabbitMQ logs it.
pub fn set(vhost: &VHost, on: bool) {
    if on {
        tracing::info!("Enabling tracing for vhost '{}'", vhost.name);
    } else {
        tracing::info!("Disabling tracing for vhost '{}'", vhost.name);
    }
    vhost.set_tracing(on);
}

/// Whether a message is a trace copy itself (never traced again).
pub fn is_trace_copy(message: &Message) -> bool {
    &*message.exchange == TRACE_EXCHANGE
}

/// The `properties` table of a trace message: every property the message has, in the
/// reverse of their wire order (rabbit_trace folds `P_basic`'s fields onto a list);
/// integers as signed 32-bit (`signedint`, the timestamp cut as Erlang cuts it), strings
/// as long strings, the headers table byte for byte.
pub fn properties_table(raw: &[u8]) -> Table {
    const NAMES: [&str; 14] = [
        "content_type",
        "content_encoding",
        "headers",
        "delivery_mode",
        "priority",
        "correlation_id",
        "reply_to",
        "expiration",
        "message_id",
        "timestamp",
        "type",
        "user_id",
        "app_id",
        "cluster_id",
    ];
    let mut out = Vec::new();
    let Some(flags) = raw.get(..2).map(|f| u16::from_be_bytes([f[0], f[1]])) else {
        return Table::new();
    };
    let mut pos = 2usize;
    for (i, name) in NAMES.iter().enumerate() {
        let bit = 1u16 << (15 - i);
        if flags & bit == 0 {
            continue;
        }
        let value = match *name {
            "headers" => {
                let Some(len) = raw.get(pos..pos + 4) else {
                    break;
                };
                let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
                let Some(table) = raw.get(pos..pos + 4 + len) else {
                    break;
                };
                pos += 4 + len;
                let mut encoded = BytesMut::with_capacity(1 + table.len());
                encoded.put_u8(b'F');
                encoded.put_slice(table);
                Value::Raw(encoded.freeze())
            }
            "delivery_mode" | "priority" => {
                let Some(&n) = raw.get(pos) else { break };
                pos += 1;
                Value::I32(i32::from(n))
            }
            "timestamp" => {
                let Some(t) = raw.get(pos..pos + 8) else {
                    break;
                };
                pos += 8;
                let mut b = [0u8; 8];
                b.copy_from_slice(t);
                // signedint is 32 bits on the wire: RabbitMQ writes the low 32 bits.
                Value::I32(u64::from_be_bytes(b) as i32)
            }
            _ => {
                let Some(&len) = raw.get(pos) else { break };
                let Some(s) = raw.get(pos + 1..pos + 1 + usize::from(len)) else {
                    break;
                };
                pos += 1 + usize::from(len);
                Value::LongStr(Bytes::copy_from_slice(s))
            }
        };
        out.push((Bytes::from_static(name.as_bytes()), value));
    }
    out.reverse();
    Table(out)
}

/// The message's routing keys as RabbitMQ keeps them: the publish key, then the CC and
/// BCC keys (BCC is no longer in the headers; the message keeps it aside).
pub fn routing_keys(message: &Message) -> Vec<Value> {
    let mut keys = vec![Value::long_str(message.routing_key.as_bytes())];
    let cc = PropertiesView::scan(&message.properties)
        .ok()
        .and_then(|v| v.headers)
        .and_then(|r| Table::parse(message.properties.get(r)?).ok())
        .and_then(|mut t| t.remove("CC"));
    if let Some(Value::Array(cc)) = cc {
        keys.extend(cc.into_iter().filter(|v| matches!(v, Value::LongStr(_))));
    }
    if let Some(bcc) = &message.bcc {
        keys.extend(bcc.iter().map(Value::long_str));
    }
    keys
}

/// rabbit_trace's `msg_to_table`: exchange_name, routing_keys, properties, node.
fn message_table(message: &Message, properties: &[u8]) -> Table {
    Table(vec![
        (
            Bytes::from_static(b"exchange_name"),
            Value::long_str(message.exchange.as_bytes()),
        ),
        (
            Bytes::from_static(b"routing_keys"),
            Value::Array(routing_keys(message)),
        ),
        (
            Bytes::from_static(b"properties"),
            Value::Table(properties_table(properties)),
        ),
        (
            Bytes::from_static(b"node"),
            Value::long_str(node_name().as_bytes()),
        ),
    ])
}

fn origin_fields(t: &mut Table, o: &Origin<'_>) {
    t.0.push((Bytes::from_static(b"vhost"), Value::long_str(o.vhost)));
    t.0.push((
        Bytes::from_static(b"connection"),
        Value::long_str(o.connection),
    ));
    t.0.push((
        Bytes::from_static(b"channel"),
        Value::I32(i32::from(o.channel)),
    ));
    t.0.push((Bytes::from_static(b"user"), Value::long_str(o.user)));
}

/// The headers of a `publish.<exchange>` trace message (rabbit_trace:tap_in).
pub fn publish_headers(message: &Message, origin: &Origin<'_>, routed: &[&str]) -> Table {
    let mut t = message_table(message, &message.properties);
    origin_fields(&mut t, origin);
    t.0.push((
        Bytes::from_static(b"routed_queues"),
        Value::Array(routed.iter().map(Value::long_str).collect()),
    ));
    t
}

/// The headers of a `deliver.<queue>` trace message (rabbit_trace:tap_out); `properties`
/// are the ones the delivery carried.
pub fn deliver_headers(
    message: &Message,
    properties: &[u8],
    origin: &Origin<'_>,
    redelivered: bool,
) -> Table {
    let mut t = message_table(message, properties);
    t.0.push((
        Bytes::from_static(b"redelivered"),
        Value::I32(i32::from(redelivered)),
    ));
    origin_fields(&mut t, origin);
    t
}

/// A property block with only `headers` set (flag bit 13).
fn headers_only(headers: &Table) -> Bytes {
    let mut out = BytesMut::new();
    out.put_u16(1 << 13);
    headers.encode(&mut out);
    out.freeze()
}

/// Publishes a trace copy to the vhost's trace exchange with routing key
/// `<prefix>.<suffix>`. A trace exchange that is gone drops it.
pub fn emit(vhost: &VHost, prefix: &str, suffix: &str, headers: &Table, body: Bytes) {
    let properties = headers_only(headers);
    let routing_key: Arc<str> = Arc::from(format!("{prefix}.{suffix}"));
    let mut queues = Vec::new();
    let routing_headers = PropertiesView::scan(&properties)
        .ok()
        .and_then(|v| v.headers)
        .and_then(|r| warren_codec::parse_table_bounded(properties.get(r)?).ok());
    let msg = warren_router::MessageRef {
        headers: routing_headers.as_ref(),
        properties: &properties,
    };
    if vhost
        .route_internal(TRACE_EXCHANGE, &[&*routing_key], &msg, &mut queues)
        .is_err()
    {
        return;
    }
    if queues.is_empty() {
        return;
    }
    let message = Arc::new(Message {
        exchange: Arc::from(TRACE_EXCHANGE),
        routing_key,
        properties,
        body,
        persistent: false,
        priority: 0,
        expiration: None,
        bcc: None,
        stored: None,
        paged_len: None,
    });
    for q in queues {
        q.publish(message.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(properties: Bytes, bcc: Option<Vec<String>>) -> Message {
        Message {
            exchange: Arc::from("amq.topic"),
            routing_key: Arc::from("cc.a"),
            properties,
            body: Bytes::from_static(b"body"),
            persistent: false,
            priority: 0,
            expiration: None,
            bcc: bcc.map(Arc::from),
            stored: None,
            paged_len: None,
        }
    }

    /// content_type, headers {CC: [p-q1], z: v}, delivery_mode 2, priority 3,
    /// timestamp 1700000000, app_id "a", written as a client would.
    fn props() -> Bytes {
        let mut headers = Table::new();
        headers.set("CC", Value::Array(vec![Value::long_str("p-q1")]));
        headers.set("z", Value::long_str("v"));
        let mut out = BytesMut::new();
        out.put_u16((1 << 15) | (1 << 13) | (1 << 12) | (1 << 11) | (1 << 6) | (1 << 3));
        out.put_u8(10);
        out.put_slice(b"text/plain");
        headers.encode(&mut out);
        out.put_u8(2);
        out.put_u8(3);
        out.put_u64(1_700_000_000);
        out.put_u8(1);
        out.put_slice(b"a");
        out.freeze()
    }

    fn keys(t: &Table) -> Vec<String> {
        t.0.iter()
            .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
            .collect()
    }

    #[test]
    fn properties_come_in_reverse_field_order_with_rabbitmq_types() {
        let t = properties_table(&props());
        assert_eq!(
            keys(&t),
            [
                "app_id",
                "timestamp",
                "priority",
                "delivery_mode",
                "headers",
                "content_type"
            ]
        );
        assert_eq!(t.get("app_id"), Some(&Value::long_str("a")));
        assert_eq!(t.get("timestamp"), Some(&Value::I32(1_700_000_000)));
        assert_eq!(t.get("priority"), Some(&Value::I32(3)));
        assert_eq!(t.get("delivery_mode"), Some(&Value::I32(2)));
        assert_eq!(t.get("content_type"), Some(&Value::long_str("text/plain")));
        // The headers table travels as it came (re-parsed here to look inside).
        let encoded = t.to_bytes();
        let back = Table::parse(&encoded).expect("encodes");
        let Some(Value::Table(h)) = back.get("headers") else {
            panic!("headers is a table: {back:?}");
        };
        assert_eq!(h.get("z"), Some(&Value::long_str("v")));
        assert_eq!(properties_table(&[0, 0]), Table::new());
        assert_eq!(properties_table(&[]), Table::new(), "garbage gives nothing");
    }

    #[test]
    fn a_timestamp_past_2038_is_cut_to_32_bits_as_erlang_writes_it() {
        let mut raw = BytesMut::new();
        raw.put_u16(1 << 6);
        raw.put_u64(0x1_0000_0005);
        assert_eq!(
            properties_table(&raw).get("timestamp"),
            Some(&Value::I32(5))
        );
    }

    #[test]
    fn routing_keys_are_the_key_then_cc_then_bcc() {
        let m = message(props(), Some(vec!["x.y".into()]));
        assert_eq!(
            routing_keys(&m),
            [
                Value::long_str("cc.a"),
                Value::long_str("p-q1"),
                Value::long_str("x.y")
            ]
        );
        let plain = message(Bytes::from_static(&[0, 0]), None);
        assert_eq!(routing_keys(&plain), [Value::long_str("cc.a")]);
    }

    const ORIGIN: Origin<'static> = Origin {
        vhost: "/",
        connection: "127.0.0.1:1 -> 127.0.0.1:2",
        channel: 7,
        user: "guest",
    };

    #[test]
    fn publish_headers_follow_tap_in() {
        let m = message(props(), None);
        let t = publish_headers(&m, &ORIGIN, &["q1", "q2"]);
        assert_eq!(
            keys(&t),
            [
                "exchange_name",
                "routing_keys",
                "properties",
                "node",
                "vhost",
                "connection",
                "channel",
                "user",
                "routed_queues"
            ]
        );
        assert_eq!(t.get("exchange_name"), Some(&Value::long_str("amq.topic")));
        assert_eq!(t.get("channel"), Some(&Value::I32(7)));
        assert_eq!(t.get("user"), Some(&Value::long_str("guest")));
        assert_eq!(
            t.get("connection"),
            Some(&Value::long_str("127.0.0.1:1 -> 127.0.0.1:2"))
        );
        assert_eq!(
            t.get("routed_queues"),
            Some(&Value::Array(vec![
                Value::long_str("q1"),
                Value::long_str("q2")
            ]))
        );
        assert_eq!(t.get("node"), Some(&Value::long_str(node_name())));
        let empty = publish_headers(&m, &ORIGIN, &[]);
        assert_eq!(empty.get("routed_queues"), Some(&Value::Array(vec![])));
    }

    #[test]
    fn deliver_headers_follow_tap_out() {
        let m = message(Bytes::from_static(&[0, 0]), None);
        let t = deliver_headers(&m, &props(), &ORIGIN, true);
        assert_eq!(
            keys(&t),
            [
                "exchange_name",
                "routing_keys",
                "properties",
                "node",
                "redelivered",
                "vhost",
                "connection",
                "channel",
                "user"
            ]
        );
        assert_eq!(t.get("redelivered"), Some(&Value::I32(1)));
        let Some(Value::Table(p)) = t.get("properties") else {
            panic!("properties is a table");
        };
        assert_eq!(p.get("delivery_mode"), Some(&Value::I32(2)), "as delivered");
        let t = deliver_headers(&m, &m.properties, &ORIGIN, false);
        assert_eq!(t.get("redelivered"), Some(&Value::I32(0)));
    }

    /// The top-level header names of each recorded trace message, in the order RabbitMQ
    /// wrote them (the fixture keeps pika's order; serde_json here would sort them).
    fn recorded_header_orders(file: &str) -> Vec<Vec<String>> {
        let path = format!(
            "{}/../../tests/fixtures/plugins/{file}",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(path).expect("fixture");
        let mut out = Vec::new();
        let mut rest = text.as_str();
        while let Some(at) = rest.find("\"headers\": {") {
            rest = &rest[at + "\"headers\": {".len()..];
            let (mut depth, mut keys, mut in_str, mut start) = (1, Vec::new(), false, 0);
            for (i, c) in rest.char_indices() {
                match c {
                    '"' if !in_str => {
                        in_str = true;
                        start = i + 1;
                    }
                    '"' => {
                        in_str = false;
                        if depth == 1 && rest[i + 1..].starts_with(':') {
                            keys.push(rest[start..i].to_string());
                        }
                    }
                    '{' | '[' if !in_str => depth += 1,
                    '}' | ']' if !in_str => {
                        depth -= 1;
                        if depth == 0 {
                            rest = &rest[i..];
                            break;
                        }
                    }
                    _ => {}
                }
            }
            out.push(keys);
        }
        out
    }

    #[test]
    fn header_order_matches_the_recorded_trace_messages() {
        let m = message(props(), None);
        let publish = keys(&publish_headers(&m, &ORIGIN, &[]));
        let deliver = keys(&deliver_headers(&m, &m.properties, &ORIGIN, false));
        for file in [
            "firehose_trace_3.10.8.json",
            "firehose_trace_more_3.10.8.json",
        ] {
            let recorded = recorded_header_orders(file);
            assert!(recorded.len() >= 3, "{file}: {recorded:?}");
            for order in recorded {
                let ours = if order.contains(&"redelivered".to_string()) {
                    &deliver
                } else {
                    &publish
                };
                assert_eq!(&order, ours, "{file}");
            }
        }
    }

    #[test]
    fn property_order_matches_the_recorded_one() {
        // firehose_trace_more: app_id, user_id, type, timestamp, message_id, expiration,
        // reply_to, correlation_id, priority, headers, content_encoding (RabbitMQ's order).
        let mut raw = BytesMut::new();
        let flags: u16 = (1 << 14)
            | (1 << 13)
            | (1 << 11)
            | (1 << 10)
            | (1 << 9)
            | (1 << 8)
            | (1 << 7)
            | (1 << 6)
            | (1 << 5)
            | (1 << 4)
            | (1 << 3);
        raw.put_u16(flags);
        let short = |raw: &mut BytesMut, s: &str| {
            raw.put_u8(s.len() as u8);
            raw.put_slice(s.as_bytes());
        };
        short(&mut raw, "gzip");
        Table::new().encode(&mut raw);
        raw.put_u8(3);
        for s in ["c1", "r", "60000", "m1"] {
            short(&mut raw, s);
        }
        raw.put_u64(1_700_000_000);
        for s in ["t", "guest", "a"] {
            short(&mut raw, s);
        }
        assert_eq!(
            keys(&properties_table(&raw)),
            [
                "app_id",
                "user_id",
                "type",
                "timestamp",
                "message_id",
                "expiration",
                "reply_to",
                "correlation_id",
                "priority",
                "headers",
                "content_encoding"
            ]
        );
    }

    #[test]
    fn a_trace_message_carries_only_its_headers() {
        let mut h = Table::new();
        h.set("node", Value::long_str("n"));
        let p = headers_only(&h);
        let view = PropertiesView::scan(&p).expect("scans");
        assert_eq!(view.flags, 1 << 13);
        assert!(!view.persistent());
        let range = view.headers.expect("headers");
        assert_eq!(Table::parse(&p[range]).expect("table"), h);
    }
}
