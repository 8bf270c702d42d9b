//! The writer thread: the only code that writes, syncs or deletes journal files.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use crate::format::ACK_ENTRY_LEN;
use crate::journal::{Batch, Callback, Shared, SyncPolicy};
use crate::JournalError;

/// Most record bytes written per writer turn (one sync per turn).
const MAX_TURN_BYTES: usize = 8 * 1024 * 1024;

/// Ack files kept open at once; beyond this they are synced and closed.
const MAX_OPEN_ACK_FILES: usize = 128;

struct SegFile {
    file: File,
    path: PathBuf,
    len: u64,
}

struct AckFile {
    file: File,
    len: u64,
}

pub(crate) struct Writer {
    shared: Arc<Shared>,
    segs: HashMap<u64, SegFile>,
    /// Segments with persistent bytes written but not yet synced.
    unsynced: HashSet<u64>,
    /// Segments given up on, with the error their later batches get.
    failed: HashMap<u64, JournalError>,
    acks: HashMap<u64, AckFile>,
    /// Lengths of ack files from earlier runs, for ones not open yet.
    ack_lens: HashMap<u64, u64>,
    dirty_acks: HashSet<u64>,
    /// A file was created or deleted since the last directory fsync.
    dir_dirty: bool,
    last_sync: Instant,
    last_ack_sync: Instant,
}

type Outcome = (Vec<Callback>, Result<(), JournalError>);

impl Writer {
    pub(crate) fn new(shared: Arc<Shared>, ack_lens: HashMap<u64, u64>) -> Writer {
        Writer {
            shared,
            segs: HashMap::new(),
            unsynced: HashSet::new(),
            failed: HashMap::new(),
            acks: HashMap::new(),
            ack_lens,
            dirty_acks: HashSet::new(),
            dir_dirty: false,
            last_sync: Instant::now(),
            last_ack_sync: Instant::now(),
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let mut d: Option<Instant> = None;
        if !self.unsynced.is_empty() {
            if let SyncPolicy::Interval(i) = self.shared.opts.sync {
                d = Some(self.last_sync + i);
            }
        }
        if !self.dirty_acks.is_empty() {
            let a = self.last_ack_sync + self.shared.opts.ack_sync_interval;
            d = Some(d.map_or(a, |d| d.min(a)));
        }
        d
    }

    pub(crate) fn run(mut self) -> Result<(), JournalError> {
        let shared = Arc::clone(&self.shared);
        loop {
            let (batches, acks, deletes, flush_gen, closing) = {
                let mut st = shared.state.lock();
                while !st.has_work() {
                    match self.next_deadline() {
                        Some(d) => {
                            if shared.work.wait_until(&mut st, d).timed_out() {
                                break;
                            }
                        }
                        None => shared.work.wait(&mut st),
                    }
                }
                // Bounded turns keep confirm latency low under a flood of appends.
                let mut taken_bytes = 0;
                let mut n = 0;
                for b in &st.batches {
                    if n > 0 && taken_bytes + b.buf.len() > MAX_TURN_BYTES {
                        break;
                    }
                    taken_bytes += b.buf.len();
                    n += 1;
                }
                let batches: Vec<Batch> = st.batches.drain(..n).collect();
                st.pending_bytes = st.pending_bytes.saturating_sub(taken_bytes);
                let all_taken = st.batches.is_empty();
                // A segment with records still queued is deleted in a later turn, after
                // they are written, so the write cannot recreate the file.
                let still_queued: HashSet<u64> = st.batches.iter().map(|b| b.seg).collect();
                let (deletes, keep): (Vec<u64>, Vec<u64>) = std::mem::take(&mut st.deletes)
                    .into_iter()
                    .partition(|s| !still_queued.contains(s));
                st.deletes = keep;
                (
                    batches,
                    std::mem::take(&mut st.acks),
                    deletes,
                    // Flush and close complete only once everything queued is written.
                    if all_taken {
                        st.flush_req
                    } else {
                        st.flush_done
                    },
                    st.closing && all_taken,
                )
            };
            // Appenders blocked on back-pressure may go on.
            shared.done.notify_all();

            let mut outcomes: Vec<Outcome> = Vec::with_capacity(batches.len());
            let mut pending_sync: Vec<(usize, u64)> = Vec::new();
            let mut watermark = None;
            let mut wrote = false;
            for b in batches {
                watermark = Some((b.seg, b.start + b.buf.len() as u64));
                let res = self.write_batch(&b);
                wrote = true;
                let idx = outcomes.len();
                if res.is_ok() && b.persistent {
                    self.unsynced.insert(b.seg);
                    if shared.opts.sync == SyncPolicy::Always {
                        pending_sync.push((idx, b.seg));
                    }
                }
                outcomes.push((b.callbacks, res));
            }

            // Group commit: one fdatasync per segment touched by this turn.
            let interval_due = match shared.opts.sync {
                SyncPolicy::Interval(i) => self.last_sync.elapsed() >= i,
                _ => false,
            };
            let flush_requested = {
                let st = shared.state.lock();
                flush_gen > st.flush_done
            };
            let mut flush_err: Option<JournalError> = None;
            if !pending_sync.is_empty() || interval_due || flush_requested || closing {
                let results = self.sync_segments();
                for (idx, seg) in &pending_sync {
                    if let Some(Err(e)) = results.get(seg) {
                        if let Some((_, res)) = outcomes.get_mut(*idx) {
                            *res = Err(e.duplicate());
                        }
                    }
                }
                if let Some(e) = results.into_values().find_map(Result::err) {
                    flush_err = Some(e);
                }
            }

            let deleted: HashSet<u64> = deletes.iter().copied().collect();
            let acked_segs = self.write_acks(acks, &deleted);
            for seg in &deletes {
                self.delete_segment(*seg);
            }
            let ack_due = self.last_ack_sync.elapsed() >= shared.opts.ack_sync_interval;
            if flush_requested || closing || ack_due {
                if let Err(e) = self.sync_acks() {
                    flush_err.get_or_insert(e);
                }
            }

            {
                let mut st = shared.state.lock();
                if let Some(w) = watermark {
                    if w > st.written {
                        st.written = w;
                    }
                }
                if wrote {
                    st.write_batches += 1;
                }
                st.failed.extend(self.failed.keys().copied());
                for (seg, f) in &self.segs {
                    st.disk.entry(*seg).or_default().0 = f.len;
                }
                for seg in &acked_segs {
                    if let Some(a) = self.acks.get(seg) {
                        st.disk.entry(*seg).or_default().1 = a.len;
                    }
                }
                for seg in &deletes {
                    st.disk.remove(seg);
                }
                if closing {
                    st.closed = true;
                }
            }
            shared.done.notify_all();
            self.close_sealed();

            for (callbacks, res) in outcomes {
                for cb in callbacks {
                    let r = match &res {
                        Ok(()) => Ok(()),
                        Err(e) => Err(e.duplicate()),
                    };
                    if catch_unwind(AssertUnwindSafe(move || cb(r))).is_err() {
                        tracing::error!("journal append callback panicked");
                    }
                }
            }

            if flush_requested {
                // After the callbacks: a flush returns once earlier confirms were released.
                let mut st = shared.state.lock();
                st.flush_done = flush_gen;
                st.flush_result = flush_err;
                drop(st);
                shared.done.notify_all();
            }

            if closing {
                // Appends are refused once closing is set, so nothing is left behind.
                return self.final_sync();
            }
        }
    }

    fn final_sync(&mut self) -> Result<(), JournalError> {
        let results = self.sync_segments();
        let mut first = results.into_values().find_map(Result::err);
        if let Err(e) = self.sync_acks() {
            first.get_or_insert(e);
        }
        first.map_or(Ok(()), Err)
    }

    fn write_batch(&mut self, b: &Batch) -> Result<(), JournalError> {
        if let Some(e) = self.failed.get(&b.seg) {
            return Err(e.duplicate());
        }
        if !self.segs.contains_key(&b.seg) {
            let path = self.shared.seg_path(b.seg);
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(|e| JournalError::write(path.clone(), e))?;
            self.dir_dirty = true;
            self.segs.insert(b.seg, SegFile { file, path, len: 0 });
        }
        let Some(sf) = self.segs.get_mut(&b.seg) else {
            return Err(JournalError::Closed);
        };
        match sf.file.write_all_at(&b.buf, b.start) {
            Ok(()) => {
                sf.len = b.start + b.buf.len() as u64;
                Ok(())
            }
            Err(e) => {
                let err = JournalError::write(sf.path.clone(), e);
                // Cut off whatever part of the batch made it, so the segment ends on a
                // record boundary, and never write to this segment again.
                if let Err(te) = sf.file.set_len(b.start) {
                    tracing::warn!(path = %sf.path.display(), error = %te, "cannot truncate after failed write");
                }
                sf.len = b.start;
                tracing::error!(error = %err, "journal write failed; segment sealed");
                self.failed.insert(b.seg, err.duplicate());
                Err(err)
            }
        }
    }

    /// fdatasyncs every segment with unsynced persistent data (and the directory if files
    /// were created). Returns the outcome per segment.
    fn sync_segments(&mut self) -> HashMap<u64, Result<(), JournalError>> {
        let mut out = HashMap::new();
        let dir_res = if self.dir_dirty {
            self.sync_dir()
        } else {
            Ok(())
        };
        for seg in std::mem::take(&mut self.unsynced) {
            let res = match self.segs.get(&seg) {
                Some(sf) => {
                    self.shared.fsyncs.fetch_add(1, Ordering::Relaxed);
                    sf.file.sync_data().map_err(|e| JournalError::SyncFailed {
                        path: sf.path.clone(),
                        source: e,
                    })
                }
                None => Ok(()),
            };
            let res = match (&dir_res, res) {
                (Err(e), Ok(())) => Err(e.duplicate()),
                (_, r) => r,
            };
            if let Err(e) = &res {
                // After a failed fdatasync the page cache may have dropped the data; never
                // trust or extend this segment again.
                tracing::error!(error = %e, "journal sync failed; segment sealed");
                self.failed.insert(seg, e.duplicate());
            }
            out.insert(seg, res);
        }
        self.last_sync = Instant::now();
        out
    }

    fn sync_dir(&mut self) -> Result<(), JournalError> {
        self.shared.fsyncs.fetch_add(1, Ordering::Relaxed);
        let res = File::open(&self.shared.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| JournalError::SyncFailed {
                path: self.shared.dir.clone(),
                source: e,
            });
        if res.is_ok() {
            self.dir_dirty = false;
        }
        res
    }

    /// Writes queued ack entries, one write per ack file; returns the segments written.
    fn write_acks(
        &mut self,
        acks: Vec<(u64, [u8; ACK_ENTRY_LEN])>,
        deleted: &HashSet<u64>,
    ) -> Vec<u64> {
        let mut written = Vec::new();
        if acks.is_empty() {
            return written;
        }
        let mut per_seg: HashMap<u64, Vec<u8>> = HashMap::new();
        for (seg, e) in acks {
            if !deleted.contains(&seg) {
                per_seg.entry(seg).or_default().extend_from_slice(&e);
            }
        }
        for (seg, buf) in per_seg {
            match self.write_ack_buf(seg, &buf) {
                Ok(()) => written.push(seg),
                // A lost ack only means a redelivery after a crash.
                Err(e) => {
                    tracing::warn!(error = %e, "cannot record acks; they may be redelivered after a restart")
                }
            }
        }
        written
    }

    fn write_ack_buf(&mut self, seg: u64, buf: &[u8]) -> Result<(), JournalError> {
        if !self.acks.contains_key(&seg) {
            if self.acks.len() >= MAX_OPEN_ACK_FILES {
                if let Err(e) = self.sync_acks() {
                    tracing::warn!(error = %e, "ack file sync failed");
                }
                self.acks.clear();
            }
            let path = self.shared.acks_path(seg);
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(|e| JournalError::write(path.clone(), e))?;
            let len = match self.ack_lens.get(&seg) {
                Some(l) => *l,
                None => {
                    self.dir_dirty = true;
                    file.metadata().map(|m| m.len()).unwrap_or(0)
                }
            };
            // Never append after a partial entry.
            let len = len - len % ACK_ENTRY_LEN as u64;
            self.acks.insert(seg, AckFile { file, len });
        }
        let Some(af) = self.acks.get_mut(&seg) else {
            return Err(JournalError::Closed);
        };
        match af.file.write_all_at(buf, af.len) {
            Ok(()) => {
                af.len += buf.len() as u64;
                self.ack_lens.insert(seg, af.len);
                self.dirty_acks.insert(seg);
                Ok(())
            }
            Err(e) => {
                let _ = af.file.set_len(af.len);
                Err(JournalError::write(self.shared.acks_path(seg), e))
            }
        }
    }

    fn sync_acks(&mut self) -> Result<(), JournalError> {
        let mut first = None;
        if self.dir_dirty {
            if let Err(e) = self.sync_dir() {
                first = Some(e);
            }
        }
        for seg in std::mem::take(&mut self.dirty_acks) {
            if let Some(af) = self.acks.get(&seg) {
                self.shared.fsyncs.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = af.file.sync_data() {
                    first.get_or_insert(JournalError::SyncFailed {
                        path: self.shared.acks_path(seg),
                        source: e,
                    });
                }
            }
        }
        self.last_ack_sync = Instant::now();
        first.map_or(Ok(()), Err)
    }

    fn delete_segment(&mut self, seg: u64) {
        self.segs.remove(&seg);
        self.unsynced.remove(&seg);
        self.acks.remove(&seg);
        self.ack_lens.remove(&seg);
        self.dirty_acks.remove(&seg);
        self.shared.forget_reader(seg);
        // Segment first: an orphan ack file is harmless, a segment without its acks is not.
        let seg_path = self.shared.seg_path(seg);
        match std::fs::remove_file(&seg_path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %seg_path.display(), error = %e, "cannot delete reclaimed segment");
                return;
            }
        }
        let acks_path = self.shared.acks_path(seg);
        if let Err(e) = std::fs::remove_file(&acks_path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %acks_path.display(), error = %e, "cannot delete ack file");
            }
        }
        self.dir_dirty = true;
        tracing::debug!(segment = seg, "reclaimed journal segment");
    }

    /// Drops handles of segments that will not be written again and are synced.
    fn close_sealed(&mut self) {
        let newest = self.segs.keys().copied().max();
        let unsynced = &self.unsynced;
        self.segs
            .retain(|seg, _| Some(*seg) == newest || unsynced.contains(seg));
    }
}
