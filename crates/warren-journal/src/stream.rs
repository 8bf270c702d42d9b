//! An append-only stream log (RabbitMQ's stream queues, osiris on disk): every message
//! gets the next offset and stays until retention removes the whole segment holding it.
//!
//! # Layout
//!
//! ```text
//! <dir>/<first offset as 20 digits>.sseg   records, append-only
//! ```
//!
//! Records use the journal's record format (`format` module) with no queue list:
//! `msg_id` is the offset, `expires_at_ms` the chunk's timestamp (wall-clock ms), and the
//! `persistent` flag marks the first record of a chunk. A chunk is what the writer wrote
//! in one turn (one fdatasync, group commit), as an osiris chunk is one batch; `last`
//! starts at the last chunk, timestamps are per chunk.
//!
//! # Durability
//!
//! One writer thread per stream takes everything appended since its last turn, gives it
//! offsets in append order, writes it with one `write`, calls `fdatasync` (and syncs the
//! directory when it created a segment), and only then publishes the new end to readers
//! and runs the callbacks: a confirm sent from a callback survives SIGKILL and power loss.
//! A failed write is truncated away and its callbacks get the error; no offset is used.
//!
//! # Retention
//!
//! As in osiris, retention is evaluated per segment when a segment is rolled over (and at
//! open): the oldest segments go while the stream holds more than `max_bytes`, or while
//! their newest chunk is older than `max_age_ms`. The segment being written never goes.
//!
//! # Recovery
//!
//! [`StreamLog::open`] scans the segments in order, verifying each record's checksums. A
//! torn or damaged record ends its segment: the rest of that file is truncated (with a
//! warning). Offsets lost that way are skipped by readers.

use std::{
    collections::VecDeque,
    fs::{self, File, OpenOptions},
    io::{self, Read},
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    sync::Arc,
    thread::JoinHandle,
    time::{SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use parking_lot::{Condvar, Mutex};
use tracing::warn;

use crate::{
    format::{self, Header},
    journal::Callback,
    JournalError,
};

/// RabbitMQ's default `stream-max-segment-size-bytes` (500 MB).
pub const DEFAULT_MAX_SEGMENT_BYTES: u64 = 500_000_000;

/// Appended bytes waiting for the writer past which `append` waits (back-pressure).
const MAX_PENDING_BYTES: usize = 64 << 20;

/// Bytes of recent records kept in memory for readers that follow the tail.
const CACHE_BYTES: usize = 16 << 20;

/// Retention and segment size; changed by policies at any time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamOptions {
    pub max_segment_bytes: u64,
    pub max_bytes: Option<u64>,
    pub max_age_ms: Option<u64>,
    /// fdatasync each batch before it is visible (off only in tests of other things).
    pub sync: bool,
}

impl Default for StreamOptions {
    fn default() -> Self {
        StreamOptions {
            max_segment_bytes: DEFAULT_MAX_SEGMENT_BYTES,
            max_bytes: None,
            max_age_ms: None,
            sync: true,
        }
    }
}

/// One message of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRecord {
    pub offset: u64,
    /// When its chunk was written (wall-clock ms).
    pub timestamp_ms: u64,
    pub exchange: String,
    pub routing_key: String,
    pub properties: Bytes,
    pub body: Bytes,
}

/// A message to append.
#[derive(Debug, Clone)]
pub struct NewStreamRecord {
    pub exchange: String,
    pub routing_key: String,
    pub properties: Bytes,
    pub body: Bytes,
}

/// What the writer runs after each committed batch (the server dispatches to readers).
pub type OnCommit = Box<dyn Fn() + Send + Sync>;

#[derive(Debug, Clone, Copy)]
struct Idx {
    /// Byte position in its segment; `len == 0` marks an offset lost to damage.
    pos: u64,
    len: u32,
    ts: u64,
    chunk_start: bool,
}

struct Segment {
    first_offset: u64,
    path: PathBuf,
    file: Arc<File>,
    size: u64,
    /// Timestamp of its newest chunk.
    last_ts: u64,
}

/// What readers see: committed records only.
struct State {
    segments: VecDeque<Segment>,
    /// Offset of `index[0]`.
    first: u64,
    index: VecDeque<Idx>,
    /// Recent records, `cache[0]` at offset `cache_first`.
    cache: VecDeque<Arc<StreamRecord>>,
    cache_first: u64,
    cache_bytes: usize,
    total_bytes: u64,
    options: StreamOptions,
    /// The writer must start a new segment before its next write (after a failure).
    sealed: bool,
}

struct Pending {
    records: Vec<(NewStreamRecord, Callback)>,
    bytes: usize,
    closed: bool,
}

struct Inner {
    dir: PathBuf,
    state: Mutex<State>,
    pending: Mutex<Pending>,
    wake: Condvar,
    room: Condvar,
    on_commit: Mutex<Option<Arc<OnCommit>>>,
}

/// A stream's log; cheap to share (`Arc` inside). Dropping the last handle does not stop
/// the writer: call [`StreamLog::close`] or [`StreamLog::delete`].
#[derive(Clone)]
pub struct StreamLog {
    inner: Arc<Inner>,
    writer: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl std::fmt::Debug for StreamLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamLog")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn io_err(path: &Path, source: io::Error) -> JournalError {
    JournalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn segment_name(first_offset: u64) -> String {
    format!("{first_offset:020}.sseg")
}

fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(dir, e))
}

impl StreamLog {
    /// Opens (or creates) the stream under `dir`, recovering what is there, and starts its
    /// writer thread.
    pub fn open(dir: &Path, options: StreamOptions) -> Result<StreamLog, JournalError> {
        fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        let state = recover(dir, options)?;
        let inner = Arc::new(Inner {
            dir: dir.to_path_buf(),
            state: Mutex::new(state),
            pending: Mutex::new(Pending {
                records: Vec::new(),
                bytes: 0,
                closed: false,
            }),
            wake: Condvar::new(),
            room: Condvar::new(),
            on_commit: Mutex::new(None),
        });
        inner.apply_retention(now_ms());
        let for_writer = inner.clone();
        let handle = std::thread::Builder::new()
            .name("warren-stream".into())
            .spawn(move || for_writer.run())
            .map_err(|e| io_err(dir, e))?;
        Ok(StreamLog {
            inner,
            writer: Arc::new(Mutex::new(Some(handle))),
        })
    }

    /// Sets what runs after each committed batch.
    pub fn set_on_commit(&self, f: OnCommit) {
        *self.inner.on_commit.lock() = Some(Arc::new(f));
    }

    /// Queues a record; `done` runs on the writer thread once it is synced (or failed).
    /// Waits while too much is queued already.
    pub fn append(&self, record: NewStreamRecord, done: Callback) {
        let len = record.properties.len() + record.body.len() + 64;
        let mut p = self.inner.pending.lock();
        if p.closed {
            drop(p);
            done(Err(JournalError::Closed));
            return;
        }
        while p.bytes > MAX_PENDING_BYTES && !p.closed {
            self.inner.room.wait(&mut p);
        }
        p.bytes += len;
        p.records.push((record, done));
        drop(p);
        self.inner.wake.notify_one();
    }

    /// The first offset still in the stream.
    pub fn first_offset(&self) -> u64 {
        self.inner.state.lock().first
    }

    /// The offset the next committed record will get (readers stop before it).
    pub fn end_offset(&self) -> u64 {
        let s = self.inner.state.lock();
        s.first + s.index.len() as u64
    }

    /// Records in the stream (committed, not removed by retention).
    pub fn len(&self) -> u64 {
        self.inner.state.lock().index.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes on disk, all segments together.
    pub fn bytes(&self) -> u64 {
        self.inner.state.lock().total_bytes
    }

    /// Segment files, oldest first (their first offsets).
    pub fn segments(&self) -> Vec<u64> {
        let s = self.inner.state.lock();
        s.segments.iter().map(|g| g.first_offset).collect()
    }

    /// The first offset of the last chunk (`end_offset` when empty).
    pub fn last_chunk_offset(&self) -> u64 {
        let s = self.inner.state.lock();
        let end = s.first + s.index.len() as u64;
        s.index
            .iter()
            .rposition(|i| i.chunk_start)
            .map_or(end, |n| s.first + n as u64)
    }

    /// The first offset of the first chunk written at or after `ts_ms`; the end when
    /// every chunk is older, the first offset when every chunk is newer.
    pub fn offset_for_timestamp(&self, ts_ms: u64) -> u64 {
        let s = self.inner.state.lock();
        let n = s.index.partition_point(|i| i.ts < ts_ms);
        s.first + n as u64
    }

    /// Changes retention and segment size; retention runs at the next segment roll.
    pub fn set_options(&self, options: StreamOptions) {
        self.inner.state.lock().options = options;
    }

    /// The record at `offset`: `Ok(None)` when it is not (or no longer, or not yet) in
    /// the stream or was lost to damage.
    pub fn read(&self, offset: u64) -> Result<Option<Arc<StreamRecord>>, JournalError> {
        let (file, path, idx) = {
            let s = self.inner.state.lock();
            if offset >= s.cache_first {
                if let Some(r) = s.cache.get((offset - s.cache_first) as usize) {
                    return Ok(Some(r.clone()));
                }
            }
            let Some(n) = offset.checked_sub(s.first) else {
                return Ok(None);
            };
            let Some(idx) = s.index.get(n as usize).copied() else {
                return Ok(None);
            };
            if idx.len == 0 {
                return Ok(None);
            }
            let seg_at = s
                .segments
                .partition_point(|g| g.first_offset <= offset)
                .saturating_sub(1);
            let Some(seg) = s.segments.get(seg_at) else {
                return Ok(None);
            };
            (seg.file.clone(), seg.path.clone(), idx)
        };
        let mut buf = vec![0u8; idx.len as usize];
        file.read_exact_at(&mut buf, idx.pos)
            .map_err(|e| io_err(&path, e))?;
        let parsed = format::parse_record(&buf).map_err(|_| JournalError::Corrupt {
            location: crate::Location {
                segment: offset,
                offset: idx.pos as u32,
                len: idx.len,
            },
        })?;
        Ok(Some(Arc::new(StreamRecord {
            offset,
            timestamp_ms: idx.ts,
            exchange: parsed.header.exchange,
            routing_key: parsed.header.routing_key,
            properties: parsed.header.properties,
            body: Bytes::copy_from_slice(parsed.body),
        })))
    }

    fn stop(&self) {
        self.inner.pending.lock().closed = true;
        self.inner.wake.notify_all();
        self.inner.room.notify_all();
        if let Some(h) = self.writer.lock().take() {
            let _ = h.join();
        }
    }

    /// Writes what is queued, then stops the writer.
    pub fn close(&self) {
        self.stop();
    }

    /// Stops the writer and removes the stream's files (the queue was deleted).
    pub fn delete(&self) {
        self.stop();
        let mut s = self.inner.state.lock();
        s.segments.clear();
        s.index.clear();
        s.cache.clear();
        drop(s);
        if let Err(e) = fs::remove_dir_all(&self.inner.dir) {
            if e.kind() != io::ErrorKind::NotFound {
                warn!(dir = %self.inner.dir.display(), error = %e, "cannot remove a deleted stream's files");
            }
        }
    }
}

impl Inner {
    fn run(self: Arc<Self>) {
        loop {
            let batch = {
                let mut p = self.pending.lock();
                while p.records.is_empty() && !p.closed {
                    self.wake.wait(&mut p);
                }
                if p.records.is_empty() {
                    return;
                }
                p.bytes = 0;
                std::mem::take(&mut p.records)
            };
            self.room.notify_all();
            let (records, callbacks): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
            let result = self.write_batch(records);
            let ok = result.is_ok();
            let err = result.err();
            for cb in callbacks {
                cb(match &err {
                    None => Ok(()),
                    Some(e) => Err(clone_error(e)),
                });
            }
            if ok {
                let hook = self.on_commit.lock().clone();
                if let Some(hook) = hook {
                    hook();
                }
            }
        }
    }

    /// Writes one chunk: offsets, encoding, roll when the segment is full, write, sync,
    /// then the records become visible.
    fn write_batch(&self, records: Vec<NewStreamRecord>) -> Result<(), JournalError> {
        let now = now_ms();
        let (first_offset, roll, opts) = {
            let s = self.state.lock();
            let end = s.first + s.index.len() as u64;
            let roll = s.sealed
                || s.segments
                    .back()
                    .is_none_or(|g| g.size > 0 && g.size >= s.options.max_segment_bytes);
            (end, roll, s.options)
        };
        if roll {
            self.roll(first_offset)?;
            self.apply_retention(now);
        }
        let mut buf = Vec::new();
        let mut idx = Vec::with_capacity(records.len());
        let mut cached = Vec::with_capacity(records.len());
        let (file, path, base) = {
            let s = self.state.lock();
            let Some(seg) = s.segments.back() else {
                return Err(JournalError::Closed);
            };
            (seg.file.clone(), seg.path.clone(), seg.size)
        };
        for (n, r) in records.into_iter().enumerate() {
            let offset = first_offset + n as u64;
            if format::record_len(0, &r.exchange, &r.routing_key, &r.properties, &r.body, true)
                .is_none()
            {
                return Err(JournalError::TooLarge("stream record"));
            }
            let start = buf.len();
            let h = Header {
                msg_id: offset,
                persistent: n == 0,
                expires_at_ms: Some(now),
                queues: Vec::new(),
                exchange: r.exchange,
                routing_key: r.routing_key,
                properties: r.properties,
            };
            format::encode_record(&mut buf, &h, &r.body);
            idx.push(Idx {
                pos: base + start as u64,
                len: (buf.len() - start) as u32,
                ts: now,
                chunk_start: n == 0,
            });
            cached.push(Arc::new(StreamRecord {
                offset,
                timestamp_ms: now,
                exchange: h.exchange,
                routing_key: h.routing_key,
                properties: h.properties,
                body: r.body,
            }));
        }
        let written = file
            .write_all_at(&buf, base)
            .map_err(|e| JournalError::write(path.clone(), e))
            .and_then(|()| {
                if opts.sync {
                    file.sync_data().map_err(|source| JournalError::SyncFailed {
                        path: path.clone(),
                        source,
                    })
                } else {
                    Ok(())
                }
            });
        if let Err(e) = written {
            // Nothing of the batch counts: cut it off and write the next one elsewhere.
            let _ = file.set_len(base);
            self.state.lock().sealed = true;
            return Err(e);
        }
        let mut s = self.state.lock();
        if let Some(seg) = s.segments.back_mut() {
            seg.size = base + buf.len() as u64;
            seg.last_ts = now;
        }
        s.total_bytes += buf.len() as u64;
        if s.index.is_empty() {
            s.first = first_offset;
        }
        s.index.extend(idx);
        if s.cache.is_empty() {
            s.cache_first = first_offset;
        }
        for r in cached {
            s.cache_bytes += r.body.len() + r.properties.len() + 128;
            s.cache.push_back(r);
        }
        while s.cache_bytes > CACHE_BYTES && s.cache.len() > 1 {
            if let Some(old) = s.cache.pop_front() {
                s.cache_bytes -= old.body.len() + old.properties.len() + 128;
                s.cache_first += 1;
            }
        }
        Ok(())
    }

    /// Starts a new segment whose first record will be `first_offset`.
    fn roll(&self, first_offset: u64) -> Result<(), JournalError> {
        let path = self.dir.join(segment_name(first_offset));
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| JournalError::write(path.clone(), e))?;
        sync_dir(&self.dir)?;
        let mut s = self.state.lock();
        // An empty segment left by a failed write is replaced, not kept.
        if s.segments.back().is_some_and(|g| g.size == 0) {
            if let Some(g) = s.segments.pop_back() {
                if g.path != path {
                    let _ = fs::remove_file(&g.path);
                }
            }
        }
        s.segments.push_back(Segment {
            first_offset,
            path,
            file: Arc::new(file),
            size: 0,
            last_ts: 0,
        });
        s.sealed = false;
        Ok(())
    }

    /// Removes the oldest whole segments that retention no longer keeps.
    fn apply_retention(&self, now: u64) {
        let mut s = self.state.lock();
        let opts = s.options;
        loop {
            if s.segments.len() < 2 {
                break;
            }
            let Some(oldest) = s.segments.front() else {
                break;
            };
            let too_big = opts.max_bytes.is_some_and(|max| s.total_bytes > max);
            let too_old = opts
                .max_age_ms
                .is_some_and(|age| oldest.last_ts.saturating_add(age) < now);
            if !too_big && !too_old {
                break;
            }
            let Some(gone) = s.segments.pop_front() else {
                break;
            };
            let next_first = s
                .segments
                .front()
                .map_or(gone.first_offset, |g| g.first_offset);
            s.total_bytes = s.total_bytes.saturating_sub(gone.size);
            while s.first < next_first && !s.index.is_empty() {
                s.index.pop_front();
                s.first += 1;
            }
            if s.index.is_empty() {
                s.first = next_first;
            }
            while s.cache_first < s.first && !s.cache.is_empty() {
                if let Some(old) = s.cache.pop_front() {
                    s.cache_bytes -= old.body.len() + old.properties.len() + 128;
                }
                s.cache_first += 1;
            }
            if let Err(e) = fs::remove_file(&gone.path) {
                warn!(file = %gone.path.display(), error = %e, "cannot remove a stream segment retention dropped");
            }
        }
        if s.cache.is_empty() {
            s.cache_first = s.first + s.index.len() as u64;
        }
    }
}

fn clone_error(e: &JournalError) -> JournalError {
    match e {
        JournalError::DiskFull { path } => JournalError::DiskFull { path: path.clone() },
        JournalError::SyncFailed { path, source } => JournalError::SyncFailed {
            path: path.clone(),
            source: io::Error::new(source.kind(), source.to_string()),
        },
        JournalError::Io { path, source } => JournalError::Io {
            path: path.clone(),
            source: io::Error::new(source.kind(), source.to_string()),
        },
        JournalError::TooLarge(what) => JournalError::TooLarge(what),
        _ => JournalError::Closed,
    }
}

/// Reads and verifies the next record (at most `left` bytes remain in the file); `None`
/// for a torn or damaged one.
fn next_record<'a>(
    reader: &mut impl Read,
    buf: &'a mut Vec<u8>,
    left: u64,
) -> Option<format::Parsed<'a>> {
    buf.clear();
    buf.resize(format::FIXED_LEN, 0);
    reader.read_exact(buf).ok()?;
    let (header_len, body_len) = format::peek_lengths(buf)?;
    let total = format::FIXED_LEN as u64 + header_len + body_len + format::TRAILER_LEN as u64;
    if total > left {
        return None;
    }
    buf.resize(usize::try_from(total).ok()?, 0);
    reader.read_exact(buf.get_mut(format::FIXED_LEN..)?).ok()?;
    format::parse_record(buf).ok()
}

/// Rebuilds the index from the segment files, truncating torn or damaged tails.
fn recover(dir: &Path, options: StreamOptions) -> Result<State, JournalError> {
    let mut names: Vec<(u64, PathBuf)> = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
        let entry = entry.map_err(|e| io_err(dir, e))?;
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(first) = name
            .strip_suffix(".sseg")
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        names.push((first, path));
    }
    names.sort();
    let mut state = State {
        segments: VecDeque::new(),
        first: names.first().map_or(0, |(f, _)| *f),
        index: VecDeque::new(),
        cache: VecDeque::new(),
        cache_first: 0,
        cache_bytes: 0,
        total_bytes: 0,
        options,
        sealed: false,
    };
    for (first_offset, path) in names {
        let end = state.first + state.index.len() as u64;
        if first_offset < end {
            warn!(file = %path.display(), "stream segment overlaps the one before; ignored");
            continue;
        }
        // Offsets between segments that damage took: kept as lost, so offsets stay put.
        while state.first + (state.index.len() as u64) < first_offset {
            state.index.push_back(Idx {
                pos: 0,
                len: 0,
                ts: 0,
                chunk_start: false,
            });
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| io_err(&path, e))?;
        let file_len = file.metadata().map_err(|e| io_err(&path, e))?.len();
        // Record by record through a buffered reader: a segment is never held whole.
        let mut reader = io::BufReader::with_capacity(1 << 20, &file);
        let mut record = Vec::new();
        let mut pos = 0u64;
        let mut last_ts = 0;
        let mut expected = first_offset;
        while pos < file_len {
            match next_record(&mut reader, &mut record, file_len - pos) {
                Some(p) if p.header.msg_id == expected => {
                    let ts = p.header.expires_at_ms.unwrap_or(0);
                    state.index.push_back(Idx {
                        pos,
                        len: p.len as u32,
                        ts,
                        chunk_start: p.header.persistent,
                    });
                    last_ts = ts;
                    pos += p.len as u64;
                    expected += 1;
                }
                _ => {
                    warn!(file = %path.display(), at = pos, lost_bytes = file_len - pos,
                        "torn or damaged stream record; the rest of the segment is cut off");
                    file.set_len(pos).map_err(|e| io_err(&path, e))?;
                    break;
                }
            }
        }
        state.total_bytes += pos;
        state.segments.push_back(Segment {
            first_offset,
            path,
            file: Arc::new(file),
            size: pos,
            last_ts,
        });
    }
    state.cache_first = state.first + state.index.len() as u64;
    // Each run writes a fresh segment, as the journal does.
    state.sealed = true;
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::mpsc;

    /// Writes `bytes` over a file (tests of recovery).
    fn overwrite(path: &Path, bytes: &[u8]) {
        fs::write(path, bytes).expect("write");
    }

    fn temp_dir(name: &str) -> PathBuf {
        static N: AtomicU64 = AtomicU64::new(0);
        let d = std::env::temp_dir().join(format!(
            "warren-stream-test-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn rec(body: &str) -> NewStreamRecord {
        NewStreamRecord {
            exchange: "ex".into(),
            routing_key: "rk".into(),
            properties: Bytes::from_static(&[0, 0]),
            body: Bytes::from(body.to_string()),
        }
    }

    /// Appends and waits for every confirm.
    fn append_all(log: &StreamLog, bodies: &[&str]) {
        let (tx, rx) = mpsc::channel();
        for b in bodies {
            let tx = tx.clone();
            log.append(
                rec(b),
                Box::new(move |r| {
                    let _ = tx.send(r.is_ok());
                }),
            );
        }
        for _ in bodies {
            assert_eq!(rx.recv().ok(), Some(true));
        }
    }

    #[test]
    fn offsets_are_dense_and_survive_reopen() {
        let dir = temp_dir("reopen");
        let log = StreamLog::open(&dir, StreamOptions::default()).expect("open");
        append_all(&log, &["a", "b", "c"]);
        assert_eq!((log.first_offset(), log.end_offset()), (0, 3));
        let r = log.read(1).expect("read").expect("there");
        assert_eq!(
            (r.offset, &r.body[..], &r.exchange[..]),
            (1, &b"b"[..], "ex")
        );
        log.close();
        let log = StreamLog::open(&dir, StreamOptions::default()).expect("reopen");
        assert_eq!(log.end_offset(), 3);
        let r = log.read(2).expect("read").expect("there");
        assert_eq!(&r.body[..], b"c");
        append_all(&log, &["d"]);
        assert_eq!(
            log.read(3).expect("read").map(|r| r.body.clone()),
            Some(Bytes::from("d"))
        );
        assert_eq!(log.segments().len(), 2, "each run starts a segment");
        assert!(log.read(4).expect("read").is_none());
        log.delete();
        assert!(!dir.exists());
    }

    #[test]
    fn a_torn_tail_is_cut_off_and_offsets_continue() {
        let dir = temp_dir("torn");
        let log = StreamLog::open(&dir, StreamOptions::default()).expect("open");
        append_all(&log, &["one", "two"]);
        log.close();
        let seg = dir.join(segment_name(0));
        let mut bytes = fs::read(&seg).expect("read");
        let full = bytes.len();
        bytes.truncate(full - 3);
        overwrite(&seg, &bytes);
        let log = StreamLog::open(&dir, StreamOptions::default()).expect("reopen");
        assert_eq!(log.end_offset(), 1, "the torn record is gone");
        assert!(fs::metadata(&seg).expect("meta").len() < full as u64);
        append_all(&log, &["three"]);
        assert_eq!(
            log.read(1).expect("read").map(|r| r.body.clone()),
            Some(Bytes::from("three"))
        );
        log.delete();
    }

    #[test]
    fn retention_by_bytes_removes_whole_old_segments() {
        let dir = temp_dir("bytes");
        let opts = StreamOptions {
            max_segment_bytes: 200,
            max_bytes: Some(500),
            ..StreamOptions::default()
        };
        let log = StreamLog::open(&dir, opts).expect("open");
        let body = "x".repeat(60);
        for _ in 0..30 {
            append_all(&log, &[&body]);
        }
        assert!(log.bytes() <= 500 + 200, "bytes {}", log.bytes());
        assert!(log.first_offset() > 0);
        assert_eq!(log.end_offset(), 30);
        // What is left is readable, what went is not.
        assert!(log.read(log.first_offset()).expect("read").is_some());
        assert!(log.read(0).expect("read").is_none());
        let first = log.segments()[0];
        assert_eq!(first, log.first_offset(), "retention keeps whole segments");
        log.delete();
    }

    #[test]
    fn retention_by_age_runs_at_roll() {
        let dir = temp_dir("age");
        let opts = StreamOptions {
            max_segment_bytes: 1,
            max_age_ms: Some(50),
            ..StreamOptions::default()
        };
        let log = StreamLog::open(&dir, opts).expect("open");
        append_all(&log, &["a"]);
        append_all(&log, &["b"]);
        std::thread::sleep(std::time::Duration::from_millis(120));
        append_all(&log, &["c"]);
        assert_eq!(log.first_offset(), 2, "segments older than max-age went");
        log.delete();
    }

    #[test]
    fn chunks_and_timestamps() {
        let dir = temp_dir("chunks");
        let log = StreamLog::open(&dir, StreamOptions::default()).expect("open");
        append_all(&log, &["a"]);
        let before = now_ms();
        std::thread::sleep(std::time::Duration::from_millis(20));
        append_all(&log, &["b"]);
        assert_eq!(log.last_chunk_offset(), 1);
        assert_eq!(log.offset_for_timestamp(0), 0);
        assert_eq!(log.offset_for_timestamp(before + 1), 1);
        assert_eq!(log.offset_for_timestamp(u64::MAX), 2);
        log.delete();
    }
}
