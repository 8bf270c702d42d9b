//! The public handle: appends, acks, reads, flush and close. The state shared with the
//! writer thread lives behind one mutex; every critical section is short (an encode into
//! the pending buffer or a counter update), the I/O happens on the writer thread.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::{JoinHandle, ThreadId};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::{Condvar, Mutex};

use crate::format::{self, AckKind, Header};
use crate::recovery::{self, Recovery};
use crate::writer::Writer;
use crate::{JournalError, Location, QueueId};

/// Called once with the outcome of an append: `Ok(())` once the record is as safe as the
/// [`SyncPolicy`] promises. Runs on the writer thread.
pub type Callback = Box<dyn FnOnce(Result<(), JournalError>) + Send>;

/// When the writer calls `fdatasync` on segment files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// Group commit: every batch holding a persistent record is synced before its
    /// callbacks run. The only policy under which a confirm survives power loss.
    Always,
    /// Callbacks run after the write; persistent data is synced at most this long after.
    Interval(Duration),
    /// Callbacks run after the write; sync only on flush and close.
    Never,
}

/// Tuning knobs; `Default` gives the production settings.
#[derive(Debug, Clone)]
pub struct JournalOptions {
    /// Segment file size at which appends move to a new file (capped at `u32::MAX`).
    pub segment_size: u32,
    pub sync: SyncPolicy,
    /// How often written acks and delivered marks are synced.
    pub ack_sync_interval: Duration,
    /// Appends wait while more than this many encoded bytes are queued for the writer.
    pub max_pending_bytes: usize,
}

impl Default for JournalOptions {
    fn default() -> Self {
        JournalOptions {
            segment_size: 32 * 1024 * 1024,
            sync: SyncPolicy::Always,
            ack_sync_interval: Duration::from_secs(1),
            max_pending_bytes: 64 * 1024 * 1024,
        }
    }
}

/// A message to store.
#[derive(Debug, Clone, Default)]
pub struct NewRecord {
    /// Caller's id, returned by recovery (see [`crate::RecoveryReport::max_msg_id`]).
    pub msg_id: u64,
    /// False: written only to page the body out of memory; never synced for its own
    /// sake and ignored by recovery.
    pub persistent: bool,
    /// Absolute expiry, milliseconds since the Unix epoch.
    pub expires_at_ms: Option<u64>,
    /// Queues the message was routed to; duplicates are removed. Must not be empty.
    pub queues: Vec<QueueId>,
    pub exchange: String,
    pub routing_key: String,
    /// Raw AMQP content-header property bytes.
    pub properties: Bytes,
    pub body: Bytes,
}

/// A record read back from disk, checksums verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub msg_id: u64,
    pub persistent: bool,
    pub expires_at_ms: Option<u64>,
    pub queues: Vec<QueueId>,
    pub exchange: String,
    pub routing_key: String,
    pub properties: Bytes,
    pub body: Bytes,
}

/// A record's header read back without its body, checksum verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredHeader {
    pub msg_id: u64,
    pub persistent: bool,
    pub expires_at_ms: Option<u64>,
    pub queues: Vec<QueueId>,
    pub exchange: String,
    pub routing_key: String,
    pub properties: Bytes,
    pub body_len: usize,
}

/// Counters for monitoring and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JournalStats {
    /// Segment files on disk (including the one being written, once created).
    pub segments: u64,
    /// Bytes in segment and ack files.
    pub bytes_on_disk: u64,
    /// fdatasync/fsync calls made by the writer (segments, ack files, directory).
    pub fsyncs: u64,
    /// Records appended since open.
    pub appends: u64,
    /// Writer turns that wrote at least one record.
    pub write_batches: u64,
}

/// Records queued for one segment, written by the writer with one `pwrite`.
pub(crate) struct Batch {
    pub seg: u64,
    pub start: u64,
    pub buf: Vec<u8>,
    pub persistent: bool,
    pub callbacks: Vec<Callback>,
}

#[derive(Default)]
pub(crate) struct SegRefs {
    pub per_queue: HashMap<QueueId, u64>,
    pub total: u64,
}

pub(crate) struct State {
    pub active_seq: u64,
    pub active_off: u64,
    pub batches: Vec<Batch>,
    pub acks: Vec<(u64, [u8; format::ACK_ENTRY_LEN])>,
    pub deletes: Vec<u64>,
    pub pending_bytes: usize,
    /// Live (message, queue) references per segment.
    pub refs: HashMap<u64, SegRefs>,
    /// Segments the writer gave up on after a failure; appends roll past them.
    pub failed: HashSet<u64>,
    /// Everything before (segment, end offset) has been handled by the writer.
    pub written: (u64, u64),
    /// Bytes on disk per segment: (segment file, ack file).
    pub disk: HashMap<u64, (u64, u64)>,
    pub flush_req: u64,
    pub flush_done: u64,
    pub flush_result: Option<JournalError>,
    pub closing: bool,
    pub closed: bool,
    pub appends: u64,
    pub write_batches: u64,
}

impl State {
    pub(crate) fn has_work(&self) -> bool {
        !self.batches.is_empty()
            || !self.acks.is_empty()
            || !self.deletes.is_empty()
            || self.flush_req > self.flush_done
            || self.closing
    }

    /// Queues the segment for deletion if nothing references it and nothing more will be
    /// appended to it.
    fn reclaim_if_unused(&mut self, seg: u64) {
        if seg == self.active_seq {
            return;
        }
        if self.refs.get(&seg).is_some_and(|r| r.total == 0) {
            self.refs.remove(&seg);
            self.deletes.push(seg);
        }
    }
}

pub(crate) struct Shared {
    pub dir: PathBuf,
    pub opts: JournalOptions,
    pub state: Mutex<State>,
    /// Wakes the writer.
    pub work: Condvar,
    /// Wakes appenders waiting on back-pressure, readers waiting for a write, flush, close.
    pub done: Condvar,
    pub fsyncs: AtomicU64,
    pub writer_thread: OnceLock<ThreadId>,
    readers: Mutex<HashMap<u64, Arc<File>>>,
}

impl Shared {
    pub(crate) fn seg_path(&self, seq: u64) -> PathBuf {
        seg_path(&self.dir, seq)
    }
    pub(crate) fn acks_path(&self, seq: u64) -> PathBuf {
        acks_path(&self.dir, seq)
    }
    pub(crate) fn forget_reader(&self, seq: u64) {
        self.readers.lock().remove(&seq);
    }
}

pub(crate) fn seg_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:016x}.seg"))
}

pub(crate) fn acks_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:016x}.acks"))
}

/// Handle to an open journal. `Send + Sync`; share it with `Arc`.
pub struct Journal {
    shared: Arc<Shared>,
    writer: Mutex<Option<JoinHandle<Result<(), JournalError>>>>,
}

const MAX_OPEN_READERS: usize = 256;
const MAX_BATCH_BYTES: usize = 1024 * 1024;
/// First read of `read_header`.
const HEADER_READ: usize = 4096;

impl Journal {
    /// Opens (creating if needed) the journal in `dir`, recovers what it holds and starts
    /// the writer thread. References to queues not in `live_queues` are kept as
    /// [`Recovery::orphans`] unless the queue was forgotten (deleted).
    pub fn open(
        dir: impl AsRef<Path>,
        opts: JournalOptions,
        live_queues: &HashSet<QueueId>,
    ) -> Result<(Journal, Recovery), JournalError> {
        let dir = dir.as_ref().join("msgs");
        std::fs::create_dir_all(&dir).map_err(|e| JournalError::io(&dir, e))?;
        let rec = recovery::recover(&dir, live_queues)?;
        let next = rec.next_seq;
        let state = State {
            active_seq: next,
            active_off: 0,
            batches: Vec::new(),
            acks: Vec::new(),
            deletes: Vec::new(),
            pending_bytes: 0,
            refs: rec.refs,
            failed: HashSet::new(),
            written: (next, 0),
            disk: rec.disk,
            flush_req: 0,
            flush_done: 0,
            flush_result: None,
            closing: false,
            closed: false,
            appends: 0,
            write_batches: 0,
        };
        let shared = Arc::new(Shared {
            dir,
            opts,
            state: Mutex::new(state),
            work: Condvar::new(),
            done: Condvar::new(),
            fsyncs: AtomicU64::new(0),
            writer_thread: OnceLock::new(),
            readers: Mutex::new(HashMap::new()),
        });
        let w = Writer::new(Arc::clone(&shared), rec.ack_lens);
        let handle = std::thread::Builder::new()
            .name("warren-journal".into())
            .spawn(move || w.run())
            .map_err(|e| JournalError::io(&shared.dir, e))?;
        let _ = shared.writer_thread.set(handle.thread().id());
        let journal = Journal {
            shared,
            writer: Mutex::new(Some(handle)),
        };
        Ok((journal, rec.recovery))
    }

    /// Queues a record for writing and returns where it will be. `on_durable` runs once
    /// the write (and, under [`SyncPolicy::Always`], the sync of a persistent record) is
    /// done or has failed. When this returns an error, `on_durable` is dropped uncalled.
    pub fn append(&self, rec: NewRecord, on_durable: Callback) -> Result<Location, JournalError> {
        let mut queues = rec.queues;
        queues.sort_unstable();
        queues.dedup();
        if queues.is_empty() {
            return Err(JournalError::NoQueues);
        }
        let len = format::record_len(
            queues.len(),
            &rec.exchange,
            &rec.routing_key,
            &rec.properties,
            &rec.body,
            rec.expires_at_ms.is_some(),
        )
        .ok_or(JournalError::TooLarge(
            "record exceeds the format's field limits",
        ))?;
        let len32 = u32::try_from(len).map_err(|_| JournalError::TooLarge("record over 4 GiB"))?;
        let header = Header {
            msg_id: rec.msg_id,
            persistent: rec.persistent,
            expires_at_ms: rec.expires_at_ms,
            queues,
            exchange: rec.exchange,
            routing_key: rec.routing_key,
            properties: rec.properties,
        };
        let seg_size = u64::from(self.shared.opts.segment_size.max(1));
        let on_writer = self.shared.writer_thread.get() == Some(&std::thread::current().id());

        let mut st = self.shared.state.lock();
        while st.pending_bytes > self.shared.opts.max_pending_bytes && !st.closing && !on_writer {
            self.shared.done.wait(&mut st);
        }
        if st.closing {
            return Err(JournalError::Closed);
        }
        let len64 = u64::from(len32);
        if st.failed.contains(&st.active_seq)
            || (st.active_off > 0 && st.active_off + len64 > seg_size)
        {
            let sealed = st.active_seq;
            st.active_seq += 1;
            st.active_off = 0;
            st.reclaim_if_unused(sealed);
        }
        let seg = st.active_seq;
        let offset = st.active_off;
        let offset32 = u32::try_from(offset)
            .map_err(|_| JournalError::TooLarge("segment offset over 4 GiB"))?;
        // Batches are capped so the writer can take a bounded amount per turn.
        let needs_new_batch = st
            .batches
            .last()
            .is_none_or(|b| b.seg != seg || b.buf.len() >= MAX_BATCH_BYTES);
        if needs_new_batch {
            st.batches.push(Batch {
                seg,
                start: offset,
                buf: Vec::with_capacity(len.clamp(64 * 1024, MAX_BATCH_BYTES)),
                persistent: false,
                callbacks: Vec::new(),
            });
        }
        let Some(batch) = st.batches.last_mut() else {
            return Err(JournalError::Closed);
        };
        format::encode_record(&mut batch.buf, &header, &rec.body);
        batch.persistent |= header.persistent;
        batch.callbacks.push(on_durable);
        st.active_off += len64;
        st.pending_bytes += len;
        st.appends += 1;
        let refs = st.refs.entry(seg).or_default();
        for q in &header.queues {
            *refs.per_queue.entry(*q).or_default() += 1;
        }
        refs.total += header.queues.len() as u64;
        drop(st);
        self.shared.work.notify_one();
        Ok(Location {
            segment: seg,
            offset: offset32,
            len: len32,
        })
    }

    /// Records that `queue` is done with the message at `loc`. Written in the writer's next
    /// turn, synced lazily. Unknown or forgotten (queue, segment) pairs are ignored.
    pub fn ack(&self, queue: QueueId, loc: Location) {
        let mut st = self.shared.state.lock();
        let Some(refs) = st.refs.get_mut(&loc.segment) else {
            return;
        };
        let Some(count) = refs.per_queue.get_mut(&queue) else {
            return;
        };
        *count = count.saturating_sub(1);
        if *count == 0 {
            refs.per_queue.remove(&queue);
        }
        refs.total = refs.total.saturating_sub(1);
        let entry = format::encode_ack(queue, u64::from(loc.offset), AckKind::Acked);
        st.acks.push((loc.segment, entry));
        st.reclaim_if_unused(loc.segment);
        drop(st);
        self.shared.work.notify_one();
    }

    /// Records that the message at `loc` was handed to a consumer of `queue`, so that it is
    /// recovered with `redelivered` set if it is not acked before a restart.
    pub fn mark_delivered(&self, queue: QueueId, loc: Location) {
        let mut st = self.shared.state.lock();
        let live = st
            .refs
            .get(&loc.segment)
            .is_some_and(|r| r.per_queue.contains_key(&queue));
        if live {
            let entry = format::encode_ack(queue, u64::from(loc.offset), AckKind::Delivered);
            st.acks.push((loc.segment, entry));
            drop(st);
            self.shared.work.notify_one();
        }
    }

    /// Drops every reference held by `queue` (the queue was deleted, or an operator gave
    /// up an orphan queue's messages); segments left with none are reclaimed. A
    /// `Forgotten` entry goes into the ack file of each segment that keeps other
    /// references, so that recovery tells a deleted queue from one whose metadata was
    /// lost (whose messages it keeps as orphans).
    pub fn forget_queue(&self, queue: QueueId) {
        let mut st = self.shared.state.lock();
        let mut emptied = Vec::new();
        let mut marked = Vec::new();
        for (seg, refs) in st.refs.iter_mut() {
            if let Some(n) = refs.per_queue.remove(&queue) {
                refs.total = refs.total.saturating_sub(n);
                if refs.total == 0 {
                    emptied.push(*seg);
                } else {
                    marked.push(*seg);
                }
            }
        }
        // The active segment stays even when emptied: it needs the mark too.
        if emptied.contains(&st.active_seq) {
            marked.push(st.active_seq);
        }
        let entry = format::encode_ack(queue, 0, AckKind::Forgotten);
        for seg in marked {
            st.acks.push((seg, entry));
        }
        for seg in emptied {
            st.reclaim_if_unused(seg);
        }
        drop(st);
        self.shared.work.notify_one();
    }

    /// Reads the record at `loc` back from disk and verifies both checksums. Waits if the
    /// writer has not written it yet.
    pub fn read(&self, loc: Location) -> Result<StoredMessage, JournalError> {
        self.wait_written(loc);
        let file = self.reader(loc)?;
        let mut buf = vec![0u8; loc.len as usize];
        file.read_exact_at(&mut buf, u64::from(loc.offset))
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::UnexpectedEof => JournalError::Corrupt { location: loc },
                _ => JournalError::io(self.shared.seg_path(loc.segment), e),
            })?;
        let p = format::parse_record(&buf).map_err(|_| JournalError::Corrupt { location: loc })?;
        if p.len != buf.len() {
            return Err(JournalError::Corrupt { location: loc });
        }
        let body = Bytes::copy_from_slice(p.body);
        let h = p.header;
        Ok(StoredMessage {
            msg_id: h.msg_id,
            persistent: h.persistent,
            expires_at_ms: h.expires_at_ms,
            queues: h.queues,
            exchange: h.exchange,
            routing_key: h.routing_key,
            properties: h.properties,
            body,
        })
    }

    /// Reads only the header of the record at `loc` (everything but the body), verifying
    /// the header checksum. For rebuilding queues at start without reading bodies.
    pub fn read_header(&self, loc: Location) -> Result<StoredHeader, JournalError> {
        self.wait_written(loc);
        let file = self.reader(loc)?;
        let io_err = |e: std::io::Error| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => JournalError::Corrupt { location: loc },
            _ => JournalError::io(self.shared.seg_path(loc.segment), e),
        };
        // One read covers most headers; a second fetches the rest of a long one.
        let first = (loc.len as usize).min(HEADER_READ);
        let mut buf = vec![0u8; first];
        file.read_exact_at(&mut buf, u64::from(loc.offset))
            .map_err(io_err)?;
        let need = format::peek_lengths(&buf)
            .map(|(h, _)| format::FIXED_LEN as u64 + h)
            .ok_or(JournalError::Corrupt { location: loc })?;
        if need > u64::from(loc.len) {
            return Err(JournalError::Corrupt { location: loc });
        }
        let need = need as usize;
        if need > buf.len() {
            let have = buf.len();
            buf.resize(need, 0);
            let rest = buf.get_mut(have..).unwrap_or_default();
            file.read_exact_at(rest, u64::from(loc.offset) + have as u64)
                .map_err(io_err)?;
        }
        let (h, len) =
            format::parse_header(&buf).map_err(|_| JournalError::Corrupt { location: loc })?;
        if len != loc.len as usize {
            return Err(JournalError::Corrupt { location: loc });
        }
        Ok(StoredHeader {
            msg_id: h.msg_id,
            persistent: h.persistent,
            expires_at_ms: h.expires_at_ms,
            queues: h.queues,
            exchange: h.exchange,
            routing_key: h.routing_key,
            properties: h.properties,
            body_len: len - need - format::TRAILER_LEN,
        })
    }

    /// Waits until the writer has handled `loc`, if it was handed out by this run.
    fn wait_written(&self, loc: Location) {
        let end = u64::from(loc.offset) + u64::from(loc.len);
        let mut st = self.shared.state.lock();
        // Wait only for bytes already handed out: a bogus location must not hang.
        while st.written < (loc.segment, end)
            && (loc.segment, end) <= (st.active_seq, st.active_off)
            && !st.closed
        {
            self.shared.done.wait(&mut st);
        }
    }

    fn reader(&self, loc: Location) -> Result<Arc<File>, JournalError> {
        let mut readers = self.shared.readers.lock();
        if let Some(f) = readers.get(&loc.segment) {
            return Ok(Arc::clone(f));
        }
        let path = self.shared.seg_path(loc.segment);
        let f = match File::open(&path) {
            Ok(f) => Arc::new(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(JournalError::NoSuchSegment { location: loc })
            }
            Err(e) => return Err(JournalError::io(path, e)),
        };
        if readers.len() >= MAX_OPEN_READERS {
            readers.clear();
        }
        readers.insert(loc.segment, Arc::clone(&f));
        Ok(f)
    }

    /// Waits until everything appended, acked or marked before this call is written and
    /// synced (whatever the sync policy).
    pub fn flush(&self) -> Result<(), JournalError> {
        let mut st = self.shared.state.lock();
        if st.closed {
            return Err(JournalError::Closed);
        }
        st.flush_req += 1;
        let want = st.flush_req;
        self.shared.work.notify_one();
        while st.flush_done < want && !st.closed {
            self.shared.done.wait(&mut st);
        }
        if st.flush_done < want {
            return Err(JournalError::Closed);
        }
        match &st.flush_result {
            Some(e) => Err(e.duplicate()),
            None => Ok(()),
        }
    }

    /// Clean shutdown: refuses new appends, writes and syncs everything queued, runs the
    /// remaining callbacks and stops the writer. Later calls return `Ok(())`.
    pub fn close(&self) -> Result<(), JournalError> {
        {
            let mut st = self.shared.state.lock();
            st.closing = true;
        }
        self.shared.work.notify_one();
        self.shared.done.notify_all();
        if self.shared.writer_thread.get() == Some(&std::thread::current().id()) {
            // Dropped from a callback: the writer finishes the close itself.
            return Ok(());
        }
        let handle = self.writer.lock().take();
        // Open read handles would keep the space of reclaimed segments allocated.
        self.shared.readers.lock().clear();
        match handle {
            Some(h) => h.join().unwrap_or(Err(JournalError::Closed)),
            None => Ok(()),
        }
    }

    pub fn stats(&self) -> JournalStats {
        let st = self.shared.state.lock();
        JournalStats {
            segments: st.disk.len() as u64,
            bytes_on_disk: st.disk.values().map(|(s, a)| s + a).sum(),
            fsyncs: self.shared.fsyncs.load(Ordering::Relaxed),
            appends: st.appends,
            write_batches: st.write_batches,
        }
    }

    /// The directory holding the segment files (`<dir>/msgs`).
    pub fn segment_dir(&self) -> &Path {
        &self.shared.dir
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::warn!(error = %e, "journal close on drop failed");
        }
    }
}
