//! Opens the message store at start and puts every surviving persistent message back into
//! its durable queue, in its original order; expired ones leave as they would have.

use std::{collections::HashSet, path::Path, sync::Arc};

use tracing::{info, warn};
use warren_journal::{Journal, JournalError, JournalOptions, QueueId, SyncPolicy};
use warren_store::Message;

use crate::{
    model::broker::Broker,
    persist::storage::{to_ref, Storage},
    util::clock::now_ms,
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
    let mut live = HashSet::new();
    for vhost in broker.vhosts() {
        for q in vhost.topology.read().queues.values() {
            if let (true, Some(id)) = (q.is_recoverable(), q.store_id) {
                live.insert(QueueId(id));
            }
        }
    }
    let opts = JournalOptions {
        sync,
        ..Default::default()
    };
    let (journal, mut recovery) = Journal::open(dir, opts, &live)?;
    let report = &recovery.report;
    // Name the queues that lost messages to damaged records.
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
    let mut restored = 0usize;
    for vhost in broker.vhosts() {
        let queues: Vec<_> = vhost.topology.read().queues.values().cloned().collect();
        for q in queues {
            let Some(id) = q.store_id else { continue };
            // Taken out, so each queue's index is freed once the queue is rebuilt.
            let Some(messages) = recovery.queues.remove(&QueueId(id)) else {
                continue;
            };
            let now = now_ms();
            let mut state = q.state.lock();
            for m in &messages {
                // Past the memory budget only the header is read: the body stays on
                // disk (its checksum is checked when it is delivered).
                let record = if broker.persistence.over_budget(0) {
                    journal.read_header(m.location).map(|h| Recovered {
                        exchange: h.exchange,
                        routing_key: h.routing_key,
                        properties: h.properties,
                        body: None,
                        body_len: h.body_len,
                    })
                } else {
                    journal.read(m.location).map(|s| Recovered {
                        exchange: s.exchange,
                        routing_key: s.routing_key,
                        properties: s.properties,
                        body_len: s.body.len(),
                        body: Some(s.body),
                    })
                };
                let stored = match record {
                    Ok(s) => s,
                    Err(e) => {
                        warn!(queue = %q.name, error = %e, "unreadable message skipped");
                        journal.ack(QueueId(id), m.location);
                        continue;
                    }
                };
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
                let published = m.expires_at_ms.unwrap_or(now);
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
                    stored: Some(to_ref(m.location)),
                    paged_len: body.is_none().then_some(stored.body_len),
                    properties: stored.properties,
                    body: body.unwrap_or_default(),
                });
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
        }
    }
    info!(
        messages = restored,
        segments = report.segments_scanned,
        "message store recovered"
    );
    let _ = broker.persistence.attach_storage(Storage::new(journal));
    Ok(restored)
}
