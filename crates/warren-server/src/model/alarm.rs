//! Resource alarms (free disk space, memory) and the publisher blocking they cause, as
//! RabbitMQ 3.10 does it (rabbit_alarm, rabbit_reader's throttle):
//!
//! * an alarm is in effect while free space on the data directory's filesystem is below
//!   `disk_free_limit`, or while the broker's resident memory is above the watermark;
//! * a connection that is open when an alarm is in effect goes `blocking`; the first
//!   content frame (header or body of a publish) it sends then makes it `blocked`: the
//!   broker sends `connection.blocked` ("low on disk", "low on memory", or "low on disk
//!   & memory") to clients with the `connection.blocked` capability and stops reading
//!   the socket. Consumers on that connection still get deliveries;
//! * when every alarm has cleared a `blocked` connection gets `connection.unblocked` and
//!   reading resumes; a `blocking` one just goes back to `running` (nothing is sent).
//!
//! The state machines ([`Throttle`], [`evaluate`]) are pure; [`monitor`] samples the
//! system (statvfs, /proc) at the edge, stores the alarm set and, when it changes, sends
//! every open connection a [`ConnEvent::AlarmsChanged`] through the inbox it already
//! polls (a watch channel would cost each connection a shared-lock registration per loop
//! turn on the hot path).

use std::{
    path::Path,
    sync::{
        atomic::{AtomicU64, AtomicU8, Ordering},
        Arc,
    },
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::{model::broker::Broker, model::handles::ConnEvent};

/// The resources in alarm, as a tiny set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AlarmSet {
    pub disk: bool,
    pub memory: bool,
}

impl AlarmSet {
    pub const NONE: AlarmSet = AlarmSet {
        disk: false,
        memory: false,
    };

    pub fn any(self) -> bool {
        self.disk || self.memory
    }

    /// The reason text of connection.blocked. RabbitMQ 3.10.8 (measured) names the
    /// resources in sorted order joined by " & ", whichever alarm came first.
    fn bits(self) -> u8 {
        u8::from(self.disk) | (u8::from(self.memory) << 1)
    }

    fn from_bits(bits: u8) -> AlarmSet {
        AlarmSet {
            disk: bits & 1 != 0,
            memory: bits & 2 != 0,
        }
    }

    pub fn reason(self) -> String {
        let mut names = Vec::with_capacity(2);
        if self.disk {
            names.push("disk");
        }
        if self.memory {
            names.push("memory");
        }
        format!("low on {}", names.join(" & "))
    }
}

/// A connection's publishing state, as the management API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FlowState {
    Running = 0,
    /// An alarm is in effect but the connection has not published since.
    Blocking = 1,
    /// It published during an alarm: the broker no longer reads its socket.
    Blocked = 2,
    /// Held back by credit flow: a queue it publishes to cannot deliver fast enough.
    Flow = 3,
}

impl FlowState {
    pub fn as_str(self) -> &'static str {
        match self {
            FlowState::Running => "running",
            FlowState::Blocking => "blocking",
            FlowState::Blocked => "blocked",
            FlowState::Flow => "flow",
        }
    }

    pub fn from_u8(v: u8) -> FlowState {
        match v {
            1 => FlowState::Blocking,
            2 => FlowState::Blocked,
            3 => FlowState::Flow,
            _ => FlowState::Running,
        }
    }
}

/// What the connection must tell its client after a transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    Blocked(String),
    Unblocked,
}

/// One connection's throttle state machine (rabbit_reader's control_throttle and
/// maybe_block for resource alarms).
#[derive(Debug, Clone, Default)]
pub struct Throttle {
    alarms: AlarmSet,
    blocked: bool,
}

impl Throttle {
    pub fn state(&self) -> FlowState {
        match (self.alarms.any(), self.blocked) {
            (_, true) => FlowState::Blocked,
            (true, false) => FlowState::Blocking,
            (false, false) => FlowState::Running,
        }
    }

    /// True while the connection must not read from its socket.
    pub fn paused(&self) -> bool {
        self.blocked
    }

    /// The broker's alarm set changed (or the connection just opened).
    pub fn on_alarms(&mut self, alarms: AlarmSet) -> Option<Notice> {
        self.alarms = alarms;
        if !alarms.any() && self.blocked {
            self.blocked = false;
            return Some(Notice::Unblocked);
        }
        // Blocked and still alarmed: RabbitMQ only notes the new reasons, sends nothing.
        None
    }

    /// The connection processed a content header or body frame of a publish.
    pub fn on_content(&mut self) -> Option<Notice> {
        if self.alarms.any() && !self.blocked {
            self.blocked = true;
            return Some(Notice::Blocked(self.alarms.reason()));
        }
        None
    }
}

/// The memory limit: a fraction of total RAM (RabbitMQ's default 0.4) or bytes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Watermark {
    Relative(f64),
    Absolute(u64),
}

impl Default for Watermark {
    fn default() -> Self {
        Watermark::Relative(0.4)
    }
}

impl Watermark {
    /// The limit in bytes given total RAM; `None` when the total is unknown for a
    /// relative watermark (no memory alarm then).
    pub fn limit(self, total: Option<u64>) -> Option<u64> {
        match self {
            Watermark::Absolute(b) => Some(b),
            Watermark::Relative(f) => total.map(|t| (t as f64 * f) as u64),
        }
    }
}

/// One sample of the system.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sample {
    pub disk_free: Option<u64>,
    pub mem_used: Option<u64>,
}

/// Which alarms a sample raises (RabbitMQ: disk when free < limit, memory when used >
/// limit). An unreadable value raises nothing: better to run than to block on a guess.
pub fn evaluate(sample: Sample, disk_limit: u64, mem_limit: Option<u64>) -> AlarmSet {
    AlarmSet {
        disk: sample.disk_free.is_some_and(|free| free < disk_limit),
        memory: match (sample.mem_used, mem_limit) {
            (Some(used), Some(limit)) => used > limit,
            _ => false,
        },
    }
}

pub use crate::util::units::parse_bytes;

/// The broker-wide alarm state: the current set and the last sample with its limits
/// (for the management API).
pub struct Alarms {
    current: AtomicU8,
    pub disk_free: AtomicU64,
    pub disk_free_limit: AtomicU64,
    pub mem_used: AtomicU64,
    /// The memory alarm's threshold in bytes; 0 when unknown (no memory alarm).
    pub mem_limit: AtomicU64,
}

impl Alarms {
    pub fn new(disk_free_limit: u64) -> Self {
        Alarms {
            current: AtomicU8::new(0),
            disk_free: AtomicU64::new(0),
            disk_free_limit: AtomicU64::new(disk_free_limit),
            mem_used: AtomicU64::new(0),
            mem_limit: AtomicU64::new(0),
        }
    }

    /// Sets the memory watermark at runtime (RabbitMQ's
    /// `rabbitmqctl set_vm_memory_high_watermark`); returns the new limit in bytes.
    pub fn set_memory_watermark(&self, watermark: Watermark) -> Option<u64> {
        let limit = watermark.limit(total_memory());
        self.mem_limit.store(limit.unwrap_or(0), Ordering::Relaxed);
        info!(limit = ?limit, "memory high watermark set");
        limit
    }

    /// Sets the free disk space limit at runtime (`rabbitmqctl set_disk_free_limit`).
    pub fn set_disk_free_limit(&self, bytes: u64) {
        self.disk_free_limit.store(bytes, Ordering::Relaxed);
        info!(bytes, "disk free limit set");
    }

    pub fn current(&self) -> AlarmSet {
        AlarmSet::from_bits(self.current.load(Ordering::Acquire))
    }

    /// Stores a new alarm set; true if it changed (connections must then be told).
    pub fn set(&self, alarms: AlarmSet) -> bool {
        let old = AlarmSet::from_bits(self.current.swap(alarms.bits(), Ordering::AcqRel));
        if old == alarms {
            return false;
        }
        for (was, is, what) in [
            (old.disk, alarms.disk, "disk"),
            (old.memory, alarms.memory, "memory"),
        ] {
            match (was, is) {
                (false, true) => warn!(
                    "{what} resource limit alarm set; publishers will be blocked until this alarm clears"
                ),
                (true, false) => info!("{what} resource limit alarm cleared"),
                _ => {}
            }
        }
        true
    }
}

impl std::fmt::Debug for Alarms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Alarms")
            .field("current", &self.current())
            .finish()
    }
}

/// Free bytes for unprivileged users on `dir`'s filesystem (what `df` calls Available,
/// which RabbitMQ reads).
#[cfg(unix)]
fn disk_free(dir: &Path) -> Option<u64> {
    let st = rustix::fs::statvfs(dir).ok()?;
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

#[cfg(not(unix))]
fn disk_free(_dir: &Path) -> Option<u64> {
    None
}

/// Resident memory of this process (second field of /proc/self/statm, in pages).
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages.saturating_mul(4096))
}

/// The memory this process may use: RAM from /proc/meminfo (`MemTotal:  N kB`), or the
/// container's cgroup limit when that is lower (cgroup v2 `memory.max`, v1
/// `memory.limit_in_bytes`), as RabbitMQ computes the total its watermark is relative to.
pub fn total_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    let ram = kb.saturating_mul(1024);
    let cgroup = [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]
    .iter()
    .find_map(|path| parse_cgroup_limit(&std::fs::read_to_string(path).ok()?));
    Some(cgroup.map_or(ram, |limit| limit.min(ram)))
}

/// A cgroup memory limit file's value; `None` for no limit (`max` in v2, a number near
/// 2^63 in v1).
fn parse_cgroup_limit(text: &str) -> Option<u64> {
    let limit: u64 = text.trim().parse().ok()?;
    (limit < 1 << 60).then_some(limit)
}

/// Samples disk and memory every second and tells connections when the alarm set
/// changes. Runs inside [`crate::serve`] until aborted.
///
/// No change is lost to a connection that is opening meanwhile: it registers in
/// `broker.admin.connections` before it reads the current set, and the set is stored before
/// connections are walked, so it either reads the new set or gets the event.
pub async fn monitor(broker: Arc<Broker>) {
    let alarms = broker.alarms.clone();
    let data_dir = broker.config.data_dir.clone();
    alarms.set_memory_watermark(broker.config.vm_memory_high_watermark);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let sample = Sample {
            disk_free: disk_free(&data_dir),
            mem_used: resident_bytes(),
        };
        alarms
            .disk_free
            .store(sample.disk_free.unwrap_or(0), Ordering::Relaxed);
        alarms
            .mem_used
            .store(sample.mem_used.unwrap_or(0), Ordering::Relaxed);
        // Both limits may change at runtime (set_disk_free_limit and friends).
        let disk_limit = alarms.disk_free_limit.load(Ordering::Relaxed);
        let mem_limit = Some(alarms.mem_limit.load(Ordering::Relaxed)).filter(|l| *l > 0);
        let before = alarms.current();
        let after = evaluate(sample, disk_limit, mem_limit);
        if alarms.set(after) {
            crate::model::events::alarms_changed(&broker.admin.events, before, after);
            for conn in broker.admin.connections.iter() {
                let _ = conn.handle.inbox.send(ConnEvent::AlarmsChanged);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DISK: AlarmSet = AlarmSet {
        disk: true,
        memory: false,
    };
    const MEM: AlarmSet = AlarmSet {
        disk: false,
        memory: true,
    };
    const BOTH: AlarmSet = AlarmSet {
        disk: true,
        memory: true,
    };

    #[test]
    fn reasons_match_rabbitmq() {
        assert_eq!(DISK.reason(), "low on disk");
        assert_eq!(MEM.reason(), "low on memory");
        assert_eq!(BOTH.reason(), "low on disk & memory");
    }

    #[test]
    fn alarm_alone_only_marks_blocking() {
        let mut t = Throttle::default();
        assert_eq!(t.state(), FlowState::Running);
        assert_eq!(t.on_alarms(DISK), None);
        assert_eq!(t.state(), FlowState::Blocking);
        assert!(!t.paused());
        // Cleared before any publish: back to running, nothing sent.
        assert_eq!(t.on_alarms(AlarmSet::NONE), None);
        assert_eq!(t.state(), FlowState::Running);
    }

    #[test]
    fn publish_during_alarm_blocks_once_then_unblocks() {
        let mut t = Throttle::default();
        t.on_alarms(DISK);
        assert_eq!(t.on_content(), Some(Notice::Blocked("low on disk".into())));
        assert_eq!(t.state(), FlowState::Blocked);
        assert!(t.paused());
        // A second alarm while blocked sends nothing more.
        assert_eq!(t.on_alarms(BOTH), None);
        assert_eq!(t.on_content(), None);
        // One alarm clearing is not enough.
        assert_eq!(t.on_alarms(MEM), None);
        assert!(t.paused());
        assert_eq!(t.on_alarms(AlarmSet::NONE), Some(Notice::Unblocked));
        assert_eq!(t.state(), FlowState::Running);
        assert!(!t.paused());
    }

    #[test]
    fn publishing_without_alarm_is_free() {
        let mut t = Throttle::default();
        assert_eq!(t.on_content(), None);
        assert_eq!(t.state(), FlowState::Running);
    }

    #[test]
    fn both_alarms_name_both() {
        let mut t = Throttle::default();
        t.on_alarms(BOTH);
        assert_eq!(
            t.on_content(),
            Some(Notice::Blocked("low on disk & memory".into()))
        );
    }

    #[test]
    fn evaluate_compares_like_rabbitmq() {
        let s = |d, m| Sample {
            disk_free: d,
            mem_used: m,
        };
        assert_eq!(evaluate(s(Some(49), Some(1)), 50, Some(10)), DISK);
        assert_eq!(
            evaluate(s(Some(50), Some(10)), 50, Some(10)),
            AlarmSet::NONE
        );
        assert_eq!(evaluate(s(Some(50), Some(11)), 50, Some(10)), MEM);
        assert_eq!(evaluate(s(None, None), u64::MAX, Some(0)), AlarmSet::NONE);
        assert_eq!(evaluate(s(Some(0), Some(5)), 1, None), DISK);
    }

    #[test]
    fn watermark_limits() {
        assert_eq!(Watermark::Relative(0.4).limit(Some(1000)), Some(400));
        assert_eq!(Watermark::Relative(0.4).limit(None), None);
        assert_eq!(Watermark::Absolute(7).limit(None), Some(7));
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_bytes("50000000"), Ok(50_000_000));
        assert_eq!(parse_bytes("50MB"), Ok(50_000_000));
        assert_eq!(parse_bytes("1GB"), Ok(1_000_000_000));
        assert_eq!(parse_bytes("2GiB"), Ok(2 << 30));
        assert_eq!(parse_bytes("512M"), Ok(512 << 20));
        assert_eq!(parse_bytes("1000TB"), Ok(1_000_000_000_000_000));
        assert_eq!(parse_bytes("4k"), Ok(4096));
        assert!(parse_bytes("12XB").is_err());
        assert!(parse_bytes("MB").is_err());
        assert!(parse_bytes("99999999999999TB").is_err());
    }

    #[test]
    fn alarm_set_reports_changes_only() {
        let a = Alarms::new(1);
        assert_eq!(a.current(), AlarmSet::NONE);
        assert!(!a.set(AlarmSet::NONE));
        assert!(a.set(BOTH));
        assert_eq!(a.current(), BOTH);
        assert!(!a.set(BOTH));
        assert!(a.set(MEM));
        assert_eq!(a.current(), MEM);
    }

    #[test]
    fn flow_state_round_trips() {
        for s in [
            FlowState::Running,
            FlowState::Blocking,
            FlowState::Blocked,
            FlowState::Flow,
        ] {
            assert_eq!(FlowState::from_u8(s as u8), s);
        }
    }

    #[test]
    fn cgroup_limits_count_only_when_set() {
        assert_eq!(parse_cgroup_limit("max\n"), None);
        assert_eq!(parse_cgroup_limit("9223372036854771712\n"), None);
        assert_eq!(parse_cgroup_limit("536870912\n"), Some(512 << 20));
        assert_eq!(parse_cgroup_limit("garbage"), None);
    }

    #[test]
    fn limits_change_at_runtime() {
        let alarms = Alarms::new(50_000_000);
        assert_eq!(
            alarms.set_memory_watermark(Watermark::Absolute(1 << 30)),
            Some(1 << 30)
        );
        assert_eq!(alarms.mem_limit.load(Ordering::Relaxed), 1 << 30);
        alarms.set_disk_free_limit(2_000_000_000);
        assert_eq!(
            alarms.disk_free_limit.load(Ordering::Relaxed),
            2_000_000_000
        );
        if let Some(total) = total_memory() {
            let half = alarms.set_memory_watermark(Watermark::Relative(0.5));
            assert_eq!(half, Some(total / 2));
        }
    }
}
