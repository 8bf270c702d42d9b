//! Publishing: a message's CC/BCC keys, expiration and headers read, routed through the
//! vhost's exchanges, stored when persistent for durable queues (or paged out when over
//! the memory budget), and pushed to its queues.

use std::sync::Arc;

use amq_protocol::types::{AMQPValue, FieldTable};
use bytes::Bytes;
use warren_codec::{PropertiesEdit, PropertiesView};
use warren_journal::Callback;
use warren_store::{Message, PushOutcome};

use crate::{
    model::{args, queue::Queue, stats::Stat, vhost::VHost},
    util::error::{AmqpError, AmqpResult},
};

/// A message as its publisher handed it over.
#[derive(Debug, Clone)]
pub struct Publication {
    pub exchange: Arc<str>,
    pub routing_key: Arc<str>,
    pub mandatory: bool,
    pub properties: Bytes,
    pub body: Bytes,
}

/// A publication made ready to route: the message queues will hold (BCC removed), the
/// headers a headers exchange matches, and the CC/BCC routing keys.
#[derive(Debug)]
pub struct Prepared {
    pub message: Message,
    headers: Option<FieldTable>,
    extra_keys: Vec<String>,
    /// Released by a delayed exchange: routed now whatever its `x-delay` says (the
    /// negated delay the plugin writes can wrap to a positive 32-bit value on the wire).
    pub(crate) released: bool,
}

impl Prepared {
    /// The headers table routing reads.
    pub fn headers(&self) -> Option<&FieldTable> {
        self.headers.as_ref()
    }

    /// Replaces the message's properties (a released delayed message's swapped
    /// `x-delay`), and the headers routing reads from them.
    pub(crate) fn set_properties(&mut self, properties: Bytes) {
        if let Ok(view) = PropertiesView::scan(&properties) {
            self.headers = view
                .headers
                .and_then(|r| warren_codec::parse_table_bounded(properties.get(r)?).ok());
        }
        self.message.properties = properties;
    }
}

/// What became of a publication.
#[derive(Debug)]
pub struct Published {
    /// At least one queue received it.
    pub routed: bool,
    /// False when a queue refused it (`x-overflow` reject-publish) or the message store
    /// failed to take a persistent message (its confirm must be a nack).
    pub accepted: bool,
    /// It went to the message store as persistent: its confirm waits for the sync.
    pub on_disk: bool,
    /// The message, when no queue took it (for basic.return).
    pub unroutable: Option<Message>,
}

/// `expiration` as RabbitMQ validates it (`invalid expiration '...': no_integer`, ...):
/// milliseconds.
pub fn validate_expiration(raw: &[u8]) -> AmqpResult<u64> {
    let text = String::from_utf8_lossy(raw);
    let fail = |detail: String| {
        AmqpError::precondition(format_args!("invalid expiration '{text}': {detail}"))
    };
    let bytes = text.as_bytes();
    let sign_len = usize::from(matches!(bytes.first(), Some(b'-' | b'+')));
    let digits_len = bytes
        .iter()
        .skip(sign_len)
        .take_while(|b| b.is_ascii_digit())
        .count();
    if digits_len == 0 {
        return Err(fail("no_integer".into()));
    }
    let (number, rest) = text.split_at(sign_len + digits_len);
    if !rest.is_empty() {
        return Err(fail(format!("{{leftover_string,\"{rest}\"}}")));
    }
    let n: i128 = number.trim_start_matches('+').parse().unwrap_or(i128::MAX);
    args::check_expiry(n).map_err(|e| fail(e.text()))
}

/// The string values of a CC or BCC header.
fn sender_keys(value: Option<&AMQPValue>, into: &mut Vec<String>) {
    if let Some(AMQPValue::FieldArray(arr)) = value {
        for v in arr.as_slice() {
            match v {
                AMQPValue::LongString(s) => {
                    into.push(String::from_utf8_lossy(s.as_bytes()).into_owned())
                }
                AMQPValue::ShortString(s) => into.push(s.as_str().to_string()),
                _ => {}
            }
        }
    }
}

/// Reads what routing needs from a publication and builds its message: CC and BCC add
/// routing keys, BCC is removed from the headers consumers see (the rest byte for byte),
/// an invalid expiration is refused.
pub fn prepare(p: Publication, view: &PropertiesView) -> AmqpResult<Prepared> {
    let expiration = match &view.expiration {
        Some(r) => Some(validate_expiration(&p.properties[r.clone()])?),
        None => None,
    };
    let headers = match &view.headers {
        Some(range) => Some(
            warren_codec::parse_table_bounded(&p.properties[range.clone()])
                .map_err(|_| AmqpError::frame_error("invalid headers table"))?,
        ),
        None => None,
    };
    // CC/BCC routing keys, when the headers carry any (rare: no allocation otherwise).
    let mut extra_keys = Vec::new();
    let mut bcc = None;
    let mut properties = p.properties;
    if let Some(h) = &headers {
        sender_keys(h.inner().get("CC"), &mut extra_keys);
        let cc_count = extra_keys.len();
        sender_keys(h.inner().get("BCC"), &mut extra_keys);
        if extra_keys.len() > cc_count {
            bcc = Some(Arc::from(extra_keys[cc_count..].to_vec()));
        }
        if let (true, Some(range)) = (h.contains_key("BCC"), &view.headers) {
            // BCC must not reach consumers; the other headers go on byte for byte.
            let stripped =
                warren_codec::filter_table(&properties[range.clone()], |k, _| k != b"BCC")
                    .map_err(|_| AmqpError::frame_error("invalid headers table"))?;
            let edit = PropertiesEdit {
                headers: Some(Some(stripped)),
                ..PropertiesEdit::default()
            };
            properties = warren_codec::rewrite_properties(&properties, &edit)
                .map_err(|_| AmqpError::frame_error("invalid content properties"))?;
        }
    }
    let message = Message {
        exchange: p.exchange,
        routing_key: p.routing_key,
        properties,
        body: p.body,
        persistent: view.persistent(),
        priority: view.priority.unwrap_or(0),
        expiration,
        bcc,
        stored: None,
        paged_len: None,
    };
    Ok(Prepared {
        message,
        headers,
        extra_keys,
        released: false,
    })
}

/// Routes a prepared message and enqueues it. `publisher` keys the statistics (a
/// connection id; 0 for the management API). A persistent message for durable queues is
/// appended to the message store with the callback `on_durable` makes; a body over the
/// memory budget is stored and dropped from memory. `queues` comes back holding the
/// queues the message went to (for credit flow); its allocation is the caller's to reuse.
pub fn route_and_enqueue(
    vhost: &VHost,
    prepared: Prepared,
    mandatory: bool,
    publisher: u64,
    queues: &mut Vec<Arc<Queue>>,
    on_durable: impl FnOnce(bool) -> Callback,
) -> AmqpResult<Published> {
    enqueue(
        vhost, prepared, mandatory, publisher, queues, on_durable, false,
    )
}

/// [`route_and_enqueue`] for the broker's own messages (the event exchange's), which
/// may start at an internal exchange; not mandatory, counted under publisher 0.
pub fn route_and_enqueue_internal(
    vhost: &VHost,
    prepared: Prepared,
    queues: &mut Vec<Arc<Queue>>,
    on_durable: impl FnOnce(bool) -> Callback,
) -> AmqpResult<Published> {
    enqueue(vhost, prepared, false, 0, queues, on_durable, true)
}

/// How a publish is routed: from an internal exchange (the broker's own messages), and
/// whether a delayed exchange may hold it (not when it is being released).
struct Route {
    internal: bool,
    hold_ok: bool,
}

impl Route {
    /// Fills `queues` with the publish's destinations; `Some` when a delayed exchange holds
    /// it instead.
    fn run(
        &self,
        vhost: &VHost,
        message: &Message,
        headers: Option<&FieldTable>,
        extra_keys: &[String],
        queues: &mut Vec<Arc<Queue>>,
    ) -> AmqpResult<Option<crate::model::vhost::DelayedHold>> {
        queues.clear();
        let msg = warren_router::MessageRef {
            headers,
            properties: &message.properties,
        };
        let key = message.routing_key.as_ref();
        if self.internal {
            vhost.route_internal(&message.exchange, &[key], &msg, queues)?;
            return Ok(None);
        }
        if extra_keys.is_empty() {
            return vhost.route_publish(&message.exchange, &[key], &msg, queues, self.hold_ok);
        }
        let mut keys: Vec<&str> = vec![key];
        keys.extend(extra_keys.iter().map(String::as_str));
        vhost.route_publish(&message.exchange, &keys, &msg, queues, self.hold_ok)
    }
}

fn enqueue(
    vhost: &VHost,
    prepared: Prepared,
    mandatory: bool,
    publisher: u64,
    queues: &mut Vec<Arc<Queue>>,
    on_durable: impl FnOnce(bool) -> Callback,
    internal: bool,
) -> AmqpResult<Published> {
    let Prepared {
        mut message,
        headers,
        extra_keys,
        released,
    } = prepared;
    let route = Route {
        internal,
        hold_ok: !released,
    };
    let hold = route.run(vhost, &message, headers.as_ref(), &extra_keys, queues)?;
    vhost.stats.inc_at(publisher, Stat::Publish); // management stats
    if let Some(hold) = hold {
        let prepared = Prepared {
            message,
            headers,
            extra_keys,
            released,
        };
        return Ok(hold_delayed(vhost, prepared, hold, on_durable));
    }
    let mut published = Published {
        routed: !queues.is_empty(),
        accepted: true,
        on_disk: false,
        unroutable: None,
    };
    if queues.is_empty() {
        let unroutable = if mandatory {
            Stat::ReturnUnroutable
        } else {
            Stat::DropUnroutable
        };
        vhost.stats.inc_at(publisher, unroutable);
        published.unroutable = Some(message);
        return Ok(published);
    }
    let mut on_durable = Some(on_durable);
    // Streams store every message they get, persistent or not; the confirm waits for each
    // of their syncs and for the message store's (a join of the parts).
    let join = if queues.iter().any(|q| q.stream().is_some()) {
        published.on_disk = true;
        on_durable.take().map(|f| Join::new(f(true)))
    } else {
        None
    };
    for q in queues.iter() {
        if let (Some(stream), Some(join)) = (q.stream(), &join) {
            stream.append(&message, join.part());
            q.stats.inc(Stat::Publish); // management stats
        }
    }
    if let Some(storage) = vhost.persistence.storage() {
        // Persistent messages for durable queues go to disk, and so does any body that
        // would take the broker over its memory budget (then kept on disk only).
        let classic = || queues.iter().filter(|q| q.stream().is_none());
        let durable = message.persistent && classic().any(|q| q.is_recoverable());
        let page = vhost.persistence.should_page(message.body.len(), durable);
        let ids: Option<Vec<u64>> = classic().map(|q| q.store_id).collect();
        let ids = ids.filter(|ids| !ids.is_empty());
        if let (true, Some(ids)) = (durable || page, ids) {
            let callback: Callback = match (&join, on_durable.take()) {
                (Some(join), _) if durable => join.part(),
                (Some(_), _) => Box::new(|_| {}),
                (None, Some(f)) => f(durable),
                (None, None) => Box::new(|_| {}),
            };
            match storage.append(&message, durable, ids, callback) {
                Ok(r) => {
                    message.stored = Some(r);
                    published.on_disk |= durable;
                    if page {
                        message.paged_len = Some(message.body.len());
                        message.body = Bytes::new();
                        // The properties may be a slice of a read buffer: copy them so
                        // that buffer (bodies and all) can be freed.
                        message.properties = Bytes::copy_from_slice(&message.properties);
                    }
                }
                Err(e) if durable => {
                    // Not stored: refuse it rather than confirm something a restart
                    // would lose (disk full and the like).
                    tracing::warn!(error = %e, "message store append failed");
                    queues.clear();
                    published.accepted = false;
                    if let Some(join) = join {
                        join.finish(false);
                    }
                    return Ok(published);
                }
                Err(e) => tracing::debug!(error = %e, "could not page a message out"),
            }
        }
    }
    if let Some(join) = join {
        join.release();
    }
    let message = Arc::new(message);
    for q in queues.iter().filter(|q| q.stream().is_none()) {
        if q.publish(message.clone()) == PushOutcome::Rejected {
            published.accepted = false;
        }
    }
    Ok(published)
}

/// Holds a message for a delayed exchange. A persistent message of a durable exchange
/// is stored first, and its confirm waits for the sync, as for a durable queue. The
/// publish counts as routed: no basic.return and no alternate exchange now (the plugin
/// returns such a message as unroutable at once; see docs/compatibility.md).
fn hold_delayed(
    vhost: &VHost,
    prepared: Prepared,
    hold: crate::model::vhost::DelayedHold,
    on_durable: impl FnOnce(bool) -> Callback,
) -> Published {
    use crate::model::delayed::{record_exchange, Held, DELAYED_STORE_ID};
    let mut published = Published {
        routed: true,
        accepted: true,
        on_disk: false,
        unroutable: None,
    };
    let due = vhost.timers.now_ms().saturating_add(hold.delay);
    let mut stored = None;
    let message = &prepared.message;
    if let (true, true, Some(storage)) = (
        hold.durable,
        message.persistent,
        vhost.persistence.storage(),
    ) {
        let field = record_exchange(&vhost.name, &message.exchange);
        match storage.append_delayed(message, field, DELAYED_STORE_ID, due, on_durable(true)) {
            Ok(r) => {
                stored = Some(r);
                published.on_disk = true;
            }
            Err(e) => {
                tracing::warn!(error = %e, "message store append of a delayed message failed");
                published.accepted = false;
                return published;
            }
        }
    }
    vhost.delayed.hold(
        due,
        Held {
            prepared,
            delay: hold.delay,
            stored,
        },
    );
    published
}

/// One publisher callback for several stores (streams, the message store): it runs once
/// every part has reported, with an error if any part failed. The creator holds a part of
/// its own until it has handed out all the others ([`Join::release`]).
struct Join {
    remaining: std::sync::atomic::AtomicUsize,
    failed: std::sync::atomic::AtomicBool,
    done: parking_lot::Mutex<Option<Callback>>,
}

impl Join {
    fn new(done: Callback) -> Arc<Self> {
        Arc::new(Join {
            remaining: std::sync::atomic::AtomicUsize::new(1),
            failed: std::sync::atomic::AtomicBool::new(false),
            done: parking_lot::Mutex::new(Some(done)),
        })
    }

    fn part(self: &Arc<Self>) -> Callback {
        self.remaining
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        let me = self.clone();
        Box::new(move |r| me.finish(r.is_ok()))
    }

    /// The creator's own part: everything has been handed out.
    fn release(&self) {
        self.finish(true);
    }

    fn finish(&self, ok: bool) {
        use std::sync::atomic::Ordering;
        if !ok {
            self.failed.store(true, Ordering::Release);
        }
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            if let Some(done) = self.done.lock().take() {
                // The callee only tells stored from not stored.
                done(if self.failed.load(Ordering::Acquire) {
                    Err(warren_journal::JournalError::Closed)
                } else {
                    Ok(())
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_join_reports_once_every_part_has() {
        use std::sync::atomic::{AtomicU32, Ordering};
        let outcome = |failing: bool| {
            let calls = Arc::new(AtomicU32::new(0));
            let ok = Arc::new(AtomicU32::new(0));
            let (c, o) = (calls.clone(), ok.clone());
            let join = Join::new(Box::new(move |r| {
                c.fetch_add(1, Ordering::SeqCst);
                if r.is_ok() {
                    o.fetch_add(1, Ordering::SeqCst);
                }
            }));
            let a = join.part();
            let b = join.part();
            join.release();
            a(Ok(()));
            assert_eq!(calls.load(Ordering::SeqCst), 0, "one part still out");
            b(if failing {
                Err(warren_journal::JournalError::Closed)
            } else {
                Ok(())
            });
            (calls.load(Ordering::SeqCst), ok.load(Ordering::SeqCst))
        };
        assert_eq!(outcome(false), (1, 1));
        assert_eq!(outcome(true), (1, 0), "a failed part fails the whole");
    }

    #[test]
    fn expiration_texts_follow_rabbitmq() {
        assert_eq!(validate_expiration(b"1500"), Ok(1500));
        let e = validate_expiration(b"abc").unwrap_err();
        assert_eq!(
            e.text,
            "PRECONDITION_FAILED - invalid expiration 'abc': no_integer"
        );
        let e = validate_expiration(b"12x").unwrap_err();
        assert_eq!(
            e.text,
            "PRECONDITION_FAILED - invalid expiration '12x': {leftover_string,\"x\"}"
        );
    }
}
