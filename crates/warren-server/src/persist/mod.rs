//! Durable metadata: vhosts, durable exchanges, durable queues and the bindings between
//! durable ends survive a restart.
//!
//! Every change is appended to `meta.log` as one checksummed JSON line and synced before
//! the client hears declare-ok (as RabbitMQ commits to its metadata store first). At start
//! the snapshot `meta.json` plus the log are replayed (by `crate::recovery`) through the same topology code the
//! channel uses, so cascades (auto-delete exchanges losing their last binding) replay
//! exactly; then the state is written back as a fresh snapshot (write, sync, rename, sync
//! the directory) and the log is emptied. A torn last line, from a crash mid-append, is
//! ignored; a damaged line elsewhere is skipped with a warning. The broker always starts.

pub mod lock;
pub mod meta;
pub mod spill;
pub mod storage;

use std::{
    io,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc, OnceLock,
    },
};

use tracing::warn;

pub use meta::{encode_args, MetaLog, MetaOp};

use crate::{
    persist::storage::Storage,
    util::error::{AmqpError, AmqpResult},
};

/// Smallest transient body written to the journal to save memory (see `should_page`).
pub const PAGE_MIN_TRANSIENT_BODY: usize = 4096;

/// Where the broker's durable metadata goes; empty until [`open`] attaches a log (tests
/// and embedded brokers may run without one).
#[derive(Default)]
pub struct Persistence {
    log: OnceLock<MetaLog>,
    storage: OnceLock<Storage>,
    /// Highest message-store queue id handed out or seen.
    last_queue_id: AtomicU64,
    /// Body bytes of ready messages held in memory, all queues together.
    pub resident: Arc<AtomicUsize>,
    /// Above this many resident bytes, new message bodies are kept on disk only.
    pub budget: Arc<AtomicUsize>,
    /// Where long queues keep their tails (set when the message store opens).
    pub spill_root: crate::persist::spill::SpillRoot,
    /// Where stream queues keep their logs, one directory per queue (set when the message
    /// store opens; streams declared without one live in a temporary directory).
    pub stream_root: OnceLock<std::path::PathBuf>,
    /// Persistent messages recovery found for queues it does not know (store id → their
    /// locations, in publish order): kept on disk until an operator attaches them to a
    /// queue or drops them (`Broker::attach_orphans`, `Broker::drop_orphans`).
    pub orphans: parking_lot::Mutex<std::collections::BTreeMap<u64, Vec<warren_store::StoredRef>>>,
}

impl std::fmt::Debug for Persistence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Persistence")
            .field("log", &self.log.get().is_some())
            .field("storage", &self.storage.get().is_some())
            .finish_non_exhaustive()
    }
}

impl Persistence {
    pub fn new(memory_budget: usize) -> Arc<Self> {
        Arc::new(Persistence {
            budget: Arc::new(AtomicUsize::new(memory_budget)),
            ..Persistence::default()
        })
    }

    /// Whether a new message's body should be kept on disk only. Past the budget a body
    /// that goes to disk anyway (persistent, durable queue) always is; a transient one
    /// only when large: a small one costs a journal write and a read per delivery, more
    /// than it saves, and long queues keep it in their tail file instead.
    pub fn should_page(&self, len: usize, on_disk_anyway: bool) -> bool {
        self.over_budget(len) && (on_disk_anyway || len >= PAGE_MIN_TRANSIENT_BODY)
    }

    /// Whether a body of `len` more bytes would take resident bodies over the budget.
    pub fn over_budget(&self, len: usize) -> bool {
        self.resident.load(Ordering::Relaxed).saturating_add(len)
            > self.budget.load(Ordering::Relaxed)
    }

    pub fn is_enabled(&self) -> bool {
        self.log.get().is_some()
    }

    /// The message store, once opened.
    pub fn storage(&self) -> Option<&Storage> {
        self.storage.get()
    }

    /// Attaches the metadata log (at start, once recovery has replayed it).
    pub fn attach_log(&self, log: MetaLog) -> Result<(), MetaLog> {
        self.log.set(log)
    }

    pub fn attach_storage(&self, storage: Storage) -> Result<(), Storage> {
        self.storage.set(storage)
    }

    /// A message-store id for a new durable queue: never one used before, even across
    /// restarts (ids grow with the clock and past every id seen in the metadata).
    pub fn next_queue_id(&self) -> u64 {
        let floor = crate::util::clock::now_ms() << 12;
        let prev = self
            .last_queue_id
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |last| {
                Some(last.max(floor).saturating_add(1))
            })
            .unwrap_or(floor);
        prev.max(floor).saturating_add(1)
    }

    /// Recovery saw a queue with this store id: new ids must not reuse it.
    pub fn saw_queue_id(&self, id: u64) {
        self.last_queue_id.fetch_max(id, Ordering::AcqRel);
    }

    /// [`Persistence::record`] for a change that is made in memory only once recorded.
    /// When the write fails, `undo` (the ops that restore what was) is recorded if the
    /// disk takes it now, in case the failed line reached the file before its sync
    /// failed; the error is returned as 541 INTERNAL_ERROR with the I/O error as cause.
    pub fn record_or_undo(&self, ops: &[MetaOp], undo: &[MetaOp]) -> AmqpResult<()> {
        self.record(ops).map_err(|e| {
            if let Err(again) = self.record(undo) {
                warn!(error = %again, "undo of a failed metadata change not recorded either");
            }
            AmqpError::internal("cannot record metadata").caused_by(e)
        })
    }

    /// Records changes; the caller answers the client only after this returns.
    pub fn record(&self, ops: &[MetaOp]) -> io::Result<()> {
        match self.log.get() {
            Some(log) => log.append(ops),
            None => Ok(()),
        }
    }
}
