//! A queue as the server holds it: its declaration, and its [`QueueState`] behind a mutex.
//!
//! The mutex is a plain synchronous one: no `.await` happens while it is held and every
//! critical section is a handful of pointer moves, so an async lock would only add cost.
//! Publishers push and dispatch from their own connection task; deliveries travel to the
//! consumer's connection task through its inbox, where delivery tags are assigned.

use std::sync::{
    atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering},
    Arc,
};

use amq_protocol::types::FieldTable;
use parking_lot::Mutex;
use tokio::sync::mpsc;
use warren_store::{ConsumerId, Entry, Message, QueueState};

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

/// How other tasks reach one connection.
#[derive(Debug)]
pub struct ConnHandle {
    pub id: u64,
    pub inbox: mpsc::UnboundedSender<ConnEvent>,
    /// Bytes handed to the writer task and not yet written to the socket.
    pub write_backlog: AtomicUsize,
    /// Set while the backlog is above the high-water mark: queues stop handing this
    /// connection deliveries, so a slow reader cannot make the broker buffer without bound.
    pub write_blocked: AtomicBool,
}

/// Backlog above which a connection gets no more deliveries...
pub const WRITE_HIGH_WATER: usize = 8 << 20;
/// ...until the writer has brought it back under this.
pub const WRITE_LOW_WATER: usize = 1 << 20;

impl ConnHandle {
    pub fn new(id: u64, inbox: mpsc::UnboundedSender<ConnEvent>) -> Self {
        ConnHandle {
            id,
            inbox,
            write_backlog: AtomicUsize::new(0),
            write_blocked: AtomicBool::new(false),
        }
    }

    /// Accounts bytes queued for writing; blocks deliveries past the high-water mark.
    pub fn queued(&self, bytes: usize) {
        let total = self.write_backlog.fetch_add(bytes, Ordering::AcqRel) + bytes;
        if total > WRITE_HIGH_WATER {
            self.write_blocked.store(true, Ordering::Release);
        }
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
}

impl ChannelShared {
    pub fn new() -> Self {
        Self::default()
    }

    /// Reserves room for one delivery under the channel-wide limit; true if granted.
    fn try_reserve(&self, no_ack: bool) -> bool {
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

#[derive(Debug)]
pub struct Queue {
    pub name: Arc<str>,
    pub vhost: Arc<str>,
    pub durable: bool,
    pub auto_delete: bool,
    /// Connection id of the owner of an exclusive queue.
    pub exclusive_owner: Option<u64>,
    pub arguments: FieldTable,
    pub state: Mutex<QueueState<ConsumerHandle>>,
    pub deleted: AtomicBool,
    /// Auto-delete applies only once the queue has had a consumer.
    pub had_consumer: AtomicBool,
    /// Message counters for the management API (stats.rs).
    pub stats: crate::stats::Stats,
}

impl Queue {
    pub fn new(
        name: Arc<str>,
        vhost: Arc<str>,
        durable: bool,
        auto_delete: bool,
        exclusive_owner: Option<u64>,
        arguments: FieldTable,
    ) -> Self {
        Queue {
            name,
            vhost,
            durable,
            auto_delete,
            exclusive_owner,
            arguments,
            state: Mutex::new(QueueState::new()),
            deleted: AtomicBool::new(false),
            had_consumer: AtomicBool::new(false),
            stats: crate::stats::Stats::default(),
        }
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    /// Enqueues a message and hands out whatever can be delivered now.
    pub fn publish(self: &Arc<Self>, message: Arc<Message>) {
        let mut state = self.state.lock();
        state.push(message);
        self.stats.inc(crate::stats::Stat::Publish); // management stats
        self.dispatch_locked(&mut state);
    }

    /// Hands ready messages to consumers with credit.
    pub fn dispatch(self: &Arc<Self>) {
        let mut state = self.state.lock();
        self.dispatch_locked(&mut state);
    }

    fn dispatch_locked(self: &Arc<Self>, state: &mut QueueState<ConsumerHandle>) {
        while let Some(d) = state.dispatch(|h| {
            !h.conn.write_blocked.load(Ordering::Acquire) && h.shared.try_reserve(h.no_ack)
        }) {
            let conn = d.consumer.handle.conn.clone();
            // management stats
            self.stats.inc(if d.consumer.no_ack {
                crate::stats::Stat::DeliverNoAck
            } else {
                crate::stats::Stat::Deliver
            });
            if d.entry.redelivered {
                self.stats.inc(crate::stats::Stat::Redeliver);
            }
            let delivery = Delivery {
                channel: d.consumer.handle.channel,
                queue: Some(self.clone()),
                consumer_id: d.consumer.id,
                consumer_tag: d.consumer.tag.clone(),
                no_ack: d.consumer.no_ack,
                entry: d.entry,
            };
            if let Err(mpsc::error::SendError(ConnEvent::Deliver(back))) =
                conn.inbox.send(ConnEvent::Deliver(delivery))
            {
                // The consumer's connection is gone; its cleanup removes the consumer.
                // Put the message back and stop handing messages to that consumer now.
                let id = back.consumer_id;
                if back.no_ack {
                    state.reinsert(vec![back.entry]);
                } else {
                    state.requeue(Some(id), vec![back.entry]);
                }
                state.remove_consumer(id);
            }
        }
    }

    /// Settles `count` deliveries and lets more flow.
    pub fn settle(self: &Arc<Self>, consumer: Option<ConsumerId>, count: u32) {
        let mut state = self.state.lock();
        state.settle(consumer, count);
        self.dispatch_locked(&mut state);
    }

    /// Returns deliveries to the queue (marked redelivered) and lets them flow again.
    pub fn requeue(self: &Arc<Self>, consumer: Option<ConsumerId>, entries: Vec<Entry>) {
        let mut state = self.state.lock();
        state.requeue(consumer, entries);
        self.dispatch_locked(&mut state);
    }

    pub fn counts(&self) -> (u32, u32) {
        let state = self.state.lock();
        (state.ready_len() as u32, state.consumer_count() as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_backlog_blocks_above_high_water_and_unblocks_below_low_water() {
        let (tx, _rx) = mpsc::unbounded_channel();
        let h = ConnHandle::new(1, tx);
        h.queued(WRITE_HIGH_WATER);
        assert!(!h.write_blocked.load(Ordering::Acquire));
        h.queued(1);
        assert!(h.write_blocked.load(Ordering::Acquire));
        // Written down to just above the low-water mark: still blocked.
        assert!(!h.written(WRITE_HIGH_WATER + 1 - WRITE_LOW_WATER));
        assert!(h.write_blocked.load(Ordering::Acquire));
        // Below it: unblocked once, and only once.
        assert!(h.written(1));
        assert!(!h.write_blocked.load(Ordering::Acquire));
        assert!(!h.written(0));
    }

    #[test]
    fn channel_prefetch_is_a_shared_limit() {
        let shared = ChannelShared::new();
        shared.global_prefetch.store(2, Ordering::Release);
        assert!(shared.try_reserve(false));
        assert!(shared.try_reserve(false));
        assert!(!shared.try_reserve(false));
        // no-ack deliveries do not count.
        assert!(shared.try_reserve(true));
        shared.release(1);
        assert!(shared.try_reserve(false));
        shared.closed.store(true, Ordering::Release);
        assert!(!shared.try_reserve(true));
    }
}
