//! One timer task for every deadline in the broker: message expiry, `x-expires`, and the
//! release of delayed messages (`x-delayed-message` exchanges).
//!
//! Queues register the earliest deadline they care about; the task sleeps until the
//! earliest one of all, then tells that queue to run its expiry. A queue whose messages
//! all share one TTL registers only when its earliest deadline moves earlier, so the
//! common case costs no message to this task per publish.
//!
//! The deadlines are read on the broker's [`Clock`]: the wall clock, or a test clock
//! that `/api/warren/clock` moves; [`Timers::fire_due`] lets an advance run every expiry
//! it made due before it answers.

use std::{
    cmp::Reverse,
    collections::BinaryHeap,
    sync::{Arc, Weak},
    time::Duration,
};

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::{model::queue::Queue, util::clock::Clock};

/// What a deadline wakes: a queue (expiry) or a vhost's delayed messages.
pub trait TimerTarget: Send + Sync {
    fn on_timer(self: Arc<Self>);
}

impl TimerTarget for Queue {
    fn on_timer(self: Arc<Self>) {
        Queue::on_timer(&self);
    }
}

struct Due {
    at: u64,
    seq: u64,
    queue: Weak<dyn TimerTarget>,
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
    clock: Clock,
    /// Held while due timers are taken and run, so that a caller of `fire_due` returns
    /// only once every timer due by then has run, even those the task took first.
    firing: Mutex<()>,
}

impl Timers {
    pub fn new() -> Arc<Self> {
        Arc::new(Timers::default())
    }

    pub fn with_clock(clock: Clock) -> Arc<Self> {
        Arc::new(Timers {
            clock,
            ..Timers::default()
        })
    }

    /// The clock every deadline here is on.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Moves the test clock forward and runs every expiry that made due (with its
    /// dead-lettering) before returning.
    pub fn advance(
        &self,
        ms: u64,
    ) -> Result<crate::util::clock::ClockState, crate::util::clock::NotTestClock> {
        let state = self.clock.advance(ms)?;
        self.fire_due();
        self.wake.notify_one();
        Ok(state)
    }

    /// Stops or restarts the test clock; the timer task recomputes its sleep.
    pub fn freeze(
        &self,
        frozen: bool,
    ) -> Result<crate::util::clock::ClockState, crate::util::clock::NotTestClock> {
        let state = self.clock.freeze(frozen)?;
        self.fire_due();
        self.wake.notify_one();
        Ok(state)
    }

    /// Runs every timer due now, and those that running them made due (a dead-lettered
    /// message can land in a queue whose deadline has passed); returns how long until
    /// the next one, if any.
    pub fn fire_due(&self) -> Option<u64> {
        let _firing = self.firing.lock();
        loop {
            let mut due = Vec::new();
            let now = self.clock.now_ms();
            let next = {
                let mut guard = self.heap.lock();
                let (heap, _) = &mut *guard;
                while heap.peek().is_some_and(|Reverse(top)| top.at <= now) {
                    if let Some(Reverse(d)) = heap.pop() {
                        due.push(d.queue);
                    }
                }
                heap.peek().map(|Reverse(top)| top.at.saturating_sub(now))
            };
            if due.is_empty() {
                return next;
            }
            for q in due {
                if let Some(q) = q.upgrade() {
                    TimerTarget::on_timer(q);
                }
            }
        }
    }

    /// Asks for `queue.on_timer()` at `at` (ms on the wall clock) or soon after.
    pub fn schedule<T: TimerTarget + 'static>(&self, at: u64, queue: &Arc<T>) {
        let weak: Weak<T> = Arc::downgrade(queue);
        let queue: Weak<dyn TimerTarget> = weak;
        let earliest = {
            let mut guard = self.heap.lock();
            let (heap, seq) = &mut *guard;
            *seq += 1;
            let earlier = heap.peek().is_none_or(|Reverse(top)| at < top.at);
            heap.push(Reverse(Due {
                at,
                seq: *seq,
                queue,
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
            let notified = self.wake.notified();
            tokio::pin!(notified);
            // Registered before the heap is read, so a schedule in between still wakes us.
            notified.as_mut().enable();
            let next = self.fire_due();
            match next {
                // A frozen clock moves only by an advance, which wakes the task.
                Some(ms) if !self.clock.is_frozen() => {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(ms.max(1))) => {}
                        _ = notified => {}
                    }
                }
                _ => notified.await,
            }
        }
    }
}
