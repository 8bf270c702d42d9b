//! Message counters and their rates, for the management API and Prometheus.
//!
//! Counters are relaxed atomics bumped on the message paths (one add each). Rates are
//! computed over a sliding window: a sample of all counters is kept at most once a second
//! (taken when someone reads rates, or by the management server's ticker), and a rate is
//! the counter's growth since the oldest sample still inside the window, per second.

use std::{
    collections::VecDeque,
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use parking_lot::Mutex;

/// The counted events; names are RabbitMQ's `message_stats` keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stat {
    /// Messages published (into a queue, or by a channel for the global counters).
    Publish = 0,
    /// Deliveries to consumers with manual ack.
    Deliver,
    DeliverNoAck,
    Get,
    GetNoAck,
    GetEmpty,
    Ack,
    Redeliver,
    /// Mandatory publishes returned unroutable.
    ReturnUnroutable,
    /// Publishes that reached no queue and were dropped.
    DropUnroutable,
    /// Publisher confirms sent.
    Confirm,
    /// Messages published into an exchange.
    PublishIn,
    /// Messages an exchange routed to at least one queue.
    PublishOut,
}

pub const STAT_COUNT: usize = 13;

/// Every counter, in index order.
pub const STAT_ALL: [Stat; STAT_COUNT] = [
    Stat::Publish,
    Stat::Deliver,
    Stat::DeliverNoAck,
    Stat::Get,
    Stat::GetNoAck,
    Stat::GetEmpty,
    Stat::Ack,
    Stat::Redeliver,
    Stat::ReturnUnroutable,
    Stat::DropUnroutable,
    Stat::Confirm,
    Stat::PublishIn,
    Stat::PublishOut,
];

pub const STAT_NAMES: [&str; STAT_COUNT] = [
    "publish",
    "deliver",
    "deliver_no_ack",
    "get",
    "get_no_ack",
    "get_empty",
    "ack",
    "redeliver",
    "return_unroutable",
    "drop_unroutable",
    "confirm",
    "publish_in",
    "publish_out",
];

thread_local! {
    /// A per-thread stripe key, so runtime worker threads bump different stripes.
    static STRIPE: u64 = NEXT_STRIPE.fetch_add(1, Ordering::Relaxed);
}

static NEXT_STRIPE: AtomicU64 = AtomicU64::new(0);

fn thread_stripe() -> u64 {
    STRIPE.with(|s| *s)
}

/// Width of the rate window (RabbitMQ's default sample interval is 5 s).
pub const RATE_WINDOW: Duration = Duration::from_secs(5);
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// One set of counters on its own cache lines, so stripes bumped by different cores do not
/// share a line.
#[derive(Debug)]
#[repr(align(128))]
struct Stripe([AtomicU64; STAT_COUNT]);

impl Stripe {
    fn new() -> Self {
        Stripe(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

/// Stripes of counters shared by every connection of a vhost (or the broker).
pub const SHARED_STRIPES: usize = 16;

/// Counters with their sample history. Per-queue counters have one stripe (they are bumped
/// under the queue's lock anyway); counters every connection bumps ([`Stats::striped`])
/// have several, chosen by connection id, and are summed when read.
#[derive(Debug)]
pub struct Stats {
    counters: Box<[Stripe]>,
    samples: Mutex<VecDeque<(Instant, [u64; STAT_COUNT])>>,
    /// Queue depth samples (ready, unacked) for the `messages*_details` rates.
    depth: Mutex<VecDeque<(Instant, [u64; 2])>>,
}

impl Default for Stats {
    fn default() -> Self {
        Self::with_stripes(1)
    }
}

impl Stats {
    /// Counters bumped from many connections at once.
    pub fn striped() -> Self {
        Self::with_stripes(SHARED_STRIPES)
    }

    fn with_stripes(n: usize) -> Self {
        // Everything starts at zero now: the first rates already count from creation.
        let now = Instant::now();
        let mut samples = VecDeque::new();
        samples.push_back((now, [0; STAT_COUNT]));
        // A new queue is empty.
        let mut depth = VecDeque::new();
        depth.push_back((now, [0, 0]));
        Stats {
            counters: (0..n.max(1)).map(|_| Stripe::new()).collect(),
            samples: Mutex::new(samples),
            depth: Mutex::new(depth),
        }
    }
}

/// Counter values with their rates (per second).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StatsSnapshot {
    pub counts: [u64; STAT_COUNT],
    pub rates: [f64; STAT_COUNT],
}

impl StatsSnapshot {
    pub fn count(&self, s: Stat) -> u64 {
        self.counts[s as usize]
    }
    pub fn rate(&self, s: Stat) -> f64 {
        self.rates[s as usize]
    }
    /// RabbitMQ's `deliver_get`: every way a message left the queue towards a client.
    pub fn deliver_get(&self) -> (u64, f64) {
        let all = [Stat::Deliver, Stat::DeliverNoAck, Stat::Get, Stat::GetNoAck];
        (
            all.iter().map(|s| self.count(*s)).sum(),
            all.iter().map(|s| self.rate(*s)).sum(),
        )
    }
}

impl Stats {
    #[inline]
    pub fn inc(&self, s: Stat) {
        self.add_at(0, s, 1);
    }

    #[inline]
    pub fn add(&self, s: Stat, n: u64) {
        self.add_at(0, s, n);
    }

    /// Bumps the stripe of the calling thread (for counters bumped where no connection id
    /// is at hand, e.g. while routing).
    #[inline]
    pub fn inc_local(&self, s: Stat) {
        self.add_at(thread_stripe(), s, 1);
    }

    /// Bumps the stripe picked by `key` (a connection id).
    #[inline]
    pub fn inc_at(&self, key: u64, s: Stat) {
        self.add_at(key, s, 1);
    }

    #[inline]
    fn add_at(&self, key: u64, s: Stat, n: u64) {
        if n == 0 {
            return;
        }
        let stripe = (key as usize) % self.counters.len();
        if let Some(st) = self.counters.get(stripe) {
            st.0[s as usize].fetch_add(n, Ordering::Relaxed);
        }
    }

    pub fn get(&self, s: Stat) -> u64 {
        self.counters
            .iter()
            .map(|st| st.0[s as usize].load(Ordering::Relaxed))
            .sum()
    }

    fn current(&self) -> [u64; STAT_COUNT] {
        std::array::from_fn(|i| {
            self.counters
                .iter()
                .map(|st| st.0[i].load(Ordering::Relaxed))
                .sum()
        })
    }

    /// Records a sample if the last one is a second old; drops samples that left the window.
    pub fn sample(&self) {
        self.sample_at(Instant::now());
    }

    fn sample_at(&self, now: Instant) {
        let mut samples = self.samples.lock();
        if samples
            .back()
            .is_none_or(|(t, _)| now.saturating_duration_since(*t) >= SAMPLE_EVERY)
        {
            samples.push_back((now, self.current()));
        }
        // Keep one sample at or beyond the window's start, so rates span the whole window.
        while samples.len() > 2
            && samples
                .get(1)
                .is_some_and(|(t, _)| now.saturating_duration_since(*t) >= RATE_WINDOW)
        {
            samples.pop_front();
        }
    }

    /// Records the queue depth (at most once a second; the ticker calls this).
    pub fn record_depth(&self, ready: u64, unacked: u64) {
        self.record_depth_at(Instant::now(), ready, unacked);
    }

    fn record_depth_at(&self, now: Instant, ready: u64, unacked: u64) {
        let mut d = self.depth.lock();
        if d.back()
            .is_none_or(|(t, _)| now.saturating_duration_since(*t) >= SAMPLE_EVERY)
        {
            d.push_back((now, [ready, unacked]));
        }
        while d.len() > 2
            && d.get(1)
                .is_some_and(|(t, _)| now.saturating_duration_since(*t) >= RATE_WINDOW)
        {
            d.pop_front();
        }
    }

    /// How fast the ready and unacked counts changed over the window (per second,
    /// negative when the queue drains), given their current values.
    pub fn depth_rates(&self, ready: u64, unacked: u64) -> (f64, f64) {
        self.depth_rates_at(Instant::now(), ready, unacked)
    }

    fn depth_rates_at(&self, now: Instant, ready: u64, unacked: u64) -> (f64, f64) {
        let d = self.depth.lock();
        match d.front() {
            Some((t0, [r0, u0])) => {
                let dt = now.saturating_duration_since(*t0).as_secs_f64();
                if dt < 0.5 {
                    return (0.0, 0.0);
                }
                (
                    (ready as f64 - *r0 as f64) / dt,
                    (unacked as f64 - *u0 as f64) / dt,
                )
            }
            None => (0.0, 0.0),
        }
    }

    /// Counters and their rates over the window.
    pub fn snapshot(&self) -> StatsSnapshot {
        self.snapshot_at(Instant::now())
    }

    fn snapshot_at(&self, now: Instant) -> StatsSnapshot {
        self.sample_at(now);
        let counts = self.current();
        let samples = self.samples.lock();
        let mut rates = [0.0; STAT_COUNT];
        if let Some((t0, old)) = samples.front() {
            let dt = now.saturating_duration_since(*t0).as_secs_f64();
            if dt >= 0.5 {
                for i in 0..STAT_COUNT {
                    rates[i] = counts[i].saturating_sub(old[i]) as f64 / dt;
                }
            }
        }
        StatsSnapshot { counts, rates }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_all_is_in_index_order() {
        for (i, s) in STAT_ALL.iter().enumerate() {
            assert_eq!(*s as usize, i);
        }
    }

    #[test]
    fn stripes_sum_up() {
        let s = Stats::striped();
        for conn in 0..100 {
            s.inc_at(conn, Stat::Publish);
        }
        s.inc(Stat::Publish);
        assert_eq!(s.get(Stat::Publish), 101);
        assert_eq!(s.snapshot().count(Stat::Publish), 101);
    }

    #[test]
    fn depth_rates_follow_the_gauge() {
        let s = Stats::default();
        let t0 = Instant::now();
        let (r, u) = s.depth_rates_at(t0 + Duration::from_secs(2), 10, 4);
        assert!((r - 5.0).abs() < 1e-3 && (u - 2.0).abs() < 1e-3);
        for i in 1..10 {
            s.record_depth_at(t0 + Duration::from_secs(i), 10, 4);
        }
        assert_eq!(
            s.depth_rates_at(t0 + Duration::from_secs(10), 10, 4),
            (0.0, 0.0)
        );
        let (r, _) = s.depth_rates_at(t0 + Duration::from_secs(10), 0, 4);
        assert!(r < 0.0, "draining is negative");
    }

    #[test]
    fn rates_over_the_window() {
        let s = Stats::default();
        let t0 = Instant::now();
        s.add(Stat::Publish, 10);
        let snap = s.snapshot_at(t0 + Duration::from_secs(2));
        assert_eq!(snap.count(Stat::Publish), 10);
        assert!((snap.rate(Stat::Publish) - 5.0).abs() < 1e-3);
        // Nothing more for a long time: the old burst leaves the window.
        for i in 3..20 {
            s.sample_at(t0 + Duration::from_secs(i));
        }
        let snap = s.snapshot_at(t0 + Duration::from_secs(20));
        assert_eq!(snap.rate(Stat::Publish), 0.0);
        assert_eq!(snap.count(Stat::Publish), 10);
        s.add(Stat::Deliver, 3);
        s.add(Stat::Get, 2);
        let snap = s.snapshot_at(t0 + Duration::from_secs(21));
        assert_eq!(snap.deliver_get().0, 5);
        assert!(snap.deliver_get().1 > 0.0);
    }
}
