//! Expiry cost with a large queue: N messages with mixed per-message TTLs (and a queue
//! TTL), expired by the deadline heap as time advances, compared across queue sizes to
//! show the cost per message does not grow with the queue.
//!
//! `cargo run --release -p warren-store --example ttl_bench -- 1000000`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{sync::Arc, time::Instant};

use bytes::Bytes;
use warren_store::{Message, Overflow, QueueConfig, QueueState};

fn message(i: u64, ttl: Option<u64>) -> Arc<Message> {
    Arc::new(Message {
        exchange: Arc::from(""),
        routing_key: Arc::from("q"),
        properties: Bytes::from_static(&[0, 0]),
        body: Bytes::from(i.to_le_bytes().to_vec()),
        persistent: false,
        priority: (i % 10) as u8,
        expiration: ttl,
        bcc: None,
        stored: None,
        paged_len: None,
    })
}

/// A cheap deterministic spread of TTLs between 1 ms and 60 s; every fourth message has
/// none and falls back to the queue TTL.
fn ttl_of(i: u64) -> Option<u64> {
    let x = i.wrapping_mul(6_364_136_223_846_793_005).rotate_left(17);
    (!i.is_multiple_of(4)).then_some(1 + x % 60_000)
}

fn run(n: u64, priorities: bool) {
    let mut q: QueueState<u64> = QueueState::with_config(QueueConfig {
        message_ttl: Some(90_000),
        max_priority: priorities.then_some(9),
        max_length: Some(n * 2),
        overflow: Overflow::DropHead,
        ..Default::default()
    });
    let mut dead = Vec::new();
    let t = Instant::now();
    for i in 0..n {
        q.push(message(i, ttl_of(i)), 0, &mut dead);
    }
    let push = t.elapsed();
    // Advance the clock in 100 steps of 1 s: each step expires what is due.
    let t = Instant::now();
    let mut expired = 0;
    for step in 1..=100u64 {
        q.expire(step * 1_000, &mut dead);
        expired += dead.len();
        dead.clear();
    }
    let expire = t.elapsed();
    assert_eq!(expired as u64, n);
    assert_eq!(q.ready_len(), 0);
    println!(
        "| {n} | {} | {:.0} | {:.0} |",
        if priorities { "0-9" } else { "none" },
        push.as_nanos() as f64 / n as f64,
        expire.as_nanos() as f64 / n as f64,
    );
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    println!("| messages | priorities | push ns/msg | expire ns/msg |");
    println!("|---:|---|---:|---:|");
    for size in [n / 100, n / 10, n] {
        for priorities in [false, true] {
            run(size.max(1), priorities);
        }
    }
}
