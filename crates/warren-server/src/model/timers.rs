//! One timer task for every queue deadline in the broker: message expiry and `x-expires`.
//!
//! Queues register the earliest deadline they care about; the task sleeps until the
//! earliest one of all, then tells that queue to run its expiry. A queue whose messages
//! all share one TTL registers only when its earliest deadline moves earlier, so the
//! common case costs no message to this task per publish.

use std::{
    cmp::Reverse,
    collections::BinaryHeap,
    sync::{Arc, Weak},
    time::Duration,
};

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::{model::queue::Queue, util::clock::now_ms};

struct Due {
    at: u64,
    seq: u64,
    queue: Weak<Queue>,
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Due {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

#[derive(Default)]
pub struct Timers {
    heap: Mutex<(BinaryHeap<Reverse<Due>>, u64)>,
    wake: Notify,
}

impl Timers {
    pub fn new() -> Arc<Self> {
        Arc::new(Timers::default())
    }

    /// Asks for `queue.on_timer()` at `at` (ms on the wall clock) or soon after.
    pub fn schedule(&self, at: u64, queue: &Arc<Queue>) {
        let earliest = {
            let mut guard = self.heap.lock();
            let (heap, seq) = &mut *guard;
            *seq += 1;
            let earlier = heap.peek().is_none_or(|Reverse(top)| at < top.at);
            heap.push(Reverse(Due {
                at,
                seq: *seq,
                queue: Arc::downgrade(queue),
            }));
            earlier
        };
        if earliest {
            self.wake.notify_one();
        }
    }

    /// Runs forever: fires due timers, sleeps until the next one or a new earlier one.
    pub async fn run(self: Arc<Self>) {
        loop {
            let mut due = Vec::new();
            let next = {
                let now = now_ms();
                let mut guard = self.heap.lock();
                let (heap, _) = &mut *guard;
                while heap.peek().is_some_and(|Reverse(top)| top.at <= now) {
                    if let Some(Reverse(d)) = heap.pop() {
                        due.push(d.queue);
                    }
                }
                heap.peek().map(|Reverse(top)| top.at.saturating_sub(now))
            };
            for q in due {
                if let Some(q) = q.upgrade() {
                    q.on_timer();
                }
            }
            let notified = self.wake.notified();
            match next {
                Some(ms) => {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(ms.max(1))) => {}
                        _ = notified => {}
                    }
                }
                None => notified.await,
            }
        }
    }
}
