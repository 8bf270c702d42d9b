//! Dead-lettering: a message that a queue rejects, expires, drops for a length limit or
//! over its delivery limit is republished to the queue's dead-letter exchange with
//! RabbitMQ 3.10's `x-death` bookkeeping (`rabbit_dead_letter`).

use std::{collections::VecDeque, sync::Arc};

use amq_protocol::types::FieldTable;
use bytes::Bytes;
use tracing::debug;
use warren_codec::{rewrite_properties, PropertiesEdit, PropertiesView, Table, Value};
use warren_store::{Dead, DeathReason, Message};

use crate::{model::queue::Queue, model::vhost::VHost};

/// Upper bound of republishes for one batch, a guard against pathological topologies
/// (RabbitMQ's own cycle rules already stop automatic loops).
const MAX_HOPS: usize = 100_000;

/// Dead-letters `dead` from `source`, and whatever that causes in turn (a dead-letter
/// queue dropping its head, say). Never called with a queue lock held.
pub(crate) fn dead_letter(source: &Arc<Queue>, dead: Vec<Dead>) {
    if dead.is_empty() {
        return;
    }
    let Some(vhost) = source.home() else { return };
    let mut work: VecDeque<(Arc<Queue>, Dead)> =
        dead.into_iter().map(|d| (source.clone(), d)).collect();
    let mut hops = 0usize;
    while let Some((queue, d)) = work.pop_front() {
        let message = d.entry.message.clone();
        hops += 1;
        if hops <= MAX_HOPS {
            for (target, more) in republish(&vhost, &queue, d) {
                work.extend(more.into_iter().map(|m| (target.clone(), m)));
            }
        } else if hops == MAX_HOPS + 1 {
            debug!(queue = %source.name, "dead-letter chain too long; dropping the rest");
        }
        // It has left this queue (after its body was read back, if it was on disk).
        queue.release(&message);
    }
}

/// Republishes one dead message; returns, per target queue, what that queue dropped.
fn republish(vhost: &Arc<VHost>, queue: &Arc<Queue>, dead: Dead) -> Vec<(Arc<Queue>, Vec<Dead>)> {
    let settings = queue.settings();
    let Some(dlx) = settings.dead_letter_exchange.as_deref() else {
        return Vec::new();
    };
    let Some((message, deaths)) = make_message(queue, &dead) else {
        return Vec::new();
    };
    let owned_keys: Vec<String> = match settings.dead_letter_routing_key.as_deref() {
        Some(rk) => vec![rk.to_string()],
        None => {
            // The message's own routing keys: the publish key, CC, and BCC.
            let old = &dead.entry.message;
            let mut keys = vec![old.routing_key.to_string()];
            if let Some(Value::Array(cc)) = headers_table(&old.properties)
                .as_ref()
                .and_then(|t| t.get("CC"))
            {
                keys.extend(
                    cc.iter()
                        .filter_map(Value::as_bytes)
                        .map(|k| String::from_utf8_lossy(k).into_owned()),
                );
            }
            keys.extend(old.bcc.iter().flat_map(|b| b.iter().cloned()));
            keys
        }
    };
    let keys: Vec<&str> = owned_keys.iter().map(String::as_str).collect();
    let headers = routing_headers(&message.properties);
    let mut targets = Vec::new();
    // A missing dead-letter exchange drops the message, as in RabbitMQ.
    if vhost
        .route_internal(
            dlx,
            &keys,
            &warren_router::MessageRef {
                headers: headers.as_ref(),
                properties: &message.properties,
            },
            &mut targets,
        )
        .is_err()
    {
        return Vec::new();
    }
    let mut message = message;
    if let (false, Some(storage)) = (targets.is_empty(), vhost.persistence.storage()) {
        let durable = message.persistent && targets.iter().any(|q| q.is_recoverable());
        let page = vhost.persistence.should_page(message.body.len(), durable);
        let ids: Option<Vec<u64>> = targets.iter().map(|q| q.store_id).collect();
        if let (true, Some(ids)) = (durable || page, ids) {
            // Nobody waits for this sync: dead-lettering is at-most-once, as in RabbitMQ.
            match storage.append(&message, durable, ids, Box::new(|_| {})) {
                Ok(r) => {
                    message.stored = Some(r);
                    if page {
                        message.paged_len = Some(message.body.len());
                        message.body = Bytes::new();
                    }
                }
                Err(e) => debug!(error = %e, "dead-lettered message not stored"),
            }
        }
    }
    let message = Arc::new(message);
    let mut out = Vec::new();
    for target in targets {
        if dead.reason != DeathReason::Rejected && is_cycle(&target.name, &deaths) {
            debug!(queue = %target.name, "dead-letter cycle broken; message dropped");
            continue;
        }
        let (_, more) = target.publish_collect(message.clone());
        if !more.is_empty() {
            out.push((target, more));
        }
    }
    out
}

fn headers_table(properties: &[u8]) -> Option<Table> {
    let view = PropertiesView::scan(properties).ok()?;
    let range = view.headers?;
    Table::parse(properties.get(range)?).ok()
}

/// amq-protocol's table for headers-exchange matching of the republished message.
fn routing_headers(properties: &[u8]) -> Option<FieldTable> {
    let view = PropertiesView::scan(properties).ok()?;
    let range = view.headers?;
    warren_codec::parse_table_bounded(properties.get(range)?).ok()
}

fn str_field<'a>(t: &'a Table, key: &str) -> Option<&'a [u8]> {
    t.get(key).and_then(Value::as_bytes)
}

/// RabbitMQ's `is_cycle`: the target queue already appears in `x-death`, and no death
/// from there to now was a rejection.
fn is_cycle(target: &str, deaths: &[Value]) -> bool {
    let mut cycle = Vec::new();
    for d in deaths {
        let Value::Table(t) = d else {
            // Non-table entries count as "not rejected", as in RabbitMQ.
            cycle.push(None);
            continue;
        };
        cycle.push(Some(t));
        if str_field(t, "queue") == Some(target.as_bytes()) {
            return cycle
                .iter()
                .all(|t| t.is_none_or(|t| str_field(t, "reason") != Some(b"rejected")));
        }
    }
    false
}

/// The republished message and its new `x-death` array.
fn make_message(queue: &Queue, dead: &Dead) -> Option<(Message, Vec<Value>)> {
    let old = &dead.entry.message;
    let view = PropertiesView::scan(&old.properties).ok()?;
    let mut headers = match &view.headers {
        Some(range) => Table::parse(old.properties.get(range.clone())?).ok()?,
        None => Table::new(),
    };
    let info = death_info(queue, dead, &headers, &view);
    let deaths = record_death(&mut headers, queue, dead, info);
    headers.set("x-death", Value::Array(deaths.clone()));
    headers.sort();
    let dlrk = queue.settings().dead_letter_routing_key.clone();
    if dlrk.is_some() {
        headers.remove("CC");
    }
    let properties = rewrite_properties(
        &old.properties,
        &PropertiesEdit {
            headers: Some(Some(headers.to_bytes())),
            remove_expiration: true,
            ..PropertiesEdit::default()
        },
    )
    .ok()?;
    let exchange = queue
        .settings()
        .dead_letter_exchange
        .clone()
        .unwrap_or_default();
    let message = Message {
        exchange: Arc::from(exchange),
        routing_key: dlrk
            .as_deref()
            .map_or_else(|| old.routing_key.clone(), Arc::from),
        properties,
        body: queue.load_body(old)?,
        persistent: old.persistent,
        priority: old.priority,
        expiration: None,
        bcc: if dlrk.is_some() {
            None
        } else {
            old.bcc.clone()
        },
        stored: None,
        paged_len: None,
    };
    Some((message, deaths))
}

/// The fields of a new `x-death` entry, in RabbitMQ's order: why and where the message
/// died, when, where it was published and with which routing keys (the publish key and
/// CC), and its original expiration if it had one.
fn death_info(
    queue: &Queue,
    dead: &Dead,
    headers: &Table,
    view: &PropertiesView,
) -> Vec<(Bytes, Value)> {
    let old = &dead.entry.message;
    let mut routing_keys = vec![Value::long_str(old.routing_key.as_bytes())];
    if let Some(Value::Array(cc)) = headers.get("CC") {
        routing_keys.extend(cc.iter().filter_map(|v| v.as_bytes()).map(Value::long_str));
    }
    let mut info = vec![
        (b"reason".as_slice(), Value::long_str(dead.reason.as_str())),
        (b"queue".as_slice(), Value::long_str(queue.name.as_bytes())),
        (
            b"time".as_slice(),
            Value::Timestamp(queue.clock().now_secs()),
        ),
        (
            b"exchange".as_slice(),
            Value::long_str(old.exchange.as_bytes()),
        ),
        (b"routing-keys".as_slice(), Value::Array(routing_keys)),
    ];
    if let Some(range) = &view.expiration {
        info.push((
            b"original-expiration".as_slice(),
            Value::LongStr(old.properties.slice(range.clone())),
        ));
    }
    info.into_iter()
        .map(|(k, v)| (Bytes::from_static(k), v))
        .collect()
}

/// The message's `x-death` array with this death recorded; a first death also gets its
/// `x-first-death-*` headers.
fn record_death(
    headers: &mut Table,
    queue: &Queue,
    dead: &Dead,
    info: Vec<(Bytes, Value)>,
) -> Vec<Value> {
    match headers.get("x-death") {
        Some(Value::Array(existing)) => add_death(existing, queue, dead, info),
        Some(_) => {
            // A publisher-supplied x-death that is not an array is replaced, without the
            // first-death headers.
            vec![Value::Table(new_death(info))]
        }
        None => {
            // First death: its own top-level headers, and an entry in RabbitMQ's order.
            set_first_death_headers(headers, queue, dead);
            vec![Value::Table(new_death(info))]
        }
    }
}

/// A new `x-death` entry: a count of 1, then `info`.
fn new_death(info: Vec<(Bytes, Value)>) -> Table {
    let mut t = Table(vec![(Bytes::from_static(b"count"), Value::I64(1))]);
    t.0.extend(info);
    t
}

/// `existing` with the entry for this queue and reason counted once more (or a new one),
/// first.
fn add_death(
    existing: &[Value],
    queue: &Queue,
    dead: &Dead,
    info: Vec<(Bytes, Value)>,
) -> Vec<Value> {
    let (mut matched, others): (Vec<Value>, Vec<Value>) = existing.iter().cloned().partition(|d| {
        matches!(d, Value::Table(t)
                if str_field(t, "queue") == Some(queue.name.as_bytes())
                && str_field(t, "reason") == Some(dead.reason.as_str().as_bytes()))
    });
    let mut entry = match matched.pop() {
        Some(Value::Table(mut t)) => {
            let count = t.get("count").and_then(Value::as_i64).unwrap_or(0);
            t.set("count", Value::I64(count + 1));
            t
        }
        _ => new_death(info),
    };
    entry.sort();
    // RabbitMQ 3.10 regroups the old entries with a fold that reverses them: only
    // the first entry is reliably the most recent.
    let mut all = vec![Value::Table(entry)];
    all.extend(others.into_iter().rev());
    all
}

fn set_first_death_headers(headers: &mut Table, queue: &Queue, dead: &Dead) {
    let old = &dead.entry.message;
    headers.set(
        "x-first-death-reason",
        Value::long_str(dead.reason.as_str()),
    );
    headers.set(
        "x-first-death-queue",
        Value::long_str(queue.name.as_bytes()),
    );
    headers.set(
        "x-first-death-exchange",
        Value::long_str(old.exchange.as_bytes()),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn death(queue: &str, reason: &str) -> Value {
        let mut t = Table::new();
        t.set("queue", Value::long_str(queue));
        t.set("reason", Value::long_str(reason));
        Value::Table(t)
    }

    #[test]
    fn cycles_without_rejection_are_detected() {
        // q1 expired into q2, which expired into (about to be) q1.
        let deaths = vec![death("q2", "expired"), death("q1", "expired")];
        assert!(is_cycle("q1", &deaths));
        assert!(is_cycle("q2", &deaths));
        assert!(!is_cycle("q3", &deaths));
        let with_reject = vec![death("q2", "rejected"), death("q1", "expired")];
        assert!(!is_cycle("q1", &with_reject));
    }
}
