//! Queue state for warren, free of I/O.
//!
//! [`QueueState`] holds a queue's ready messages (one FIFO per priority level, ordered by
//! publish position), the count of messages delivered but not yet settled, its consumers
//! with their credit and priority, and the queue's rules: TTL (a deadline heap, so expiry
//! costs O(log n) per message and runs without a consumer), length limits with their
//! overflow behaviour, and quorum-style delivery limits. Messages that must be
//! dead-lettered come back to the caller as [`Dead`] entries; routing them is the server's
//! job. Past a window of in-memory entries a long queue keeps its tail in a [`TailStore`]
//! (files, in the server) and reads it back in order. Time is a parameter (milliseconds), so every rule is a deterministic unit test.
#![forbid(unsafe_code)]

mod config;
mod message;
mod queue;
pub mod tail;

pub use config::{DeathReason, Overflow, QueueConfig};
pub use message::{Message, StoredRef};
pub use queue::{
    ConsumerId, ConsumerSlot, Dead, Dispatched, Entry, PushOutcome, QueueState,
    DEFAULT_TAIL_WINDOW, ENTRY_OVERHEAD,
};
pub use tail::{TailError, TailStore};
