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
use tracing::info;

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
    /// A user's topic permission for one exchange of a vhost.
    TopicPermission {
        user: String,
        vhost: String,
        exchange: String,
        write: String,
        read: String,
    },
    /// Clears a user's topic permission in a vhost for `exchange`, or all of them.
    ClearTopicPermission {
        user: String,
        vhost: String,
        #[serde(default)]
        exchange: Option<String>,
    },
    /// A vhost's limits by name (`max-connections`, `max-queues`), replacing the ones it
    /// had; empty clears them.
    VhostLimits {
        vhost: String,
        limits: std::collections::BTreeMap<String, i64>,
    },
    /// A user's limits by name (`max-connections`, `max-channels`), as `VhostLimits`.
    UserLimits {
        user: String,
        limits: std::collections::BTreeMap<String, i64>,
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
    /// A global runtime parameter (`/api/global-parameters`); its value as JSON text.
    GlobalParameter {
        name: String,
        value: String,
    },
    ClearGlobalParameter {
        name: String,
    },
    /// An operator policy, as the management API shows it (JSON).
    OperatorPolicy {
        vhost: String,
        name: String,
        policy: String,
    },
    DeleteOperatorPolicy {
        vhost: String,
        name: String,
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
        let json = snapshot_text(ops)?;
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

/// The first line of a checksummed snapshot; the JSON follows it. Snapshots written
/// before it existed are plain JSON and still read.
const SNAPSHOT_HEADER: &str = "warren-meta-snapshot v2 ";

/// Damage found in the metadata files: where, and what it held as far as can be told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("damaged metadata in {} at byte {offset}{}: {what}", file.display(), line.map(|l| format!(" (line {l})")).unwrap_or_default())]
pub struct MetaDamage {
    pub file: PathBuf,
    pub offset: usize,
    pub line: Option<usize>,
    /// What the damaged part held ("queue 'q' in vhost '/'", "the whole snapshot").
    pub what: String,
}

/// What the metadata directory holds: the readable changes, and the damage, if any.
#[derive(Debug, Default)]
pub struct MetaContents {
    pub ops: Vec<MetaOp>,
    pub damage: Vec<MetaDamage>,
}

/// A record's kind and names, read from its JSON without trusting it: for reports.
fn describe(json: &[u8]) -> String {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(json) else {
        return "an unreadable record".into();
    };
    let field = |k: &str| v.get(k).and_then(serde_json::Value::as_str);
    let op = field("op").unwrap_or("unknown change");
    let name = ["name", "user", "destination"]
        .iter()
        .find_map(|k| field(k))
        .unwrap_or("?");
    match field("vhost") {
        Some(vhost) => format!("{op} '{name}' in vhost '{vhost}'"),
        None => format!("{op} '{name}'"),
    }
}

fn snapshot_text(ops: &[MetaOp]) -> io::Result<Vec<u8>> {
    let json = serde_json::to_vec_pretty(ops).map_err(io::Error::other)?;
    let mut out = format!("{SNAPSHOT_HEADER}{:016x}\n", checksum(&json)).into_bytes();
    out.extend_from_slice(&json);
    Ok(out)
}

fn read_snapshot(dir: &Path, into: &mut MetaContents) -> io::Result<()> {
    let path = dir.join(SNAPSHOT);
    let data = match fs::read(&path) {
        Ok(data) => data,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let damage = |what: String| MetaDamage {
        file: path.clone(),
        offset: 0,
        line: None,
        what,
    };
    let json = match data.strip_prefix(SNAPSHOT_HEADER.as_bytes()) {
        Some(rest) => {
            let newline = rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
            let (sum, json) = rest.split_at(newline);
            let json = json.get(1..).unwrap_or_default();
            let sum = std::str::from_utf8(sum)
                .ok()
                .and_then(|s| u64::from_str_radix(s, 16).ok());
            if sum != Some(checksum(json)) {
                let held = serde_json::from_slice::<Vec<MetaOp>>(json)
                    .map(|ops| format!("the snapshot of {} changes (checksum mismatch: any of them may be wrong)", ops.len()))
                    .unwrap_or_else(|_| "the whole snapshot (unreadable)".into());
                into.damage.push(damage(held));
            }
            json
        }
        None => &data[..],
    };
    match serde_json::from_slice::<Vec<MetaOp>>(json) {
        Ok(ops) => into.ops.extend(ops),
        Err(e) if into.damage.is_empty() => {
            into.damage
                .push(damage(format!("the whole snapshot (unreadable: {e})")));
        }
        Err(_) => {}
    }
    Ok(())
}

/// Whether a bad log line looks like a record (checksum, space, JSON object, no NUL
/// bytes): such a line was written whole, so its failing checksum is damage. A crash
/// mid-append leaves an unterminated last line, or zeros where unsynced pages were lost.
fn record_shaped(line: &[u8]) -> bool {
    line.len() > 17
        && line[..16].iter().all(u8::is_ascii_hexdigit)
        && line[16] == b' '
        && line[17] == b'{'
        && !line.contains(&0)
}

/// Reads the log's records. A bad line followed by a valid one is damage (it had been
/// synced); bad lines at the end are the torn tail of a crash (never confirmed) unless a
/// whole record-shaped line among them fails its checksum.
fn read_log(dir: &Path, into: &mut MetaContents) -> io::Result<()> {
    let path = dir.join(LOG);
    let data = match fs::read(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let lines: Vec<&[u8]> = data.split(|b| *b == b'\n').collect();
    let unterminated = lines.len().saturating_sub(1);
    let mut pending: Vec<(MetaDamage, bool)> = Vec::new();
    let mut offset = 0;
    for (i, line) in lines.iter().enumerate() {
        let at = offset;
        offset += line.len() + 1;
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
            Some(op) => {
                into.damage.extend(pending.drain(..).map(|(d, _)| d));
                into.ops.push(op);
            }
            None => {
                let whole = i < unterminated && record_shaped(line);
                let damage = MetaDamage {
                    file: path.clone(),
                    offset: at,
                    line: Some(i + 1),
                    what: describe(line.get(17..).unwrap_or(line)),
                };
                pending.push((damage, whole));
            }
        }
    }
    let torn = pending.iter().filter(|(_, whole)| !whole).count();
    if torn > 0 {
        info!(lines = torn, "ignoring a torn metadata log tail");
    }
    into.damage.extend(
        pending
            .into_iter()
            .filter(|(_, whole)| *whole)
            .map(|(d, _)| d),
    );
    Ok(())
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

    /// Reads what `dir` holds (the snapshot, then the log) and opens the log for
    /// appending. Damage is reported in the contents, and nothing in `dir` is changed.
    pub fn open(dir: &Path) -> io::Result<(MetaLog, MetaContents)> {
        fs::create_dir_all(dir)?;
        let _ = fs::remove_file(dir.join(format!("{SNAPSHOT}.tmp")));
        let mut contents = MetaContents::default();
        read_snapshot(dir, &mut contents)?;
        read_log(dir, &mut contents)?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(LOG))?;
        let log = MetaLog {
            dir: dir.to_path_buf(),
            file: Mutex::new(file),
        };
        Ok((log, contents))
    }

    /// Copies the damaged files aside (`meta.json.damaged-<ms>`), untouched, before a
    /// repair rewrites them; returns the copies' paths.
    pub fn keep_damaged(&self, damage: &[MetaDamage]) -> io::Result<Vec<PathBuf>> {
        let mut kept = Vec::new();
        let stamp = crate::util::clock::now_ms();
        for file in damage.iter().map(|d| &d.file) {
            let Some(name) = file.file_name() else {
                continue;
            };
            let copy = self
                .dir
                .join(format!("{}.damaged-{stamp}", name.to_string_lossy()));
            if !kept.contains(&copy) {
                fs::copy(file, &copy)?;
                kept.push(copy);
            }
        }
        sync_dir(&self.dir)?;
        Ok(kept)
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
        let (log, contents) = MetaLog::open(&dir).expect("open");
        assert!(contents.ops.is_empty());
        log.append(&[op()]).expect("append");
        log.compact(&[op(), op()]).expect("compact");
        assert_eq!(fs::metadata(dir.join(LOG)).map(|m| m.len()).ok(), Some(0));
        assert!(!dir.join(format!("{SNAPSHOT}.tmp")).exists());
        drop(log);
        let (_, contents) = MetaLog::open(&dir).expect("reopen");
        assert_eq!(contents.ops, vec![op(), op()]);
        assert!(contents.damage.is_empty());
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
        let (_, contents) = MetaLog::open(&dir).expect("reopen");
        assert_eq!(contents.ops, vec![op()], "the log still holds the change");
        let _ = fs::remove_dir_all(&dir);
    }

    /// A snapshot and a log of three changes, the middle one a queue.
    fn written(tag: &str) -> PathBuf {
        let dir = temp_dir(tag);
        let (log, _) = MetaLog::open(&dir).expect("open");
        log.compact(&[op(), MetaOp::Vhost { name: "w".into() }])
            .expect("compact");
        let queue = MetaOp::Queue {
            vhost: "v".into(),
            name: "orders".into(),
            auto_delete: false,
            arguments: String::new(),
            id: 7,
        };
        log.append(&[op(), queue, op()]).expect("append");
        dir
    }

    fn flip(path: &Path, at: impl Fn(&[u8]) -> usize) {
        let mut data = fs::read(path).expect("read");
        let i = at(&data);
        data[i] ^= 0x01;
        fs::write(path, data).expect("write");
    }

    #[test]
    fn a_flipped_byte_anywhere_is_found_and_named() {
        let find = |needle: &'static [u8]| {
            move |d: &[u8]| {
                d.windows(needle.len())
                    .position(|w| w == needle)
                    .expect("in file")
            }
        };
        // The snapshot: its header, its checksum, its body.
        for (what, at) in [
            (
                "header",
                Box::new(|_: &[u8]| 3usize) as Box<dyn Fn(&[u8]) -> usize>,
            ),
            ("checksum", Box::new(|_: &[u8]| SNAPSHOT_HEADER.len() + 2)),
            ("body", Box::new(find(b"\"w\""))),
        ] {
            let dir = written(&format!("flip-snapshot-{what}"));
            flip(&dir.join(SNAPSHOT), at);
            let (_, contents) = MetaLog::open(&dir).expect("open");
            assert_eq!(contents.damage.len(), 1, "{what}: {:?}", contents.damage);
            assert_eq!(contents.damage[0].file, dir.join(SNAPSHOT));
            let _ = fs::remove_dir_all(&dir);
        }
        // A log line: its checksum and its body both name the queue.
        for (what, needle) in [("checksum", &b"\n"[..]), ("body", &b"orders"[..])] {
            let dir = written(&format!("flip-log-{what}"));
            flip(&dir.join(LOG), |d| {
                let at = d
                    .windows(needle.len())
                    .position(|w| w == needle)
                    .expect("in log");
                if what == "checksum" {
                    at + 3
                } else {
                    at + 1
                }
            });
            let (_, contents) = MetaLog::open(&dir).expect("open");
            assert_eq!(contents.damage.len(), 1, "{what}: {:?}", contents.damage);
            let d = &contents.damage[0];
            assert_eq!((d.file.clone(), d.line), (dir.join(LOG), Some(2)));
            assert!(
                d.what.contains("queue 'o") || d.what.contains("queue '"),
                "{}",
                d.what
            );
            assert_eq!(
                contents.ops.len(),
                2 + 2,
                "the readable changes are all there"
            );
            let _ = fs::remove_dir_all(&dir);
        }
    }

    #[test]
    fn a_flipped_byte_in_the_last_record_is_damage_too() {
        let dir = written("flip-last");
        let log = dir.join(LOG);
        let data = fs::read(&log).expect("read");
        let last_start = data[..data.len() - 1]
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |p| p + 1);
        flip(&log, |_| last_start + 30);
        let (_, contents) = MetaLog::open(&dir).expect("open");
        assert_eq!(contents.damage.len(), 1, "{:?}", contents.damage);
        assert_eq!(contents.damage[0].line, Some(3));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_torn_or_garbled_tail_is_not_damage() {
        let dir = written("torn");
        let mut data = fs::read(dir.join(LOG)).expect("read");
        data.extend_from_slice(b"\x00\x01garbage\n0123");
        fs::write(dir.join(LOG), data).expect("write");
        let (_, contents) = MetaLog::open(&dir).expect("open");
        assert!(contents.damage.is_empty(), "{:?}", contents.damage);
        assert_eq!(contents.ops.len(), 5);
        // Truncated mid-line: the same.
        let data = fs::read(dir.join(LOG)).expect("read");
        fs::write(dir.join(LOG), &data[..data.len() / 2]).expect("write");
        let (_, contents) = MetaLog::open(&dir).expect("open");
        assert!(contents.damage.is_empty());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_truncated_snapshot_is_damage_and_old_plain_snapshots_still_read() {
        let dir = written("truncated");
        let data = fs::read(dir.join(SNAPSHOT)).expect("read");
        fs::write(dir.join(SNAPSHOT), &data[..data.len() - 5]).expect("write");
        let (_, contents) = MetaLog::open(&dir).expect("open");
        assert_eq!(contents.damage.len(), 1);
        fs::write(
            dir.join(SNAPSHOT),
            serde_json::to_vec(&[op()]).expect("json"),
        )
        .expect("write");
        let (_, contents) = MetaLog::open(&dir).expect("open");
        assert!(contents.damage.is_empty());
        assert_eq!(contents.ops.len(), 4);
        let _ = fs::remove_dir_all(&dir);
    }
}
