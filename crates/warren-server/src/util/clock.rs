//! Wall-clock milliseconds, the time base of message and queue TTLs.
//!
//! TTLs are deadlines on the wall clock (not a monotonic clock) so that, once messages
//! are stored on disk, they keep counting across a restart as RabbitMQ's do.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Seconds since the Unix epoch (the `time` of `x-death`).
pub fn now_secs() -> u64 {
    now_ms() / 1000
}
