//! How queues and other tasks reach connections: the handle of a connection (its inbox
//! and the counters that bound what it is sent), the events it receives, the channel state
//! queues read while dispatching, and a queue's view of a consumer. The sessions own the
//! other end of each of these; the model only holds and signals them.

use std::sync::{
    atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering},
    Arc,
};

use warren_store::{ConsumerId, Entry};

use crate::model::queue::Queue;

/// What a message-store sync completes on a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurableToken {
    Confirm(u64),
    TxCommit,
}

/// What other tasks send to a connection task.
#[derive(Debug)]
pub enum ConnEvent {
    Deliver(Delivery),
    /// The queue behind this consumer went away (basic.cancel to the client).
    Cancelled {
        channel: u16,
        consumer_tag: Arc<str>,
    },
    /// Close the connection with this reply (broker shutdown, management).
    ForceClose {
        code: u16,
        text: String,
    },
    /// The socket caught up with the write backlog: deliveries may flow again.
    Writable,
    /// The broker's resource alarms changed (alarm.rs): re-read them.
    AlarmsChanged,
    /// The message store synced (`stored`) or failed to store something of a channel.
    Durable {
        channel: u16,
        token: DurableToken,
        stored: bool,
    },
}

/// One message on its way to a consumer.
#[derive(Debug)]
pub struct Delivery {
    pub channel: u16,
    /// `None` for direct reply-to, which bypasses queues.
    pub queue: Option<Arc<Queue>>,
    pub consumer_id: ConsumerId,
    pub consumer_tag: Arc<str>,
    pub no_ack: bool,
    pub entry: Entry,
}

impl Delivery {
    /// Body bytes this delivery carries (in memory or paged out).
    pub fn body_size(&self) -> usize {
        self.entry.message.body_size()
    }
}

/// How other tasks reach one connection.
#[derive(Debug)]
pub struct ConnHandle {
    pub id: u64,
    pub inbox: crate::util::mailbox::Sender<ConnEvent>,
    /// Bytes handed to the writer task and not yet written to the socket.
    pub write_backlog: AtomicUsize,
    /// Set while the backlog is above the high-water mark: queues stop handing this
    /// connection deliveries, so a slow reader cannot make the broker buffer without bound.
    pub write_blocked: AtomicBool,
    /// Deliveries in the inbox the connection task has not handled yet...
    pending_deliveries: AtomicUsize,
    /// ...and their body bytes: with large bodies the count alone would let the inbox
    /// hold gigabytes that no queue accounts for.
    pending_delivery_bytes: AtomicUsize,
    /// A queue held a delivery back because of `pending_deliveries`: it must be asked to
    /// dispatch again once the connection catches up.
    inbox_full: AtomicBool,
    /// Resource-alarm state for the management API ([`crate::model::alarm::FlowState`]); not
    /// to be confused with `write_blocked`, which is about this socket's backlog.
    pub flow_state: std::sync::atomic::AtomicU8,
}

/// Deliveries waiting in a connection's inbox beyond which queues keep messages (where
/// they count as ready, expire and page out) instead of handing them over...
pub const INBOX_HIGH_WATER: usize = 4096;
/// ...until the connection has worked its inbox down to this.
pub const INBOX_LOW_WATER: usize = 1024;
/// Body bytes waiting in a connection's inbox beyond which queues keep messages (the
/// same rule by size)...
pub const INBOX_HIGH_BYTES: usize = 4 << 20;
/// ...until the connection has worked them down to this.
pub const INBOX_LOW_BYTES: usize = 1 << 20;

/// Backlog above which a connection gets no more deliveries...
pub const WRITE_HIGH_WATER: usize = 8 << 20;
/// ...until the writer has brought it back under this.
pub const WRITE_LOW_WATER: usize = 1 << 20;

impl ConnHandle {
    pub fn new(id: u64, inbox: crate::util::mailbox::Sender<ConnEvent>) -> Self {
        ConnHandle {
            id,
            inbox,
            write_backlog: AtomicUsize::new(0),
            write_blocked: AtomicBool::new(false),
            pending_deliveries: AtomicUsize::new(0),
            pending_delivery_bytes: AtomicUsize::new(0),
            inbox_full: AtomicBool::new(false),
            flow_state: std::sync::atomic::AtomicU8::new(0),
        }
    }

    pub fn flow_state(&self) -> crate::model::alarm::FlowState {
        crate::model::alarm::FlowState::from_u8(self.flow_state.load(Ordering::Relaxed))
    }

    /// Accounts bytes queued for writing; blocks deliveries past the high-water mark.
    pub fn queued(&self, bytes: usize) {
        let total = self.write_backlog.fetch_add(bytes, Ordering::AcqRel) + bytes;
        if total > WRITE_HIGH_WATER {
            self.write_blocked.store(true, Ordering::Release);
        }
    }

    /// Whether a queue may hand this connection another delivery. The flag is raised
    /// before the second look so that the connection, which lowers the count and then
    /// reads the flag, cannot miss it (both sides SeqCst: a Dekker-style handshake).
    pub fn has_delivery_room(&self) -> bool {
        if self.inbox_has_room() {
            return true;
        }
        self.inbox_full.store(true, Ordering::SeqCst);
        self.inbox_has_room()
    }

    fn inbox_has_room(&self) -> bool {
        self.pending_deliveries.load(Ordering::SeqCst) < INBOX_HIGH_WATER
            && self.pending_delivery_bytes.load(Ordering::SeqCst) < INBOX_HIGH_BYTES
    }

    /// Puts a delivery in the inbox; gives it back when the connection is gone.
    pub fn send_delivery(&self, delivery: Delivery) -> Result<(), Delivery> {
        let bytes = delivery.body_size();
        self.pending_deliveries.fetch_add(1, Ordering::SeqCst);
        self.pending_delivery_bytes
            .fetch_add(bytes, Ordering::SeqCst);
        match self.inbox.send(ConnEvent::Deliver(delivery)) {
            Ok(()) => Ok(()),
            Err(ev) => {
                self.pending_deliveries.fetch_sub(1, Ordering::SeqCst);
                self.pending_delivery_bytes
                    .fetch_sub(bytes, Ordering::SeqCst);
                match ev {
                    ConnEvent::Deliver(d) => Err(d),
                    // send gives back what it was given
                    _ => Ok(()),
                }
            }
        }
    }

    /// The connection task handled a delivery of `bytes` body bytes; true when queues
    /// held deliveries back and the inbox is now low enough to ask them again.
    pub fn delivery_handled(&self, bytes: usize) -> bool {
        let left = self
            .pending_deliveries
            .fetch_sub(1, Ordering::SeqCst)
            .saturating_sub(1);
        let left_bytes = self
            .pending_delivery_bytes
            .fetch_sub(bytes, Ordering::SeqCst)
            .saturating_sub(bytes);
        left <= INBOX_LOW_WATER
            && left_bytes <= INBOX_LOW_BYTES
            && self.inbox_full.load(Ordering::SeqCst)
            && self.inbox_full.swap(false, Ordering::SeqCst)
    }

    /// Accounts bytes written; true when this unblocked deliveries (the connection must
    /// then ask its queues to dispatch again).
    pub fn written(&self, bytes: usize) -> bool {
        let left = self
            .write_backlog
            .fetch_sub(bytes, Ordering::AcqRel)
            .saturating_sub(bytes);
        left < WRITE_LOW_WATER && self.write_blocked.swap(false, Ordering::AcqRel)
    }
}

/// Channel state that queues read while dispatching (on other tasks). There is no
/// channel.flow state: like RabbitMQ 3.x, warren refuses client-initiated flow control.
#[derive(Debug, Default)]
pub struct ChannelShared {
    pub closed: AtomicBool,
    /// basic.qos global=true: limit of unacked deliveries over all consumers of the channel.
    pub global_prefetch: AtomicU32,
    pub global_unacked: AtomicU32,
    /// The channel's message counters for the management API and Prometheus: one
    /// uncontended relaxed add each, bumped only by the connection task that owns the
    /// channel (publishes, confirms, deliveries written, gets, acks); readers sum them.
    pub stats: crate::model::stats::Stats,
    /// confirm.select was accepted (the API's `confirm`).
    pub confirm: AtomicBool,
    /// tx.select was accepted (the API's `transactional`).
    pub transactional: AtomicBool,
    /// Publishes not confirmed yet (the API's `messages_unconfirmed`).
    pub unconfirmed: std::sync::atomic::AtomicU64,
}

impl ChannelShared {
    pub fn new() -> Self {
        Self::default()
    }

    /// Reserves room for one delivery under the channel-wide limit; true if granted.
    pub(crate) fn try_reserve(&self, no_ack: bool) -> bool {
        if self.closed.load(Ordering::Acquire) {
            return false;
        }
        if no_ack {
            return true;
        }
        let limit = self.global_prefetch.load(Ordering::Acquire);
        if limit == 0 {
            self.global_unacked.fetch_add(1, Ordering::AcqRel);
            return true;
        }
        self.global_unacked
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .is_ok()
    }

    pub fn release(&self, count: u32) {
        let _ = self
            .global_unacked
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                Some(n.saturating_sub(count))
            });
    }
}

/// The queue's view of a consumer: where to send deliveries.
#[derive(Debug, Clone)]
pub struct ConsumerHandle {
    pub conn: Arc<ConnHandle>,
    pub channel: u16,
    pub shared: Arc<ChannelShared>,
    pub no_ack: bool,
}
