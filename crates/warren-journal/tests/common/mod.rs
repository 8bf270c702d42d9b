#![allow(dead_code)]

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use warren_journal::{
    Journal, JournalError, JournalOptions, Location, NewRecord, QueueId, Recovery,
};

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

static NEXT: AtomicU64 = AtomicU64::new(0);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let p =
            std::env::temp_dir().join(format!("warren-journal-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn msgs(&self) -> PathBuf {
        self.0.join("msgs")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("warren_journal=debug")
        .try_init();
}

pub fn live(ids: &[u64]) -> HashSet<QueueId> {
    ids.iter().map(|i| QueueId(*i)).collect()
}

pub fn small_opts(segment_size: u32) -> JournalOptions {
    JournalOptions {
        segment_size,
        ..JournalOptions::default()
    }
}

pub fn open(dir: &TempDir, opts: JournalOptions, queues: &[u64]) -> (Journal, Recovery) {
    Journal::open(dir.path(), opts, &live(queues)).unwrap()
}

pub fn record(msg_id: u64, queues: &[u64], persistent: bool) -> NewRecord {
    NewRecord {
        msg_id,
        persistent,
        expires_at_ms: if msg_id.is_multiple_of(3) {
            Some(1_700_000_000_000 + msg_id)
        } else {
            None
        },
        queues: queues.iter().map(|q| QueueId(*q)).collect(),
        exchange: "amq.direct".into(),
        routing_key: format!("key.{msg_id}"),
        properties: Bytes::from(vec![0x80, 0x00, 0x02, (msg_id % 251) as u8]),
        body: body_for(msg_id),
    }
}

pub fn body_for(msg_id: u64) -> Bytes {
    let len = 10 + (msg_id as usize * 37) % 90;
    Bytes::from(
        (0..len)
            .map(|i| (msg_id as usize + i) as u8)
            .collect::<Vec<u8>>(),
    )
}

/// Appends and waits for the callback.
pub fn append_wait(j: &Journal, rec: NewRecord) -> (Location, Result<(), JournalError>) {
    let (tx, rx) = mpsc::channel();
    let loc = j
        .append(
            rec,
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        )
        .unwrap();
    let r = rx.recv_timeout(Duration::from_secs(20)).unwrap();
    (loc, r)
}

/// Appends and waits, asserting success.
pub fn put(j: &Journal, msg_id: u64, queues: &[u64], persistent: bool) -> Location {
    let (loc, r) = append_wait(j, record(msg_id, queues, persistent));
    r.unwrap();
    loc
}

/// msg_ids recovered for a queue, in order.
pub fn ids(rec: &Recovery, q: u64) -> Vec<u64> {
    rec.queues
        .get(&QueueId(q))
        .map(|v| v.iter().map(|m| m.msg_id).collect())
        .unwrap_or_default()
}

pub fn files_with_ext(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}
