//! Stream queues (RabbitMQ 3.10's `x-queue-type: stream` over AMQP 0-9-1): an append-only
//! log ([`warren_journal::StreamLog`]) that consumers read from an offset of their choice.
//!
//! Each consumer is a cursor: the next offset to read and its credit (the prefetch count
//! it consumed with, less what it holds unacknowledged). An ack gives credit back and
//! removes nothing; nothing is requeued. Deliveries are read only up to what the log has
//! synced, so a consumer never sees a message a crash could take back.

use std::sync::{atomic::Ordering, Arc, Weak};

use parking_lot::Mutex;
use warren_journal::{JournalError, NewStreamRecord, StreamLog, StreamOptions, StreamRecord};
use warren_store::{ConsumerId, Entry, Message};

use crate::model::{
    args::{QueueSettings, StreamOffset},
    handles::{ConsumerHandle, Delivery},
    queue::Queue,
};

/// One consumer's cursor.
struct Cursor {
    id: ConsumerId,
    tag: Arc<str>,
    handle: ConsumerHandle,
    next: u64,
    credit: u32,
}

/// A stream queue's log and its readers.
pub struct StreamQueue {
    pub log: StreamLog,
    cursors: Mutex<Vec<Cursor>>,
    queue: Mutex<Weak<Queue>>,
}

impl std::fmt::Debug for StreamQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamQueue")
            .field("log", &self.log)
            .finish_non_exhaustive()
    }
}

/// The log options a queue's settings ask for.
pub fn log_options(settings: &QueueSettings) -> StreamOptions {
    StreamOptions {
        max_segment_bytes: settings
            .stream
            .max_segment_bytes
            .filter(|n| *n > 0)
            .unwrap_or(warren_journal::DEFAULT_MAX_SEGMENT_BYTES),
        max_bytes: settings.config.max_length_bytes,
        max_age_ms: settings.stream.max_age_ms,
        sync: true,
    }
}

impl StreamQueue {
    pub fn open(
        dir: &std::path::Path,
        settings: &QueueSettings,
    ) -> Result<Arc<Self>, JournalError> {
        let log = StreamLog::open(dir, log_options(settings))?;
        Ok(Arc::new(StreamQueue {
            log,
            cursors: Mutex::new(Vec::new()),
            queue: Mutex::new(Weak::new()),
        }))
    }

    /// Ties the stream to its queue: deliveries name the queue, and each synced batch is
    /// handed to the consumers.
    pub fn attach(self: &Arc<Self>, queue: &Arc<Queue>) {
        *self.queue.lock() = Arc::downgrade(queue);
        let me = Arc::downgrade(self);
        self.log.set_on_commit(Box::new(move || {
            if let Some(s) = me.upgrade() {
                s.dispatch();
            }
        }));
    }

    /// Appends a published message; `done` runs once it is synced.
    pub fn append(&self, message: &Message, done: warren_journal::Callback) {
        self.log.append(
            NewStreamRecord {
                exchange: message.exchange.to_string(),
                routing_key: message.routing_key.to_string(),
                properties: message.properties.clone(),
                body: message.body.clone(),
            },
            done,
        );
    }

    /// Where a consumer asking for `offset` starts.
    pub fn start_offset(&self, offset: StreamOffset) -> u64 {
        let first = self.log.first_offset();
        let end = self.log.end_offset();
        match offset {
            StreamOffset::First => first,
            StreamOffset::Last => self.log.last_chunk_offset(),
            StreamOffset::Next => end,
            StreamOffset::Offset(n) => n.clamp(first, end),
            StreamOffset::Timestamp(ms) => self.log.offset_for_timestamp(ms),
        }
    }

    pub fn add_consumer(
        &self,
        id: ConsumerId,
        tag: Arc<str>,
        handle: ConsumerHandle,
        start: u64,
        prefetch: u32,
    ) {
        self.cursors.lock().push(Cursor {
            id,
            tag,
            handle,
            next: start,
            credit: prefetch,
        });
    }

    pub fn remove_consumer(&self, id: ConsumerId) {
        self.cursors.lock().retain(|c| c.id != id);
    }

    /// Acks (or deliveries that went nowhere) give a consumer credit back.
    pub fn credit(&self, id: Option<ConsumerId>, count: u32) {
        if let Some(id) = id {
            if let Some(c) = self.cursors.lock().iter_mut().find(|c| c.id == id) {
                c.credit = c.credit.saturating_add(count);
            }
        }
        self.dispatch();
    }

    /// Messages in the stream, for the management API.
    pub fn message_count(&self) -> u64 {
        self.log.len()
    }

    /// Hands each consumer with credit what it has not read yet, up to the synced end.
    pub fn dispatch(&self) {
        let Some(queue) = self.queue.lock().upgrade() else {
            return;
        };
        if queue.is_deleted() {
            return;
        }
        let end = self.log.end_offset();
        let first = self.log.first_offset();
        let mut cursors = self.cursors.lock();
        let mut gone = Vec::new();
        for c in cursors.iter_mut() {
            // Retention may have removed what this consumer had not read yet.
            c.next = c.next.max(first);
            while c.credit > 0 && c.next < end {
                let h = &c.handle;
                // The channel's global prefetch is reserved last (it counts).
                let room = !h.conn.write_blocked.load(Ordering::Acquire)
                    && h.conn.has_delivery_room()
                    && h.shared.try_reserve(false);
                if !room {
                    break;
                }
                let offset = c.next;
                c.next += 1;
                let record = match self.log.read(offset) {
                    Ok(Some(r)) => r,
                    Ok(None) => {
                        h.shared.release(1);
                        continue;
                    }
                    Err(e) => {
                        tracing::error!(queue = %queue.name, offset, error = %e, "stream record unreadable; skipped");
                        h.shared.release(1);
                        continue;
                    }
                };
                queue.stats.inc(crate::model::stats::Stat::Deliver); // management stats
                let delivery = Delivery {
                    channel: h.channel,
                    queue: Some(queue.clone()),
                    consumer_id: c.id,
                    consumer_tag: c.tag.clone(),
                    no_ack: false,
                    entry: entry_of(&record),
                };
                if h.conn.send_delivery(delivery).is_err() {
                    gone.push(c.id);
                    break;
                }
                c.credit -= 1;
            }
        }
        if !gone.is_empty() {
            cursors.retain(|c| !gone.contains(&c.id));
        }
    }
}

/// A stream record as a queue entry: `seq` is its offset (delivered as the
/// `x-stream-offset` header).
fn entry_of(r: &StreamRecord) -> Entry {
    Entry {
        message: Arc::new(Message {
            exchange: Arc::from(r.exchange.as_str()),
            routing_key: Arc::from(r.routing_key.as_str()),
            properties: r.properties.clone(),
            body: r.body.clone(),
            persistent: false,
            priority: 0,
            expiration: None,
            bcc: None,
            stored: None,
            paged_len: None,
        }),
        seq: r.offset,
        redelivered: false,
        expires_at: None,
        delivery_count: 0,
    }
}
