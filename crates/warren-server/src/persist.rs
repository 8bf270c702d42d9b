//! Durable metadata: vhosts, durable exchanges, durable queues and the bindings between
//! durable ends survive a restart.
//!
//! Every change is appended to `meta.log` as one checksummed JSON line and synced before
//! the client hears declare-ok (as RabbitMQ commits to its metadata store first). At start
//! the snapshot `meta.json` plus the log are replayed through the same topology code the
//! channel uses, so cascades (auto-delete exchanges losing their last binding) replay
//! exactly; then the state is written back as a fresh snapshot (write, sync, rename, sync
//! the directory) and the log is emptied. A torn last line, from a crash mid-append, is
//! ignored; a damaged line elsewhere is skipped with a warning. The broker always starts.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Write},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc, OnceLock,
    },
};

use amq_protocol::types::FieldTable;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};
use warren_router::{Destination, ExchangeKind};

use crate::{
    broker::Broker,
    queue::{Queue, QueueDecl},
    storage::Storage,
    vhost::{ExchangeMeta, VHost},
};

const SNAPSHOT: &str = "meta.json";
const LOG: &str = "meta.log";

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

fn decode_args(hex: &str) -> FieldTable {
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

fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
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

    /// Writes `ops` as the new snapshot and empties the log.
    fn compact(&self, ops: &[MetaOp]) -> io::Result<()> {
        let tmp = self.dir.join(format!("{SNAPSHOT}.tmp"));
        let json = serde_json::to_vec_pretty(ops).map_err(io::Error::other)?;
        {
            let mut f = File::create(&tmp)?;
            f.write_all(&json)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, self.dir.join(SNAPSHOT))?;
        sync_dir(&self.dir);
        let file = self.file.lock();
        file.set_len(0)?;
        file.sync_all()
    }
}

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
    pub spill_root: crate::spill::SpillRoot,
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

    pub fn attach_storage(&self, storage: Storage) -> Result<(), Storage> {
        self.storage.set(storage)
    }

    /// A message-store id for a new durable queue: never one used before, even across
    /// restarts (ids grow with the clock and past every id seen in the metadata).
    pub fn next_queue_id(&self) -> u64 {
        let floor = crate::clock::now_ms() << 12;
        let prev = self
            .last_queue_id
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |last| {
                Some(last.max(floor).saturating_add(1))
            })
            .unwrap_or(floor);
        prev.max(floor).saturating_add(1)
    }

    fn saw_queue_id(&self, id: u64) {
        self.last_queue_id.fetch_max(id, Ordering::AcqRel);
    }

    /// [`Persistence::record`] for changes whose callers cannot report a failure: it is
    /// logged.
    pub fn record_logged(&self, ops: &[MetaOp]) {
        if let Err(e) = self.record(ops) {
            warn!(error = %e, "metadata change not recorded");
        }
    }

    /// Records changes; the caller answers the client only after this returns.
    pub fn record(&self, ops: &[MetaOp]) -> io::Result<()> {
        match self.log.get() {
            Some(log) => log.append(ops),
            None => Ok(()),
        }
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

/// Applies one change to the broker's topology, as at declare time.
pub fn apply(broker: &Broker, op: &MetaOp) {
    match op {
        MetaOp::Vhost { name } => {
            broker.add_vhost(name);
        }
        MetaOp::DeleteVhost { name } => {
            broker.delete_vhost(name);
        }
        MetaOp::User {
            name,
            password_hash,
            hashing_algorithm,
            tags,
        } => broker.put_user(crate::broker::User {
            name: name.clone(),
            password_hash: password_hash.clone(),
            hashing_algorithm: hashing_algorithm.clone(),
            tags: tags.clone(),
        }),
        MetaOp::DeleteUser { name } => {
            broker.delete_user(name);
        }
        MetaOp::Permission {
            user,
            vhost,
            configure,
            write,
            read,
        } => match crate::auth::Permission::new(configure, write, read) {
            Ok(p) => broker.set_permission(user, vhost, p),
            Err(e) => warn!(user = %user, vhost = %vhost, error = ?e, "stored permission skipped"),
        },
        MetaOp::ClearPermission { user, vhost } => {
            broker.clear_permission(user, vhost);
        }
        MetaOp::Policy {
            vhost,
            name,
            policy,
        } => {
            let parsed = serde_json::from_str::<serde_json::Value>(policy)
                .map_err(|e| e.to_string())
                .and_then(|v| crate::policy::Policy::from_json(vhost, name, &v));
            match parsed {
                Ok(p) => {
                    broker.admin.policies.put(p);
                }
                Err(e) => warn!(policy = %name, error = %e, "stored policy skipped"),
            }
        }
        MetaOp::DeletePolicy { vhost, name } => {
            broker.admin.policies.remove(vhost, name);
        }
        MetaOp::Exchange {
            vhost,
            name,
            kind,
            auto_delete,
            internal,
            arguments,
        } => {
            let Some(kind) = ExchangeKind::parse(kind) else {
                warn!(exchange = %name, kind = %kind, "stored exchange of unknown type skipped");
                return;
            };
            let v = broker.add_vhost(vhost);
            let mut topo = v.topology.write();
            if !topo.exchanges.contains_key(name.as_str()) {
                topo.insert_exchange(
                    name,
                    ExchangeMeta {
                        kind,
                        durable: true,
                        auto_delete: *auto_delete,
                        internal: *internal,
                        arguments: decode_args(arguments),
                    },
                );
            }
        }
        MetaOp::DeleteExchange { vhost, name } => {
            if let Some(v) = broker.vhost(vhost) {
                v.topology.write().remove_exchange(name);
            }
        }
        MetaOp::Queue {
            vhost,
            name,
            auto_delete,
            arguments,
            id,
        } => {
            let v = broker.add_vhost(vhost);
            if v.queue(name).is_some() {
                return;
            }
            let id = if *id == 0 {
                broker.persistence.next_queue_id()
            } else {
                broker.persistence.saw_queue_id(*id);
                *id
            };
            let arguments = decode_args(arguments);
            let settings = broker.queue_settings_with_policy(vhost, name, &arguments).unwrap_or_else(|e| {
                warn!(queue = %name, error = %e.text, "stored queue arguments no longer valid; using defaults");
                Default::default()
            });
            let q = Queue::new(
                QueueDecl {
                    name: Arc::from(name.as_str()),
                    durable: true,
                    auto_delete: *auto_delete,
                    exclusive_owner: None,
                    arguments,
                    settings,
                    store_id: Some(id),
                },
                &v,
            );
            v.topology
                .write()
                .queues
                .insert(Arc::from(name.as_str()), q);
        }
        MetaOp::DeleteQueue { vhost, name } => {
            if let Some(v) = broker.vhost(vhost) {
                v.topology.write().remove_queue(name);
            }
        }
        MetaOp::Bind {
            vhost,
            source,
            destination,
            to_queue,
            key,
            arguments,
        }
        | MetaOp::Unbind {
            vhost,
            source,
            destination,
            to_queue,
            key,
            arguments,
        } => {
            let Some(v) = broker.vhost(vhost) else { return };
            let mut topo = v.topology.write();
            let exists = if *to_queue {
                topo.queues.contains_key(destination.as_str())
            } else {
                topo.exchanges.contains_key(destination.as_str())
            };
            let dest = if *to_queue {
                Destination::Queue(Arc::from(destination.as_str()))
            } else {
                Destination::Exchange(Arc::from(destination.as_str()))
            };
            let Some(entry) = topo.exchanges.get_mut(source.as_str()) else {
                return;
            };
            if matches!(op, MetaOp::Bind { .. }) {
                if exists {
                    entry.router.table.bind(dest, key, &decode_args(arguments));
                }
            } else {
                entry
                    .router
                    .table
                    .unbind(&dest, key, &decode_args(arguments));
                topo.maybe_auto_delete(source);
            }
        }
    }
}

/// The durable state of the broker as changes that recreate it.
pub fn snapshot(broker: &Broker) -> Vec<MetaOp> {
    let mut ops = Vec::new();
    for u in broker.users() {
        ops.push(MetaOp::User {
            name: u.name,
            password_hash: u.password_hash,
            hashing_algorithm: u.hashing_algorithm,
            tags: u.tags,
        });
    }
    let existing: std::collections::HashSet<String> =
        broker.users().into_iter().map(|u| u.name).collect();
    // The default user is created at every start; if it was deleted, say so.
    if !existing.contains(&broker.config.default_user) {
        ops.push(MetaOp::DeleteUser {
            name: broker.config.default_user.clone(),
        });
    }
    // So is the default vhost.
    if broker.vhost(&broker.config.default_vhost).is_none() {
        ops.push(MetaOp::DeleteVhost {
            name: broker.config.default_vhost.clone(),
        });
    }
    for v in broker.vhosts() {
        let vhost = v.name.to_string();
        ops.push(MetaOp::Vhost {
            name: vhost.clone(),
        });
        let topo = v.topology.read();
        let mut exchanges: Vec<_> = topo
            .exchanges
            .iter()
            .filter(|(n, e)| e.meta.durable && !n.starts_with("amq.") && !n.is_empty())
            .collect();
        exchanges.sort_by(|a, b| a.0.cmp(b.0));
        for (name, e) in &exchanges {
            ops.push(MetaOp::Exchange {
                vhost: vhost.clone(),
                name: name.to_string(),
                kind: e.meta.kind.as_str().into(),
                auto_delete: e.meta.auto_delete,
                internal: e.meta.internal,
                arguments: encode_args(&e.meta.arguments),
            });
        }
        let mut queues: Vec<_> = topo
            .queues
            .values()
            .filter(|q| q.durable && q.exclusive_owner.is_none())
            .collect();
        queues.sort_by(|a, b| a.name.cmp(&b.name));
        for q in queues {
            ops.push(MetaOp::Queue {
                vhost: vhost.clone(),
                name: q.name.to_string(),
                auto_delete: q.auto_delete,
                arguments: encode_args(&q.arguments),
                id: q.store_id.unwrap_or(0),
            });
        }
        let mut sources: Vec<_> = topo.exchanges.iter().collect();
        sources.sort_by(|a, b| a.0.cmp(b.0));
        for (source, e) in sources {
            if !e.meta.durable {
                continue;
            }
            for b in e.router.table.bindings() {
                let (to_queue, durable) = match &b.destination {
                    Destination::Queue(q) => (
                        true,
                        topo.queues
                            .get(q)
                            .is_some_and(|q| q.durable && q.exclusive_owner.is_none()),
                    ),
                    Destination::Exchange(x) => {
                        (false, topo.exchanges.get(x).is_some_and(|x| x.meta.durable))
                    }
                };
                if durable {
                    ops.push(MetaOp::Bind {
                        vhost: vhost.clone(),
                        source: source.to_string(),
                        destination: b.destination.name().to_string(),
                        to_queue,
                        key: b.routing_key.to_string(),
                        arguments: encode_args(&b.arguments),
                    });
                }
            }
        }
    }
    for p in broker.admin.policies.list(None) {
        ops.push(MetaOp::Policy {
            vhost: p.vhost.clone(),
            name: p.name.clone(),
            policy: p.to_json().to_string(),
        });
    }
    for (user, vhost, p) in broker.permissions() {
        ops.push(MetaOp::Permission {
            user,
            vhost,
            configure: p.configure.source.clone(),
            write: p.write.source.clone(),
            read: p.read.source.clone(),
        });
    }
    ops
}

/// Loads the durable metadata from `dir` into `broker`, writes a compacted snapshot and
/// attaches the log so later changes are recorded. Returns how many changes it replayed.
pub fn open(broker: &Broker, dir: &Path) -> io::Result<usize> {
    fs::create_dir_all(dir)?;
    let _ = fs::remove_file(dir.join(format!("{SNAPSHOT}.tmp")));
    let mut ops = read_snapshot(dir);
    ops.extend(read_log(dir));
    for op in &ops {
        apply(broker, op);
    }
    // Policies may have been replayed after the queues they apply to.
    for vhost in broker.vhosts() {
        broker.admin.policies.apply(&vhost);
    }
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(LOG))?;
    let log = MetaLog {
        dir: dir.to_path_buf(),
        file: Mutex::new(file),
    };
    log.compact(&snapshot(broker))?;
    let _ = broker.persistence.log.set(log);
    Ok(ops.len())
}

/// Ops for a binding change, when both ends are durable.
pub fn binding_op(
    vhost: &VHost,
    bind: bool,
    source: &str,
    destination: &Destination,
    key: &str,
    arguments: &FieldTable,
) -> Option<MetaOp> {
    let topo = vhost.topology.read();
    let source_durable = topo.exchanges.get(source).is_some_and(|e| e.meta.durable);
    let (to_queue, dest_durable) = match destination {
        Destination::Queue(q) => (
            true,
            topo.queues
                .get(q)
                .is_some_and(|q| q.durable && q.exclusive_owner.is_none()),
        ),
        Destination::Exchange(x) => (false, topo.exchanges.get(x).is_some_and(|x| x.meta.durable)),
    };
    // An unbind must be recorded even if an end is gone by now (the source may have
    // been auto-deleted by it); replaying it is harmless.
    if bind && !(source_durable && dest_durable) {
        return None;
    }
    let (vhost, source, destination, key, arguments) = (
        vhost.name.to_string(),
        source.to_string(),
        destination.name().to_string(),
        key.to_string(),
        encode_args(arguments),
    );
    Some(if bind {
        MetaOp::Bind {
            vhost,
            source,
            destination,
            to_queue,
            key,
            arguments,
        }
    } else {
        MetaOp::Unbind {
            vhost,
            source,
            destination,
            to_queue,
            key,
            arguments,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ServerConfig;
    use amq_protocol::types::AMQPValue;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "warren-persist-{tag}-{}-{}",
            std::process::id(),
            crate::clock::now_ms()
        ));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn args_table() -> FieldTable {
        let mut t = FieldTable::default();
        t.insert("x-max-priority".into(), AMQPValue::ShortShortUInt(5));
        t.insert("x-message-ttl".into(), AMQPValue::LongInt(1000));
        t
    }

    #[test]
    fn arguments_keep_their_wire_types() {
        let t = args_table();
        assert_eq!(decode_args(&encode_args(&t)), t);
        assert_eq!(decode_args("zz"), FieldTable::default());
    }

    #[test]
    fn changes_survive_a_reopen_and_torn_tails_are_ignored() {
        let dir = temp_dir("reopen");
        let broker = Broker::new(ServerConfig::default());
        open(&broker, &dir).expect("open");
        let ops = vec![
            MetaOp::Exchange {
                vhost: "/".into(),
                name: "x".into(),
                kind: "topic".into(),
                auto_delete: false,
                internal: false,
                arguments: encode_args(&FieldTable::default()),
            },
            MetaOp::Queue {
                vhost: "/".into(),
                name: "q".into(),
                auto_delete: false,
                arguments: encode_args(&args_table()),
                id: 42,
            },
            MetaOp::Bind {
                vhost: "/".into(),
                source: "x".into(),
                destination: "q".into(),
                to_queue: true,
                key: "a.#".into(),
                arguments: encode_args(&FieldTable::default()),
            },
        ];
        broker.persistence.record(&ops).expect("record");
        // A crash in the middle of the next append.
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.join(LOG))
            .expect("log");
        f.write_all(b"0123456789abcdef {\"op\":\"delete_qu")
            .expect("write");
        drop(f);

        let again = Broker::new(ServerConfig::default());
        let replayed = open(&again, &dir).expect("reopen");
        assert!(replayed >= 3);
        let v = again.vhost("/").expect("vhost");
        let q = v.queue("q").expect("queue restored");
        assert_eq!(q.arguments, args_table());
        assert_eq!(q.settings().config.max_priority, Some(5));
        let topo = v.topology.read();
        let x = topo.exchanges.get("x").expect("exchange restored");
        assert_eq!(x.router.table.bindings().len(), 1);
        drop(topo);
        // The compacted snapshot holds the same state; the log is empty again.
        assert_eq!(fs::metadata(dir.join(LOG)).map(|m| m.len()).ok(), Some(0));
        let snap = snapshot(&again);
        for op in &ops {
            assert!(snap.contains(op), "{op:?} missing from {snap:?}");
        }
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn damaged_files_do_not_stop_the_broker() {
        let dir = temp_dir("damaged");
        fs::create_dir_all(&dir).expect("dir");
        fs::write(dir.join(SNAPSHOT), b"{not json").expect("write");
        fs::write(dir.join(LOG), b"garbage line\n\x00\xff\n").expect("write");
        let broker = Broker::new(ServerConfig::default());
        assert_eq!(open(&broker, &dir).expect("opens anyway"), 0);
        assert!(broker.vhost("/").is_some());
        let _ = fs::remove_dir_all(&dir);
    }
}
