//! On-disk storage for warren's durable queues (issue #6).
//!
//! Runtime-agnostic: plain `std` threads and `parking_lot` locks, no tokio. The server calls
//! [`Journal::append`] from any thread (it does not block on disk I/O, only on back-pressure
//! when more than [`JournalOptions::max_pending_bytes`] are waiting to be written) and gets
//! the outcome through a callback run on the journal's writer thread.
//!
//! # Layout
//!
//! ```text
//! <dir>/msgs/<seq as 16 hex digits>.seg    message records, append-only
//! <dir>/msgs/<seq as 16 hex digits>.acks   acked / delivered marks for that segment
//! <meta dir>/meta.json                     MetaStore: small JSON document, atomic replace
//! ```
//!
//! * A **record** holds one published message once, with the list of queues it was routed
//!   to, so a message sent to several durable queues has its body stored once. The header
//!   and the body each carry a CRC-32C (layout in the `format` module docs); a damaged body
//!   still lets recovery name the queues that lost a message.
//! * Segments roll at [`JournalOptions::segment_size`] (default 32 MiB); a record larger than
//!   that gets a segment of its own. Each run starts a fresh segment, so files written by an
//!   earlier run are never appended to again.
//! * A **location** `(segment, offset, len)` identifies a record. The server keeps only
//!   locations in memory and reads bodies back with [`Journal::read`] (`pread`).
//! * **Acks** and **delivered marks** are 24-byte entries `(queue, offset, kind, crc)` in the
//!   segment's sidecar `.acks` file, so an ack never outlives the segment it refers to. The
//!   journal counts, per segment, the `(message, queue)` references still live; when that
//!   reaches zero (acked, or the queue forgotten) and the segment is no longer the one being
//!   written, the `.seg` file and then its `.acks` file are deleted. (In that order: a crash
//!   between the two leaves an orphan `.acks`, removed at the next open, never a segment
//!   without its acks, which would resurrect acked messages.)
//!
//! # Durability
//!
//! One writer thread owns the files. It takes everything queued since its last turn, writes
//! it with one `pwrite` per segment, calls `fdatasync` once (group commit, with
//! [`SyncPolicy::Always`]; plus a directory fsync when it created a file), then runs the
//! callbacks of that batch with `Ok(())`. A confirm sent from the callback is therefore
//! never lost across SIGKILL or power loss. With [`SyncPolicy::Interval`] or
//! [`SyncPolicy::Never`] callbacks run after the write, before any sync.
//!
//! Transient records (`persistent: false`) are written only to page bodies out of memory:
//! they never cause a sync and are ignored by recovery.
//!
//! Acks and delivered marks are written in the writer's next turn but synced only every
//! [`JournalOptions::ack_sync_interval`], on [`Journal::flush`] and on [`Journal::close`]: a
//! lost ack means a redelivery after a crash, never a loss.
//!
//! Write failures (disk full, EIO, failed fdatasync) are reported to every callback of the
//! failed batch. The batch's bytes are truncated away and its segment is sealed: no later
//! write goes to it, appends continue in a new segment, and records stored before are not
//! touched. A failed record still holds its queue references; release them with
//! [`Journal::ack`] like any other.
//!
//! # Recovery
//!
//! [`Journal::open`] scans segments in order, applying each one's `.acks` file. It reads
//! sequentially through a 4 MiB window; bodies up to 64 KiB are CRC-checked on the way,
//! larger ones are skipped (only their header is read) and checked when
//! [`Journal::read`] fetches them, which then returns [`JournalError::Corrupt`]. At the
//! first anomaly in a segment the rest of it is read and scanned byte-exactly. It returns, per live
//! queue, the surviving persistent messages in publish order as small
//! [`RecoveredMessage`]s (48 bytes each; exchange, routing key, properties and body are read
//! back on demand with [`Journal::read`]). A torn tail is truncated; a damaged record is
//! skipped with a `tracing` warning that names the queues (by id) and how many messages each
//! lost; unreadable, unknown or garbage files are reported in [`RecoveryReport`] and left
//! alone. Open fails only if the directory itself cannot be created or listed.
//!
//! # Contract with the caller
//!
//! * Queue ids are chosen by the caller and never reused for another queue.
//! * Each `(queue, location)` is acked at most once; a queue that is deleted is
//!   [`Journal::forget_queue`]d instead of acking its messages. Acks for forgotten queues
//!   are ignored.
//! * Message TTL is the caller's: recovered messages carry their absolute expiry
//!   (`expires_at_ms`, wall clock) and the caller acks the ones that have expired.
//! * Callbacks run on the writer thread: they must be quick and must not wait for the
//!   journal. They may call `append` (back-pressure is skipped on that thread), `ack`,
//!   `mark_delivered` and `forget_queue`, but not `flush`, or `read` of a record still
//!   queued, which would wait for the very thread running them.
//! * One `Journal` per directory at a time (there is no lock file).
#![deny(unsafe_code, clippy::unwrap_used, clippy::expect_used)]
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

mod error;
mod format;
mod journal;
mod meta;
mod recovery;
mod stream;
mod writer;

use std::fmt;

pub use error::JournalError;
pub use journal::{
    Callback, Journal, JournalOptions, JournalStats, NewRecord, StoredHeader, StoredMessage,
    SyncPolicy,
};
pub use meta::MetaStore;
pub use recovery::{RecoveredMessage, Recovery, RecoveryReport};
pub use stream::{
    NewStreamRecord, OnCommit, StreamLog, StreamOptions, StreamRecord, DEFAULT_MAX_SEGMENT_BYTES,
};

/// Opaque queue identity chosen by the caller (the server maps names to ids in its
/// metadata). Never reuse an id for a different queue.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct QueueId(pub u64);

impl QueueId {
    /// The bit that marks a queue whose messages never outlive a restart (a non-durable or
    /// exclusive queue, which only uses the store to keep bodies out of memory): recovery
    /// drops its references instead of keeping them as orphans.
    pub const TRANSIENT_BIT: u64 = 1 << 63;

    /// Whether this id carries [`QueueId::TRANSIENT_BIT`].
    pub fn is_transient(self) -> bool {
        self.0 & Self::TRANSIENT_BIT != 0
    }
}

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "queue#{}", self.0)
    }
}

/// Where a record lives: segment number, byte offset in it, encoded length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Location {
    pub segment: u64,
    pub offset: u32,
    pub len: u32,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "segment {:016x} offset {} len {}",
            self.segment, self.offset, self.len
        )
    }
}
