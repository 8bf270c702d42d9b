use std::{collections::VecDeque, sync::Arc};

use crate::Message;

/// Broker-wide unique id of one consumer (tags are only unique per channel).
pub type ConsumerId = u64;

/// A message in a queue, with the position it was published at.
#[derive(Debug, Clone)]
pub struct Entry {
    pub message: Arc<Message>,
    /// Publish order within the queue; a requeued message goes back to this position.
    pub seq: u64,
    pub redelivered: bool,
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

/// The state of one queue.
#[derive(Debug)]
pub struct QueueState<C> {
    /// Ready messages ordered by `seq` (requeues are inserted back in order).
    ready: VecDeque<Entry>,
    ready_bytes: usize,
    next_seq: u64,
    /// Deliveries awaiting settlement, consumers' and basic.get's together.
    unacked: usize,
    consumers: Vec<ConsumerSlot<C>>,
    /// Round-robin position: the consumer index tried first by the next dispatch.
    cursor: usize,
}

impl<C> Default for QueueState<C> {
    fn default() -> Self {
        Self::new()
    }
}

impl<C> QueueState<C> {
    pub fn new() -> Self {
        QueueState {
            ready: VecDeque::new(),
            ready_bytes: 0,
            next_seq: 0,
            unacked: 0,
            consumers: Vec::new(),
            cursor: 0,
        }
    }

    /// Appends a newly published message.
    pub fn push(&mut self, message: Arc<Message>) {
        self.ready_bytes += message.body_size();
        let seq = self.next_seq;
        self.next_seq += 1;
        self.ready.push_back(Entry {
            message,
            seq,
            redelivered: false,
        });
    }

    /// Messages ready for delivery (what queue.declare-ok reports as message_count).
    pub fn ready_len(&self) -> usize {
        self.ready.len()
    }

    pub fn ready_bytes(&self) -> usize {
        self.ready_bytes
    }

    pub fn unacked_len(&self) -> usize {
        self.unacked
    }

    pub fn is_empty(&self) -> bool {
        self.ready.is_empty()
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

    pub fn add_consumer(&mut self, slot: ConsumerSlot<C>) {
        self.consumers.push(slot);
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

    /// Takes the head message for basic.get. With `track` the delivery counts as unacked
    /// until settled.
    pub fn pop_for_get(&mut self, track: bool) -> Option<Entry> {
        let entry = self.pop_ready()?;
        if track {
            self.unacked += 1;
        }
        Some(entry)
    }

    fn pop_ready(&mut self) -> Option<Entry> {
        let entry = self.ready.pop_front()?;
        self.ready_bytes = self.ready_bytes.saturating_sub(entry.message.body_size());
        Some(entry)
    }

    /// Picks the next consumer, in round-robin order, that has credit and that `accept`
    /// agrees can take a message (channel-wide limits, flow), and hands it the head
    /// message. Returns `None` when the queue is empty or nobody can take more.
    pub fn dispatch(&mut self, mut accept: impl FnMut(&C) -> bool) -> Option<Dispatched<'_, C>> {
        if self.ready.is_empty() || self.consumers.is_empty() {
            return None;
        }
        let n = self.consumers.len();
        let start = self.cursor % n;
        let chosen = (0..n)
            .map(|i| (start + i) % n)
            .find(|&i| self.consumers[i].has_credit() && accept(&self.consumers[i].handle))?;
        let entry = self.pop_ready()?;
        self.cursor = (chosen + 1) % n;
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

    /// Puts unsettled deliveries back at their original positions, marked redelivered.
    pub fn requeue(&mut self, consumer: Option<ConsumerId>, entries: Vec<Entry>) {
        let count = entries.len() as u32;
        self.settle(consumer, count);
        self.reinsert(entries);
    }

    /// Puts entries that were never counted as unacked (no-ack deliveries that could not
    /// be handed over) back at their original positions, marked redelivered.
    pub fn reinsert(&mut self, entries: Vec<Entry>) {
        for mut entry in entries {
            entry.redelivered = true;
            self.ready_bytes += entry.message.body_size();
            // Requeued messages are usually older than everything ready: check the front
            // first so the common case costs O(1).
            let pos = match self.ready.front() {
                Some(front) if entry.seq < front.seq => 0,
                None => 0,
                _ => self.ready.partition_point(|e| e.seq < entry.seq),
            };
            self.ready.insert(pos, entry);
        }
    }

    /// Drops every ready message; returns how many.
    pub fn purge(&mut self) -> usize {
        let n = self.ready.len();
        self.ready.clear();
        self.ready_bytes = 0;
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn msg(body: &str) -> Arc<Message> {
        Arc::new(Message {
            exchange: String::new(),
            routing_key: "q".into(),
            properties: Bytes::from_static(&[0, 0]),
            body: Bytes::copy_from_slice(body.as_bytes()),
            persistent: false,
        })
    }

    fn slot(id: ConsumerId, prefetch: u32, no_ack: bool) -> ConsumerSlot<ConsumerId> {
        ConsumerSlot {
            id,
            tag: Arc::from(format!("c{id}")),
            prefetch,
            unacked: 0,
            no_ack,
            exclusive: false,
            handle: id,
        }
    }

    fn body(e: &Entry) -> &[u8] {
        &e.message.body
    }

    fn drain(q: &mut QueueState<ConsumerId>) -> Vec<(ConsumerId, Entry)> {
        let mut out = Vec::new();
        while let Some(d) = q.dispatch(|_| true) {
            out.push((d.consumer.id, d.entry));
        }
        out
    }

    #[test]
    fn fifo_and_counts() {
        let mut q = QueueState::<ConsumerId>::new();
        for b in ["a", "bb", "ccc"] {
            q.push(msg(b));
        }
        assert_eq!(q.ready_len(), 3);
        assert_eq!(q.ready_bytes(), 6);
        let e = q.pop_for_get(true).map(|e| body(&e).to_vec());
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
            q.push(msg(&i.to_string()));
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
            q.push(msg(&i.to_string()));
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
            q.push(msg(&i.to_string()));
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
            q.push(msg(&i.to_string()));
        }
        let got: Vec<_> = drain(&mut q).into_iter().map(|(c, _)| c).collect();
        assert_eq!(got, vec![1, 2, 2]);
        q.push(msg("x"));
        // The channel of consumer 2 refuses (e.g. flow off or global prefetch reached).
        assert!(q.dispatch(|h| *h != 2).is_none());
        assert_eq!(q.ready_len(), 1);
    }

    #[test]
    fn requeue_restores_original_position_and_marks_redelivered() {
        let mut q = QueueState::new();
        q.add_consumer(slot(1, 2, false));
        for b in ["m0", "m1", "m2", "m3"] {
            q.push(msg(b));
        }
        let delivered: Vec<Entry> = drain(&mut q).into_iter().map(|(_, e)| e).collect();
        assert_eq!(delivered.len(), 2);
        // Requeue out of order: they must still come back as m0, m1, m2, m3.
        let mut rev = delivered;
        rev.reverse();
        q.requeue(Some(1), rev);
        assert_eq!(q.unacked_len(), 0);
        let order: Vec<(Vec<u8>, bool)> = std::iter::from_fn(|| q.pop_for_get(false))
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
            q.push(msg(b));
        }
        let e0 = q.pop_for_get(true);
        let e1 = q.pop_for_get(true);
        let (Some(e0), Some(e1)) = (e0, e1) else {
            panic!("queue should have had two messages");
        };
        q.requeue(None, vec![e1]);
        q.requeue(None, vec![e0]);
        let order: Vec<Vec<u8>> = std::iter::from_fn(|| q.pop_for_get(false))
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
        q.push(msg("a"));
        q.push(msg("b"));
        let first: Vec<_> = drain(&mut q).into_iter().map(|(c, _)| c).collect();
        assert_eq!(first, vec![1, 2]);
        assert!(q.remove_consumer(3).is_some());
        assert!(q.remove_consumer(3).is_none());
        q.push(msg("c"));
        let next: Vec<_> = drain(&mut q).into_iter().map(|(c, _)| c).collect();
        assert_eq!(next, vec![1]);
        assert_eq!(q.drain_consumers().len(), 2);
        assert_eq!(q.consumer_count(), 0);
        assert!(q.dispatch(|_| true).is_none());
    }

    #[test]
    fn purge_counts_ready_only() {
        let mut q = QueueState::<ConsumerId>::new();
        for b in ["a", "b", "c"] {
            q.push(msg(b));
        }
        let _held = q.pop_for_get(true);
        assert_eq!(q.purge(), 2);
        assert_eq!(q.ready_bytes(), 0);
        assert_eq!(q.unacked_len(), 1);
    }

    proptest::proptest! {
        /// Whatever mix of gets and requeues happens, the ready list stays ordered by seq.
        #[test]
        fn ready_stays_in_publish_order(ops in proptest::collection::vec(0u8..3, 1..200)) {
            let mut q = QueueState::<ConsumerId>::new();
            let mut held: Vec<Entry> = Vec::new();
            for op in ops {
                match op {
                    0 => q.push(msg("x")),
                    1 => if let Some(e) = q.pop_for_get(true) { held.push(e) },
                    _ => if let Some(e) = held.pop() { q.requeue(None, vec![e]) },
                }
            }
            let seqs: Vec<u64> = std::iter::from_fn(|| q.pop_for_get(false)).map(|e| e.seq).collect();
            let mut sorted = seqs.clone();
            sorted.sort_unstable();
            proptest::prop_assert_eq!(seqs, sorted);
            proptest::prop_assert_eq!(q.unacked_len(), held.len());
        }
    }
}
