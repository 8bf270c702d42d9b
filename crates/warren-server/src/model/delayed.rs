//! Delayed messages: `x-delayed-message` exchanges with the semantics of the
//! rabbitmq_delayed_message_exchange plugin (release 3.10.2, the one built for RabbitMQ
//! 3.10; docs/compatibility.md lists them).
//!
//! A message published to such an exchange with a positive `x-delay` header is held
//! until its due time, then routed from the exchange as its `x-delayed-type` routes,
//! with the bindings the exchange has then and `x-delay` set to the negated delay (so
//! that a second delayed exchange behind it does not hold it again). The reading of
//! the header and the hold ordered by due time are pure ([`delay_of`], [`Hold`]);
//! [`DelayedMessages`] ties them to a vhost and the broker's timers.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Weak,
    },
};

use amq_protocol::types::{AMQPValue, FieldTable};
use bytes::Bytes;
use parking_lot::Mutex;
use warren_codec::{PropertiesEdit, PropertiesView, Table, Value};
use warren_store::StoredRef;

use crate::model::{
    ops::publish::{self, Prepared},
    timers::{TimerTarget, Timers},
    vhost::VHost,
};

/// The message-store id under which held persistent messages of durable delayed
/// exchanges are stored. Queue ids grow from the clock (`now_ms << 12`), so this small
/// one is never a queue's.
pub const DELAYED_STORE_ID: u64 = 1;

/// The longest delay the plugin holds a message for: Erlang's largest timer,
/// 2^32 - 1 ms. A longer one routes the message at once, as does one of zero or less.
pub const MAX_DELAY_MS: u64 = 4_294_967_295;

/// The hold time `x-delay` asks for, as the plugin reads it: any integer type as is, a
/// string as an integer (`"5000"`, `"+5000"`), a float or decimal truncated; `None`
/// (route at once) without the header, for another type, for an unparsable string (on
/// which the plugin's channel crashes), and outside 1..=[`MAX_DELAY_MS`].
pub fn delay_of(headers: Option<&FieldTable>) -> Option<u64> {
    let value = headers?.inner().get("x-delay")?;
    let delay: i128 = match value {
        AMQPValue::ShortShortInt(n) => (*n).into(),
        AMQPValue::ShortShortUInt(n) => (*n).into(),
        AMQPValue::ShortInt(n) => (*n).into(),
        AMQPValue::ShortUInt(n) => (*n).into(),
        AMQPValue::LongInt(n) => (*n).into(),
        AMQPValue::LongUInt(n) => (*n).into(),
        AMQPValue::LongLongInt(n) => (*n).into(),
        AMQPValue::LongString(s) => erlang_integer(s.as_bytes())?,
        AMQPValue::ShortString(s) => erlang_integer(s.as_str().as_bytes())?,
        AMQPValue::Float(f) => truncate(f64::from(*f))?,
        AMQPValue::Double(f) => truncate(*f)?,
        AMQPValue::DecimalValue(d) => {
            truncate(f64::from(d.value) / 10f64.powi(i32::from(d.scale)))?
        }
        _ => return None,
    };
    (delay > 0 && delay <= i128::from(MAX_DELAY_MS)).then_some(delay as u64)
}

/// `binary_to_integer/1`: an optional sign and at least one decimal digit, nothing else.
fn erlang_integer(raw: &[u8]) -> Option<i128> {
    let digits = raw.strip_prefix(b"-").or_else(|| raw.strip_prefix(b"+"));
    let negative = raw.first() == Some(&b'-');
    let digits = digits.unwrap_or(raw);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // Long strings saturate: anything that long is past the largest delay anyway.
    let n = std::str::from_utf8(digits)
        .ok()?
        .parse::<i128>()
        .unwrap_or(i128::MAX);
    Some(if negative { -n } else { n })
}

fn truncate(f: f64) -> Option<i128> {
    f.is_finite().then_some(f.trunc() as i128)
}

/// The properties of a released message: `x-delay` replaced in place by the negated
/// delay as a signed 32-bit integer (the plugin's `set_table_value(H, <<"x-delay">>,
/// signedint, -Delay)`, which wraps past 2^31 ms as Erlang's encoder does), every other
/// header byte for byte. `None` when the properties carry no headers table.
pub fn swap_delay_header(properties: &[u8], delay: u64) -> Option<Bytes> {
    let view = PropertiesView::scan(properties).ok()?;
    let range = view.headers?;
    let mut table = Table::parse(properties.get(range)?).ok()?;
    table.set("x-delay", Value::I32((delay as i64).wrapping_neg() as i32));
    let edit = PropertiesEdit {
        headers: Some(Some(table.to_bytes())),
        ..PropertiesEdit::default()
    };
    warren_codec::rewrite_properties(properties, &edit).ok()
}

/// Held items in due order (publish order among equal due times), counted per exchange.
#[derive(Debug)]
pub struct Hold<T> {
    due: BTreeMap<(u64, u64), (Arc<str>, T)>,
    counts: HashMap<Arc<str>, usize>,
    seq: u64,
    /// The due time the timer is armed for, so that it is armed once per deadline.
    armed_at: Option<u64>,
}

impl<T> Default for Hold<T> {
    fn default() -> Self {
        Hold {
            due: BTreeMap::new(),
            counts: HashMap::new(),
            seq: 0,
            armed_at: None,
        }
    }
}

impl<T> Hold<T> {
    pub fn insert(&mut self, due: u64, exchange: Arc<str>, item: T) {
        self.seq += 1;
        *self.counts.entry(exchange.clone()).or_default() += 1;
        self.due.insert((due, self.seq), (exchange, item));
    }

    /// Takes every item due at `now`, earliest first.
    pub fn take_due(&mut self, now: u64) -> Vec<(Arc<str>, T)> {
        let later = self.due.split_off(&(now.saturating_add(1), 0));
        let due = std::mem::replace(&mut self.due, later);
        let out: Vec<_> = due.into_values().collect();
        for (x, _) in &out {
            if let Some(n) = self.counts.get_mut(x) {
                *n -= 1;
                if *n == 0 {
                    self.counts.remove(x);
                }
            }
        }
        out
    }

    pub fn next_due(&self) -> Option<u64> {
        self.due.keys().next().map(|(at, _)| *at)
    }

    /// Messages held for the exchange of that name (the management API's
    /// `messages_delayed`).
    pub fn count(&self, exchange: &str) -> usize {
        self.counts.get(exchange).copied().unwrap_or(0)
    }

    pub fn len(&self) -> usize {
        self.due.len()
    }

    pub fn is_empty(&self) -> bool {
        self.due.is_empty()
    }

    /// The deadline the timer must be armed for now, if any: the earliest due time,
    /// unless a timer already armed fires at or before it. A timer armed for a time at
    /// or before `now` has fired (or is about to) and no longer counts.
    pub fn arm(&mut self, now: u64) -> Option<u64> {
        if self.armed_at.is_some_and(|a| a <= now) {
            self.armed_at = None;
        }
        let next = self.next_due()?;
        if self.armed_at.is_none_or(|a| next < a) {
            self.armed_at = Some(next);
            return Some(next);
        }
        None
    }
}

/// A message held by a delayed exchange.
#[derive(Debug)]
pub struct Held {
    pub prepared: Prepared,
    pub delay: u64,
    /// Its record in the message store (persistent messages of durable exchanges).
    pub stored: Option<StoredRef>,
}

/// The delayed messages of one vhost, released by the broker's timer task (or by a
/// test-clock advance, which runs due timers before it answers).
pub struct DelayedMessages {
    vhost: Weak<VHost>,
    timers: Arc<Timers>,
    hold: Mutex<Hold<Held>>,
}

impl DelayedMessages {
    pub fn new(vhost: Weak<VHost>, timers: Arc<Timers>) -> Arc<Self> {
        Arc::new(DelayedMessages {
            vhost,
            timers,
            hold: Mutex::new(Hold::default()),
        })
    }

    /// `messages_delayed` of an exchange.
    pub fn count(&self, exchange: &str) -> usize {
        self.hold.lock().count(exchange)
    }

    pub fn len(&self) -> usize {
        self.hold.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.hold.lock().is_empty()
    }

    /// Holds a message until `due` (ms on the broker's clock).
    pub fn hold(self: &Arc<Self>, due: u64, held: Held) {
        let exchange = held.prepared.message.exchange.clone();
        let arm = {
            let mut hold = self.hold.lock();
            hold.insert(due, exchange, held);
            hold.arm(self.timers.now_ms())
        };
        if let Some(at) = arm {
            self.timers.schedule(at, self);
        }
    }

    /// Drops every held message (a test suite's vhost reset); returns how many.
    pub fn clear(&self) -> usize {
        let all = self.hold.lock().take_due(u64::MAX);
        if let Some(vhost) = self.vhost.upgrade() {
            if let Some(storage) = vhost.persistence.storage() {
                for r in all.iter().filter_map(|(_, h)| h.stored) {
                    storage.ack(DELAYED_STORE_ID, r);
                }
            }
        }
        all.len()
    }

    /// Routes every message due now, earliest first, and arms the timer for the next.
    fn release_due(self: &Arc<Self>) {
        let now = self.timers.now_ms();
        let due = self.hold.lock().take_due(now);
        if let Some(vhost) = self.vhost.upgrade() {
            for (_, held) in due {
                release(&vhost, held);
            }
        }
        let arm = self.hold.lock().arm(now);
        if let Some(at) = arm {
            self.timers.schedule(at, self);
        }
    }
}

impl TimerTarget for DelayedMessages {
    fn on_timer(self: Arc<Self>) {
        self.release_due();
    }
}

/// Routes a message whose delay is over, from its exchange as it is now (gone: the
/// message is dropped, as the plugin's routing finds no bindings then). Its stored
/// record is released once the copy the queues keep is synced, or at once when no
/// durable queue took it.
fn release(vhost: &VHost, held: Held) {
    let Held {
        mut prepared,
        delay,
        stored,
    } = held;
    if let Some(props) = swap_delay_header(&prepared.message.properties, delay) {
        prepared.set_properties(props);
    }
    prepared.message.stored = None;
    prepared.released = true;
    let persistence = vhost.persistence.clone();
    let handed_over = Arc::new(AtomicBool::new(false));
    let flag = handed_over.clone();
    let release_record = move |persistence: &crate::persist::Persistence| {
        if let (Some(r), Some(storage)) = (stored, persistence.storage()) {
            storage.ack(DELAYED_STORE_ID, r);
        }
    };
    let on_durable = {
        let persistence = persistence.clone();
        move |_durable: bool| -> warren_journal::Callback {
            flag.store(true, Ordering::Release);
            Box::new(move |result| {
                // Not stored for the queues: the held record stays, for a restart.
                if result.is_ok() {
                    release_record(&persistence);
                }
            })
        }
    };
    let mut queues = Vec::new();
    let outcome = publish::route_and_enqueue(vhost, prepared, false, 0, &mut queues, on_durable);
    if let Err(e) = &outcome {
        tracing::debug!(vhost = %vhost.name, error = %e.text, "delayed message dropped");
    }
    if !handed_over.load(Ordering::Acquire) {
        release_record(&persistence);
    }
}

/// The `exchange` field of a held message's record: the vhost (length-prefixed) and the
/// exchange, so one store id serves every vhost.
pub fn record_exchange(vhost: &str, exchange: &str) -> String {
    format!("{}:{vhost}{exchange}", vhost.len())
}

/// The vhost and exchange of a held message's record.
pub fn parse_record_exchange(field: &str) -> Option<(&str, &str)> {
    let (len, rest) = field.split_once(':')?;
    let len: usize = len.parse().ok()?;
    if !rest.is_char_boundary(len) {
        return None;
    }
    Some(rest.split_at(len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::types::{DecimalValue, LongString, ShortString};

    fn headers(v: AMQPValue) -> FieldTable {
        let mut t = FieldTable::default();
        t.insert(ShortString::from("x-delay"), v);
        t
    }

    #[test]
    fn delay_header_types_follow_the_plugin() {
        let d = |v| delay_of(Some(&headers(v)));
        assert_eq!(delay_of(None), None);
        assert_eq!(delay_of(Some(&FieldTable::default())), None);
        assert_eq!(d(AMQPValue::LongInt(5000)), Some(5000));
        assert_eq!(d(AMQPValue::LongLongInt(5000)), Some(5000));
        assert_eq!(d(AMQPValue::ShortInt(300)), Some(300));
        assert_eq!(d(AMQPValue::ShortShortUInt(7)), Some(7));
        assert_eq!(d(AMQPValue::LongUInt(u32::MAX)), Some(MAX_DELAY_MS));
        assert_eq!(
            d(AMQPValue::LongString(LongString::from("1500"))),
            Some(1500)
        );
        assert_eq!(d(AMQPValue::LongString(LongString::from("+15"))), Some(15));
        assert_eq!(d(AMQPValue::LongString(LongString::from("15 "))), None);
        assert_eq!(d(AMQPValue::LongString(LongString::from("abc"))), None);
        assert_eq!(d(AMQPValue::LongString(LongString::from("-5"))), None);
        assert_eq!(d(AMQPValue::Double(1500.9)), Some(1500));
        assert_eq!(d(AMQPValue::Float(2.5)), Some(2));
        assert_eq!(d(AMQPValue::Double(f64::NAN)), None);
        assert_eq!(
            d(AMQPValue::DecimalValue(DecimalValue {
                scale: 2,
                value: 123456
            })),
            Some(1234)
        );
        // Zero, negative and past Erlang's largest timer: routed at once.
        assert_eq!(d(AMQPValue::LongInt(0)), None);
        assert_eq!(d(AMQPValue::LongInt(-1000)), None);
        assert_eq!(d(AMQPValue::LongLongInt(1 << 32)), None);
        // Types the plugin does not read.
        assert_eq!(d(AMQPValue::Boolean(true)), None);
        assert_eq!(d(AMQPValue::Timestamp(5000)), None);
    }

    fn props_with(table: &Table) -> Bytes {
        let mut t = bytes::BytesMut::new();
        table.encode(&mut t);
        // Flags: headers (bit 13) and delivery-mode (bit 12).
        let mut p = bytes::BytesMut::new();
        p.extend_from_slice(&[0x30, 0x00]);
        p.extend_from_slice(&t);
        p.extend_from_slice(&[2]);
        p.freeze()
    }

    #[test]
    fn released_messages_carry_the_negated_delay_in_place() {
        let mut t = Table::new();
        t.set("a", Value::long_str("1"));
        t.set("x-delay", Value::long_str("5000"));
        t.set("z", Value::I64(9));
        let props = props_with(&t);
        let out = swap_delay_header(&props, 5000).expect("rewritten");
        let view = PropertiesView::scan(&out).expect("valid");
        let got = Table::parse(&out[view.headers.clone().expect("headers")]).expect("table");
        let keys: Vec<&[u8]> = got.0.iter().map(|(k, _)| k.as_ref()).collect();
        assert_eq!(keys, [&b"a"[..], b"x-delay", b"z"], "order kept");
        assert_eq!(got.get("x-delay"), Some(&Value::I32(-5000)));
        assert_eq!(got.get("z"), Some(&Value::I64(9)));
        assert!(view.persistent(), "other properties kept");
        // Past 2^31 ms the signed 32-bit value wraps, as the plugin's encoder does.
        let out = swap_delay_header(&props, MAX_DELAY_MS).expect("rewritten");
        let view = PropertiesView::scan(&out).expect("valid");
        let got = Table::parse(&out[view.headers.expect("headers")]).expect("table");
        assert_eq!(got.get("x-delay"), Some(&Value::I32(1)));
        // No headers: nothing to swap.
        assert_eq!(swap_delay_header(&[0x10, 0x00, 2], 5), None);
    }

    #[test]
    fn the_hold_releases_by_due_time_then_publish_order() {
        let mut h: Hold<&str> = Hold::default();
        let x: Arc<str> = Arc::from("x");
        let y: Arc<str> = Arc::from("y");
        h.insert(300, x.clone(), "late");
        h.insert(100, x.clone(), "first");
        h.insert(100, y.clone(), "second");
        h.insert(200, x.clone(), "middle");
        assert_eq!((h.count("x"), h.count("y"), h.count("z")), (3, 1, 0));
        assert_eq!(h.next_due(), Some(100));
        assert!(h.take_due(99).is_empty());
        let got: Vec<_> = h.take_due(200).into_iter().map(|(_, m)| m).collect();
        assert_eq!(got, ["first", "second", "middle"]);
        assert_eq!((h.count("x"), h.count("y")), (1, 0));
        assert_eq!(h.len(), 1);
        let got: Vec<_> = h.take_due(u64::MAX).into_iter().map(|(_, m)| m).collect();
        assert_eq!(got, ["late"]);
        assert!(h.is_empty());
        assert_eq!(h.next_due(), None);
    }

    #[test]
    fn the_timer_is_armed_once_per_deadline() {
        let mut h: Hold<u8> = Hold::default();
        let x: Arc<str> = Arc::from("x");
        assert_eq!(h.arm(0), None, "nothing held");
        h.insert(500, x.clone(), 1);
        assert_eq!(h.arm(0), Some(500));
        h.insert(800, x.clone(), 2);
        assert_eq!(h.arm(0), None, "armed earlier already");
        h.insert(200, x.clone(), 3);
        assert_eq!(h.arm(0), Some(200), "an earlier message re-arms");
        h.take_due(200);
        assert_eq!(h.arm(200), Some(500), "after firing, the next one");
        assert_eq!(h.arm(300), None);
    }

    #[test]
    fn record_exchange_fields_round_trip() {
        for (v, x) in [("/", "delayed"), ("a:b", "x:1"), ("", ""), ("é", "ü")] {
            let f = record_exchange(v, x);
            assert_eq!(parse_record_exchange(&f), Some((v, x)));
        }
        assert_eq!(parse_record_exchange("nope"), None);
        assert_eq!(parse_record_exchange("9:ab"), None);
    }
}
