//! The metadata log's format: one change per line, `checksum json`, synced before the
//! client hears declare-ok; a snapshot (`meta.json`) of the whole durable state written
//! atomically. Replaying them into a broker is the recovery layer's job.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Write},
    path::{Path, PathBuf},
};

use amq_protocol::types::FieldTable;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

pub const SNAPSHOT: &str = "meta.json";
pub const LOG: &str = "meta.log";

/// One change to durable metadata. Arguments are field tables in wire format (hex), so
/// their AMQP types survive exactly for equivalence checks after a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum MetaOp {
    Vhost {
        name: String,
    },
    DeleteVhost {
        name: String,
    },
    User {
        name: String,
        password_hash: String,
        hashing_algorithm: String,
        tags: Vec<String>,
    },
    DeleteUser {
        name: String,
    },
    Permission {
        user: String,
        vhost: String,
        configure: String,
        write: String,
        read: String,
    },
    ClearPermission {
        user: String,
        vhost: String,
    },
    /// A policy, as the management API shows it (JSON).
    Policy {
        vhost: String,
        name: String,
        policy: String,
    },
    DeletePolicy {
        vhost: String,
        name: String,
    },
    Exchange {
        vhost: String,
        name: String,
        kind: String,
        auto_delete: bool,
        internal: bool,
        arguments: String,
    },
    DeleteExchange {
        vhost: String,
        name: String,
    },
    Queue {
        vhost: String,
        name: String,
        auto_delete: bool,
        arguments: String,
        /// The queue's id in the message store (0 in files written before it existed).
        #[serde(default)]
        id: u64,
    },
    DeleteQueue {
        vhost: String,
        name: String,
    },
    Bind {
        vhost: String,
        source: String,
        destination: String,
        to_queue: bool,
        key: String,
        arguments: String,
    },
    Unbind {
        vhost: String,
        source: String,
        destination: String,
        to_queue: bool,
        key: String,
        arguments: String,
    },
}

pub fn encode_args(t: &FieldTable) -> String {
    let raw = warren_codec::encode_field_table(t).unwrap_or_default();
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn decode_args(hex: &str) -> FieldTable {
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect();
    bytes
        .and_then(|b| warren_codec::decode_field_table(&b).ok())
        .unwrap_or_default()
}

/// FNV-1a, enough to tell a damaged line from a good one.
fn checksum(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// fsyncs a directory, so a file created or renamed in it survives a crash.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The append-only metadata log of a running broker.
pub struct MetaLog {
    dir: PathBuf,
    file: Mutex<File>,
}

impl MetaLog {
    /// Appends changes and syncs them.
    pub fn append(&self, ops: &[MetaOp]) -> io::Result<()> {
        if ops.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        for op in ops {
            let json = serde_json::to_vec(op).map_err(io::Error::other)?;
            buf.extend_from_slice(format!("{:016x} ", checksum(&json)).as_bytes());
            buf.extend_from_slice(&json);
            buf.push(b'\n');
        }
        let mut file = self.file.lock();
        file.write_all(&buf)?;
        file.sync_data()
    }

    /// Writes `ops` as the new snapshot and empties the log. Fails, leaving the log as it
    /// was, if writing or syncing the temporary file, the rename or the directory sync fails.
    pub fn compact(&self, ops: &[MetaOp]) -> io::Result<()> {
        let tmp = self.dir.join(format!("{SNAPSHOT}.tmp"));
        let json = serde_json::to_vec_pretty(ops).map_err(io::Error::other)?;
        {
            let mut f = File::create(&tmp)?;
            f.write_all(&json)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, self.dir.join(SNAPSHOT))?;
        sync_dir(&self.dir)?;
        let file = self.file.lock();
        file.set_len(0)?;
        file.sync_all()
    }
}

fn read_snapshot(dir: &Path) -> Vec<MetaOp> {
    let path = dir.join(SNAPSHOT);
    match fs::read(&path) {
        Ok(data) => serde_json::from_slice(&data).unwrap_or_else(|e| {
            warn!(file = %path.display(), error = %e, "metadata snapshot unreadable; starting from the log alone");
            Vec::new()
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            warn!(file = %path.display(), error = %e, "cannot read metadata snapshot");
            Vec::new()
        }
    }
}

fn read_log(dir: &Path) -> Vec<MetaOp> {
    let path = dir.join(LOG);
    let data = match fs::read(&path) {
        Ok(d) => d,
        Err(_) => return Vec::new(),
    };
    let mut ops = Vec::new();
    let lines: Vec<&[u8]> = data.split(|b| *b == b'\n').collect();
    let last = lines.len().saturating_sub(1);
    for (i, line) in lines.iter().enumerate() {
        if line.is_empty() {
            continue;
        }
        let parsed = (|| {
            let (sum, json) = (line.get(..16)?, line.get(17..)?);
            let sum = u64::from_str_radix(std::str::from_utf8(sum).ok()?, 16).ok()?;
            (sum == checksum(json)).then_some(())?;
            serde_json::from_slice::<MetaOp>(json).ok()
        })();
        match parsed {
            Some(op) => ops.push(op),
            // The unterminated last line is a write cut short by a crash: never confirmed.
            None if i == last => info!("ignoring a torn metadata log tail"),
            None => warn!(line = i + 1, "skipping a damaged metadata log line"),
        }
    }
    ops
}

impl MetaLog {
    /// A log whose every append fails (its file is open for reading only), to test what
    /// callers do when a metadata write fails.
    #[cfg(test)]
    pub(crate) fn failing(dir: &Path) -> io::Result<MetaLog> {
        fs::create_dir_all(dir)?;
        let path = dir.join(LOG);
        File::create(&path)?;
        Ok(MetaLog {
            dir: dir.to_path_buf(),
            file: Mutex::new(File::open(path)?),
        })
    }

    /// Reads what `dir` holds (the snapshot, then the log) and opens the log for appending.
    pub fn open(dir: &Path) -> io::Result<(MetaLog, Vec<MetaOp>)> {
        fs::create_dir_all(dir)?;
        let _ = fs::remove_file(dir.join(format!("{SNAPSHOT}.tmp")));
        let mut ops = read_snapshot(dir);
        ops.extend(read_log(dir));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(LOG))?;
        let log = MetaLog {
            dir: dir.to_path_buf(),
            file: Mutex::new(file),
        };
        Ok((log, ops))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "warren-meta-{tag}-{}-{}",
            std::process::id(),
            crate::util::clock::now_ms()
        ));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn op() -> MetaOp {
        MetaOp::Vhost { name: "v".into() }
    }

    #[test]
    fn compaction_replaces_the_log_with_a_snapshot() {
        let dir = temp_dir("compact");
        let (log, ops) = MetaLog::open(&dir).expect("open");
        assert!(ops.is_empty());
        log.append(&[op()]).expect("append");
        log.compact(&[op(), op()]).expect("compact");
        assert_eq!(fs::metadata(dir.join(LOG)).map(|m| m.len()).ok(), Some(0));
        assert!(!dir.join(format!("{SNAPSHOT}.tmp")).exists());
        drop(log);
        let (_, ops) = MetaLog::open(&dir).expect("reopen");
        assert_eq!(ops, vec![op(), op()]);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn syncing_a_missing_directory_fails() {
        let dir = temp_dir("sync-missing");
        assert!(sync_dir(&dir).is_err());
        fs::create_dir_all(&dir).expect("dir");
        assert!(sync_dir(&dir).is_ok());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn compaction_into_a_removed_directory_fails() {
        let dir = temp_dir("compact-removed");
        let (log, _) = MetaLog::open(&dir).expect("open");
        fs::remove_dir_all(&dir).expect("remove");
        assert!(log.compact(&[op()]).is_err());
    }

    #[test]
    fn a_failed_rename_fails_compaction_and_keeps_the_log() {
        let dir = temp_dir("compact-rename");
        let (log, _) = MetaLog::open(&dir).expect("open");
        log.append(&[op()]).expect("append");
        // A non-empty directory where the snapshot goes: the rename cannot replace it,
        // whoever runs the test.
        fs::create_dir_all(dir.join(SNAPSHOT).join("in-the-way")).expect("dir");
        assert!(log.compact(&[op(), op()]).is_err());
        assert!(fs::metadata(dir.join(LOG)).map(|m| m.len()).unwrap_or(0) > 0);
        drop(log);
        fs::remove_dir_all(dir.join(SNAPSHOT)).expect("remove");
        let (_, ops) = MetaLog::open(&dir).expect("reopen");
        assert_eq!(ops, vec![op()], "the log still holds the change");
        let _ = fs::remove_dir_all(&dir);
    }
}
