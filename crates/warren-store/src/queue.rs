use std::{
    cmp::Reverse,
    collections::{BinaryHeap, VecDeque},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
};

use crate::{tail::TailStore, DeathReason, Message, Overflow, QueueConfig};

/// Memory an in-memory ready entry costs besides its body and properties (the entry,
/// its slot, the shared message and its names), counted against the memory budget so
/// that long queues of small messages page out too.
pub const ENTRY_OVERHEAD: usize = 256;

/// In-memory ready entries of a queue with a tail store before new ones go to the tail.
pub const DEFAULT_TAIL_WINDOW: usize = 2048;

/// What one ready message in memory counts against the memory budget.
fn resident_size(message: &Message) -> usize {
    message.body.len() + message.properties.len() + ENTRY_OVERHEAD
}

/// Broker-wide unique id of one consumer (tags are only unique per channel).
pub type ConsumerId = u64;

/// A message in a queue, with the position it was published at.
#[derive(Debug, Clone)]
pub struct Entry {
    pub message: Arc<Message>,
    /// Publish order within the queue; a requeued message goes back to this position.
    pub seq: u64,
    pub redelivered: bool,
    /// Deadline in milliseconds (the caller's clock) after which it expires.
    pub expires_at: Option<u64>,
    /// How many times it was returned to the queue (quorum `x-delivery-count`).
    pub delivery_count: u32,
}

/// A message leaving the queue to be dead-lettered (or dropped when there is no
/// dead-letter exchange).
#[derive(Debug, Clone)]
pub struct Dead {
    pub entry: Entry,
    pub reason: DeathReason,
}

/// What became of a published message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    Enqueued,
    /// Refused by `reject-publish` / `reject-publish-dlx` (already reported as dead for
    /// the latter).
    Rejected,
}

/// A consumer as the queue sees it: its credit and a handle the server uses to reach it.
#[derive(Debug)]
pub struct ConsumerSlot<C> {
    pub id: ConsumerId,
    pub tag: Arc<str>,
    /// basic.qos prefetch_count for this consumer; 0 means unlimited.
    pub prefetch: u32,
    /// Deliveries to this consumer not yet acked, rejected or requeued.
    pub unacked: u32,
    pub no_ack: bool,
    pub exclusive: bool,
    /// `x-priority` of basic.consume: higher priorities are served first.
    pub priority: i32,
    pub handle: C,
}

impl<C> ConsumerSlot<C> {
    fn has_credit(&self) -> bool {
        self.no_ack || self.prefetch == 0 || self.unacked < self.prefetch
    }
}

/// What [`QueueState::dispatch`] decided: this entry goes to this consumer.
#[derive(Debug)]
pub struct Dispatched<'a, C> {
    pub entry: Entry,
    pub consumer: &'a ConsumerSlot<C>,
}

/// Body bytes of ready messages: all of them (for `x-max-length-bytes`), and what the
/// in-memory ones take into a counter shared across queues (for the memory budget).
#[derive(Debug, Default)]
struct ByteAccounts {
    bytes: usize,
    resident: Option<Arc<AtomicUsize>>,
    /// What this queue has put into `resident` and not taken out yet: given back when the
    /// queue is dropped (deleted with messages in it), or the shared count would keep
    /// them and the broker would page every new body out for good.
    held: usize,
    /// The memory budget `resident` is held to.
    budget: Option<Arc<AtomicUsize>>,
}

impl ByteAccounts {
    fn add(&mut self, message: &Message) {
        self.bytes += message.body_size();
        if let Some(r) = &self.resident {
            let size = resident_size(message);
            r.fetch_add(size, Ordering::Relaxed);
            self.held += size;
        }
    }

    fn sub(&mut self, message: &Message) {
        self.bytes -= message.body_size();
        self.release_resident(resident_size(message));
    }

    /// Takes `size` bytes of bodies out of the shared resident count.
    /// (Never more than this queue put in: bodies it held before it had the counter were
    /// never counted.)
    fn release_resident(&mut self, size: usize) {
        if let Some(r) = &self.resident {
            let size = size.min(self.held);
            r.fetch_sub(size, Ordering::Relaxed);
            self.held -= size;
        }
    }
}

impl Drop for ByteAccounts {
    fn drop(&mut self) {
        let held = self.held;
        self.release_resident(held);
    }
}

/// A position in a priority level; `entry` is `None` once it expired in place.
#[derive(Debug)]
struct Slot {
    seq: u64,
    entry: Option<Entry>,
}

/// The state of one queue.
#[derive(Debug)]
pub struct QueueState<C> {
    config: QueueConfig,
    /// Ready messages, one FIFO per priority level (index = level), each ordered by
    /// `seq`. Expired messages leave a tombstone behind so removal is O(log n).
    levels: Vec<VecDeque<Slot>>,
    ready: usize,
    acct: ByteAccounts,
    next_seq: u64,
    /// (deadline, seq, level) of ready messages that can expire; stale items (for
    /// messages that left) are skipped when they come up.
    deadlines: BinaryHeap<Reverse<(u64, u64, u8)>>,
    /// Deliveries awaiting settlement, consumers' and basic.get's together.
    unacked: usize,
    /// Ordered by priority, highest first; registration order within a priority.
    consumers: Vec<ConsumerSlot<C>>,
    /// Round-robin position: the consumer index tried first by the next dispatch.
    cursor: usize,
    /// Where ready entries past `tail_window` in-memory ones go, when the server gave
    /// one. Holds the newest ready entries (highest seqs); counted in `ready`.
    tail: Option<Box<dyn TailStore>>,
    tail_len: usize,
    tail_bytes: usize,
    tail_window: usize,
}

impl<C> Default for QueueState<C> {
    fn default() -> Self {
        Self::new()
    }
}

impl<C> QueueState<C> {
    pub fn new() -> Self {
        Self::with_config(QueueConfig::default())
    }

    pub fn with_config(config: QueueConfig) -> Self {
        let levels = usize::from(config.max_priority.unwrap_or(0)) + 1;
        QueueState {
            config,
            levels: (0..levels).map(|_| VecDeque::new()).collect(),
            ready: 0,
            acct: ByteAccounts::default(),
            next_seq: 0,
            deadlines: BinaryHeap::new(),
            unacked: 0,
            consumers: Vec::new(),
            cursor: 0,
            tail: None,
            tail_len: 0,
            tail_bytes: 0,
            tail_window: DEFAULT_TAIL_WINDOW,
        }
    }

    pub fn config(&self) -> &QueueConfig {
        &self.config
    }

    /// Changes the rules (a policy changed). The priority levels stay as declared; a
    /// drop-head limit now exceeded drops from the head at once.
    pub fn set_config(&mut self, config: QueueConfig, dead: &mut Vec<Dead>) {
        let max_priority = self.config.max_priority;
        self.config = QueueConfig {
            max_priority,
            ..config
        };
        if self.config.overflow == Overflow::DropHead {
            self.drop_over_limit(dead);
        }
    }

    /// Gives the queue somewhere to keep its tail: once `window` ready entries are in
    /// memory, newer ones whose bodies were paged out (and every one after them) go to
    /// `store`. Only for queues without priority levels whose returned messages go back
    /// to their place (classic), where the tail is always the newest messages.
    pub fn set_tail_store(&mut self, store: Box<dyn TailStore>, window: usize) {
        self.tail = Some(store);
        self.tail_window = window.max(2);
    }

    /// Ready messages kept in the tail store rather than memory.
    pub fn tail_len(&self) -> usize {
        self.tail_len
    }

    fn mem_ready(&self) -> usize {
        self.ready - self.tail_len
    }

    /// Counts this queue's in-memory bodies into `counter` from now on.
    pub fn set_resident_counter(&mut self, counter: Arc<AtomicUsize>) {
        self.acct.resident = Some(counter);
    }

    /// [`Self::set_resident_counter`], and the budget that, once exceeded, sends entries
    /// past the window to the tail store even with their bodies still in memory.
    pub fn set_memory_accounts(&mut self, counter: Arc<AtomicUsize>, budget: Arc<AtomicUsize>) {
        self.acct.resident = Some(counter);
        self.acct.budget = Some(budget);
    }

    fn memory_short(&self) -> bool {
        match (&self.acct.resident, &self.acct.budget) {
            (Some(r), Some(b)) => r.load(Ordering::Relaxed) > b.load(Ordering::Relaxed),
            _ => false,
        }
    }

    fn level_of(&self, message: &Message) -> u8 {
        match self.config.max_priority {
            Some(max) => message.priority.min(max),
            None => 0,
        }
    }

    fn over_limit(&self, extra_len: usize, extra_bytes: usize) -> bool {
        self.config
            .max_length
            .is_some_and(|max| (self.ready + extra_len) as u64 > max)
            || self
                .config
                .max_length_bytes
                .is_some_and(|max| (self.acct.bytes + extra_bytes) as u64 > max)
    }

    /// Enqueues a newly published message at time `now` (ms). Messages pushed out by a
    /// `drop-head` limit, or refused by `reject-publish-dlx`, are added to `dead`.
    pub fn push(&mut self, message: Arc<Message>, now: u64, dead: &mut Vec<Dead>) -> PushOutcome {
        let ttl = match (self.config.message_ttl, message.expiration) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let entry = Entry {
            seq: self.next_seq,
            expires_at: ttl.map(|t| now.saturating_add(t)),
            message,
            redelivered: false,
            delivery_count: 0,
        };
        // Classic queues refuse a message that would not fit; quorum queues one that
        // arrives when they are already over the limit.
        let refuse = if self.config.limit_before_enqueue {
            self.over_limit(0, 0)
        } else {
            self.over_limit(1, entry.message.body_size())
        };
        if self.config.overflow != Overflow::DropHead && refuse {
            if self.config.overflow == Overflow::RejectPublishDlx {
                dead.push(Dead {
                    entry,
                    reason: DeathReason::MaxLen,
                });
            }
            return PushOutcome::Rejected;
        }
        self.next_seq += 1;
        self.enqueue_new(entry);
        if self.config.overflow == Overflow::DropHead {
            self.drop_over_limit(dead);
        }
        PushOutcome::Enqueued
    }

    /// drop-head: removes head messages while the queue is over a length limit.
    fn drop_over_limit(&mut self, dead: &mut Vec<Dead>) {
        while self.ready > 0 && self.over_limit(0, 0) {
            match self.pop_head() {
                Some(entry) => dead.push(Dead {
                    entry,
                    reason: DeathReason::MaxLen,
                }),
                None => break,
            }
        }
    }

    /// Enqueues a message recovered from disk after a restart, keeping its deadline and
    /// whether it had been delivered before. Recovered messages are pushed in their
    /// original order; length limits are not re-applied.
    pub fn push_recovered(
        &mut self,
        message: Arc<Message>,
        expires_at: Option<u64>,
        redelivered: bool,
    ) {
        let entry = Entry {
            seq: self.next_seq,
            expires_at,
            message,
            redelivered,
            delivery_count: 0,
        };
        self.next_seq += 1;
        self.enqueue_new(entry);
    }

    /// Appends a new entry (the highest seq so far): to the tail store once the queue
    /// keeps one, or when it holds a window of entries in memory and memory is short
    /// (the body was paged out, or the budget is exceeded); to memory otherwise.
    fn enqueue_new(&mut self, entry: Entry) {
        let spill = self.tail_len > 0
            || (self.mem_ready() >= self.tail_window
                && (entry.message.is_paged() || self.memory_short()));
        if spill && self.levels.len() == 1 && !self.config.returns_to_back {
            if let Some(tail) = self.tail.as_mut() {
                match tail.append(&entry) {
                    Ok(()) => {
                        let size = entry.message.body_size();
                        self.ready += 1;
                        self.tail_len += 1;
                        self.tail_bytes += size;
                        self.acct.bytes += size;
                        return;
                    }
                    // Kept in memory instead; insert_ordered still keeps seq order. A
                    // store that fails while empty is given up, rather than retried
                    // (and logged) for every message.
                    Err(e) => {
                        tracing::warn!(error = %e, "queue tail store append failed");
                        if self.tail_len == 0 {
                            self.tail = None;
                        }
                    }
                }
            }
        }
        self.insert_ordered(entry);
    }

    /// Reads entries back from the tail store while memory holds less than half a
    /// window; returns how many came back. A tail that cannot be read is lost (its
    /// persistent messages are still in the message store for the next start).
    fn refill(&mut self) -> usize {
        if self.tail_len == 0 || self.mem_ready() > self.tail_window / 2 {
            return 0;
        }
        let want = (self.tail_window - self.mem_ready()).min(self.tail_len);
        let Some(tail) = self.tail.as_mut() else {
            return 0;
        };
        let mut batch = Vec::with_capacity(want);
        let result = tail.read_front(want, &mut batch);
        let loaded = batch.len();
        for entry in batch {
            let size = entry.message.body_size();
            self.ready -= 1;
            self.tail_len -= 1;
            self.tail_bytes = self.tail_bytes.saturating_sub(size);
            self.acct.bytes = self.acct.bytes.saturating_sub(size);
            self.insert_ordered(entry);
        }
        if result.is_err() || loaded == 0 {
            tracing::error!(
                lost = self.tail_len,
                error = ?result.err(),
                "queue tail store unreadable; the messages in it are dropped"
            );
            self.ready -= self.tail_len;
            self.acct.bytes = self.acct.bytes.saturating_sub(self.tail_bytes);
            self.tail_len = 0;
            self.tail_bytes = 0;
        }
        if self.tail_len == 0 {
            if let Some(tail) = self.tail.as_mut() {
                tail.clear();
            }
        }
        loaded
    }

    /// Puts an entry into its level at its `seq` position.
    fn insert_ordered(&mut self, entry: Entry) {
        let level = self.level_of(&entry.message);
        self.ready += 1;
        self.acct.add(&entry.message);
        if let Some(at) = entry.expires_at {
            self.deadlines.push(Reverse((at, entry.seq, level)));
        }
        let Some(deque) = self.levels.get_mut(usize::from(level)) else {
            return;
        };
        let seq = entry.seq;
        let slot = Slot {
            seq,
            entry: Some(entry),
        };
        // New and requeued messages usually belong at one end: keep that O(1).
        match (deque.front(), deque.back()) {
            (_, Some(back)) if back.seq < seq => deque.push_back(slot),
            (Some(front), _) if seq < front.seq => deque.push_front(slot),
            (None, None) => deque.push_back(slot),
            _ => {
                let pos = deque.partition_point(|s| s.seq < seq);
                deque.insert(pos, slot);
            }
        }
    }

    /// Messages ready for delivery (what queue.declare-ok reports as message_count).
    pub fn ready_len(&self) -> usize {
        self.ready
    }

    pub fn ready_bytes(&self) -> usize {
        self.acct.bytes
    }

    /// Up to `max` ready messages in the order they would be delivered, left in place
    /// and unchanged (not marked redelivered). Only the in-memory window is looked at:
    /// entries in the tail store are not read back for it.
    pub fn peek(&self, max: usize) -> Vec<Entry> {
        self.levels
            .iter()
            .rev()
            .flat_map(|deque| deque.iter().filter_map(|s| s.entry.as_ref()))
            .take(max)
            .cloned()
            .collect()
    }

    pub fn unacked_len(&self) -> usize {
        self.unacked
    }

    pub fn is_empty(&self) -> bool {
        self.ready == 0
    }

    pub fn consumer_count(&self) -> usize {
        self.consumers.len()
    }

    pub fn consumers(&self) -> impl Iterator<Item = &ConsumerSlot<C>> {
        self.consumers.iter()
    }

    pub fn has_exclusive_consumer(&self) -> bool {
        self.consumers.iter().any(|c| c.exclusive)
    }

    /// Registers a consumer after those of higher or equal priority.
    pub fn add_consumer(&mut self, slot: ConsumerSlot<C>) {
        let pos = self
            .consumers
            .partition_point(|c| c.priority >= slot.priority);
        if pos <= self.cursor && self.cursor < self.consumers.len() {
            self.cursor += 1;
        }
        self.consumers.insert(pos, slot);
    }

    /// With single active consumer: the one that gets every message (the earliest
    /// registered that is still there).
    pub fn active_consumer(&self) -> Option<ConsumerId> {
        if !self.config.single_active_consumer {
            return None;
        }
        self.consumers.iter().map(|c| c.id).min()
    }

    /// Removes a consumer. Its unsettled deliveries stay counted until the channel that
    /// holds them settles or requeues them.
    pub fn remove_consumer(&mut self, id: ConsumerId) -> Option<ConsumerSlot<C>> {
        let idx = self.consumers.iter().position(|c| c.id == id)?;
        let slot = self.consumers.remove(idx);
        if self.cursor > idx {
            self.cursor -= 1;
        }
        if self.cursor >= self.consumers.len() {
            self.cursor = 0;
        }
        Some(slot)
    }

    /// Removes every consumer (queue deleted), returning them so they can be told.
    pub fn drain_consumers(&mut self) -> Vec<ConsumerSlot<C>> {
        self.cursor = 0;
        std::mem::take(&mut self.consumers)
    }

    pub fn consumer_mut(&mut self, id: ConsumerId) -> Option<&mut ConsumerSlot<C>> {
        self.consumers.iter_mut().find(|c| c.id == id)
    }

    /// Drops expired messages and tombstones from the head; true if a live message is
    /// at the head afterwards. A message expires at its deadline: strictly after it here,
    /// so a TTL 0 message can still go to a consumer that is ready in the same instant.
    fn settle_head(&mut self, now: u64, dead: &mut Vec<Dead>) -> bool {
        loop {
            self.refill();
            let Some(deque) = self.levels.iter_mut().rev().find(|d| !d.is_empty()) else {
                return false;
            };
            let expired = match deque.front() {
                Some(Slot { entry: None, .. }) => {
                    deque.pop_front();
                    continue;
                }
                Some(Slot {
                    entry: Some(entry), ..
                }) => entry.expires_at.is_some_and(|at| at < now),
                None => return false,
            };
            if !expired {
                return true;
            }
            if let Some(Slot {
                entry: Some(entry), ..
            }) = deque.pop_front()
            {
                self.ready -= 1;
                self.acct.sub(&entry.message);
                dead.push(Dead {
                    entry,
                    reason: DeathReason::Expired,
                });
            }
        }
    }

    /// Removes the head message without looking at its deadline.
    fn pop_head(&mut self) -> Option<Entry> {
        self.refill();
        for deque in self.levels.iter_mut().rev() {
            while let Some(slot) = deque.pop_front() {
                if let Some(entry) = slot.entry {
                    self.ready -= 1;
                    self.acct.sub(&entry.message);
                    return Some(entry);
                }
            }
        }
        None
    }

    /// Takes the head message for basic.get. With `track` the delivery counts as unacked
    /// until settled.
    pub fn pop_for_get(&mut self, now: u64, dead: &mut Vec<Dead>, track: bool) -> Option<Entry> {
        if !self.settle_head(now, dead) {
            return None;
        }
        let entry = self.pop_head()?;
        if track {
            self.unacked += 1;
        }
        Some(entry)
    }

    /// The consumer that gets the next message: the first with credit, highest priority
    /// first, round-robin among equals, that `accept` agrees can take one.
    fn pick(&self, accept: &mut impl FnMut(&C) -> bool) -> Option<usize> {
        if self.config.single_active_consumer {
            let (i, c) = self
                .consumers
                .iter()
                .enumerate()
                .min_by_key(|(_, c)| c.id)?;
            return (c.has_credit() && accept(&c.handle)).then_some(i);
        }
        let n = self.consumers.len();
        let mut group_start = 0;
        while group_start < n {
            let priority = self.consumers[group_start].priority;
            let mut group_end = group_start;
            while group_end < n && self.consumers[group_end].priority == priority {
                group_end += 1;
            }
            let len = group_end - group_start;
            let first = if (group_start..group_end).contains(&self.cursor) {
                self.cursor - group_start
            } else {
                0
            };
            for k in 0..len {
                let i = group_start + (first + k) % len;
                let c = &self.consumers[i];
                if c.has_credit() && accept(&c.handle) {
                    return Some(i);
                }
            }
            group_start = group_end;
        }
        None
    }

    /// Hands the head message to the next consumer that can take it. Returns `None`
    /// when the queue is empty or nobody can take more. Messages found expired on the
    /// way are added to `dead`.
    pub fn dispatch(
        &mut self,
        now: u64,
        dead: &mut Vec<Dead>,
        mut accept: impl FnMut(&C) -> bool,
    ) -> Option<Dispatched<'_, C>> {
        if self.consumers.is_empty() || !self.settle_head(now, dead) {
            return None;
        }
        let chosen = self.pick(&mut accept)?;
        let entry = self.pop_head()?;
        self.cursor = chosen + 1;
        let consumer = &mut self.consumers[chosen];
        if !consumer.no_ack {
            consumer.unacked += 1;
            self.unacked += 1;
        }
        Some(Dispatched {
            entry,
            consumer: &self.consumers[chosen],
        })
    }

    /// Records that `count` deliveries (to `consumer`, or from basic.get when `None`)
    /// were settled: acked, or rejected without requeue.
    pub fn settle(&mut self, consumer: Option<ConsumerId>, count: u32) {
        self.unacked = self.unacked.saturating_sub(count as usize);
        if let Some(slot) = consumer.and_then(|id| self.consumer_mut(id)) {
            slot.unacked = slot.unacked.saturating_sub(count);
        }
    }

    /// Puts unsettled deliveries back, marked redelivered: at their original positions,
    /// or at the head for quorum queues. A message over the delivery limit is added to
    /// `dead` instead.
    pub fn requeue(
        &mut self,
        consumer: Option<ConsumerId>,
        entries: Vec<Entry>,
        dead: &mut Vec<Dead>,
    ) {
        let count = entries.len() as u32;
        self.settle(consumer, count);
        for mut entry in entries {
            entry.delivery_count = entry.delivery_count.saturating_add(1);
            if self
                .config
                .delivery_limit
                .is_some_and(|limit| u64::from(entry.delivery_count) > limit)
            {
                dead.push(Dead {
                    entry,
                    reason: DeathReason::DeliveryLimit,
                });
                continue;
            }
            self.put_back(entry);
        }
        // Requeued messages can take the queue over its limit: drop from the head.
        if self.config.overflow == Overflow::DropHead {
            self.drop_over_limit(dead);
        }
    }

    /// Puts entries that were never counted as unacked (no-ack deliveries that could not
    /// be handed over) back, marked redelivered.
    pub fn reinsert(&mut self, entries: Vec<Entry>) {
        for entry in entries {
            self.put_back(entry);
        }
    }

    fn put_back(&mut self, mut entry: Entry) {
        entry.redelivered = true;
        if self.config.returns_to_back {
            // A quorum queue appends returned messages, as if just published.
            entry.seq = self.next_seq;
            self.next_seq += 1;
        }
        self.insert_ordered(entry);
    }

    /// Earliest deadline of a ready message, for the expiry timer.
    pub fn next_deadline(&self) -> Option<u64> {
        self.deadlines.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Removes every ready message whose deadline is `now` or earlier, wherever it is in
    /// the queue, adding them to `dead`. Costs O(log n) per expired message.
    pub fn expire(&mut self, now: u64, dead: &mut Vec<Dead>) {
        loop {
            self.expire_in_memory(now, dead);
            // Tail entries are not in the deadline heap: once memory runs low, read more
            // back (refill registers their deadlines) and expire those that are due.
            if self.refill() == 0 {
                break;
            }
        }
        if self.mem_ready() == 0 {
            // Nothing left in memory to expire: drop tombstones and stale deadlines.
            for deque in &mut self.levels {
                deque.clear();
            }
            self.deadlines.clear();
        }
    }

    fn expire_in_memory(&mut self, now: u64, dead: &mut Vec<Dead>) {
        while let Some(Reverse((at, seq, level))) = self.deadlines.peek().copied() {
            if at > now {
                break;
            }
            self.deadlines.pop();
            let Some(deque) = self.levels.get_mut(usize::from(level)) else {
                continue;
            };
            let Ok(pos) = deque.binary_search_by_key(&seq, |s| s.seq) else {
                continue;
            };
            let Some(slot) = deque.get_mut(pos) else {
                continue;
            };
            // A stale deadline (the message left and came back with another one) must
            // not expire it.
            if slot.entry.as_ref().is_none_or(|e| e.expires_at != Some(at)) {
                continue;
            }
            if let Some(entry) = slot.entry.take() {
                self.ready -= 1;
                self.acct.sub(&entry.message);
                dead.push(Dead {
                    entry,
                    reason: DeathReason::Expired,
                });
            }
            if pos == 0 {
                while deque.front().is_some_and(|s| s.entry.is_none()) {
                    deque.pop_front();
                }
            }
        }
    }

    /// Drops every ready message; returns them (their storage must be released).
    pub fn purge(&mut self) -> Vec<Entry> {
        let mut out = Vec::with_capacity(self.ready);
        self.purge_each(|e| out.push(e));
        out
    }

    /// Drops every ready message, handing each to `release` (the tail store's too, read
    /// back a window at a time); returns how many.
    pub fn purge_each(&mut self, mut release: impl FnMut(Entry)) -> usize {
        let mut held = 0;
        let count = self.ready;
        for deque in &mut self.levels {
            for entry in deque.drain(..).filter_map(|s| s.entry) {
                held += resident_size(&entry.message);
                release(entry);
            }
        }
        self.acct.release_resident(held);
        self.deadlines.clear();
        if let Some(tail) = self.tail.as_mut() {
            let mut batch = Vec::new();
            while self.tail_len > 0 {
                let want = self.tail_window.min(self.tail_len);
                let result = tail.read_front(want, &mut batch);
                if batch.is_empty() {
                    tracing::error!(lost = self.tail_len, error = ?result.err(), "queue tail store unreadable while purging");
                    break;
                }
                self.tail_len -= batch.len();
                batch.drain(..).for_each(&mut release);
            }
            tail.clear();
        }
        self.tail_len = 0;
        self.tail_bytes = 0;
        self.ready = 0;
        self.acct.bytes = 0;
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn msg(body: &str) -> Arc<Message> {
        Arc::new(Message {
            exchange: Arc::from(""),
            routing_key: Arc::from("q"),
            properties: Bytes::from_static(&[0, 0]),
            body: Bytes::copy_from_slice(body.as_bytes()),
            persistent: false,
            priority: 0,
            expiration: None,
            bcc: None,
            stored: None,
            paged_len: None,
        })
    }

    fn pmsg(body: &str, priority: u8, expiration: Option<u64>) -> Arc<Message> {
        Arc::new(Message {
            priority,
            expiration,
            ..(*msg(body)).clone()
        })
    }

    /// Test shorthands at time 0 that must not produce dead letters.
    trait At0 {
        fn push0(&mut self, m: Arc<Message>);
        fn get0(&mut self, track: bool) -> Option<Entry>;
        fn requeue0(&mut self, c: Option<ConsumerId>, e: Vec<Entry>);
    }
    impl At0 for QueueState<ConsumerId> {
        fn push0(&mut self, m: Arc<Message>) {
            let mut dead = Vec::new();
            assert_eq!(self.push(m, 0, &mut dead), PushOutcome::Enqueued);
            assert!(dead.is_empty());
        }
        fn get0(&mut self, track: bool) -> Option<Entry> {
            let mut dead = Vec::new();
            let e = self.pop_for_get(0, &mut dead, track);
            assert!(dead.is_empty());
            e
        }
        fn requeue0(&mut self, c: Option<ConsumerId>, e: Vec<Entry>) {
            let mut dead = Vec::new();
            self.requeue(c, e, &mut dead);
            assert!(dead.is_empty());
        }
    }

    #[test]
    fn peek_shows_delivery_order_and_changes_nothing() {
        let mut q: QueueState<ConsumerId> = QueueState::with_config(QueueConfig {
            max_priority: Some(5),
            ..QueueConfig::default()
        });
        q.push0(pmsg("low", 0, None));
        q.push0(pmsg("high", 5, None));
        q.push0(pmsg("low2", 0, None));
        let first = q.get0(true).expect("head");
        q.requeue0(None, vec![first]);
        let bodies = |v: &[Entry]| {
            v.iter()
                .map(|e| String::from_utf8_lossy(&e.message.body).into_owned())
                .collect::<Vec<_>>()
        };
        let seen = q.peek(10);
        assert_eq!(bodies(&seen), ["high", "low", "low2"]);
        assert_eq!(
            seen.iter().map(|e| e.redelivered).collect::<Vec<_>>(),
            [true, false, false]
        );
        assert_eq!(bodies(&q.peek(2)), ["high", "low"]);
        // Twice in a row: peeking marks nothing and removes nothing.
        assert_eq!(bodies(&q.peek(10)), ["high", "low", "low2"]);
        assert_eq!(q.ready_len(), 3);
        assert_eq!(q.unacked_len(), 0);
        let next = q.get0(false).expect("head");
        assert_eq!(&next.message.body[..], b"high");
        assert!(!q.peek(10).iter().any(|e| &e.message.body[..] == b"high"));
    }

    fn slot(id: ConsumerId, prefetch: u32, no_ack: bool) -> ConsumerSlot<ConsumerId> {
        ConsumerSlot {
            id,
            tag: Arc::from(format!("c{id}")),
            prefetch,
            unacked: 0,
            no_ack,
            exclusive: false,
            priority: 0,
            handle: id,
        }
    }

    fn body(e: &Entry) -> &[u8] {
        &e.message.body
    }

    fn drain(q: &mut QueueState<ConsumerId>) -> Vec<(ConsumerId, Entry)> {
        let mut out = Vec::new();
        let mut dead = Vec::new();
        while let Some(d) = q.dispatch(0, &mut dead, |_| true) {
            out.push((d.consumer.id, d.entry));
        }
        out
    }

    #[test]
    fn fifo_and_counts() {
        let mut q = QueueState::<ConsumerId>::new();
        for b in ["a", "bb", "ccc"] {
            q.push0(msg(b));
        }
        assert_eq!(q.ready_len(), 3);
        assert_eq!(q.ready_bytes(), 6);
        let e = q.get0(true).map(|e| body(&e).to_vec());
        assert_eq!(e.as_deref(), Some(&b"a"[..]));
        assert_eq!(q.unacked_len(), 1);
        assert_eq!(q.ready_bytes(), 5);
        q.settle(None, 1);
        assert_eq!(q.unacked_len(), 0);
    }

    #[test]
    fn round_robin_across_consumers() {
        let mut q = QueueState::new();
        q.add_consumer(slot(1, 0, false));
        q.add_consumer(slot(2, 0, false));
        for i in 0..4 {
            q.push0(msg(&i.to_string()));
        }
        let got: Vec<_> = drain(&mut q).into_iter().map(|(c, _)| c).collect();
        assert_eq!(got, vec![1, 2, 1, 2]);
        assert_eq!(q.unacked_len(), 4);
    }

    #[test]
    fn prefetch_limits_unacked_per_consumer() {
        let mut q = QueueState::new();
        q.add_consumer(slot(1, 2, false));
        for i in 0..5 {
            q.push0(msg(&i.to_string()));
        }
        assert_eq!(drain(&mut q).len(), 2);
        assert_eq!(q.ready_len(), 3);
        q.settle(Some(1), 1);
        assert_eq!(drain(&mut q).len(), 1);
        q.settle(Some(1), 2);
        assert_eq!(drain(&mut q).len(), 2);
        assert!(q.is_empty());
    }

    #[test]
    fn no_ack_consumers_ignore_prefetch_and_are_not_tracked() {
        let mut q = QueueState::new();
        q.add_consumer(slot(1, 1, true));
        for i in 0..3 {
            q.push0(msg(&i.to_string()));
        }
        assert_eq!(drain(&mut q).len(), 3);
        assert_eq!(q.unacked_len(), 0);
    }

    #[test]
    fn blocked_consumer_is_skipped_and_accept_is_consulted() {
        let mut q = QueueState::new();
        q.add_consumer(slot(1, 1, false));
        q.add_consumer(slot(2, 0, false));
        for i in 0..3 {
            q.push0(msg(&i.to_string()));
        }
        let got: Vec<_> = drain(&mut q).into_iter().map(|(c, _)| c).collect();
        assert_eq!(got, vec![1, 2, 2]);
        q.push0(msg("x"));
        // The channel of consumer 2 refuses (e.g. flow off or global prefetch reached).
        assert!(q.dispatch(0, &mut Vec::new(), |h| *h != 2).is_none());
        assert_eq!(q.ready_len(), 1);
    }

    #[test]
    fn requeue_restores_original_position_and_marks_redelivered() {
        let mut q = QueueState::new();
        q.add_consumer(slot(1, 2, false));
        for b in ["m0", "m1", "m2", "m3"] {
            q.push0(msg(b));
        }
        let delivered: Vec<Entry> = drain(&mut q).into_iter().map(|(_, e)| e).collect();
        assert_eq!(delivered.len(), 2);
        // Requeue out of order: they must still come back as m0, m1, m2, m3.
        let mut rev = delivered;
        rev.reverse();
        q.requeue0(Some(1), rev);
        assert_eq!(q.unacked_len(), 0);
        let order: Vec<(Vec<u8>, bool)> = std::iter::from_fn(|| q.get0(false))
            .map(|e| (body(&e).to_vec(), e.redelivered))
            .collect();
        assert_eq!(
            order,
            vec![
                (b"m0".to_vec(), true),
                (b"m1".to_vec(), true),
                (b"m2".to_vec(), false),
                (b"m3".to_vec(), false)
            ]
        );
    }

    #[test]
    fn requeue_into_the_middle() {
        let mut q = QueueState::<ConsumerId>::new();
        for b in ["m0", "m1", "m2"] {
            q.push0(msg(b));
        }
        let e0 = q.get0(true);
        let e1 = q.get0(true);
        let (Some(e0), Some(e1)) = (e0, e1) else {
            panic!("queue should have had two messages");
        };
        q.requeue0(None, vec![e1]);
        q.requeue0(None, vec![e0]);
        let order: Vec<Vec<u8>> = std::iter::from_fn(|| q.get0(false))
            .map(|e| body(&e).to_vec())
            .collect();
        assert_eq!(order, vec![b"m0".to_vec(), b"m1".to_vec(), b"m2".to_vec()]);
    }

    #[test]
    fn removing_consumers_keeps_cursor_valid() {
        let mut q = QueueState::new();
        for id in 1..=3 {
            q.add_consumer(slot(id, 0, true));
        }
        q.push0(msg("a"));
        q.push0(msg("b"));
        let first: Vec<_> = drain(&mut q).into_iter().map(|(c, _)| c).collect();
        assert_eq!(first, vec![1, 2]);
        assert!(q.remove_consumer(3).is_some());
        assert!(q.remove_consumer(3).is_none());
        q.push0(msg("c"));
        let next: Vec<_> = drain(&mut q).into_iter().map(|(c, _)| c).collect();
        assert_eq!(next, vec![1]);
        assert_eq!(q.drain_consumers().len(), 2);
        assert_eq!(q.consumer_count(), 0);
        assert!(q.dispatch(0, &mut Vec::new(), |_| true).is_none());
    }

    #[test]
    fn purge_counts_ready_only() {
        let mut q = QueueState::<ConsumerId>::new();
        for b in ["a", "b", "c"] {
            q.push0(msg(b));
        }
        let _held = q.get0(true);
        assert_eq!(q.purge().len(), 2);
        assert_eq!(q.ready_bytes(), 0);
        assert_eq!(q.unacked_len(), 1);
    }

    fn with(config: QueueConfig) -> QueueState<ConsumerId> {
        QueueState::with_config(config)
    }

    fn bodies(q: &mut QueueState<ConsumerId>, now: u64) -> Vec<String> {
        let mut dead = Vec::new();
        std::iter::from_fn(|| q.pop_for_get(now, &mut dead, false))
            .map(|e| String::from_utf8_lossy(&e.message.body).into_owned())
            .collect()
    }

    #[test]
    fn priorities_highest_first_fifo_within_and_capped_at_max() {
        let mut q = with(QueueConfig {
            max_priority: Some(5),
            ..Default::default()
        });
        for (b, p) in [
            ("a0", 0),
            ("b9", 9),
            ("c5", 5),
            ("d1", 1),
            ("e0", 0),
            ("f5", 5),
        ] {
            q.push0(pmsg(b, p, None));
        }
        // 9 counts as 5 and keeps its publish position among the fives.
        assert_eq!(bodies(&mut q, 0), ["b9", "c5", "f5", "d1", "a0", "e0"]);
    }

    #[test]
    fn without_max_priority_priorities_are_ignored() {
        let mut q = QueueState::<ConsumerId>::new();
        for (b, p) in [("a", 0), ("b", 9), ("c", 5)] {
            q.push0(pmsg(b, p, None));
        }
        assert_eq!(bodies(&mut q, 0), ["a", "b", "c"]);
    }

    #[test]
    fn requeued_messages_keep_priority_order() {
        let mut q = with(QueueConfig {
            max_priority: Some(10),
            ..Default::default()
        });
        for (b, p) in [("lo1", 1), ("hi", 8), ("lo2", 1)] {
            q.push0(pmsg(b, p, None));
        }
        let hi = q.get0(true);
        let lo1 = q.get0(true);
        q.requeue0(None, lo1.into_iter().collect());
        q.requeue0(None, hi.into_iter().collect());
        assert_eq!(bodies(&mut q, 0), ["hi", "lo1", "lo2"]);
    }

    #[test]
    fn queue_ttl_and_message_ttl_lower_wins_and_expiry_runs_without_consumers() {
        let mut q = with(QueueConfig {
            message_ttl: Some(100),
            ..Default::default()
        });
        let mut dead = Vec::new();
        q.push(pmsg("q-ttl", 0, None), 0, &mut dead);
        q.push(pmsg("short", 0, Some(10)), 0, &mut dead);
        q.push(pmsg("long", 0, Some(1000)), 0, &mut dead);
        assert_eq!(q.next_deadline(), Some(10));
        // The middle message expires first, in place.
        q.expire(10, &mut dead);
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].reason, DeathReason::Expired);
        assert_eq!(&dead[0].entry.message.body[..], b"short");
        assert_eq!(q.ready_len(), 2);
        q.expire(100, &mut dead);
        assert_eq!(dead.len(), 3);
        assert_eq!(q.ready_len(), 0);
        assert_eq!(q.ready_bytes(), 0);
        assert_eq!(q.next_deadline(), None);
    }

    #[test]
    fn expired_messages_are_never_handed_out() {
        let mut q = QueueState::<ConsumerId>::new();
        let mut dead = Vec::new();
        q.push(pmsg("old", 0, Some(5)), 0, &mut dead);
        q.push(pmsg("new", 0, None), 0, &mut dead);
        let got = q.pop_for_get(6, &mut dead, false);
        assert_eq!(
            got.map(|e| e.message.body.clone()),
            Some(Bytes::from_static(b"new"))
        );
        assert_eq!(dead.len(), 1);
        q.add_consumer(slot(1, 0, true));
        q.push(pmsg("gone", 0, Some(1)), 10, &mut dead);
        assert!(q.dispatch(12, &mut dead, |_| true).is_none());
        assert_eq!(dead.len(), 2);
    }

    #[test]
    fn ttl_zero_goes_to_a_ready_consumer_in_the_same_instant_or_expires() {
        let mut q = QueueState::<ConsumerId>::new();
        let mut dead = Vec::new();
        q.push(pmsg("now", 0, Some(0)), 50, &mut dead);
        q.add_consumer(slot(1, 0, true));
        assert!(q.dispatch(50, &mut dead, |_| true).is_some());
        q.remove_consumer(1);
        q.push(pmsg("nobody", 0, Some(0)), 60, &mut dead);
        q.expire(60, &mut dead);
        assert_eq!(dead.len(), 1);
        assert!(q.is_empty());
    }

    #[test]
    fn requeue_keeps_the_original_deadline() {
        let mut q = QueueState::<ConsumerId>::new();
        let mut dead = Vec::new();
        q.push(pmsg("m", 0, Some(100)), 0, &mut dead);
        let e = q.pop_for_get(0, &mut dead, true);
        // The deadline passes while it is out; back in the queue it expires.
        q.expire(150, &mut dead);
        assert!(dead.is_empty());
        q.requeue(None, e.into_iter().collect(), &mut dead);
        assert_eq!(q.next_deadline(), Some(100));
        q.expire(150, &mut dead);
        assert_eq!(dead.len(), 1);
    }

    #[test]
    fn stale_deadlines_do_not_expire_a_message_twice() {
        let mut q = QueueState::<ConsumerId>::new();
        let mut dead = Vec::new();
        q.push(pmsg("m", 0, Some(100)), 0, &mut dead);
        for _ in 0..3 {
            let e = q.pop_for_get(0, &mut dead, true);
            q.requeue(None, e.into_iter().collect(), &mut dead);
        }
        q.expire(100, &mut dead);
        assert_eq!(dead.len(), 1);
        assert_eq!(q.ready_len(), 0);
    }

    #[test]
    fn max_length_drop_head_dead_letters_the_oldest() {
        let mut q = with(QueueConfig {
            max_length: Some(2),
            ..Default::default()
        });
        let mut dead = Vec::new();
        for b in ["a", "b", "c", "d"] {
            assert_eq!(q.push(msg(b), 0, &mut dead), PushOutcome::Enqueued);
        }
        let dropped: Vec<_> = dead
            .iter()
            .map(|d| (d.entry.message.body.clone(), d.reason))
            .collect();
        assert_eq!(
            dropped,
            vec![
                (Bytes::from_static(b"a"), DeathReason::MaxLen),
                (Bytes::from_static(b"b"), DeathReason::MaxLen)
            ]
        );
        assert_eq!(bodies(&mut q, 0), ["c", "d"]);
    }

    #[test]
    fn max_length_bytes_counts_body_bytes() {
        let mut q = with(QueueConfig {
            max_length_bytes: Some(5),
            ..Default::default()
        });
        let mut dead = Vec::new();
        for b in ["aaa", "bb", "c"] {
            q.push(msg(b), 0, &mut dead);
        }
        assert_eq!(dead.len(), 1);
        assert_eq!(q.ready_bytes(), 3);
        assert_eq!(bodies(&mut q, 0), ["bb", "c"]);
    }

    #[test]
    fn reject_publish_refuses_and_reject_publish_dlx_also_dead_letters() {
        for (overflow, dlx) in [
            (Overflow::RejectPublish, 0),
            (Overflow::RejectPublishDlx, 1),
        ] {
            let mut q = with(QueueConfig {
                max_length: Some(1),
                overflow,
                ..Default::default()
            });
            let mut dead = Vec::new();
            assert_eq!(q.push(msg("a"), 0, &mut dead), PushOutcome::Enqueued);
            assert_eq!(q.push(msg("b"), 0, &mut dead), PushOutcome::Rejected);
            assert_eq!(dead.len(), dlx);
            assert_eq!(bodies(&mut q, 0), ["a"]);
        }
    }

    #[test]
    fn delivery_limit_dead_letters_and_returns_go_to_the_back() {
        let mut q = with(QueueConfig {
            delivery_limit: Some(1),
            returns_to_back: true,
            ..Default::default()
        });
        let mut dead = Vec::new();
        q.push(msg("a"), 0, &mut dead);
        q.push(msg("b"), 0, &mut dead);
        let a = q.pop_for_get(0, &mut dead, true);
        let b = q.pop_for_get(0, &mut dead, true);
        q.push(msg("c"), 0, &mut dead);
        // Quorum returns go to the back, in return order: c, b, a.
        q.requeue(None, b.into_iter().collect(), &mut dead);
        q.requeue(None, a.into_iter().collect(), &mut dead);
        assert_eq!(
            q.pop_for_get(0, &mut dead, false)
                .map(|e| e.message.body.clone()),
            Some(Bytes::from_static(b"c"))
        );
        let b = q.pop_for_get(0, &mut dead, true);
        assert_eq!(
            b.as_ref()
                .map(|e| (e.message.body.clone(), e.delivery_count)),
            Some((Bytes::from_static(b"b"), 1))
        );
        q.requeue(None, b.into_iter().collect(), &mut dead);
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].reason, DeathReason::DeliveryLimit);
        assert_eq!(bodies(&mut q, 0), ["a"]);
    }

    #[test]
    fn consumer_priorities_serve_higher_first_while_they_have_credit() {
        let mut q = QueueState::<ConsumerId>::new();
        let mut low = slot(1, 0, false);
        low.priority = 0;
        let mut high = slot(2, 2, false);
        high.priority = 10;
        q.add_consumer(low);
        q.add_consumer(high);
        for i in 0..4 {
            q.push0(msg(&i.to_string()));
        }
        let got: Vec<_> = drain(&mut q).into_iter().map(|(c, _)| c).collect();
        assert_eq!(got, vec![2, 2, 1, 1]);
    }

    #[test]
    fn single_active_consumer_gets_everything_and_the_next_takes_over() {
        let mut q = with(QueueConfig {
            single_active_consumer: true,
            ..Default::default()
        });
        q.add_consumer(slot(1, 0, true));
        q.add_consumer(slot(2, 0, true));
        for i in 0..3 {
            q.push0(msg(&i.to_string()));
        }
        assert_eq!(q.active_consumer(), Some(1));
        let got: Vec<_> = drain(&mut q).into_iter().map(|(c, _)| c).collect();
        assert_eq!(got, vec![1, 1, 1]);
        q.remove_consumer(1);
        assert_eq!(q.active_consumer(), Some(2));
        q.push0(msg("x"));
        let got: Vec<_> = drain(&mut q).into_iter().map(|(c, _)| c).collect();
        assert_eq!(got, vec![2]);
    }

    proptest::proptest! {
        /// Whatever mix of gets and requeues happens, the ready list stays ordered by seq.
        #[test]
        fn ready_stays_in_publish_order(ops in proptest::collection::vec(0u8..3, 1..200)) {
            let mut q = QueueState::<ConsumerId>::new();
            let mut held: Vec<Entry> = Vec::new();
            for op in ops {
                match op {
                    0 => q.push0(msg("x")),
                    1 => if let Some(e) = q.get0(true) { held.push(e) },
                    _ => if let Some(e) = held.pop() { q.requeue0(None, vec![e]) },
                }
            }
            let seqs: Vec<u64> = std::iter::from_fn(|| q.get0(false)).map(|e| e.seq).collect();
            let mut sorted = seqs.clone();
            sorted.sort_unstable();
            proptest::prop_assert_eq!(seqs, sorted);
            proptest::prop_assert_eq!(q.unacked_len(), held.len());
        }
    }

    // ---- the tail store

    /// A message whose body is "on disk": the stored ref's offset carries its number.
    fn paged(n: u32) -> Arc<Message> {
        Arc::new(Message {
            stored: Some(crate::StoredRef {
                segment: 1,
                offset: n,
                len: 10,
            }),
            paged_len: Some(10),
            body: Bytes::new(),
            ..(*msg("")).clone()
        })
    }

    fn number(e: &Entry) -> u32 {
        e.message.stored.map_or(u32::MAX, |r| r.offset)
    }

    fn tailed(config: QueueConfig, window: usize) -> QueueState<ConsumerId> {
        let mut q = with(config);
        q.set_tail_store(Box::new(crate::tail::MemoryTail::default()), window);
        q
    }

    fn get_all(q: &mut QueueState<ConsumerId>, now: u64) -> Vec<Entry> {
        let mut dead = Vec::new();
        std::iter::from_fn(|| q.pop_for_get(now, &mut dead, false)).collect()
    }

    #[test]
    fn tail_keeps_fifo_order_and_counts_and_bounds_memory() {
        let mut q = tailed(QueueConfig::default(), 8);
        let mut dead = Vec::new();
        for n in 0..100 {
            q.push(paged(n), 0, &mut dead);
            assert!(q.mem_ready() <= 8, "memory holds {}", q.mem_ready());
        }
        // A body still in memory after the tail started goes to the tail too (order).
        q.push(msg("in-memory"), 0, &mut dead);
        assert_eq!(q.ready_len(), 101);
        assert_eq!(q.tail_len(), 93);
        assert_eq!(q.ready_bytes(), 100 * 10 + 9);
        let mut seen = Vec::new();
        let mut dead = Vec::new();
        while let Some(e) = q.pop_for_get(0, &mut dead, false) {
            assert!(q.mem_ready() <= 8);
            seen.push(e);
        }
        let numbers: Vec<u32> = seen[..100].iter().map(number).collect();
        assert_eq!(numbers, (0..100).collect::<Vec<_>>());
        assert_eq!(body(&seen[100]), b"in-memory");
        assert_eq!((q.ready_len(), q.tail_len(), q.ready_bytes()), (0, 0, 0));
    }

    #[test]
    fn in_memory_bodies_alone_never_start_a_tail() {
        let mut q = tailed(QueueConfig::default(), 4);
        let mut dead = Vec::new();
        for i in 0..50 {
            q.push(msg(&i.to_string()), 0, &mut dead);
        }
        assert_eq!(q.tail_len(), 0);
        assert_eq!(bodies(&mut q, 0).len(), 50);
    }

    #[test]
    fn past_the_budget_in_memory_bodies_go_to_the_tail_with_their_bodies() {
        let mut q = tailed(QueueConfig::default(), 4);
        let resident = Arc::new(AtomicUsize::new(0));
        let budget = Arc::new(AtomicUsize::new(10 * ENTRY_OVERHEAD));
        q.set_memory_accounts(resident.clone(), budget);
        let mut dead = Vec::new();
        for i in 0..40 {
            q.push(msg(&format!("m{i}")), 0, &mut dead);
        }
        // Ten entries fit the budget; past it, only the window stays in memory.
        assert_eq!(q.mem_ready(), 10);
        assert_eq!(q.tail_len(), 30);
        let expected: Vec<String> = (0..40).map(|i| format!("m{i}")).collect();
        assert_eq!(bodies(&mut q, 0), expected);
        assert_eq!(resident.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_dropped_queue_gives_back_what_it_counted_as_resident() {
        let resident = Arc::new(AtomicUsize::new(0));
        let budget = Arc::new(AtomicUsize::new(usize::MAX));
        let mut other = tailed(QueueConfig::default(), 4);
        other.set_memory_accounts(resident.clone(), budget.clone());
        let mut dead = Vec::new();
        other.push(msg("stays"), 0, &mut dead);
        let kept = resident.load(Ordering::Relaxed);
        assert!(kept > 0);
        {
            let mut q = tailed(QueueConfig::default(), 4);
            // One body from before the counter: never counted, never taken out.
            q.push(msg("early"), 0, &mut dead);
            q.set_memory_accounts(resident.clone(), budget.clone());
            for i in 0..20 {
                q.push(msg(&format!("m{i}")), 0, &mut dead);
            }
            assert!(resident.load(Ordering::Relaxed) > kept);
            // Deleted with its messages in it: dropped, not purged.
        }
        assert_eq!(resident.load(Ordering::Relaxed), kept);
    }

    #[test]
    fn requeued_messages_go_before_the_tail() {
        let mut q = tailed(QueueConfig::default(), 4);
        q.add_consumer(slot(1, 2, false));
        let mut dead = Vec::new();
        for n in 0..20 {
            q.push(paged(n), 0, &mut dead);
        }
        let first: Vec<Entry> = drain(&mut q).into_iter().map(|(_, e)| e).collect();
        assert_eq!(first.iter().map(number).collect::<Vec<_>>(), vec![0, 1]);
        q.requeue(Some(1), first, &mut dead);
        q.remove_consumer(1);
        let all = get_all(&mut q, 0);
        assert_eq!(
            all.iter().map(number).collect::<Vec<_>>(),
            (0..20).collect::<Vec<_>>()
        );
        assert!(all[0].redelivered && all[1].redelivered && !all[2].redelivered);
    }

    #[test]
    fn ttl_expires_through_the_tail_without_consumers() {
        let mut q = tailed(
            QueueConfig {
                message_ttl: Some(100),
                ..Default::default()
            },
            4,
        );
        let mut dead = Vec::new();
        for n in 0..30 {
            q.push(paged(n), 0, &mut dead);
        }
        q.push(paged(30), 500, &mut dead);
        assert!(q.tail_len() > 0);
        q.expire(200, &mut dead);
        assert_eq!(dead.len(), 30);
        assert!(dead.iter().all(|d| d.reason == DeathReason::Expired));
        assert_eq!(
            dead.iter().map(|d| number(&d.entry)).collect::<Vec<_>>(),
            (0..30).collect::<Vec<_>>()
        );
        assert_eq!(q.ready_len(), 1);
        assert_eq!(q.next_deadline(), Some(600));
    }

    #[test]
    fn purge_releases_the_tail_too() {
        let mut q = tailed(QueueConfig::default(), 4);
        let mut dead = Vec::new();
        for n in 0..25 {
            q.push(paged(n), 0, &mut dead);
        }
        let purged = q.purge();
        assert_eq!(
            purged.iter().map(number).collect::<Vec<_>>(),
            (0..25).collect::<Vec<_>>()
        );
        assert_eq!((q.ready_len(), q.tail_len(), q.ready_bytes()), (0, 0, 0));
        q.push(paged(99), 0, &mut dead);
        assert_eq!(
            get_all(&mut q, 0).iter().map(number).collect::<Vec<_>>(),
            vec![99]
        );
    }

    #[test]
    fn drop_head_limit_counts_the_tail() {
        let mut q = tailed(
            QueueConfig {
                max_length: Some(10),
                ..Default::default()
            },
            4,
        );
        let mut dead = Vec::new();
        for n in 0..30 {
            q.push(paged(n), 0, &mut dead);
        }
        assert_eq!(q.ready_len(), 10);
        assert_eq!(dead.len(), 20);
        assert_eq!(
            get_all(&mut q, 0).iter().map(number).collect::<Vec<_>>(),
            (20..30).collect::<Vec<_>>()
        );
    }

    #[test]
    fn priority_and_quorum_queues_keep_everything_in_memory() {
        for config in [
            QueueConfig {
                max_priority: Some(3),
                ..Default::default()
            },
            QueueConfig {
                returns_to_back: true,
                ..Default::default()
            },
        ] {
            let mut q = tailed(config, 2);
            let mut dead = Vec::new();
            for n in 0..10 {
                q.push(paged(n), 0, &mut dead);
            }
            assert_eq!(q.tail_len(), 0);
            assert_eq!(get_all(&mut q, 0).len(), 10);
        }
    }

    #[test]
    fn failed_tail_appends_stay_in_memory_in_order() {
        let mut q = with(QueueConfig::default());
        let mut tail = crate::tail::MemoryTail::default();
        tail.fail_appends = true;
        q.set_tail_store(Box::new(tail), 2);
        let mut dead = Vec::new();
        for n in 0..10 {
            q.push(paged(n), 0, &mut dead);
        }
        assert_eq!(q.tail_len(), 0);
        assert_eq!(
            get_all(&mut q, 0).iter().map(number).collect::<Vec<_>>(),
            (0..10).collect::<Vec<_>>()
        );
    }

    #[test]
    fn resident_counter_covers_entries_and_returns_to_zero() {
        let counter = Arc::new(AtomicUsize::new(0));
        let mut q = tailed(QueueConfig::default(), 4);
        q.set_resident_counter(counter.clone());
        let mut dead = Vec::new();
        q.push(msg("abc"), 0, &mut dead);
        assert_eq!(counter.load(Ordering::Relaxed), 3 + 2 + ENTRY_OVERHEAD);
        for n in 0..20 {
            q.push(paged(n), 0, &mut dead);
        }
        // Only the in-memory window is counted.
        assert_eq!(
            counter.load(Ordering::Relaxed),
            3 + 2 + ENTRY_OVERHEAD + 3 * (2 + ENTRY_OVERHEAD)
        );
        get_all(&mut q, 0);
        assert_eq!(counter.load(Ordering::Relaxed), 0);
        q.push(msg("x"), 0, &mut dead);
        q.purge();
        assert_eq!(counter.load(Ordering::Relaxed), 0);
    }
}
