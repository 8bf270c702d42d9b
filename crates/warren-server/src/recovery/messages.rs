//! Opens the message store at start and puts every surviving persistent message back into
//! its durable queue, in its original order; expired ones leave as they would have.

use std::{
    collections::{HashMap, HashSet},
    path::Path,
    sync::Arc,
};

use tracing::{info, warn};
use warren_journal::{
    Journal, JournalError, JournalOptions, Location, QueueId, RecoveredMessage, RecoveryReport,
    SyncPolicy,
};
use warren_store::Message;

use crate::{
    model::broker::Broker,
    model::queue::Queue,
    persist::storage::{to_ref, Storage},
};

/// A stored message as recovery reads it: the body only while memory allows.
struct Recovered {
    exchange: String,
    routing_key: String,
    properties: bytes::Bytes,
    body: Option<bytes::Bytes>,
    body_len: usize,
}

/// Opens the message store under `dir` and puts every surviving persistent message back
/// into its durable queue. Call after the metadata is restored.
pub fn open(broker: &Arc<Broker>, dir: &Path, sync: SyncPolicy) -> Result<usize, JournalError> {
    // Queue tails from the last run are stale: recovery below rebuilds every queue.
    let spill = dir.join("spill");
    crate::persist::spill::reset(&spill);
    let _ = broker.persistence.spill_root.set(spill);
    open_streams(broker, &dir.join("streams"));
    let live = recoverable_queue_ids(broker);
    // The writer's queue holds bodies already taken out of the memory budget (paged out):
    // keep it a sixteenth of the budget (8-64 MiB) so a flood stays near the budget.
    let budget = broker.config.memory_budget_mb.saturating_mul(1 << 20);
    let opts = JournalOptions {
        sync,
        max_pending_bytes: usize::try_from(budget / 16)
            .unwrap_or(usize::MAX)
            .clamp(8 << 20, 64 << 20),
        ..Default::default()
    };
    let (journal, mut recovery) = Journal::open(dir, opts, &live)?;
    warn_of_damage(broker, &recovery.report);
    let mut restored = 0usize;
    for vhost in broker.vhosts() {
        let queues: Vec<_> = vhost.topology.read().queues.values().cloned().collect();
        for q in queues {
            let Some(id) = q.store_id else { continue };
            // Taken out, so each queue's index is freed once the queue is rebuilt.
            let Some(messages) = recovery.queues.remove(&QueueId(id)) else {
                continue;
            };
            restored += restore_queue(broker, &journal, &q, QueueId(id), messages);
        }
    }
    let holder = QueueId(crate::model::delayed::DELAYED_STORE_ID);
    if let Some(held) = recovery.queues.remove(&holder) {
        let n = restore_delayed(broker, &journal, held);
        info!(messages = n, "delayed messages recovered");
    }
    info!(
        messages = restored,
        segments = recovery.report.segments_scanned,
        "message store recovered"
    );
    keep_orphans(broker, recovery.orphans);
    let _ = broker.persistence.attach_storage(Storage::new(journal));
    Ok(restored)
}

/// Opens the log of every recovered stream queue (each recovers its own segments), and
/// sets where new streams go.
fn open_streams(broker: &Arc<Broker>, root: &Path) {
    let _ = broker.persistence.stream_root.set(root.to_path_buf());
    for vhost in broker.vhosts() {
        let queues: Vec<_> = vhost.topology.read().queues.values().cloned().collect();
        for q in queues.into_iter().filter(|q| q.is_stream) {
            match q.open_stream(root) {
                Ok(()) => info!(
                    queue = %q.name,
                    messages = q.stream().map_or(0, |s| s.message_count()),
                    "stream recovered"
                ),
                Err(e) => {
                    warn!(queue = %q.name, error = %e, "stream log cannot be opened; the queue has no log until restart")
                }
            }
        }
    }
}

/// Messages of queues the metadata does not know (lost to damage, or a data directory
/// put together by hand): never deleted here; listed for the operator, who attaches them
/// to a queue or drops them (`/api/warren/orphans`).
fn keep_orphans(broker: &Broker, orphans: HashMap<QueueId, Vec<RecoveredMessage>>) {
    let mut kept = broker.persistence.orphans.lock();
    for (id, messages) in orphans {
        broker.persistence.saw_queue_id(id.0);
        warn!(
            store_id = id.0,
            messages = messages.len(),
            "persistent messages of a queue the metadata does not know are kept on disk; \
             GET /api/warren/orphans lists them, POST /api/warren/orphans/ID/attach moves them \
             into a queue, DELETE /api/warren/orphans/ID drops them"
        );
        kept.insert(id.0, messages.iter().map(|m| to_ref(m.location)).collect());
    }
}

/// The store ids of the queues whose messages survive a restart.
fn recoverable_queue_ids(broker: &Broker) -> HashSet<QueueId> {
    let mut live = HashSet::new();
    // The held messages of durable delayed exchanges, every vhost's.
    live.insert(QueueId(crate::model::delayed::DELAYED_STORE_ID));
    for vhost in broker.vhosts() {
        for q in vhost.topology.read().queues.values() {
            if let (true, Some(id)) = (q.is_recoverable(), q.store_id) {
                live.insert(QueueId(id));
            }
        }
    }
    live
}

/// Holds again the persistent messages durable delayed exchanges held, until the due
/// time each record keeps (one that passed while the broker was down is routed at the
/// timer task's first turn). A record whose vhost is gone is released. Returns how many
/// it held again.
fn restore_delayed(broker: &Broker, journal: &Journal, held: Vec<RecoveredMessage>) -> usize {
    use crate::model::{
        delayed::{delay_of, parse_record_exchange, Held, DELAYED_STORE_ID},
        ops::publish::{prepare, Publication},
    };
    let holder = QueueId(DELAYED_STORE_ID);
    let mut n = 0usize;
    for m in held {
        let restored = journal.read(m.location).ok().and_then(|s| {
            let (vhost, exchange) = parse_record_exchange(&s.exchange)?;
            let vhost = broker.vhost(vhost)?;
            let view = warren_codec::PropertiesView::scan(&s.properties).ok()?;
            let publication = Publication {
                exchange: Arc::from(exchange),
                routing_key: Arc::from(s.routing_key),
                mandatory: false,
                properties: s.properties,
                body: s.body,
            };
            let prepared = prepare(publication, &view).ok()?;
            let delay = delay_of(prepared.headers())?;
            Some((vhost, prepared, delay))
        });
        let Some((vhost, prepared, delay)) = restored else {
            warn!(location = %m.location, "held delayed message unreadable or of a vhost that is gone; dropped");
            journal.ack(holder, m.location);
            continue;
        };
        let due = m.expires_at_ms.unwrap_or(0);
        vhost.delayed.hold(
            due,
            Held {
                prepared,
                delay,
                stored: Some(to_ref(m.location)),
            },
        );
        n += 1;
    }
    n
}

/// Warns of messages lost to damaged records, naming the queues that lost them.
fn warn_of_damage(broker: &Broker, report: &RecoveryReport) {
    for (id, lost) in &report.lost {
        let name = broker.vhosts().into_iter().find_map(|v| {
            v.topology
                .read()
                .queues
                .values()
                .find(|q| q.store_id == Some(id.0))
                .map(|q| format!("queue '{}' in vhost '{}'", q.name, v.name))
        });
        warn!(
            queue = %name.unwrap_or_else(|| format!("deleted queue ({id})")),
            lost,
            "messages lost to damaged records in the message store"
        );
    }
    if report.torn_bytes_truncated > 0 || report.corrupt_records > 0 {
        warn!(
            torn_bytes = report.torn_bytes_truncated,
            corrupt_records = report.corrupt_records,
            "message store had damage; see the warnings above for the queues affected"
        );
    }
}

/// Puts `messages` back into `q` in order (unreadable ones are skipped and acked), then
/// expires what passed its deadline while the broker was down. Returns how many it put back.
fn restore_queue(
    broker: &Broker,
    journal: &Journal,
    q: &Arc<Queue>,
    id: QueueId,
    messages: Vec<RecoveredMessage>,
) -> usize {
    let mut restored = 0usize;
    let now = q.clock().now_ms();
    let mut state = q.state.lock();
    for m in &messages {
        let stored = match read_stored(broker, journal, m.location) {
            Ok(s) => s,
            Err(e) => {
                warn!(queue = %q.name, error = %e, "unreadable message skipped");
                journal.ack(id, m.location);
                continue;
            }
        };
        let (message, ttl) = rebuild_message(broker, q, m.location, stored);
        let published = m.expires_at_ms.unwrap_or(now);
        state.push_recovered(
            message,
            ttl.map(|t| published.saturating_add(t)),
            m.redelivered,
        );
        restored += 1;
    }
    drop(state);
    // Expire what passed its deadline while the broker was down.
    q.dispatch();
    q.arm_timers();
    restored
}

/// Reads a stored message; past the memory budget only the header is read: the body
/// stays on disk (its checksum is checked when it is delivered).
fn read_stored(
    broker: &Broker,
    journal: &Journal,
    location: Location,
) -> Result<Recovered, JournalError> {
    if broker.persistence.over_budget(0) {
        journal.read_header(location).map(|h| Recovered {
            exchange: h.exchange,
            routing_key: h.routing_key,
            properties: h.properties,
            body: None,
            body_len: h.body_len,
        })
    } else {
        journal.read(location).map(|s| Recovered {
            exchange: s.exchange,
            routing_key: s.routing_key,
            properties: s.properties,
            body_len: s.body.len(),
            body: Some(s.body),
        })
    }
}

/// The queue's message for a stored one, and its TTL: the shorter of the queue's and
/// the message's own expiration.
fn rebuild_message(
    broker: &Broker,
    q: &Queue,
    location: Location,
    stored: Recovered,
) -> (Arc<Message>, Option<u64>) {
    let view = warren_codec::PropertiesView::scan(&stored.properties).ok();
    let expiration = view
        .as_ref()
        .and_then(|v| v.expiration.clone())
        .and_then(|r| {
            std::str::from_utf8(stored.properties.get(r)?)
                .ok()?
                .parse()
                .ok()
        });
    let ttl = match (q.settings().config.message_ttl, expiration) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    // Beyond the memory budget the body stays on disk until delivery.
    let body = stored
        .body
        .filter(|b| !broker.persistence.over_budget(b.len()));
    let message = Arc::new(Message {
        exchange: Arc::from(stored.exchange),
        routing_key: Arc::from(stored.routing_key),
        priority: view.as_ref().and_then(|v| v.priority).unwrap_or(0),
        persistent: true,
        expiration,
        bcc: None,
        stored: Some(to_ref(location)),
        paged_len: body.is_none().then_some(stored.body_len),
        properties: stored.properties,
        body: body.unwrap_or_default(),
    });
    (message, ttl)
}
