//! Queue `x-` arguments: RabbitMQ's validation (codes and texts) and what they mean for
//! the queue store.

use amq_protocol::types::{AMQPValue, FieldTable};
use warren_router::field_type_name;
use warren_store::{Overflow, QueueConfig};

use crate::util::error::{AmqpError, AmqpResult};

/// rabbit_misc:check_expiry's upper bound for TTLs and x-expires (ten years in ms).
const MAX_EXPIRY: i128 = 315_360_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueueKind {
    #[default]
    Classic,
    Quorum,
    /// An append-only log read by offset (`model::stream`).
    Stream,
}

/// What a stream's arguments (and policy) set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamSettings {
    /// `x-max-age`, in ms.
    pub max_age_ms: Option<u64>,
    /// `x-stream-max-segment-size-bytes`.
    pub max_segment_bytes: Option<u64>,
}

/// Everything a queue's arguments decide.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueSettings {
    pub kind: QueueKind,
    pub config: QueueConfig,
    pub dead_letter_exchange: Option<String>,
    pub dead_letter_routing_key: Option<String>,
    /// `x-expires`: delete the queue after this many ms unused.
    pub expires: Option<u64>,
    pub stream: StreamSettings,
}

fn int_value(v: &AMQPValue) -> Option<i128> {
    Some(match v {
        AMQPValue::ShortShortInt(n) => i128::from(*n),
        AMQPValue::ShortShortUInt(n) => i128::from(*n),
        AMQPValue::ShortInt(n) => i128::from(*n),
        AMQPValue::ShortUInt(n) => i128::from(*n),
        AMQPValue::LongInt(n) => i128::from(*n),
        AMQPValue::LongUInt(n) => i128::from(*n),
        AMQPValue::LongLongInt(n) => i128::from(*n),
        _ => return None,
    })
}

fn string_value(v: &AMQPValue) -> Option<String> {
    match v {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
        _ => None,
    }
}

/// The argument check that failed, printed as RabbitMQ prints the Erlang term.
pub enum Invalid {
    UnacceptableType(&'static str),
    ExpectedInteger(&'static str),
    ValueNegative(i128),
    ValueZero(i128),
    ValueTooLarge(i128),
    MaxValueExceeded(i128),
    Atom(&'static str),
    /// An Erlang string in the reason, printed with its double quotes.
    Quoted(String),
    /// RabbitMQ's check crashes: the connection closes with 541 INTERNAL_ERROR.
    Crash,
}

impl Invalid {
    pub fn text(&self) -> String {
        match self {
            Invalid::UnacceptableType(t) => format!("{{unacceptable_type,{t}}}"),
            Invalid::ValueNegative(n) => format!("{{value_negative,{n}}}"),
            Invalid::ValueZero(n) => format!("{{value_zero,{n}}}"),
            Invalid::ValueTooLarge(n) => format!("{{value_too_large,{n}}}"),
            Invalid::ExpectedInteger(t) => format!("\"expected integer, got {t}\""),
            Invalid::MaxValueExceeded(n) => format!("{{max_value_exceeded,{n}}}"),
            Invalid::Atom(a) => (*a).to_string(),
            Invalid::Quoted(q) => format!("\"{q}\""),
            Invalid::Crash => "crash".to_string(),
        }
    }
}

fn int_arg(v: &AMQPValue) -> Result<i128, Invalid> {
    int_value(v).ok_or(Invalid::ExpectedInteger(field_type_name(v)))
}

fn non_neg(v: &AMQPValue) -> Result<u64, Invalid> {
    let n = int_arg(v)?;
    if n < 0 {
        return Err(Invalid::ValueNegative(n));
    }
    Ok(n as u64)
}

fn expiry(v: &AMQPValue) -> Result<u64, Invalid> {
    check_expiry(int_arg(v)?)
}

/// rabbit_misc:check_expiry: a TTL in range, in milliseconds.
pub fn check_expiry(n: i128) -> Result<u64, Invalid> {
    if n < 0 {
        return Err(Invalid::ValueNegative(n));
    }
    if n > MAX_EXPIRY {
        return Err(Invalid::ValueTooLarge(n));
    }
    Ok(n as u64)
}

fn long_str(v: &AMQPValue) -> Result<String, Invalid> {
    match v {
        AMQPValue::LongString(_) => string_value(v).ok_or(Invalid::UnacceptableType("longstr")),
        other => Err(Invalid::UnacceptableType(field_type_name(other))),
    }
}

fn one_of(
    v: &AMQPValue,
    allowed: &[&str],
    error: impl FnOnce(&str) -> Invalid,
) -> Result<String, Invalid> {
    let s = long_str(v)?;
    if allowed.contains(&s.as_str()) {
        Ok(s)
    } else {
        Err(error(&s))
    }
}

/// How one `x-` argument is checked and what it sets: the argument's value, and all the
/// arguments (some checks look at others).
type ArgCheck = fn(&mut QueueSettings, &AMQPValue, &FieldTable) -> Result<(), Invalid>;

/// The arguments `queue_settings` checks, in the order of RabbitMQ's declare_args list.
const DECLARE_ARGS: [(&str, ArgCheck); 19] = [
    ("x-expires", set_expires),
    ("x-message-ttl", set_message_ttl),
    ("x-dead-letter-exchange", set_dead_letter_exchange),
    ("x-dead-letter-routing-key", set_dead_letter_routing_key),
    ("x-max-length", set_max_length),
    ("x-max-length-bytes", set_max_length_bytes),
    ("x-max-in-memory-length", check_non_negative),
    ("x-max-in-memory-bytes", check_non_negative),
    ("x-max-priority", set_max_priority),
    ("x-overflow", set_overflow),
    ("x-queue-mode", check_queue_mode),
    ("x-single-active-consumer", set_single_active_consumer),
    ("x-queue-type", set_queue_type),
    ("x-quorum-initial-group-size", check_non_negative),
    ("x-delivery-limit", set_delivery_limit),
    ("x-max-age", set_max_age),
    ("x-stream-max-segment-size-bytes", set_max_segment_bytes),
    ("x-initial-cluster-size", check_initial_cluster_size),
    ("x-queue-leader-locator", check_leader_locator),
];

/// Why a max-age value (`7D`, `1h`, ...) is refused: RabbitMQ answers `invalid_max_age`,
/// or crashes (541 INTERNAL_ERROR on the connection) when no digits lead the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxAgeError {
    Invalid,
    NoDigits,
}

/// rabbit_amqqueue:check_max_age: leading digits (a positive number) and one unit of
/// `Y`, `M`, `D`, `h`, `m`, `s`; milliseconds.
pub fn parse_max_age(v: &str) -> Result<u64, MaxAgeError> {
    let digits = v.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = v.split_at(digits);
    let n: u64 = number.parse().map_err(|_| MaxAgeError::NoDigits)?;
    let unit_ms: u64 = match unit {
        "Y" => 365 * 86_400_000,
        "M" => 30 * 86_400_000,
        "D" => 86_400_000,
        "h" => 3_600_000,
        "m" => 60_000,
        "s" => 1_000,
        _ => return Err(MaxAgeError::Invalid),
    };
    if n == 0 {
        return Err(MaxAgeError::Invalid);
    }
    Ok(n.saturating_mul(unit_ms))
}

/// What an unparseable max-age means for the client: the crash RabbitMQ's
/// `list_to_integer` makes of a value without leading digits, else the argument error.
fn max_age_failure(e: MaxAgeError) -> Invalid {
    match e {
        MaxAgeError::Invalid => Invalid::Atom("invalid_max_age"),
        MaxAgeError::NoDigits => Invalid::Crash,
    }
}

fn set_max_age(s: &mut QueueSettings, v: &AMQPValue, _: &FieldTable) -> Result<(), Invalid> {
    let text = long_str(v)?;
    s.stream.max_age_ms = Some(parse_max_age(&text).map_err(max_age_failure)?);
    Ok(())
}

fn set_max_segment_bytes(
    s: &mut QueueSettings,
    v: &AMQPValue,
    _: &FieldTable,
) -> Result<(), Invalid> {
    s.stream.max_segment_bytes = Some(non_neg(v)?);
    Ok(())
}

fn check_initial_cluster_size(
    _: &mut QueueSettings,
    v: &AMQPValue,
    _: &FieldTable,
) -> Result<(), Invalid> {
    if non_neg(v)? == 0 {
        return Err(Invalid::ValueZero(0));
    }
    Ok(())
}

fn check_leader_locator(
    _: &mut QueueSettings,
    v: &AMQPValue,
    _: &FieldTable,
) -> Result<(), Invalid> {
    one_of(
        v,
        &["client-local", "balanced", "random", "least-leaders"],
        |_| Invalid::Atom("invalid_queue_locator_arg"),
    )?;
    Ok(())
}

fn set_expires(s: &mut QueueSettings, v: &AMQPValue, _: &FieldTable) -> Result<(), Invalid> {
    let n = expiry(v)?;
    if n == 0 {
        return Err(Invalid::ValueZero(0));
    }
    s.expires = Some(n);
    Ok(())
}

fn set_message_ttl(s: &mut QueueSettings, v: &AMQPValue, _: &FieldTable) -> Result<(), Invalid> {
    s.config.message_ttl = Some(expiry(v)?);
    Ok(())
}

fn set_dead_letter_exchange(
    s: &mut QueueSettings,
    v: &AMQPValue,
    _: &FieldTable,
) -> Result<(), Invalid> {
    // Its type is checked after the others, with its own message layout.
    s.dead_letter_exchange = string_value(v);
    Ok(())
}

fn set_dead_letter_routing_key(
    s: &mut QueueSettings,
    v: &AMQPValue,
    args: &FieldTable,
) -> Result<(), Invalid> {
    let rk = long_str(v)?;
    if !args.contains_key("x-dead-letter-exchange") {
        return Err(Invalid::Atom("routing_key_but_no_dlx_defined"));
    }
    s.dead_letter_routing_key = Some(rk);
    Ok(())
}

fn set_max_length(s: &mut QueueSettings, v: &AMQPValue, _: &FieldTable) -> Result<(), Invalid> {
    s.config.max_length = Some(non_neg(v)?);
    Ok(())
}

fn set_max_length_bytes(
    s: &mut QueueSettings,
    v: &AMQPValue,
    _: &FieldTable,
) -> Result<(), Invalid> {
    s.config.max_length_bytes = Some(non_neg(v)?);
    Ok(())
}

/// Arguments that are checked but change nothing in warren.
fn check_non_negative(_: &mut QueueSettings, v: &AMQPValue, _: &FieldTable) -> Result<(), Invalid> {
    non_neg(v)?;
    Ok(())
}

fn set_max_priority(s: &mut QueueSettings, v: &AMQPValue, _: &FieldTable) -> Result<(), Invalid> {
    let n = non_neg(v)?;
    if n > 255 {
        return Err(Invalid::MaxValueExceeded(n as i128));
    }
    // 0 is accepted and means "no priorities", as in RabbitMQ.
    if n > 0 {
        s.config.max_priority = Some(n as u8);
    }
    Ok(())
}

fn set_overflow(s: &mut QueueSettings, v: &AMQPValue, _: &FieldTable) -> Result<(), Invalid> {
    let o = one_of(
        v,
        &["drop-head", "reject-publish", "reject-publish-dlx"],
        |_| Invalid::Atom("invalid_overflow"),
    )?;
    s.config.overflow = Overflow::parse(o.as_bytes()).unwrap_or_default();
    Ok(())
}

fn check_queue_mode(_: &mut QueueSettings, v: &AMQPValue, _: &FieldTable) -> Result<(), Invalid> {
    one_of(v, &["default", "lazy"], |m| {
        Invalid::Quoted(format!("unsupported queue mode '{m}'"))
    })?;
    Ok(())
}

fn set_single_active_consumer(
    s: &mut QueueSettings,
    v: &AMQPValue,
    _: &FieldTable,
) -> Result<(), Invalid> {
    match v {
        AMQPValue::Boolean(b) => s.config.single_active_consumer = *b,
        other => return Err(Invalid::UnacceptableType(field_type_name(other))),
    }
    Ok(())
}

fn set_queue_type(s: &mut QueueSettings, v: &AMQPValue, _: &FieldTable) -> Result<(), Invalid> {
    let t = one_of(v, &["classic", "quorum", "stream"], |t| {
        Invalid::Quoted(format!("unsupported queue type '{t}'"))
    })?;
    s.kind = match t.as_str() {
        "quorum" => QueueKind::Quorum,
        "stream" => QueueKind::Stream,
        _ => QueueKind::Classic,
    };
    Ok(())
}

/// Quorum queues take any x-delivery-limit without checking it; only a non-negative
/// integer limits anything.
fn set_delivery_limit(s: &mut QueueSettings, v: &AMQPValue, _: &FieldTable) -> Result<(), Invalid> {
    s.config.delivery_limit = int_value(v).and_then(|n| u64::try_from(n).ok());
    Ok(())
}

/// Validates queue.declare arguments as RabbitMQ 3.10's `rabbit_amqqueue:declare_args`
/// does and works out the queue's settings. `what` is e.g. `queue 'q' in vhost '/'`.
pub fn queue_settings(args: &FieldTable, what: &str) -> AmqpResult<QueueSettings> {
    let mut s = QueueSettings::default();
    // The channel checks the dead-letter exchange's type before anything else.
    check_dead_letter_exchange_type(args, what)?;
    // Arguments of other queue types are not validated, only refused afterwards (as
    // RabbitMQ 3.10 does: `x-max-length` of -1 on a stream is "of queue type ...").
    let (foreign, _) = foreign_args(declared_kind(args));
    for (key, check) in DECLARE_ARGS {
        let Some(v) = args.inner().get(key) else {
            continue;
        };
        if foreign.contains(&key) {
            continue;
        }
        check(&mut s, v, args).map_err(|e| invalid_arg(key, what, e))?;
    }
    check_queue_type_args(args, what, s.kind)?;
    if s.kind == QueueKind::Quorum {
        apply_quorum_rules(&mut s, args, what)?;
    } else {
        s.config.delivery_limit = None;
    }
    Ok(s)
}

/// The queue type `x-queue-type` names (classic when absent or not a known type).
fn declared_kind(args: &FieldTable) -> QueueKind {
    match args
        .inner()
        .get("x-queue-type")
        .and_then(string_value)
        .as_deref()
    {
        Some("quorum") => QueueKind::Quorum,
        Some("stream") => QueueKind::Stream,
        _ => QueueKind::Classic,
    }
}

fn invalid_arg(key: &str, what: &str, e: Invalid) -> AmqpError {
    if matches!(e, Invalid::Crash) {
        return internal_crash();
    }
    AmqpError::precondition(format_args!("invalid arg '{key}' for {what}: {}", e.text()))
}

fn check_dead_letter_exchange_type(args: &FieldTable, what: &str) -> AmqpResult<()> {
    if let Some(v) = args.inner().get("x-dead-letter-exchange") {
        if !matches!(v, AMQPValue::LongString(_)) {
            return Err(AmqpError::precondition(format_args!(
                "invalid type '{}' for arg 'x-dead-letter-exchange' in {what}",
                field_type_name(v)
            )));
        }
    }
    Ok(())
}

/// The arguments a queue type refuses (rabbit_queue_type's compatibility check), and the
/// type's module name for the text.
fn foreign_args(kind: QueueKind) -> (&'static [&'static str], &'static str) {
    match kind {
        QueueKind::Classic => (
            &[
                "x-delivery-limit",
                "x-max-in-memory-length",
                "x-max-in-memory-bytes",
                "x-quorum-initial-group-size",
                "x-dead-letter-strategy",
                "x-max-age",
                "x-stream-max-segment-size-bytes",
                "x-initial-cluster-size",
                "x-queue-leader-locator",
            ],
            "rabbit_classic_queue",
        ),
        QueueKind::Quorum => (
            &[
                "x-max-priority",
                "x-queue-mode",
                "x-queue-master-locator",
                "x-max-age",
                "x-stream-max-segment-size-bytes",
                "x-initial-cluster-size",
            ],
            "rabbit_quorum_queue",
        ),
        QueueKind::Stream => (
            &[
                "x-expires",
                "x-message-ttl",
                "x-dead-letter-exchange",
                "x-dead-letter-routing-key",
                "x-max-length",
                "x-max-in-memory-length",
                "x-max-in-memory-bytes",
                "x-max-priority",
                "x-overflow",
                "x-queue-mode",
                "x-single-active-consumer",
                "x-quorum-initial-group-size",
                "x-delivery-limit",
                "x-dead-letter-strategy",
                "x-queue-master-locator",
            ],
            "rabbit_stream_queue",
        ),
    }
}

/// Refuses arguments of the other queue types: the first one in the client's table.
fn check_queue_type_args(args: &FieldTable, what: &str, kind: QueueKind) -> AmqpResult<()> {
    let (foreign, type_name) = foreign_args(kind);
    if let Some(key) = args
        .inner()
        .keys()
        .map(|k| k.as_str())
        .find(|k| foreign.contains(k))
    {
        return Err(AmqpError::precondition(format_args!(
            "invalid arg '{key}' for {what} of queue type {type_name}"
        )));
    }
    Ok(())
}

/// Checks `x-dead-letter-strategy` and sets how quorum queues differ: returns go to the
/// back, limits are checked before enqueueing, no priorities, and reject-publish-dlx is
/// not implemented (it behaves as drop-head).
fn apply_quorum_rules(s: &mut QueueSettings, args: &FieldTable, what: &str) -> AmqpResult<()> {
    if let Some(v) = args.inner().get("x-dead-letter-strategy") {
        let ok = matches!(
            string_value(v).as_deref(),
            Some("at-most-once" | "at-least-once")
        );
        if !ok {
            return Err(invalid_arg(
                "x-dead-letter-strategy",
                what,
                Invalid::Atom("invalid_dlx_strategy"),
            ));
        }
    }
    s.config.returns_to_back = true;
    s.config.limit_before_enqueue = true;
    s.config.max_priority = None;
    if s.config.overflow == Overflow::RejectPublishDlx {
        s.config.overflow = Overflow::DropHead;
    }
    Ok(())
}

/// Whether `x-queue-type` names a stream.
pub fn is_stream(args: &FieldTable) -> bool {
    matches!(args.inner().get("x-queue-type"), Some(v) if string_value(v).as_deref() == Some("stream"))
}

/// What RabbitMQ answers where one of its checks crashes: the connection closes with a
/// bare `INTERNAL_ERROR`.
pub fn internal_crash() -> AmqpError {
    AmqpError {
        text: "INTERNAL_ERROR".to_string(),
        ..AmqpError::internal("")
    }
}

/// Where a stream consumer starts (`x-stream-offset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamOffset {
    First,
    Last,
    Next,
    Offset(u64),
    /// Wall-clock ms: the first chunk written at or after it.
    Timestamp(u64),
}

/// rabbit_stream_queue's `x-stream-offset`: `first`, `last`, `next`, a number (negative
/// is the start), an AMQP timestamp (seconds), or an interval (`1h`) back from `now_ms`.
/// Anything else crashes RabbitMQ's consume (541 INTERNAL_ERROR on the connection).
pub fn stream_offset(args: &FieldTable, now_ms: u64) -> AmqpResult<StreamOffset> {
    let Some(v) = args.inner().get("x-stream-offset") else {
        return Ok(StreamOffset::Next);
    };
    if let AMQPValue::Timestamp(secs) = v {
        return Ok(StreamOffset::Timestamp(secs.saturating_mul(1000)));
    }
    if let Some(n) = int_value(v) {
        return Ok(StreamOffset::Offset(u64::try_from(n).unwrap_or(0)));
    }
    match string_value(v).as_deref() {
        Some("first") => Ok(StreamOffset::First),
        Some("last") => Ok(StreamOffset::Last),
        Some("next") => Ok(StreamOffset::Next),
        Some(interval) => match parse_max_age(interval) {
            Ok(ms) => Ok(StreamOffset::Timestamp(now_ms.saturating_sub(ms))),
            Err(_) => Err(internal_crash()),
        },
        None => Err(internal_crash()),
    }
}

/// basic.consume arguments: `x-priority` (returned) and `x-cancel-on-ha-failover`.
/// `what` is e.g. `queue 'q' in vhost '/'`.
pub fn consumer_priority(args: &FieldTable, what: &str) -> AmqpResult<i32> {
    if let Some(v) = args.inner().get("x-cancel-on-ha-failover") {
        if !matches!(v, AMQPValue::Boolean(_)) {
            return Err(AmqpError::precondition(format_args!(
                "invalid arg 'x-cancel-on-ha-failover' for {what}: {}",
                Invalid::UnacceptableType(field_type_name(v)).text()
            )));
        }
    }
    match args.inner().get("x-priority") {
        None => Ok(0),
        Some(v) => match int_value(v) {
            Some(n) => Ok(n.clamp(i128::from(i32::MIN), i128::from(i32::MAX)) as i32),
            None => Err(AmqpError::precondition(format_args!(
                "invalid arg 'x-priority' for {what}: {}",
                Invalid::ExpectedInteger(field_type_name(v)).text()
            ))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::types::LongString;

    fn table(pairs: &[(&str, AMQPValue)]) -> FieldTable {
        let mut t = FieldTable::default();
        for (k, v) in pairs {
            t.insert((*k).into(), v.clone());
        }
        t
    }

    const Q: &str = "queue 'q' in vhost '/'";

    fn err(args: &[(&str, AMQPValue)]) -> String {
        match queue_settings(&table(args), Q) {
            Err(e) => e.text,
            Ok(s) => panic!("accepted: {s:?}"),
        }
    }

    #[test]
    fn parses_every_feature() {
        let s = queue_settings(
            &table(&[
                ("x-max-priority", AMQPValue::ShortShortUInt(10)),
                ("x-message-ttl", AMQPValue::LongInt(500)),
                ("x-expires", AMQPValue::LongLongInt(1000)),
                ("x-max-length", AMQPValue::LongInt(3)),
                ("x-max-length-bytes", AMQPValue::LongInt(100)),
                (
                    "x-overflow",
                    AMQPValue::LongString(LongString::from("reject-publish")),
                ),
                (
                    "x-dead-letter-exchange",
                    AMQPValue::LongString(LongString::from("dlx")),
                ),
                (
                    "x-dead-letter-routing-key",
                    AMQPValue::LongString(LongString::from("rk")),
                ),
                ("x-single-active-consumer", AMQPValue::Boolean(true)),
            ]),
            Q,
        )
        .expect("valid");
        assert_eq!(s.config.max_priority, Some(10));
        assert_eq!(s.config.message_ttl, Some(500));
        assert_eq!(s.expires, Some(1000));
        assert_eq!(s.config.max_length, Some(3));
        assert_eq!(s.config.max_length_bytes, Some(100));
        assert_eq!(s.config.overflow, Overflow::RejectPublish);
        assert_eq!(s.dead_letter_exchange.as_deref(), Some("dlx"));
        assert_eq!(s.dead_letter_routing_key.as_deref(), Some("rk"));
        assert!(s.config.single_active_consumer);
        assert_eq!(s.kind, QueueKind::Classic);
    }

    #[test]
    fn rabbitmq_texts_for_bad_values() {
        assert_eq!(
            err(&[("x-message-ttl", AMQPValue::LongInt(-1))]),
            "PRECONDITION_FAILED - invalid arg 'x-message-ttl' for queue 'q' in vhost '/': {value_negative,-1}"
        );
        assert_eq!(
            err(&[("x-expires", AMQPValue::LongInt(0))]),
            "PRECONDITION_FAILED - invalid arg 'x-expires' for queue 'q' in vhost '/': {value_zero,0}"
        );
        assert_eq!(
            err(&[("x-max-priority", AMQPValue::LongInt(256))]),
            "PRECONDITION_FAILED - invalid arg 'x-max-priority' for queue 'q' in vhost '/': {max_value_exceeded,256}"
        );
        assert_eq!(
            err(&[("x-max-length", AMQPValue::LongString(LongString::from("1")))]),
            "PRECONDITION_FAILED - invalid arg 'x-max-length' for queue 'q' in vhost '/': \"expected integer, got longstr\""
        );
        assert_eq!(
            err(&[("x-dead-letter-routing-key", AMQPValue::LongString(LongString::from("k")))]),
            "PRECONDITION_FAILED - invalid arg 'x-dead-letter-routing-key' for queue 'q' in vhost '/': routing_key_but_no_dlx_defined"
        );
        assert_eq!(
            err(&[("x-message-ttl", AMQPValue::LongLongInt(315_360_000_001))]),
            "PRECONDITION_FAILED - invalid arg 'x-message-ttl' for queue 'q' in vhost '/': {value_too_large,315360000001}"
        );
        assert_eq!(
            err(&[("x-overflow", AMQPValue::LongString(LongString::from("x")))]),
            "PRECONDITION_FAILED - invalid arg 'x-overflow' for queue 'q' in vhost '/': invalid_overflow"
        );
        assert_eq!(
            err(&[("x-queue-type", AMQPValue::LongString(LongString::from("bogus")))]),
            "PRECONDITION_FAILED - invalid arg 'x-queue-type' for queue 'q' in vhost '/': \"unsupported queue type 'bogus'\""
        );
        assert_eq!(
            err(&[("x-dead-letter-exchange", AMQPValue::LongInt(5))]),
            "PRECONDITION_FAILED - invalid type 'signedint' for arg 'x-dead-letter-exchange' in queue 'q' in vhost '/'"
        );
        assert_eq!(
            err(&[("x-delivery-limit", AMQPValue::LongInt(5))]),
            "PRECONDITION_FAILED - invalid arg 'x-delivery-limit' for queue 'q' in vhost '/' of queue type rabbit_classic_queue"
        );
    }

    #[test]
    fn max_age_units_and_refusals() {
        assert_eq!(parse_max_age("7D"), Ok(7 * 86_400_000));
        assert_eq!(parse_max_age("1h"), Ok(3_600_000));
        assert_eq!(parse_max_age("30s"), Ok(30_000));
        assert_eq!(parse_max_age("2M"), Ok(2 * 30 * 86_400_000));
        assert_eq!(parse_max_age("1Y"), Ok(365 * 86_400_000));
        for bad in ["0s", "1x", "1 h", "1.5h", "1d", "1H"] {
            assert_eq!(parse_max_age(bad), Err(MaxAgeError::Invalid), "{bad}");
        }
        for crash in ["", "h", "abc", "-1h"] {
            assert_eq!(parse_max_age(crash), Err(MaxAgeError::NoDigits), "{crash}");
        }
    }

    fn stream(extra: &[(&str, AMQPValue)]) -> FieldTable {
        let mut pairs = vec![(
            "x-queue-type",
            AMQPValue::LongString(LongString::from("stream")),
        )];
        pairs.extend(extra.iter().cloned());
        table(&pairs)
    }

    #[test]
    fn stream_arguments() {
        let s = queue_settings(
            &stream(&[
                ("x-max-age", AMQPValue::LongString(LongString::from("1h"))),
                ("x-max-length-bytes", AMQPValue::LongInt(1000)),
                ("x-stream-max-segment-size-bytes", AMQPValue::LongInt(500)),
            ]),
            Q,
        )
        .expect("valid");
        assert_eq!(s.kind, QueueKind::Stream);
        assert_eq!(s.stream.max_age_ms, Some(3_600_000));
        assert_eq!(s.stream.max_segment_bytes, Some(500));
        assert_eq!(s.config.max_length_bytes, Some(1000));
        // Another type's argument is refused before its value is looked at.
        let e = queue_settings(&stream(&[("x-max-length", AMQPValue::LongInt(-1))]), Q)
            .expect_err("refused");
        assert_eq!(e.text, "PRECONDITION_FAILED - invalid arg 'x-max-length' for queue 'q' in vhost '/' of queue type rabbit_stream_queue");
        // A max-age without digits is RabbitMQ's crash: 541 on the connection.
        let e = queue_settings(
            &stream(&[("x-max-age", AMQPValue::LongString(LongString::from("h")))]),
            Q,
        )
        .expect_err("refused");
        assert_eq!((e.code.code(), e.text.as_str()), (541, "INTERNAL_ERROR"));
    }

    #[test]
    fn stream_offsets() {
        let at = |v: AMQPValue| {
            let mut t = FieldTable::default();
            t.insert("x-stream-offset".into(), v);
            stream_offset(&t, 10_000_000)
        };
        let s = |v: &str| AMQPValue::LongString(LongString::from(v));
        assert_eq!(
            stream_offset(&FieldTable::default(), 0),
            Ok(StreamOffset::Next)
        );
        assert_eq!(at(s("first")), Ok(StreamOffset::First));
        assert_eq!(at(s("last")), Ok(StreamOffset::Last));
        assert_eq!(at(s("next")), Ok(StreamOffset::Next));
        assert_eq!(at(AMQPValue::LongLongInt(5)), Ok(StreamOffset::Offset(5)));
        assert_eq!(at(AMQPValue::LongInt(-1)), Ok(StreamOffset::Offset(0)));
        assert_eq!(
            at(AMQPValue::Timestamp(3)),
            Ok(StreamOffset::Timestamp(3000))
        );
        assert_eq!(
            at(s("1h")),
            Ok(StreamOffset::Timestamp(10_000_000 - 3_600_000))
        );
        assert_eq!(at(s("bogus")).map_err(|e| e.code.code()), Err(541));
        assert_eq!(
            at(AMQPValue::Boolean(true)).map_err(|e| e.code.code()),
            Err(541)
        );
    }

    #[test]
    fn quorum_queues_return_to_head_and_keep_delivery_limits() {
        let s = queue_settings(
            &table(&[
                (
                    "x-queue-type",
                    AMQPValue::LongString(LongString::from("quorum")),
                ),
                ("x-delivery-limit", AMQPValue::LongInt(2)),
            ]),
            Q,
        )
        .expect("valid");
        assert_eq!(s.kind, QueueKind::Quorum);
        assert!(s.config.returns_to_back);
        assert_eq!(s.config.delivery_limit, Some(2));
    }
}
