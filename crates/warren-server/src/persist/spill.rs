//! Queue tails in files: [`warren_store::TailStore`] for long queues.
//!
//! Each queue that needs one gets a directory under `<data>/spill/` holding segment files
//! of length-prefixed records ([`warren_store::tail`] format). Segments are written in
//! order, read from the front and deleted once read; when the tail empties every file
//! goes. Nothing here survives a restart (the directory is wiped at start): persistent
//! messages come back from the message store, transient ones are gone as in RabbitMQ.

use std::{
    collections::VecDeque,
    fs::{self, File, OpenOptions},
    io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write},
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, OnceLock,
    },
};

use bytes::Bytes;
use warren_store::{
    tail::{decode_entry, encode_entry},
    Entry, TailError, TailStore,
};

/// A segment is closed for writing past this size, so read segments can be deleted
/// while a steady backlog keeps the tail from ever emptying.
const SEGMENT_BYTES: u64 = 64 << 20;

/// Records longer than this are damage, not data (bodies over 512 MiB are refused
/// before they reach a queue).
const MAX_RECORD: usize = 1 << 30;

/// Write and read buffer of each queue's tail: every queue with a tail holds both, so
/// they stay small (a refill reads a window of ~2048 records, a few hundred KiB).
const IO_BUFFER: usize = 64 << 10;

static NEXT_DIR: AtomicU64 = AtomicU64::new(0);

/// Where spill directories go: set once the data directory is known (tests and brokers
/// without one keep every queue in memory).
pub type SpillRoot = Arc<OnceLock<PathBuf>>;

/// Removes what a previous run left under `root` (tails do not survive a restart).
pub fn reset(root: &std::path::Path) {
    match fs::remove_dir_all(root) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(dir = %root.display(), error = %e, "cannot clear old queue tails"),
    }
}

#[derive(Debug)]
pub struct FileTail {
    root: SpillRoot,
    /// Created on the first append.
    dir: Option<PathBuf>,
    /// Segment numbers with unread records, oldest first; the last is being written.
    segments: VecDeque<u64>,
    next_segment: u64,
    writer: Option<BufWriter<File>>,
    written: u64,
    reader: Option<BufReader<File>>,
    /// Read position in the front segment.
    read_at: u64,
    scratch: Vec<u8>,
}

impl FileTail {
    pub fn new(root: SpillRoot) -> Self {
        FileTail {
            root,
            dir: None,
            segments: VecDeque::new(),
            next_segment: 0,
            writer: None,
            written: 0,
            reader: None,
            read_at: 0,
            scratch: Vec::new(),
        }
    }

    fn dir(&mut self) -> Result<PathBuf, TailError> {
        if let Some(d) = &self.dir {
            return Ok(d.clone());
        }
        let root = self
            .root
            .get()
            .ok_or(TailError::Damaged("no data directory"))?;
        let d = root.join(format!("{:08}", NEXT_DIR.fetch_add(1, Ordering::Relaxed)));
        fs::create_dir_all(&d)?;
        self.dir = Some(d.clone());
        Ok(d)
    }

    fn segment_path(dir: &std::path::Path, n: u64) -> PathBuf {
        dir.join(format!("{n:08}.tail"))
    }

    fn open_segment_for_writing(&mut self) -> Result<(), TailError> {
        let dir = self.dir()?;
        if let Some(mut w) = self.writer.take() {
            w.flush()?;
        }
        let n = self.next_segment;
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(Self::segment_path(&dir, n))?;
        self.next_segment += 1;
        self.segments.push_back(n);
        self.writer = Some(BufWriter::with_capacity(IO_BUFFER, file));
        self.written = 0;
        Ok(())
    }

    /// The front segment is fully read: delete it and move to the next one.
    fn finish_front_segment(&mut self) {
        self.reader = None;
        self.read_at = 0;
        if let (Some(n), Some(dir)) = (self.segments.pop_front(), &self.dir) {
            if let Err(e) = fs::remove_file(Self::segment_path(dir, n)) {
                tracing::warn!(error = %e, "cannot remove a read queue tail segment");
            }
        }
    }
}

impl TailStore for FileTail {
    fn append(&mut self, entry: &Entry) -> Result<(), TailError> {
        if self.writer.is_none() || self.written >= SEGMENT_BYTES {
            self.open_segment_for_writing()?;
        }
        self.scratch.clear();
        self.scratch.extend_from_slice(&[0; 4]);
        encode_entry(entry, &mut self.scratch);
        let len = u32::try_from(self.scratch.len() - 4)
            .map_err(|_| TailError::Damaged("record too long"))?;
        self.scratch[..4].copy_from_slice(&len.to_be_bytes());
        let Some(w) = self.writer.as_mut() else {
            return Err(TailError::Damaged("no segment open"));
        };
        w.write_all(&self.scratch)?;
        self.written += self.scratch.len() as u64;
        Ok(())
    }

    fn read_front(&mut self, max: usize, out: &mut Vec<Entry>) -> Result<(), TailError> {
        let mut got = 0;
        while got < max {
            let Some(&front) = self.segments.front() else {
                return Ok(());
            };
            let writing = self.segments.len() == 1;
            if writing {
                // Reading what is still in the write buffer: put it in the file first.
                if let Some(w) = self.writer.as_mut() {
                    w.flush()?;
                }
            }
            if self.reader.is_none() {
                let dir = self.dir()?;
                let mut file = File::open(Self::segment_path(&dir, front))?;
                file.seek(SeekFrom::Start(self.read_at))?;
                self.reader = Some(BufReader::with_capacity(IO_BUFFER, file));
            }
            let Some(reader) = self.reader.as_mut() else {
                return Ok(());
            };
            let mut len = [0u8; 4];
            match reader.read_exact(&mut len) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    if writing {
                        // Everything written so far is read; the reader reopens at
                        // `read_at` next time (a BufReader at EOF may hold a partial length).
                        self.reader = None;
                        return Ok(());
                    }
                    self.finish_front_segment();
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
            let len = u32::from_be_bytes(len) as usize;
            if len > MAX_RECORD {
                return Err(TailError::Damaged("record length out of range"));
            }
            let mut record = vec![0; len];
            reader.read_exact(&mut record)?;
            self.read_at += 4 + len as u64;
            out.push(decode_entry(Bytes::from(record))?);
            got += 1;
        }
        Ok(())
    }

    fn clear(&mut self) {
        self.writer = None;
        self.reader = None;
        self.read_at = 0;
        self.written = 0;
        if let Some(dir) = &self.dir {
            for n in self.segments.drain(..) {
                let _ = fs::remove_file(Self::segment_path(dir, n));
            }
        }
        self.segments.clear();
    }
}

impl Drop for FileTail {
    fn drop(&mut self) {
        self.clear();
        if let Some(dir) = &self.dir {
            let _ = fs::remove_dir(dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use warren_store::{Message, StoredRef};

    fn entry(n: u64, body: &[u8]) -> Entry {
        Entry {
            message: Arc::new(Message {
                exchange: Arc::from("x"),
                routing_key: Arc::from("k"),
                properties: Bytes::from_static(&[0, 0]),
                body: Bytes::copy_from_slice(body),
                persistent: false,
                priority: 0,
                expiration: None,
                bcc: None,
                stored: Some(StoredRef {
                    segment: 0,
                    offset: n as u32,
                    len: 1,
                }),
                paged_len: None,
            }),
            seq: n,
            redelivered: false,
            expires_at: None,
            delivery_count: 0,
        }
    }

    /// A fresh directory, removed when the guard drops.
    struct TempDir(PathBuf);

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn root() -> (TempDir, SpillRoot) {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "warren-spill-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let root: SpillRoot = Arc::new(OnceLock::new());
        let _ = root.set(dir.join("spill"));
        (TempDir(dir), root)
    }

    #[test]
    fn interleaved_appends_and_reads_keep_order_and_files_go_when_read() {
        let (tmp, root) = root();
        let mut tail = FileTail::new(root);
        let mut next = 0;
        let mut seen = Vec::new();
        for round in 0..50 {
            for _ in 0..(round % 7 + 1) {
                tail.append(&entry(next, &[next as u8; 100]))
                    .expect("append");
                next += 1;
            }
            let mut out = Vec::new();
            tail.read_front(round % 5 + 1, &mut out).expect("read");
            seen.extend(out.iter().map(|e| e.seq));
        }
        let mut out = Vec::new();
        tail.read_front(usize::MAX, &mut out).expect("read rest");
        seen.extend(out.iter().map(|e| e.seq));
        assert_eq!(seen, (0..next).collect::<Vec<_>>());
        tail.clear();
        let dir = tail.dir.clone().expect("dir created");
        assert_eq!(fs::read_dir(&dir).expect("dir").count(), 0);
        drop(tail);
        assert!(!dir.exists());
        drop(tmp);
    }

    #[test]
    fn read_segments_are_deleted_while_writing_goes_on() {
        let (_tmp, root) = root();
        let mut tail = FileTail::new(root);
        let body = vec![7u8; 1 << 20];
        // 70 MiB: past one segment.
        for n in 0..70 {
            tail.append(&entry(n, &body)).expect("append");
        }
        assert_eq!(tail.segments.len(), 2);
        let mut out = Vec::new();
        tail.read_front(65, &mut out).expect("read");
        assert_eq!(out.len(), 65);
        assert_eq!(
            tail.segments.len(),
            1,
            "the first segment is gone once read"
        );
        out.clear();
        tail.read_front(100, &mut out).expect("read");
        assert_eq!(out.len(), 5);
        assert_eq!(out[4].seq, 69);
    }

    #[test]
    fn damaged_files_are_errors() {
        let (_tmp, root) = root();
        let mut tail = FileTail::new(root);
        tail.append(&entry(0, b"abc")).expect("append");
        if let Some(w) = tail.writer.as_mut() {
            w.flush().expect("flush");
        }
        let dir = tail.dir.clone().expect("dir");
        fs::write(FileTail::segment_path(&dir, 0), [0xff, 0xff, 0xff, 0xff, 1]).expect("write");
        let mut out = Vec::new();
        assert!(tail.read_front(1, &mut out).is_err());
        fs::write(FileTail::segment_path(&dir, 0), [0, 0, 0, 3, 1, 2, 3]).expect("write");
        tail.reader = None;
        assert!(tail.read_front(1, &mut out).is_err());
    }

    #[test]
    fn no_data_directory_means_no_tail() {
        let mut tail = FileTail::new(Arc::new(OnceLock::new()));
        assert!(tail.append(&entry(0, b"a")).is_err());
    }
}
