//! rabbitmq.conf entries mapped to the settings warren acts on, with a warning for each
//! RabbitMQ key warren does not act on and an error for each key RabbitMQ itself would
//! refuse (unknown keys, values of the wrong type). Later entries win, as in RabbitMQ.

use std::net::IpAddr;

use super::{is_rabbitmq_key, ConfEntry, EntryKind};
use crate::util::units::parse_bytes;

/// An AMQP listener: `listeners.tcp.NAME = PORT` (every interface) or `IP:PORT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listener {
    /// `None`: every interface.
    pub ip: Option<IpAddr>,
    pub port: u16,
}

/// `vm_memory_high_watermark.relative` (a fraction of RAM) or `.absolute` (bytes).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MemoryWatermark {
    Relative(f64),
    Absolute(u64),
}

/// `disk_free_limit.absolute` (bytes) or `.relative` (a multiple of RAM).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DiskFreeLimit {
    Absolute(u64),
    Relative(f64),
}

/// `default_permissions.configure/write/read`: all three, as RabbitMQ requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permissions {
    pub configure: String,
    pub write: String,
    pub read: String,
}

/// What a set of rabbitmq.conf files set; `None` where they say nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    /// `listeners.tcp.NAME`, in the order first set; `Some(empty)` for
    /// `listeners.tcp = none`.
    pub tcp_listeners: Option<Vec<(String, Listener)>>,
    pub default_user: Option<String>,
    pub default_pass: Option<String>,
    pub default_vhost: Option<String>,
    /// The `default_user_tags.TAG = true` tags (they replace `administrator`).
    pub default_user_tags: Option<Vec<String>>,
    pub default_permissions: Option<Permissions>,
    /// `loopback_users = none` gives `Some(empty)`; `loopback_users.NAME = true` lists
    /// NAME (and only the names listed so: `loopback_users.guest = false` alone leaves
    /// no loopback-only user).
    pub loopback_users: Option<Vec<String>>,
    /// The key that named it (`load_definitions` or `management.load_definitions`) and
    /// the path.
    pub load_definitions: Option<(String, String)>,
    pub management_ip: Option<IpAddr>,
    pub management_port: Option<u16>,
    pub prometheus_ip: Option<IpAddr>,
    pub prometheus_port: Option<u16>,
    pub vm_memory_high_watermark: Option<MemoryWatermark>,
    pub disk_free_limit: Option<DiskFreeLimit>,
    pub channel_max: Option<u16>,
    pub frame_max: Option<u32>,
    pub heartbeat: Option<u16>,
    pub max_message_size: Option<u64>,
    /// `management.http.max_body_size`, in bytes.
    pub management_max_body_size: Option<u64>,
    /// `handshake_timeout`, in milliseconds as RabbitMQ takes it.
    pub handshake_timeout_ms: Option<u64>,
    /// `log.console.level`: RabbitMQ's level name (debug, info, notice, warning, error,
    /// critical, alert, emergency, none).
    pub log_level: Option<String>,
    /// `log.file`: a file to log to besides the console (relative to RabbitMQ's log
    /// directory); `log.file = false` leaves it unset.
    pub log_file: Option<String>,
}

/// A warning or error about one entry: where it is, its key and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfProblem {
    /// The file (or other origin) the entry came from.
    pub origin: String,
    pub line: usize,
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for ConfProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.origin, self.line, self.message)
    }
}

/// [`settings`]' result: what was set, what is ignored (warnings, one per key) and what
/// stops the start (errors).
#[derive(Debug, Clone, Default)]
pub struct SettingsReport {
    pub settings: Settings,
    pub warnings: Vec<ConfProblem>,
    pub errors: Vec<ConfProblem>,
}

/// Maps entries, each with the name of the file it came from, in the order RabbitMQ
/// reads them (main file, then conf.d files in lexical order).
pub fn settings<'a>(entries: impl IntoIterator<Item = (&'a str, &'a ConfEntry)>) -> SettingsReport {
    let mut m = Mapper::default();
    for (origin, entry) in entries {
        m.entry(origin, entry);
    }
    m.finish()
}

#[derive(Default)]
struct Mapper {
    report: SettingsReport,
    /// `default_user_tags.TAG` and `loopback_users.NAME` as set (the last value wins).
    tags: Vec<(String, bool)>,
    loopback: Option<Vec<(String, bool)>>,
    permissions: [Option<String>; 3],
    /// Where the first `default_permissions.*` entry is, for the incomplete-set error.
    permissions_at: Option<(String, usize)>,
    warned: Vec<String>,
}

/// What to do with a value: store it, or say why it is wrong.
type Outcome = Result<(), String>;

fn set<T>(slot: &mut Option<T>, value: T) -> Outcome {
    *slot = Some(value);
    Ok(())
}

fn integer<T: std::str::FromStr>(value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("{value:?} cannot be converted to a(n) integer"))
}

fn boolean(value: &str) -> Result<bool, String> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!(
            "{value:?} is not a valid enum value, acceptable values are: true, false"
        )),
    }
}

fn fraction(value: &str) -> Result<f64, String> {
    value
        .parse::<f64>()
        .ok()
        .filter(|f| f.is_finite() && *f >= 0.0)
        .ok_or_else(|| format!("{value:?} cannot be converted to a(n) float"))
}

fn ip(value: &str) -> Result<IpAddr, String> {
    value
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .map_err(|_| format!("{value:?} is not a valid IP address"))
}

/// `PORT` or `IP:PORT` (`::1:5672` and `[::1]:5672` for IPv6).
fn listener(value: &str) -> Result<Listener, String> {
    if value.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(Listener {
            ip: None,
            port: integer(value)?,
        });
    }
    let bad = || format!("{value:?} cannot be converted to a(n) ip (IP:PORT) or integer");
    let (host, port) = value.rsplit_once(':').ok_or_else(bad)?;
    Ok(Listener {
        ip: Some(ip(host).map_err(|_| bad())?),
        port: port.parse().map_err(|_| bad())?,
    })
}

impl Mapper {
    fn entry(&mut self, origin: &str, entry: &ConfEntry) {
        let problem = |message: String| ConfProblem {
            origin: origin.to_string(),
            line: entry.line,
            key: entry.key.clone(),
            message,
        };
        if entry.kind == EntryKind::Include {
            let msg = format!(
                "include {}: warren does not follow includes; ignored",
                entry.key
            );
            self.report.warnings.push(problem(msg));
            return;
        }
        match self.apply(origin, entry) {
            Ok(()) => {}
            Err(Verdict::Invalid(why)) => {
                let msg = format!("{}: {why}", entry.key);
                self.report.errors.push(problem(msg));
            }
            Err(Verdict::Unknown) => {
                let msg = format!("Conf file attempted to set unknown variable: {}", entry.key);
                self.report.errors.push(problem(msg));
            }
            Err(Verdict::Ignored(why)) if why.is_empty() => {}
            Err(Verdict::Ignored(why)) => {
                if !self.warned.contains(&entry.key) {
                    self.warned.push(entry.key.clone());
                    self.report.warnings.push(problem(why));
                }
            }
        }
    }

    /// Stores what `entry` sets.
    fn apply(&mut self, origin: &str, entry: &ConfEntry) -> Result<(), Verdict> {
        let (key, value) = (entry.key.as_str(), entry.value.as_str());
        let s = &mut self.report.settings;
        let outcome: Outcome = match key {
            "default_user" => set(&mut s.default_user, value.into()),
            "default_pass" => set(&mut s.default_pass, value.into()),
            "default_vhost" => set(&mut s.default_vhost, value.into()),
            "load_definitions" | "management.load_definitions" => {
                set(&mut s.load_definitions, (key.into(), value.into()))
            }
            "management.tcp.port" => integer(value).map(|v| s.management_port = Some(v)),
            "management.tcp.ip" => ip(value).map(|v| s.management_ip = Some(v)),
            "prometheus.tcp.port" => integer(value).map(|v| s.prometheus_port = Some(v)),
            "prometheus.tcp.ip" => ip(value).map(|v| s.prometheus_ip = Some(v)),
            "channel_max" => integer(value).map(|v| s.channel_max = Some(v)),
            "frame_max" => integer(value).map(|v| s.frame_max = Some(v)),
            "heartbeat" => integer(value).map(|v| s.heartbeat = Some(v)),
            "max_message_size" => integer(value).map(|v| s.max_message_size = Some(v)),
            "management.http.max_body_size" => {
                integer(value).map(|v| s.management_max_body_size = Some(v))
            }
            "handshake_timeout" => integer(value).map(|v| s.handshake_timeout_ms = Some(v)),
            "vm_memory_high_watermark.relative" => fraction(value)
                .map(|f| s.vm_memory_high_watermark = Some(MemoryWatermark::Relative(f))),
            "vm_memory_high_watermark.absolute" => parse_bytes(value)
                .map(|b| s.vm_memory_high_watermark = Some(MemoryWatermark::Absolute(b))),
            "disk_free_limit.absolute" => {
                parse_bytes(value).map(|b| s.disk_free_limit = Some(DiskFreeLimit::Absolute(b)))
            }
            "disk_free_limit.relative" => {
                fraction(value).map(|f| s.disk_free_limit = Some(DiskFreeLimit::Relative(f)))
            }
            "log.console.level" => log_level(value).map(|l| s.log_level = Some(l.into())),
            "log.file" if value != "false" => {
                s.log_file = Some(value.to_string());
                Ok(())
            }
            _ => return self.apply_family(origin, entry),
        };
        outcome.map_err(Verdict::Invalid)
    }

    /// Keys with a variable part, and the ones warren accepts without acting on them.
    fn apply_family(&mut self, origin: &str, entry: &ConfEntry) -> Result<(), Verdict> {
        let (key, value) = (entry.key.as_str(), entry.value.as_str());
        let s = &mut self.report.settings;
        if key == "listeners.tcp" {
            return match value {
                "none" => set(&mut s.tcp_listeners, Vec::new()).map_err(Verdict::Invalid),
                _ => Err(Verdict::Invalid(format!(
                    "{value:?} is not a valid enum value, acceptable values are: none"
                ))),
            };
        }
        if let Some(name) = key
            .strip_prefix("listeners.tcp.")
            .filter(|n| !n.contains('.'))
        {
            let l = listener(value).map_err(Verdict::Invalid)?;
            let list = s.tcp_listeners.get_or_insert_with(Vec::new);
            match list.iter_mut().find(|(n, _)| n == name) {
                Some(slot) => slot.1 = l,
                None => list.push((name.to_string(), l)),
            }
            return Ok(());
        }
        if let Some(tag) = key
            .strip_prefix("default_user_tags.")
            .filter(|t| !t.contains('.'))
        {
            let on = boolean(value).map_err(Verdict::Invalid)?;
            self.tags.retain(|(t, _)| t != tag);
            self.tags.push((tag.to_string(), on));
            return Ok(());
        }
        if let Some(which) = key.strip_prefix("default_permissions.") {
            let slot = match which {
                "configure" => 0,
                "write" => 1,
                "read" => 2,
                _ => return Err(Verdict::Unknown),
            };
            self.permissions[slot] = Some(value.to_string());
            self.permissions_at
                .get_or_insert_with(|| (origin.to_string(), entry.line));
            return Ok(());
        }
        if key == "loopback_users" || key.starts_with("loopback_users.") {
            return self.loopback(key, value).map_err(Verdict::Invalid);
        }
        Err(ignored(key, value))
    }

    fn loopback(&mut self, key: &str, value: &str) -> Outcome {
        match key.strip_prefix("loopback_users.") {
            None if value == "none" => {
                self.loopback = Some(Vec::new());
                Ok(())
            }
            None => Err(format!(
                "{value:?} is not a valid enum value, acceptable values are: none"
            )),
            Some(user) => {
                let on = boolean(value)?;
                let list = self.loopback.get_or_insert_with(Vec::new);
                list.retain(|(u, _)| u != user);
                list.push((user.to_string(), on));
                Ok(())
            }
        }
    }

    fn finish(mut self) -> SettingsReport {
        let s = &mut self.report.settings;
        if !self.tags.is_empty() {
            s.default_user_tags = Some(
                self.tags
                    .into_iter()
                    .filter_map(|(t, on)| on.then_some(t))
                    .collect(),
            );
        }
        if let Some(list) = self.loopback {
            s.loopback_users = Some(
                list.into_iter()
                    .filter_map(|(u, on)| on.then_some(u))
                    .collect(),
            );
        }
        match self.permissions {
            [Some(configure), Some(write), Some(read)] => {
                s.default_permissions = Some(Permissions {
                    configure,
                    write,
                    read,
                })
            }
            [None, None, None] => {}
            _ => {
                let (origin, line) = self.permissions_at.unwrap_or_default();
                self.report.errors.push(ConfProblem {
                    origin,
                    line,
                    key: "default_permissions".into(),
                    message: "default_permissions needs all of configure, write and read \
                              (RabbitMQ: Error running translation for rabbit.default_permissions)"
                        .into(),
                });
            }
        }
        self.report
    }
}

enum Verdict {
    /// A key warren handles, with a value of the wrong type.
    Invalid(String),
    /// Not a RabbitMQ 3.10 key.
    Unknown,
    /// A RabbitMQ key warren does not act on: why.
    Ignored(String),
}

/// RabbitMQ's log levels; warren's filter is coarser (notice is info; critical, alert
/// and emergency are error).
fn log_level(value: &str) -> Result<&'static str, String> {
    Ok(match value {
        "debug" => "debug",
        "info" => "info",
        "notice" => "notice",
        "warning" => "warning",
        "error" => "error",
        "critical" => "critical",
        "alert" => "alert",
        "emergency" => "emergency",
        "none" => "none",
        _ => {
            return Err(format!(
                "{value:?} is not a valid enum value, acceptable values are: debug, info, \
                 notice, warning, error, critical, alert, emergency, none"
            ))
        }
    })
}

/// The verdict on a key [`Mapper::apply`] does not store.
fn ignored(key: &str, value: &str) -> Verdict {
    // What the official Docker image writes, and settings warren already behaves by.
    let quiet = matches!(
        (key, value),
        ("log.console", "true")
            | ("log.file", "false")
            | ("management_agent.disable_metrics_collector", _)
    );
    if quiet {
        return Verdict::Ignored(String::new());
    }
    if !is_rabbitmq_key(key) {
        return Verdict::Unknown;
    }
    let tls = key.starts_with("listeners.ssl")
        || key.starts_with("ssl_options.")
        || key.starts_with("management.ssl.")
        || key.starts_with("prometheus.ssl.");
    Verdict::Ignored(if tls {
        format!("{key}: TLS is not supported yet; ignored")
    } else if key == "consumer_timeout" {
        "consumer_timeout: warren does not time out unacknowledged deliveries yet; ignored".into()
    } else {
        format!("{key}: a RabbitMQ setting warren does not support; ignored")
    })
}
