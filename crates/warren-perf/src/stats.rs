//! Counters, latency histogram and exactly-once tracking shared by producers and consumers.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex,
    },
    time::Duration,
};

use hdrhistogram::Histogram;

pub struct Stats {
    pub sent: AtomicU64,
    pub confirmed: AtomicU64,
    pub nacked: AtomicU64,
    pub received: AtomicU64,
    pub expected: AtomicU64,
    latency: Mutex<Option<Histogram<u64>>>,
    window: Mutex<Option<Histogram<u64>>>,
}

#[derive(Clone, Copy)]
pub struct Snapshot {
    sent: u64,
    confirmed: u64,
    received: u64,
}

impl Stats {
    pub fn new() -> Self {
        Stats {
            sent: AtomicU64::new(0),
            confirmed: AtomicU64::new(0),
            nacked: AtomicU64::new(0),
            received: AtomicU64::new(0),
            expected: AtomicU64::new(u64::MAX),
            latency: Mutex::new(Histogram::new_with_bounds(1, 3_600_000_000, 3).ok()),
            window: Mutex::new(Histogram::new_with_bounds(1, 3_600_000_000, 3).ok()),
        }
    }

    pub fn record_latencies(&self, micros: &[u64]) {
        for slot in [&self.latency, &self.window] {
            if let Ok(mut guard) = slot.lock() {
                if let Some(h) = guard.as_mut() {
                    for &v in micros {
                        h.saturating_record(v.max(1));
                    }
                }
            }
        }
    }

    /// True once every expected delivery has arrived.
    pub fn drained(&self) -> bool {
        self.received.load(Ordering::Relaxed) >= self.expected.load(Ordering::Relaxed)
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            sent: self.sent.load(Ordering::Relaxed),
            confirmed: self.confirmed.load(Ordering::Relaxed),
            received: self.received.load(Ordering::Relaxed),
        }
    }

    pub fn live_line(&self, elapsed: Duration, last: &Snapshot, now: &Snapshot) -> String {
        let (p50, p99) = match self.window.lock() {
            Ok(mut guard) => match guard.as_mut() {
                Some(h) => {
                    let r = (h.value_at_quantile(0.5), h.value_at_quantile(0.99));
                    h.reset();
                    r
                }
                None => (0, 0),
            },
            Err(_) => (0, 0),
        };
        format!(
            "time {:>5.1}s sent {:>9}/s confirmed {:>9}/s received {:>9}/s latency us p50 {} p99 {}",
            elapsed.as_secs_f64(),
            now.sent - last.sent,
            now.confirmed - last.confirmed,
            now.received - last.received,
            p50,
            p99
        )
    }

    /// (p50, p95, p99, max) in microseconds.
    pub fn latency(&self) -> (u64, u64, u64, u64) {
        match self.latency.lock() {
            Ok(guard) => match guard.as_ref() {
                Some(h) if !h.is_empty() => (
                    h.value_at_quantile(0.5),
                    h.value_at_quantile(0.95),
                    h.value_at_quantile(0.99),
                    h.max(),
                ),
                _ => (0, 0, 0, 0),
            },
            Err(_) => (0, 0, 0, 0),
        }
    }
}

/// Which sequence numbers each (queue, producer) pair has delivered: duplicates are
/// counted, and at the end the number of distinct deliveries tells what was lost.
pub struct Tracker {
    producers: u32,
    seen: Vec<Mutex<(Vec<u64>, u64)>>,
    duplicated: AtomicU64,
}

impl Tracker {
    pub fn new(queues: u32, producers: u32) -> Self {
        let n = (queues as usize) * (producers as usize);
        Tracker {
            producers,
            seen: (0..n).map(|_| Mutex::new((Vec::new(), 0))).collect(),
            duplicated: AtomicU64::new(0),
        }
    }

    pub fn record(&self, queue: u32, producer: u32, seq: u64) {
        if producer >= self.producers {
            return;
        }
        let idx = (queue * self.producers + producer) as usize;
        let Some(slot) = self.seen.get(idx) else {
            return;
        };
        let Ok(mut guard) = slot.lock() else { return };
        let (bits, unique) = &mut *guard;
        let (word, bit) = ((seq / 64) as usize, seq % 64);
        if bits.len() <= word {
            bits.resize(word + 1024, 0);
        }
        if bits[word] & (1 << bit) != 0 {
            self.duplicated.fetch_add(1, Ordering::Relaxed);
        } else {
            bits[word] |= 1 << bit;
            *unique += 1;
        }
    }

    /// (distinct deliveries, duplicates)
    pub fn totals(&self) -> (u64, u64) {
        let unique = self
            .seen
            .iter()
            .filter_map(|s| s.lock().ok().map(|g| g.1))
            .sum();
        (unique, self.duplicated.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracker_counts_duplicates_and_unique() {
        let t = Tracker::new(2, 2);
        t.record(0, 0, 1);
        t.record(0, 0, 2);
        t.record(0, 0, 1);
        t.record(1, 0, 1);
        t.record(1, 1, 100_000);
        t.record(0, 7, 1); // unknown producer: ignored
        assert_eq!(t.totals(), (4, 1));
    }
}
