//! The event exchange (RabbitMQ's rabbitmq_event_exchange plugin): while the plugin is
//! enabled, broker events (`queue.created`, `connection.closed`, `user.created`, ...) are
//! published to the topic exchange `amq.rabbitmq.event` of the default vhost, with an
//! empty body, the event's properties as headers and `timestamp_in_ms` last, as
//! `rabbit_exchange_type_event` 3.10.8 encodes them
//! (tests/fixtures/plugins/event_exchange_types_3.10.8.json).
//!
//! Emitting costs one atomic load while the plugin is off. While on, an event is handed
//! to a bounded queue that one task drains ([`run`]); a full queue drops the event and
//! counts it, so emitting never blocks a connection (RabbitMQ's gen_event does not block
//! the emitter either).

use std::{
    fmt::Write as _,
    net::{IpAddr, SocketAddr},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{SystemTime, UNIX_EPOCH},
};

use amq_protocol::types::{AMQPValue, FieldTable};
use bytes::{BufMut, Bytes, BytesMut};
use parking_lot::Mutex;
use tokio::sync::mpsc;
use warren_codec::{Table, Value};

/// The plugin's name in enabled_plugins.
pub const PLUGIN: &str = "rabbitmq_event_exchange";
/// The exchange events go to.
pub const EXCHANGE: &str = "amq.rabbitmq.event";
/// Events waiting for the publishing task; more are dropped (and counted).
const CAPACITY: usize = 16_384;

tokio::task_local! {
    /// Who performs the operations a task runs: an AMQP connection's user (set once it
    /// has logged in), the API's user, or `rmq-cli` for the CLI tools; it becomes the
    /// events' `user_who_performed_action`.
    pub static ACTOR: std::cell::RefCell<String>;
}

/// Runs `fut` with its own actor (see [`ACTOR`]), initially `who`.
///
/// Not an `async fn`: that would hold `fut` twice in its state (the argument and the
/// scope around it), doubling what every connection task allocates.
pub fn acting_as<F: std::future::Future>(
    who: String,
    fut: F,
) -> impl std::future::Future<Output = F::Output> {
    ACTOR.scope(std::cell::RefCell::new(who), fut)
}

/// Sets the running task's actor, when it has one.
pub fn set_actor(who: &str) {
    let _ = ACTOR.try_with(|a| who.clone_into(&mut a.borrow_mut()));
}

/// `user_who_performed_action`: the task's actor, else the broker itself.
pub fn actor() -> String {
    ACTOR
        .try_with(|a| a.borrow().clone())
        .ok()
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| "rmq-internal".into())
}

/// One event: its routing key and headers (without `timestamp_in_ms`).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub key: &'static str,
    pub headers: Table,
    pub timestamp_ms: u64,
}

/// The broker's event sink.
#[derive(Debug)]
pub struct Events {
    on: AtomicBool,
    tx: mpsc::Sender<Event>,
    rx: Mutex<Option<mpsc::Receiver<Event>>>,
    dropped: AtomicU64,
    /// Seconds since the epoch at boot: the middle of the pids events carry.
    boot_secs: u64,
}

impl Default for Events {
    fn default() -> Self {
        let (tx, rx) = mpsc::channel(CAPACITY);
        Events {
            on: AtomicBool::new(false),
            tx,
            rx: Mutex::new(Some(rx)),
            dropped: AtomicU64::new(0),
            boot_secs: now_ms() / 1000,
        }
    }
}

impl Events {
    /// Whether events are published (the plugin is enabled).
    pub fn enabled(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    pub fn set_enabled(&self, on: bool) {
        self.on.store(on, Ordering::Relaxed);
    }

    /// The pid events give connection `connection`'s channel `channel` (0: the
    /// connection itself).
    pub fn pid(&self, connection: u64, channel: u16) -> String {
        pid(self.boot_secs, connection, channel)
    }

    /// Events dropped because the publishing task fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The receiving end, for the one task that publishes ([`run`]).
    pub fn take_receiver(&self) -> Option<mpsc::Receiver<Event>> {
        self.rx.lock().take()
    }

    /// Emits the event `key` whose headers `build` writes; `build` runs only while the
    /// plugin is enabled.
    pub fn emit(&self, key: &'static str, build: impl FnOnce(&mut Headers)) {
        if !self.enabled() {
            return;
        }
        let mut h = Headers(Table::new());
        build(&mut h);
        let event = Event {
            key,
            headers: h.0,
            timestamp_ms: now_ms(),
        };
        if self.tx.try_send(event).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(dropped = n, "event exchange overwhelmed; events dropped");
            }
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// An event's headers, in the order RabbitMQ writes them, with its value types: every
/// integer a `long` ('l'), text a longstr, lists arrays.
#[derive(Debug, Default)]
pub struct Headers(pub Table);

impl Headers {
    pub fn str(&mut self, key: &str, v: impl AsRef<[u8]>) -> &mut Self {
        self.push(key, Value::long_str(v))
    }
    pub fn long(&mut self, key: &str, v: i64) -> &mut Self {
        self.push(key, Value::I64(v))
    }
    pub fn bool(&mut self, key: &str, v: bool) -> &mut Self {
        self.push(key, Value::Bool(v))
    }
    /// A list of strings (atoms or binaries in RabbitMQ): an array of longstrs.
    pub fn strs<S: AsRef<[u8]>>(&mut self, key: &str, v: &[S]) -> &mut Self {
        self.push(key, Value::Array(v.iter().map(Value::long_str).collect()))
    }
    /// An AMQP table as RabbitMQ's event carries it: an array of the entries printed as
    /// Erlang terms (`{<<"x-max-length">>,signedint,10}`), in the table's order.
    pub fn erl_table(&mut self, key: &str, t: &FieldTable) -> &mut Self {
        let items = t
            .inner()
            .iter()
            .map(|(k, v)| Value::long_str(erl_entry(k.as_str().as_bytes(), v)))
            .collect();
        self.push(key, Value::Array(items))
    }
    pub fn value(&mut self, key: &str, v: Value) -> &mut Self {
        self.push(key, v)
    }
    fn push(&mut self, key: &str, v: Value) -> &mut Self {
        self.0 .0.push((Bytes::copy_from_slice(key.as_bytes()), v));
        self
    }
}

/// The basic properties of an event message: headers (with `timestamp_in_ms` last),
/// delivery mode 2 and the timestamp in seconds, nothing else.
pub fn properties(event: &Event) -> Bytes {
    let mut headers = event.headers.clone();
    headers.0.push((
        Bytes::from_static(b"timestamp_in_ms"),
        Value::I64(i64::try_from(event.timestamp_ms).unwrap_or(i64::MAX)),
    ));
    let mut out = BytesMut::with_capacity(256);
    // headers (bit 13), delivery-mode (12), timestamp (6)
    out.put_u16((1 << 13) | (1 << 12) | (1 << 6));
    headers.encode(&mut out);
    out.put_u8(2);
    out.put_u64(event.timestamp_ms / 1000);
    out.freeze()
}

/// RabbitMQ's `~p` of a binary: `<<"text">>` when printable (latin-1), else the bytes.
fn erl_binary(b: &[u8], out: &mut String) {
    let printable = b.iter().all(
        |&c| matches!(c, 32..=126 | 160..=255 | b'\n' | b'\r' | b'\t' | 0x0b | 0x08 | 0x0c | 0x1b),
    );
    if printable {
        out.push_str("<<\"");
        for &c in b {
            match c {
                b'"' => out.push_str("\\\""),
                b'\\' => out.push_str("\\\\"),
                b'\n' => out.push_str("\\n"),
                b'\r' => out.push_str("\\r"),
                b'\t' => out.push_str("\\t"),
                0x0b => out.push_str("\\v"),
                0x08 => out.push_str("\\b"),
                0x0c => out.push_str("\\f"),
                0x1b => out.push_str("\\e"),
                c => out.push(char::from(c)),
            }
        }
        out.push_str("\">>");
    } else {
        out.push_str("<<");
        let parts: Vec<String> = b.iter().map(u8::to_string).collect();
        out.push_str(&parts.join(","));
        out.push_str(">>");
    }
}

/// RabbitMQ's type name and `~p` of an AMQP value.
fn erl_value(v: &AMQPValue, out: &mut String) -> &'static str {
    let _ = match v {
        AMQPValue::Boolean(b) => write!(out, "{b}"),
        AMQPValue::ShortShortInt(n) => write!(out, "{n}"),
        AMQPValue::ShortShortUInt(n) => write!(out, "{n}"),
        AMQPValue::ShortInt(n) => write!(out, "{n}"),
        AMQPValue::ShortUInt(n) => write!(out, "{n}"),
        AMQPValue::LongInt(n) => write!(out, "{n}"),
        AMQPValue::LongUInt(n) => write!(out, "{n}"),
        AMQPValue::LongLongInt(n) => write!(out, "{n}"),
        AMQPValue::Float(f) => write!(out, "{f:?}"),
        AMQPValue::Double(f) => write!(out, "{f:?}"),
        AMQPValue::DecimalValue(d) => write!(out, "{{{},{}}}", d.scale, d.value),
        AMQPValue::ShortString(s) => {
            erl_binary(s.as_str().as_bytes(), out);
            Ok(())
        }
        AMQPValue::LongString(s) => {
            erl_binary(s.as_bytes(), out);
            Ok(())
        }
        AMQPValue::ByteArray(b) => {
            erl_binary(b.as_slice(), out);
            Ok(())
        }
        AMQPValue::Timestamp(t) => write!(out, "{t}"),
        AMQPValue::Void => write!(out, "undefined"),
        AMQPValue::FieldTable(t) => {
            out.push('[');
            for (i, (k, v)) in t.inner().iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&erl_entry(k.as_str().as_bytes(), v));
            }
            out.push(']');
            Ok(())
        }
        AMQPValue::FieldArray(a) => {
            out.push('[');
            for (i, v) in a.as_slice().iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let mut inner = String::new();
                let t = erl_value(v, &mut inner);
                let _ = write!(out, "{{{t},{inner}}}");
            }
            out.push(']');
            Ok(())
        }
    };
    match v {
        AMQPValue::Boolean(_) => "bool",
        AMQPValue::ShortShortInt(_) => "byte",
        AMQPValue::ShortShortUInt(_) => "unsignedbyte",
        AMQPValue::ShortInt(_) => "short",
        AMQPValue::ShortUInt(_) => "unsignedshort",
        AMQPValue::LongInt(_) => "signedint",
        AMQPValue::LongUInt(_) => "unsignedint",
        AMQPValue::LongLongInt(_) => "long",
        AMQPValue::Float(_) => "float",
        AMQPValue::Double(_) => "double",
        AMQPValue::DecimalValue(_) => "decimal",
        AMQPValue::ShortString(_) | AMQPValue::LongString(_) => "longstr",
        AMQPValue::ByteArray(_) => "binary",
        AMQPValue::Timestamp(_) => "timestamp",
        AMQPValue::Void => "void",
        AMQPValue::FieldTable(_) => "table",
        AMQPValue::FieldArray(_) => "array",
    }
}

/// One table entry as RabbitMQ prints it: `{<<"key">>,type,Value}`.
pub fn erl_entry(key: &[u8], v: &AMQPValue) -> String {
    let mut value = String::new();
    let t = erl_value(v, &mut value);
    let mut out = String::from("{");
    erl_binary(key, &mut out);
    let _ = write!(out, ",{t},{value}}}");
    out
}

/// An address as Erlang prints its tuple: `{127,0,0,1}`, or eight words for IPv6.
pub fn erl_ip(ip: IpAddr) -> String {
    let parts: Vec<String> = match ip {
        IpAddr::V4(v4) => v4.octets().iter().map(u8::to_string).collect(),
        IpAddr::V6(v6) => v6.segments().iter().map(u16::to_string).collect(),
    };
    format!("{{{}}}", parts.join(","))
}

/// The node's name, as the management API gives it (`rabbit@HOST`).
pub fn node_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into());
    format!("rabbit@{host}")
}

/// A stand-in for an Erlang pid, as RabbitMQ's events name connections and channels:
/// `<rabbit@host.BOOT.CONNECTION.CHANNEL>`.
pub fn pid(boot_secs: u64, connection: u64, channel: u16) -> String {
    format!("<{}.{boot_secs}.{connection}.{channel}>", node_name())
}

/// The connection facts authentication events carry.
pub struct AuthFacts<'a> {
    pub user: &'a str,
    pub mechanism: &'a str,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub tls: bool,
}

/// `user.authentication.success` / `.failure`'s common headers.
pub fn auth_headers(h: &mut Headers, f: &AuthFacts<'_>) {
    h.bool("ssl", f.tls)
        .str("auth_mechanism", f.mechanism)
        .str("protocol", "{0,9,1}")
        .long("peer_port", i64::from(f.peer.port()))
        .str("peer_host", erl_ip(f.peer.ip()))
        .str("connection_name", connection_name(f.peer, f.local))
        .str("host", erl_ip(f.local.ip()))
        .str("name", f.user)
        .str("connection_type", "network");
}

/// RabbitMQ's connection name: `peer -> local`.
pub fn connection_name(peer: SocketAddr, local: SocketAddr) -> String {
    format!("{peer} -> {local}")
}

/// An Erlang string (a char list) as the event exchange encodes it: an array of longs.
pub fn char_list(text: &str) -> Value {
    Value::Array(
        text.chars()
            .map(|c| Value::I64(i64::from(u32::from(c))))
            .collect(),
    )
}

/// A JSON value as RabbitMQ's events carry a decoded JSON term (a policy's definition).
pub fn json_value(v: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match v {
        J::Null => Value::long_str("null"),
        J::Bool(b) => Value::Bool(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) => Value::I64(i),
            None => Value::F64(n.as_f64().unwrap_or(0.0)),
        },
        J::String(s) => Value::long_str(s),
        J::Array(a) => Value::Array(a.iter().map(json_value).collect()),
        J::Object(o) => Value::Table(Table(
            o.iter()
                .map(|(k, v)| (Bytes::copy_from_slice(k.as_bytes()), json_value(v)))
                .collect(),
        )),
    }
}

/// `policy.set`, after a policy was added or replaced.
pub fn policy_set(events: &Events, p: &crate::model::policy::Policy) {
    events.emit("policy.set", |h| {
        h.str("apply-to", p.apply_to.as_str())
            .long("priority", p.priority)
            .value(
                "definition",
                json_value(&serde_json::Value::Object(p.definition.clone())),
            )
            .str("pattern", &p.pattern.source)
            .str("user_who_performed_action", actor())
            .str("vhost", &p.vhost)
            .str("name", &p.name);
    });
}

/// `policy.cleared`, after a policy was removed.
pub fn policy_cleared(events: &Events, vhost: &str, name: &str) {
    events.emit("policy.cleared", |h| {
        h.str("user_who_performed_action", actor())
            .str("vhost", vhost)
            .str("name", name);
    });
}

/// `alarm.set` / `alarm.cleared` for each resource whose alarm changed.
pub fn alarms_changed(
    events: &Events,
    before: crate::model::alarm::AlarmSet,
    after: crate::model::alarm::AlarmSet,
) {
    for (was, is, source) in [
        (before.disk, after.disk, "disk"),
        (before.memory, after.memory, "memory"),
    ] {
        if was != is {
            events.emit(if is { "alarm.set" } else { "alarm.cleared" }, |h| {
                h.str("node", node_name()).str("source", source);
            });
        }
    }
}

/// Publishes events to `amq.rabbitmq.event` of `vhost` until the sink goes away.
pub async fn run(broker: Arc<crate::model::broker::Broker>, mut rx: mpsc::Receiver<Event>) {
    while let Some(event) = rx.recv().await {
        if broker.admin.events.enabled() {
            publish(&broker, &event);
        }
    }
}

/// Publishes one event; an event whose exchange is missing is dropped, as RabbitMQ
/// drops a publish to a missing exchange.
pub fn publish(broker: &crate::model::broker::Broker, event: &Event) {
    use crate::model::ops::publish as p;
    let Some(vhost) = broker.vhost(&broker.config.default_vhost) else {
        return;
    };
    // Like the plugin, publish nothing while nothing is bound (no stats, no routing).
    let bound = vhost
        .topology
        .read()
        .exchanges
        .get(EXCHANGE)
        .is_some_and(|x| !x.router.table.is_empty());
    if !bound {
        return;
    }
    let properties = properties(event);
    let Ok(view) = warren_codec::PropertiesView::scan(&properties) else {
        return;
    };
    let publication = p::Publication {
        exchange: Arc::from(EXCHANGE),
        routing_key: Arc::from(event.key),
        mandatory: false,
        properties,
        body: Bytes::new(),
    };
    let Ok(prepared) = p::prepare(publication, &view) else {
        return;
    };
    let mut queues = Vec::new();
    if let Err(e) =
        p::route_and_enqueue_internal(&vhost, prepared, &mut queues, |_| Box::new(|_| {}))
    {
        tracing::debug!(error = %e.text, "event not published");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::types::{LongString, ShortString};

    fn typed(h: &Table) -> Vec<(String, char)> {
        h.0.iter()
            .map(|(k, v)| {
                let t = match v {
                    Value::Bool(_) => 't',
                    Value::I64(_) => 'l',
                    Value::LongStr(_) => 'S',
                    Value::Array(_) => 'A',
                    Value::Table(_) => 'F',
                    _ => '?',
                };
                (String::from_utf8_lossy(k).into_owned(), t)
            })
            .collect()
    }

    #[test]
    fn emitting_while_off_builds_nothing() {
        let events = Events::default();
        let mut built = false;
        events.emit("queue.created", |_| built = true);
        assert!(!built);
        events.set_enabled(true);
        events.emit("queue.created", |h| {
            built = true;
            h.str("name", "q").str("vhost", "/");
        });
        assert!(built);
        let mut rx = events.take_receiver().expect("receiver");
        let e = rx.try_recv().expect("an event");
        assert_eq!(e.key, "queue.created");
        assert_eq!(
            typed(&e.headers),
            [("name".into(), 'S'), ("vhost".into(), 'S')]
        );
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let events = Events::default();
        events.set_enabled(true);
        for _ in 0..CAPACITY + 3 {
            events.emit("channel.closed", |h| {
                h.str("pid", "<x>");
            });
        }
        assert_eq!(events.dropped(), 3);
    }

    #[test]
    fn properties_are_headers_delivery_mode_and_seconds() {
        let mut h = Headers::default();
        h.str("user_who_performed_action", "guest")
            .bool("durable", false)
            .long("number", 1)
            .strs("tags", &["management"]);
        let e = Event {
            key: "x",
            headers: h.0,
            timestamp_ms: 1_796_442_664_120,
        };
        let raw = properties(&e);
        let props = warren_codec::parse_properties(&raw).expect("valid properties");
        assert_eq!(props.delivery_mode(), &Some(2));
        assert_eq!(props.timestamp(), &Some(1_796_442_664));
        assert!(props.content_type().is_none());
        let headers = props.headers().clone().expect("headers");
        assert_eq!(
            headers.inner().get("timestamp_in_ms"),
            Some(&AMQPValue::LongLongInt(1_796_442_664_120))
        );
        assert_eq!(
            headers.inner().get("number"),
            Some(&AMQPValue::LongLongInt(1))
        );
        // The wire order is RabbitMQ's: the event's own headers, then timestamp_in_ms.
        let len = u32::from_be_bytes([raw[2], raw[3], raw[4], raw[5]]) as usize;
        let table = Table::parse(&raw[2..6 + len]).expect("table");
        let keys: Vec<String> = typed(&table).into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "user_who_performed_action",
                "durable",
                "number",
                "tags",
                "timestamp_in_ms"
            ]
        );
    }

    #[test]
    fn tables_print_as_erlang_terms() {
        let mut t = FieldTable::default();
        t.insert(ShortString::from("x-max-length"), AMQPValue::LongInt(10));
        t.insert(
            ShortString::from("x-queue-mode"),
            AMQPValue::LongString(LongString::from("lazy")),
        );
        let mut h = Headers::default();
        h.erl_table("arguments", &t);
        let Some(Value::Array(items)) = h.0.get("arguments") else {
            panic!("an array")
        };
        let texts: Vec<&[u8]> = items.iter().filter_map(Value::as_bytes).collect();
        // As recorded from 3.10.8 (event_exchange_types_3.10.8.json).
        assert_eq!(
            texts,
            [
                &b"{<<\"x-max-length\">>,signedint,10}"[..],
                &b"{<<\"x-queue-mode\">>,longstr,<<\"lazy\">>}"[..]
            ]
        );
        let mut caps = FieldTable::default();
        caps.insert(ShortString::from("basic.nack"), AMQPValue::Boolean(true));
        assert_eq!(
            erl_entry(b"capabilities", &AMQPValue::FieldTable(caps)),
            "{<<\"capabilities\">>,table,[{<<\"basic.nack\">>,bool,true}]}"
        );
        assert_eq!(
            erl_entry(b"k", &AMQPValue::LongString(LongString::from(vec![1u8, 2]))),
            "{<<\"k\">>,longstr,<<1,2>>}"
        );
    }

    #[test]
    fn addresses_and_char_lists_as_erlang_terms() {
        assert_eq!(erl_ip("127.0.0.1".parse().expect("ip")), "{127,0,0,1}");
        assert_eq!(
            erl_ip("::ffff:127.0.0.1".parse().expect("ip")),
            "{0,0,0,0,0,65535,32512,1}"
        );
        assert_eq!(
            char_list("ab"),
            Value::Array(vec![Value::I64(97), Value::I64(98)])
        );
    }
}
