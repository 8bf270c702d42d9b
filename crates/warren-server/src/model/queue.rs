//! A queue as the server holds it: its declaration, and its [`QueueState`] behind a mutex.
//!
//! The mutex is a plain synchronous one: no `.await` happens while it is held and every
//! critical section is a handful of pointer moves, so an async lock would only add cost.
//! Publishers push and dispatch from their own connection task; deliveries travel to the
//! consumer's connection task through its inbox, where delivery tags are assigned.

use std::sync::{
    atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering},
    Arc, Weak,
};

use amq_protocol::types::FieldTable;
use parking_lot::Mutex;
use warren_store::{ConsumerId, Dead, DeathReason, Entry, Message, PushOutcome, QueueState};

use crate::{
    model::args::{QueueKind, QueueSettings},
    model::deadletter::dead_letter,
    model::handles::{ConsumerHandle, Delivery},
    model::stream::StreamQueue,
    model::timers::Timers,
    model::vhost::VHost,
    persist::storage::Storage,
    persist::Persistence,
    util::clock::Clock,
};

/// The time to run queue rules at: the wall clock when some deadline is involved, else
/// 0 (nothing can expire, and reading the clock per message costs measurable time).
fn clock_for(clock: &Clock, state: &QueueState<ConsumerHandle>, message_expires: bool) -> u64 {
    if message_expires || state.config().message_ttl.is_some() || state.next_deadline().is_some() {
        clock.now_ms()
    } else {
        0
    }
}

pub struct Queue {
    pub name: Arc<str>,
    pub vhost: Arc<str>,
    pub durable: bool,
    pub auto_delete: bool,
    /// Connection id of the owner of an exclusive queue.
    pub exclusive_owner: Option<u64>,
    pub arguments: FieldTable,
    /// What the arguments (and the queue's policy) mean: type, limits, TTLs,
    /// dead-lettering. Replaced when a policy changes.
    settings: parking_lot::RwLock<Arc<QueueSettings>>,
    pub state: Mutex<QueueState<ConsumerHandle>>,
    pub deleted: AtomicBool,
    /// Auto-delete applies only once the queue has had a consumer.
    pub had_consumer: AtomicBool,
    /// Id in the message store (durable queues, when the broker has a data directory).
    pub store_id: Option<u64>,
    persistence: Arc<Persistence>,
    /// The vhost it lives in, for dead-lettering and `x-expires`.
    home: Weak<VHost>,
    timers: Arc<Timers>,
    /// Earliest deadline registered with the timers (u64::MAX: none).
    scheduled: AtomicU64,
    /// Last use (consume, get, declare) in wall-clock ms, for `x-expires`.
    last_used: AtomicU64,
    /// Message counters for the management API (stats.rs).
    pub stats: crate::model::stats::Stats,
    /// Why publishers to this queue pause (RabbitMQ's credit flow), one of the `FLOW_*`
    /// reasons: set by a dispatch that left a backlog past the high-water mark (by count
    /// or bytes) because the consumers' connections could take no more (full inbox or
    /// socket backlog), or because consumers with a large prefetch, delivered to within
    /// the last second, were all at their limit. Publishers pause until it is relieved.
    flow_pressure: AtomicU8,
    /// Deliveries made, and when (ms on `flow_clock`) the count last passed a multiple of
    /// `ACTIVE_STAMP_EVERY` (or rose from zero): whether consumers are draining the queue.
    delivered: AtomicU64,
    last_active: AtomicU64,
    /// A stream queue's log and readers (`x-queue-type: stream`), once opened: at
    /// declaration, or for a recovered stream when the data directory is opened.
    stream: std::sync::OnceLock<Arc<StreamQueue>>,
    /// Declared as a stream (the type never changes).
    pub is_stream: bool,
}

/// Ready messages at which a queue whose deliveries back up slows its publishers...
pub const FLOW_HIGH_WATER: usize = 8192;
/// ...until it is down to this (or has no consumer left).
pub const FLOW_LOW_WATER: usize = 4096;
/// The same marks by body bytes, so that large messages cannot pile up gigabytes before
/// the count says anything.
pub const FLOW_HIGH_BYTES: usize = 64 << 20;
pub const FLOW_LOW_BYTES: usize = 32 << 20;
/// Prefetch (summed over the queue's consumers; no-ack or unlimited counts as large) from
/// which consumers at their limit hold publishers back: they take messages in bulk, and
/// a backlog past the high-water mark only adds latency. A worker with a small prefetch
/// (a slow task consumer) does not: its queue is a buffer and grows, as RabbitMQ lets it.
pub const FLOW_BULK_PREFETCH: u64 = 100;
/// Consumers count as draining the queue while it made `ACTIVE_STAMP_EVERY` deliveries
/// within this long (or just started): slower ones (a worker at hundreds of messages a
/// second, one that stopped acking) do not hold publishers back.
pub const FLOW_IDLE_MS: u64 = 1000;
/// Deliveries between two readings of the clock for `last_active` (so the clock is read
/// once per this many deliveries, not per message).
const ACTIVE_STAMP_EVERY: u64 = 512;

const FLOW_NONE: u8 = 0;
/// The consumers' connections could take no more.
const FLOW_CONNECTIONS_FULL: u8 = 1;
/// Consumers with a large prefetch were all at their limit.
const FLOW_CONSUMERS_BUSY: u8 = 2;

/// The queue's consumers' prefetch, summed (no-ack or unlimited counts as large).
fn bulk_prefetch(state: &QueueState<ConsumerHandle>) -> u64 {
    state
        .consumers()
        .map(|c| {
            if c.no_ack || c.prefetch == 0 {
                FLOW_BULK_PREFETCH
            } else {
                u64::from(c.prefetch)
            }
        })
        .sum()
}

/// Milliseconds on a monotonic clock, for consumer activity (independent of the TTL clock).
fn flow_clock() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("name", &self.name)
            .field("vhost", &self.vhost)
            .finish_non_exhaustive()
    }
}

/// How a queue is declared.
pub struct QueueDecl {
    pub name: Arc<str>,
    pub durable: bool,
    pub auto_delete: bool,
    pub exclusive_owner: Option<u64>,
    pub arguments: FieldTable,
    pub settings: QueueSettings,
    /// Message-store id; `None` for queues whose messages never go to disk.
    pub store_id: Option<u64>,
}

impl Queue {
    pub fn new(decl: QueueDecl, home: &Arc<VHost>) -> Arc<Self> {
        let mut state = QueueState::with_config(decl.settings.config.clone());
        state.set_memory_accounts(
            home.persistence.resident.clone(),
            home.persistence.budget.clone(),
        );
        state.set_tail_store(
            Box::new(crate::persist::spill::FileTail::new(
                home.persistence.spill_root.clone(),
            )),
            warren_store::DEFAULT_TAIL_WINDOW,
        );
        let is_stream = decl.settings.kind == QueueKind::Stream;
        let queue = Arc::new(Queue {
            is_stream,
            stream: std::sync::OnceLock::new(),
            name: decl.name,
            vhost: home.name.clone(),
            durable: decl.durable,
            auto_delete: decl.auto_delete,
            exclusive_owner: decl.exclusive_owner,
            arguments: decl.arguments,
            state: Mutex::new(state),
            settings: parking_lot::RwLock::new(Arc::new(decl.settings)),
            deleted: AtomicBool::new(false),
            had_consumer: AtomicBool::new(false),
            stats: crate::model::stats::Stats::default(),
            store_id: decl.store_id,
            persistence: home.persistence.clone(),
            home: Arc::downgrade(home),
            timers: home.timers.clone(),
            scheduled: AtomicU64::new(u64::MAX),
            last_used: AtomicU64::new(home.timers.now_ms()),
            flow_pressure: AtomicU8::new(FLOW_NONE),
            delivered: AtomicU64::new(0),
            last_active: AtomicU64::new(0),
        });
        queue.touch();
        queue
    }

    /// The stream's log and readers, for a stream queue whose log is open.
    pub fn stream(&self) -> Option<&Arc<StreamQueue>> {
        self.stream.get()
    }

    /// Opens a stream queue's log under `root` (one directory per queue, named by its
    /// store id) and ties it to the queue.
    pub fn open_stream(
        self: &Arc<Self>,
        root: &std::path::Path,
    ) -> Result<(), warren_journal::JournalError> {
        if !self.is_stream || self.stream.get().is_some() {
            return Ok(());
        }
        let dir_name = match self.store_id {
            Some(id) => format!("{id}"),
            None => format!(
                "{}-{}",
                std::process::id(),
                crate::util::names::random_suffix()
            ),
        };
        let stream = StreamQueue::open(&root.join(dir_name), &self.settings())?;
        stream.attach(self);
        let _ = self.stream.set(stream);
        Ok(())
    }

    /// A stream queue that never became visible goes without a trace on disk.
    pub fn drop_stream(&self) {
        if let Some(stream) = self.stream() {
            stream.log.delete();
        }
    }

    /// The clock its TTLs and `x-expires` are read on.
    pub fn clock(&self) -> &Clock {
        self.timers.clock()
    }

    pub fn home(&self) -> Option<Arc<VHost>> {
        self.home.upgrade()
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    pub fn settings(&self) -> Arc<QueueSettings> {
        self.settings.read().clone()
    }

    /// A policy changed what applies to this queue: new limits take effect at once
    /// (a drop-head limit drops what is now over it), new TTLs for new messages.
    pub fn update_settings(self: &Arc<Self>, settings: QueueSettings) {
        if *self.settings() == settings {
            return;
        }
        if let Some(stream) = self.stream() {
            stream
                .log
                .set_options(crate::model::stream::log_options(&settings));
            *self.settings.write() = Arc::new(settings);
            return;
        }
        let now = self.timers.now_ms();
        let mut dead = Vec::new();
        {
            let mut state = self.state.lock();
            state.set_config(settings.config.clone(), &mut dead);
            *self.settings.write() = Arc::new(settings);
            self.dispatch_locked(&mut state, now, &mut dead);
        }
        dead_letter(self, dead);
        self.arm_timers();
    }

    pub fn is_quorum(&self) -> bool {
        self.settings().kind == QueueKind::Quorum
    }

    fn storage(&self) -> Option<(&Storage, u64)> {
        let id = self.store_id?;
        Some((self.persistence.storage()?, id))
    }

    /// The message left this queue for good: release its place on disk.
    pub fn release(&self, message: &Message) {
        if let (Some((storage, id)), Some(r)) = (self.storage(), message.stored) {
            storage.ack(id, r);
        }
    }

    /// A stored message was handed to a client: a restart redelivers it as such.
    pub fn mark_delivered(&self, message: &Message) {
        if !self.is_recoverable() || !message.persistent {
            return;
        }
        if let (Some((storage, id)), Some(r)) = (self.storage(), message.stored) {
            storage.mark_delivered(id, r);
        }
    }

    /// Durable and not exclusive: its persistent messages come back after a restart.
    pub fn is_recoverable(&self) -> bool {
        self.durable && self.exclusive_owner.is_none() && self.store_id.is_some()
    }

    /// The body of a message in this queue, read back from disk if it was paged out.
    pub fn load_body(&self, message: &Message) -> Option<bytes::Bytes> {
        if !message.is_paged() {
            return Some(message.body.clone());
        }
        let (storage, _) = self.storage()?;
        match storage.read_body(message.stored?) {
            Ok(body) => Some(body),
            Err(e) => {
                tracing::error!(queue = %self.name, error = %e, "paged-out message unreadable; dropped");
                None
            }
        }
    }

    /// Consumer acks: settled, and released on disk.
    pub fn ack(self: &Arc<Self>, consumer: Option<ConsumerId>, entries: Vec<Entry>) {
        if let Some(stream) = self.stream() {
            stream.credit(consumer, entries.len() as u32);
            return;
        }
        for e in &entries {
            self.release(&e.message);
        }
        self.settle(consumer, entries.len() as u32);
    }

    /// Drops every ready message; returns how many.
    pub fn purge(&self) -> u32 {
        if self.is_stream {
            return 0;
        }
        let purged = self.state.lock().purge_each(|e| self.release(&e.message));
        purged as u32
    }

    /// The queue is gone: its messages on disk go with it.
    pub fn forget_stored(&self) {
        if let Some(stream) = self.stream() {
            stream.log.delete();
            return;
        }
        if let Some((storage, id)) = self.storage() {
            storage.forget_queue(id);
        }
    }

    /// Arms the expiry timer for the earliest deadline, and `x-expires`.
    pub fn arm_timers(self: &Arc<Self>) {
        let next = self.state.lock().next_deadline();
        if let Some(next) = next {
            self.schedule(next);
        }
        self.touch();
    }

    /// Records a use for `x-expires` and arms its timer.
    pub fn touch(self: &Arc<Self>) {
        if let Some(expires) = self.settings().expires {
            let now = self.timers.now_ms();
            self.last_used.store(now, Ordering::Release);
            self.schedule(now.saturating_add(expires));
        }
    }

    fn schedule(self: &Arc<Self>, at: u64) {
        let earlier = self
            .scheduled
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
                (at < cur).then_some(at)
            })
            .is_ok();
        if earlier {
            self.timers.schedule(at, self);
        }
    }

    /// After a change: expire what is due now and arm the timer for the next deadline.
    fn after_change(
        self: &Arc<Self>,
        state: &mut QueueState<ConsumerHandle>,
        now: u64,
        dead: &mut Vec<Dead>,
    ) {
        if let Some(next) = state.next_deadline() {
            if next <= now {
                state.expire(now, dead);
                self.dispatch_locked(state, now, dead);
            }
            if let Some(next) = state.next_deadline() {
                self.schedule(next);
            }
        }
    }

    /// Enqueues a message and hands out whatever can be delivered now. Messages the
    /// queue drops on the way are dead-lettered.
    pub fn publish(self: &Arc<Self>, message: Arc<Message>) -> PushOutcome {
        let (outcome, dead) = self.publish_collect(message);
        dead_letter(self, dead);
        outcome
    }

    /// [`Queue::publish`], returning the dropped messages instead of dead-lettering them.
    pub fn publish_collect(self: &Arc<Self>, message: Arc<Message>) -> (PushOutcome, Vec<Dead>) {
        if let Some(stream) = self.stream() {
            // Dead-lettered into a stream: appended, nobody waits for the sync.
            stream.append(&message, Box::new(|_| {}));
            self.stats.inc(crate::model::stats::Stat::Publish); // management stats
            return (PushOutcome::Enqueued, Vec::new());
        }
        let mut dead = Vec::new();
        let mut state = self.state.lock();
        let now = clock_for(self.timers.clock(), &state, message.expiration.is_some());
        let before = dead.len();
        let outcome = state.push(message.clone(), now, &mut dead);
        self.stats.inc(crate::model::stats::Stat::Publish); // management stats
        let refused_quietly = outcome == PushOutcome::Rejected && dead.len() == before;
        self.dispatch_locked(&mut state, now, &mut dead);
        self.after_change(&mut state, now, &mut dead);
        drop(state);
        // A refused message that is not dead-lettered (which releases it) leaves now.
        if refused_quietly {
            self.release(&message);
        }
        (outcome, dead)
    }

    /// Whether publishers to this queue should pause (see `flow_pressure`).
    pub fn flow_pressured(&self) -> bool {
        self.flow_pressure.load(Ordering::Relaxed) != FLOW_NONE
    }

    /// Whether a publisher paused on this queue may go on: the backlog went down, the
    /// consumers left, or (when they were busy) they stopped draining it.
    pub fn flow_relieved(&self) -> bool {
        let reason = self.flow_pressure.load(Ordering::Relaxed);
        if reason == FLOW_NONE || self.is_deleted() {
            return true;
        }
        let (ready, bytes, consumers) = {
            let state = self.state.lock();
            (
                state.ready_len(),
                state.ready_bytes(),
                state.consumer_count(),
            )
        };
        let relieved = (ready < FLOW_LOW_WATER && bytes < FLOW_LOW_BYTES)
            || consumers == 0
            || (reason == FLOW_CONSUMERS_BUSY && !self.recently_active());
        if relieved {
            self.flow_pressure.store(FLOW_NONE, Ordering::Relaxed);
        }
        relieved
    }

    /// Whether the queue delivered to a consumer within the last `FLOW_IDLE_MS`.
    fn recently_active(&self) -> bool {
        let last = self.last_active.load(Ordering::Relaxed);
        last != 0 && flow_clock().saturating_sub(last) <= FLOW_IDLE_MS
    }

    /// Counts deliveries made by one dispatch (under the state lock).
    fn note_delivered(&self, n: u64) {
        let before = self.delivered.load(Ordering::Relaxed);
        let after = before + n;
        self.delivered.store(after, Ordering::Relaxed);
        if before == 0 || before / ACTIVE_STAMP_EVERY != after / ACTIVE_STAMP_EVERY {
            // Never 0 once stamped: 0 means "never delivered".
            self.last_active
                .store(flow_clock().max(1), Ordering::Relaxed);
        }
    }

    /// Hands ready messages to consumers with credit.
    pub fn dispatch(self: &Arc<Self>) {
        if let Some(stream) = self.stream() {
            stream.dispatch();
            return;
        }
        let mut dead = Vec::new();
        {
            let mut state = self.state.lock();
            let now = clock_for(self.timers.clock(), &state, false);
            self.dispatch_locked(&mut state, now, &mut dead);
        }
        dead_letter(self, dead);
    }

    fn dispatch_locked(
        self: &Arc<Self>,
        state: &mut QueueState<ConsumerHandle>,
        now: u64,
        dead: &mut Vec<Dead>,
    ) {
        // Whether a consumer with credit was passed over because its connection could
        // take no more: the broker's delivery path is the bottleneck.
        let mut connection_full = false;
        let mut delivered_now = 0;
        while let Some(d) = state.dispatch(now, dead, |h| {
            let room = !h.conn.write_blocked.load(Ordering::Acquire) && h.conn.has_delivery_room();
            if !room {
                connection_full = true;
            }
            room && h.shared.try_reserve(h.no_ack)
        }) {
            let conn = d.consumer.handle.conn.clone();
            delivered_now += 1;
            // management stats (the channel counts its own when it writes the delivery)
            self.stats.inc(if d.consumer.no_ack {
                crate::model::stats::Stat::DeliverNoAck
            } else {
                crate::model::stats::Stat::Deliver
            });
            if d.entry.redelivered {
                self.stats.inc(crate::model::stats::Stat::Redeliver);
            }
            let delivery = Delivery {
                channel: d.consumer.handle.channel,
                queue: Some(self.clone()),
                consumer_id: d.consumer.id,
                consumer_tag: d.consumer.tag.clone(),
                no_ack: d.consumer.no_ack,
                entry: d.entry,
            };
            if let Err(back) = conn.send_delivery(delivery) {
                // The consumer's connection is gone; its cleanup removes the consumer.
                // Put the message back and stop handing messages to that consumer now.
                let id = back.consumer_id;
                if !back.no_ack {
                    state.settle(Some(id), 1);
                }
                state.reinsert(vec![back.entry]);
                state.remove_consumer(id);
            }
        }
        if delivered_now > 0 {
            self.note_delivered(delivered_now);
        }
        let backlog =
            state.ready_len() >= FLOW_HIGH_WATER || state.ready_bytes() >= FLOW_HIGH_BYTES;
        let reason = if !backlog {
            FLOW_NONE
        } else if connection_full {
            FLOW_CONNECTIONS_FULL
        } else if bulk_prefetch(state) >= FLOW_BULK_PREFETCH && self.recently_active() {
            FLOW_CONSUMERS_BUSY
        } else {
            FLOW_NONE
        };
        if reason != self.flow_pressure.load(Ordering::Relaxed) {
            self.flow_pressure.store(reason, Ordering::Relaxed);
        }
    }

    /// basic.get: the head message, and how many remain.
    pub fn get(self: &Arc<Self>, track: bool) -> Option<(Entry, u32)> {
        let now = self.timers.now_ms();
        let mut dead = Vec::new();
        let got = {
            let mut state = self.state.lock();
            let got = state
                .pop_for_get(now, &mut dead, track)
                .map(|e| (e, state.ready_len() as u32));
            self.after_change(&mut state, now, &mut dead);
            got
        };
        dead_letter(self, dead);
        self.touch();
        got
    }

    /// Up to `max` ready messages in delivery order, left in place and unchanged; what
    /// has expired by now is expired (and dead-lettered) first, so it does not show.
    pub fn peek(self: &Arc<Self>, max: usize) -> Vec<Entry> {
        let mut dead = Vec::new();
        let seen = {
            let mut state = self.state.lock();
            if state.next_deadline().is_some() {
                state.expire(self.timers.now_ms(), &mut dead);
            }
            state.peek(max)
        };
        dead_letter(self, dead);
        seen
    }

    /// Settles `count` deliveries and lets more flow.
    pub fn settle(self: &Arc<Self>, consumer: Option<ConsumerId>, count: u32) {
        if let Some(stream) = self.stream() {
            stream.credit(consumer, count);
            return;
        }
        let mut dead = Vec::new();
        {
            let mut state = self.state.lock();
            let now = clock_for(self.timers.clock(), &state, false);
            state.settle(consumer, count);
            self.dispatch_locked(&mut state, now, &mut dead);
        }
        dead_letter(self, dead);
    }

    /// basic.reject / basic.nack without requeue: settled, and dead-lettered when the
    /// queue has a dead-letter exchange.
    pub fn reject(self: &Arc<Self>, consumer: Option<ConsumerId>, entries: Vec<Entry>) {
        if let Some(stream) = self.stream() {
            stream.credit(consumer, entries.len() as u32);
            return;
        }
        let count = entries.len() as u32;
        self.settle(consumer, count);
        if self.settings().dead_letter_exchange.is_some() {
            let dead = entries
                .into_iter()
                .map(|entry| Dead {
                    entry,
                    reason: DeathReason::Rejected,
                })
                .collect();
            dead_letter(self, dead);
        }
    }

    /// Returns deliveries to the queue (marked redelivered) and lets them flow again.
    pub fn requeue(self: &Arc<Self>, consumer: Option<ConsumerId>, entries: Vec<Entry>) {
        if let Some(stream) = self.stream() {
            // Nothing goes back into a stream: the consumer's credit does.
            stream.credit(consumer, entries.len() as u32);
            return;
        }
        let now = self.timers.now_ms();
        let mut dead = Vec::new();
        {
            let mut state = self.state.lock();
            state.requeue(consumer, entries, &mut dead);
            self.dispatch_locked(&mut state, now, &mut dead);
            self.after_change(&mut state, now, &mut dead);
        }
        dead_letter(self, dead);
    }

    /// A delivery that never reached its channel goes back without counting as one.
    pub fn return_undelivered(self: &Arc<Self>, consumer: ConsumerId, entry: Entry, tracked: bool) {
        if let Some(stream) = self.stream() {
            stream.credit(Some(consumer), 1);
            return;
        }
        {
            let mut state = self.state.lock();
            if tracked {
                state.settle(Some(consumer), 1);
            }
            state.reinsert(vec![entry]);
        }
        self.dispatch();
    }

    /// Takes a sample of the message counters and of the depth, for their rates (the
    /// management ticker calls this once a second).
    pub fn sample_stats(&self) {
        self.stats.sample();
        let (ready, unacked) = match self.stream() {
            Some(stream) => (stream.message_count(), 0),
            None => {
                let state = self.state.lock();
                (state.ready_len() as u64, state.unacked_len() as u64)
            }
        };
        self.stats.record_depth(ready, unacked);
    }

    /// Ready messages and consumers, for queue.declare-ok.
    pub fn counts(&self) -> (u32, u32) {
        // RabbitMQ's declare-ok for a stream says 0 and 0.
        if self.is_stream {
            return (0, 0);
        }
        let state = self.state.lock();
        let mut consumers = state.consumer_count() as u32;
        // A quorum queue with a single active consumer reports only that one.
        if self.is_quorum() && state.config().single_active_consumer {
            consumers = consumers.min(1);
        }
        (state.ready_len() as u32, consumers)
    }

    /// The timer fired: expire messages, and delete the queue if `x-expires` says so.
    pub fn on_timer(self: &Arc<Self>) {
        if self.is_deleted() {
            return;
        }
        self.scheduled.store(u64::MAX, Ordering::Release);
        let now = self.timers.now_ms();
        let mut dead = Vec::new();
        let consumers = {
            let mut state = self.state.lock();
            state.expire(now, &mut dead);
            self.dispatch_locked(&mut state, now, &mut dead);
            if let Some(next) = state.next_deadline() {
                self.schedule(next);
            }
            state.consumer_count()
        };
        dead_letter(self, dead);
        if let Some(expires) = self.settings().expires {
            let unused_since = self.last_used.load(Ordering::Acquire);
            if consumers > 0 {
                // In use: look again one period from now.
                self.schedule(now.saturating_add(expires));
            } else if now >= unused_since.saturating_add(expires) {
                if let Some(vhost) = self.home() {
                    if let Err(e) = vhost.delete_queue(&self.name, None) {
                        // It stays, and x-expires looks again one period from now.
                        tracing::warn!(queue = %self.name, error = %e.text, cause = e.cause.as_deref().unwrap_or(""), "expired queue not deleted");
                        self.schedule(now.saturating_add(expires));
                    }
                }
            } else {
                self.schedule(unused_since.saturating_add(expires));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::handles::{
        ChannelShared, ConnHandle, INBOX_HIGH_BYTES, INBOX_HIGH_WATER, INBOX_LOW_WATER,
        WRITE_HIGH_WATER, WRITE_LOW_WATER,
    };

    fn delivery(n: u64) -> Delivery {
        delivery_of(n, 0)
    }

    fn delivery_of(n: u64, body_len: usize) -> Delivery {
        Delivery {
            channel: 1,
            queue: None,
            consumer_id: n,
            consumer_tag: Arc::from("c"),
            no_ack: true,
            entry: Entry {
                message: Arc::new(Message {
                    exchange: Arc::from(""),
                    routing_key: Arc::from("q"),
                    properties: bytes::Bytes::new(),
                    body: bytes::Bytes::from(vec![0u8; body_len]),
                    persistent: false,
                    priority: 0,
                    expiration: None,
                    bcc: None,
                    stored: None,
                    paged_len: None,
                }),
                seq: n,
                redelivered: false,
                expires_at: None,
                delivery_count: 0,
            },
        }
    }

    #[test]
    fn a_full_inbox_holds_deliveries_back_until_worked_down() {
        let (tx, mut rx) = crate::util::mailbox::mailbox();
        let h = ConnHandle::new(1, tx);
        for n in 0..INBOX_HIGH_WATER as u64 {
            assert!(h.has_delivery_room());
            assert!(h.send_delivery(delivery(n)).is_ok());
        }
        assert!(!h.has_delivery_room(), "full at the high-water mark");
        // Handled down to just above the low-water mark: no call to dispatch yet.
        for _ in 0..INBOX_HIGH_WATER - INBOX_LOW_WATER - 1 {
            assert!(rx.try_recv().is_some());
            assert!(!h.delivery_handled(0));
        }
        assert!(rx.try_recv().is_some());
        assert!(
            h.delivery_handled(0),
            "at the low-water mark queues are asked again"
        );
        assert!(h.has_delivery_room());
        // Once only, and not at all when nothing was held back.
        assert!(!h.delivery_handled(0));
        // A connection that is gone gives the delivery back and counts nothing.
        drop(rx);
        assert!(h.send_delivery(delivery(7)).is_err());
    }

    #[test]
    fn large_bodies_fill_the_inbox_by_size_not_count() {
        let (tx, mut rx) = crate::util::mailbox::mailbox();
        let h = ConnHandle::new(1, tx);
        let mib = 1 << 20;
        let mut sent = 0;
        while h.has_delivery_room() {
            assert!(h.send_delivery(delivery_of(sent, mib)).is_ok());
            sent += 1;
            assert!(
                sent < 64,
                "1 MiB bodies must fill the inbox long before 4,096"
            );
        }
        assert_eq!(sent as usize, INBOX_HIGH_BYTES / mib);
        // Worked down to the byte low-water mark, the queues are asked again.
        let mut asked = false;
        for _ in 0..sent {
            assert!(rx.try_recv().is_some());
            asked |= h.delivery_handled(mib);
        }
        assert!(asked);
        assert!(h.has_delivery_room());
    }

    #[test]
    fn write_backlog_blocks_above_high_water_and_unblocks_below_low_water() {
        let (tx, _rx) = crate::util::mailbox::mailbox();
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
