//! Redeclaration rules: a queue or exchange declared again must match what exists, with
//! RabbitMQ's `inequivalent arg` texts. Shared by every path that declares (AMQP, the
//! management API, definitions).

use amq_protocol::types::{AMQPValue, FieldTable};
use warren_router::{field_type_name, values_equal};

use crate::util::error::{AmqpError, AmqpResult};

/// How RabbitMQ prints an argument value in an equivalence error.
fn value_text(v: &AMQPValue) -> String {
    match v {
        AMQPValue::Boolean(b) => b.to_string(),
        AMQPValue::ShortShortInt(n) => n.to_string(),
        AMQPValue::ShortShortUInt(n) => n.to_string(),
        AMQPValue::ShortInt(n) => n.to_string(),
        AMQPValue::ShortUInt(n) => n.to_string(),
        AMQPValue::LongInt(n) => n.to_string(),
        AMQPValue::LongUInt(n) => n.to_string(),
        AMQPValue::LongLongInt(n) => n.to_string(),
        AMQPValue::Float(n) => n.to_string(),
        AMQPValue::Double(n) => n.to_string(),
        AMQPValue::Timestamp(n) => n.to_string(),
        AMQPValue::ShortString(s) => s.as_str().to_string(),
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        other => format!("{other:?}"),
    }
}

/// Queue arguments RabbitMQ checks on redeclaration.
pub const EQUIVALENCE_ARGS: &[&str] = &[
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-expires",
    "x-max-length",
    "x-max-length-bytes",
    "x-max-in-memory-length",
    "x-max-in-memory-bytes",
    "x-max-priority",
    "x-message-ttl",
    "x-overflow",
    "x-queue-mode",
    "x-queue-type",
    "x-single-active-consumer",
    "x-delivery-limit",
    "x-queue-master-locator",
    "x-quorum-initial-group-size",
    "x-max-age",
    "x-stream-max-segment-size-bytes",
    "x-initial-cluster-size",
    "x-queue-leader-locator",
];

pub fn check_args_equivalent(
    current: &FieldTable,
    received: &FieldTable,
    what: &str,
    vhost: &str,
    keys: &[&str],
) -> AmqpResult<()> {
    // No x-queue-type means classic, both ways.
    let classic = AMQPValue::LongString("classic".into());
    let with_default = |t: &FieldTable, key: &str| match t.inner().get(key) {
        None if key == "x-queue-type" => Some(classic.clone()),
        v => v.cloned(),
    };
    let is_int = |v: &AMQPValue| {
        matches!(
            v,
            AMQPValue::ShortShortInt(_)
                | AMQPValue::ShortShortUInt(_)
                | AMQPValue::ShortInt(_)
                | AMQPValue::ShortUInt(_)
                | AMQPValue::LongInt(_)
                | AMQPValue::LongUInt(_)
                | AMQPValue::LongLongInt(_)
        )
    };
    for key in keys {
        let (dcur, drec) = (with_default(current, key), with_default(received, key));
        let differs = match (dcur.as_ref(), drec.as_ref()) {
            (None, None) => false,
            (Some(c), Some(r)) => !values_equal(c, r),
            _ => true,
        };
        if !differs {
            continue;
        }
        // The message shows what was actually sent and stored.
        let (cur, rec) = (current.inner().get(*key), received.inner().get(*key));
        let detail = match (rec, cur) {
            (Some(r), Some(c))
                if field_type_name(r) == field_type_name(c) || (is_int(r) && is_int(c)) =>
            {
                format!(
                    "received '{}' but current is '{}'",
                    value_text(r),
                    value_text(c)
                )
            }
            (Some(r), Some(c)) => format!(
                "received the value '{}' of type '{}' but current is the value '{}' of type '{}'",
                value_text(r),
                field_type_name(r),
                value_text(c),
                field_type_name(c)
            ),
            (None, Some(c)) => format!(
                "received none but current is the value '{}' of type '{}'",
                value_text(c),
                field_type_name(c)
            ),
            (Some(r), None) => format!(
                "received the value '{}' of type '{}' but current is none",
                value_text(r),
                field_type_name(r)
            ),
            (None, None) => continue,
        };
        return Err(AmqpError::precondition(format_args!(
            "inequivalent arg '{key}' for {what} in vhost '{vhost}': {detail}"
        )));
    }
    Ok(())
}

pub fn check_flag(
    name: &str,
    received: bool,
    current: bool,
    what: &str,
    vhost: &str,
) -> AmqpResult<()> {
    if received == current {
        return Ok(());
    }
    Err(AmqpError::precondition(format_args!(
        "inequivalent arg '{name}' for {what} in vhost '{vhost}': received '{received}' but current is '{current}'"
    )))
}
