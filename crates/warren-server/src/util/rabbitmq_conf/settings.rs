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
    /// `consumer_timeout`, in milliseconds (at least 1, as RabbitMQ's schema requires).
    pub consumer_timeout_ms: Option<u64>,
    /// `log.console.level`: RabbitMQ's level name (debug, info, notice, warning, error,
    /// critical, alert, emergency, none).
    pub log_level: Option<String>,
    /// `log.file`: a file to log to besides the console (relative to RabbitMQ's log
    /// directory); `log.file = false` leaves it unset.
    pub log_file: Option<String>,
    /// `listeners.ssl.NAME`, as `tcp_listeners`.
    pub ssl_listeners: Option<Vec<(String, Listener)>>,
    /// `ssl_options.*` (empty unless set).
    pub ssl_options: warren_tls::TlsOptions,
    /// `management.ssl.ip` / `.port` and the listener's TLS options.
    pub management_ssl: SslListener,
    /// `prometheus.ssl.*`, as `management.ssl.*`.
    pub prometheus_ssl: SslListener,
    /// `auth_mechanisms.N`, in the order first set.
    pub auth_mechanisms: Option<Vec<String>>,
    /// `ssl_cert_login_from`: `distinguished_name` or `common_name`.
    pub ssl_cert_login_from: Option<String>,
    /// `ssl_handshake_timeout`, in milliseconds.
    pub ssl_handshake_timeout_ms: Option<u64>,
}

/// `management.ssl.*` / `prometheus.ssl.*`: a TLS HTTP listener (on when a port is set).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SslListener {
    pub ip: Option<IpAddr>,
    pub port: Option<u16>,
    pub options: warren_tls::TlsOptions,
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
            "consumer_timeout" => integer(value).and_then(|v: u64| {
                if v >= 1 {
                    s.consumer_timeout_ms = Some(v);
                    Ok(())
                } else {
                    Err("number should be greater or equal to one".into())
                }
            }),
            "ssl_handshake_timeout" => integer(value).map(|v| s.ssl_handshake_timeout_ms = Some(v)),
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
        if let Some(done) = self.apply_tls(key, value) {
            return done;
        }
        Err(ignored(key, value))
    }

    /// `listeners.ssl*`, `ssl_options.*`, `management.ssl.*`, `prometheus.ssl.*`,
    /// `auth_mechanisms.*`, `ssl_cert_login_from`; `None` for other keys and for TLS
    /// options warren does not act on (they get the usual warning).
    fn apply_tls(&mut self, key: &str, value: &str) -> Option<Result<(), Verdict>> {
        let s = &mut self.report.settings;
        if key == "listeners.ssl" {
            return Some(match value {
                "none" => set(&mut s.ssl_listeners, Vec::new()).map_err(Verdict::Invalid),
                _ => Err(Verdict::Invalid(format!(
                    "{value:?} is not a valid enum value, acceptable values are: none"
                ))),
            });
        }
        if let Some(name) = key
            .strip_prefix("listeners.ssl.")
            .filter(|n| !n.contains('.'))
        {
            return Some(listener(value).map_err(Verdict::Invalid).map(|l| {
                let list = s.ssl_listeners.get_or_insert_with(Vec::new);
                match list.iter_mut().find(|(n, _)| n == name) {
                    Some(slot) => slot.1 = l,
                    None => list.push((name.to_string(), l)),
                }
            }));
        }
        if let Some(rest) = key.strip_prefix("ssl_options.") {
            return tls_option(&mut s.ssl_options, rest, value);
        }
        for (prefix, slot) in [
            ("management.ssl.", &mut s.management_ssl),
            ("prometheus.ssl.", &mut s.prometheus_ssl),
        ] {
            if let Some(rest) = key.strip_prefix(prefix) {
                return match rest {
                    "port" => Some(
                        integer(value)
                            .map(|v| slot.port = Some(v))
                            .map_err(Verdict::Invalid),
                    ),
                    "ip" => Some(
                        ip(value)
                            .map(|v| slot.ip = Some(v))
                            .map_err(Verdict::Invalid),
                    ),
                    _ => tls_option(&mut slot.options, rest, value),
                };
            }
        }
        if let Some(n) = key.strip_prefix("auth_mechanisms.") {
            let _ = n;
            let list = s.auth_mechanisms.get_or_insert_with(Vec::new);
            if !list.iter().any(|m| m == value) {
                list.push(value.to_string());
            }
            return Some(Ok(()));
        }
        if key == "ssl_cert_login_from" {
            return Some(match value {
                "distinguished_name" | "common_name" => {
                    set(&mut s.ssl_cert_login_from, value.to_string()).map_err(Verdict::Invalid)
                }
                // RabbitMQ 3.10 also takes subject_alternative_name; warren does not yet.
                "subject_alternative_name" => Err(Verdict::Ignored(
                    "ssl_cert_login_from = subject_alternative_name is not supported; \
                     the distinguished name is used"
                        .into(),
                )),
                _ => Err(Verdict::Invalid(format!(
                    "{value:?} is not a valid enum value, acceptable values are: \
                     distinguished_name, common_name, subject_alternative_name"
                ))),
            });
        }
        None
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

/// One `ssl_options.X` (or `management.ssl.X`) setting into `o`; `None` for options
/// warren does not act on.
fn tls_option(
    o: &mut warren_tls::TlsOptions,
    rest: &str,
    value: &str,
) -> Option<Result<(), Verdict>> {
    let r = match rest {
        "cacertfile" => set(&mut o.cacertfile, std::path::PathBuf::from(value)),
        "certfile" => set(&mut o.certfile, std::path::PathBuf::from(value)),
        "keyfile" => set(&mut o.keyfile, std::path::PathBuf::from(value)),
        "password" => set(&mut o.password, value.to_string()),
        "verify" => warren_tls::Verify::parse(value)
            .map(|v| o.verify = v)
            .ok_or_else(|| {
                format!("{value:?} is not a valid enum value, acceptable values are: verify_peer, verify_none")
            }),
        "fail_if_no_peer_cert" => boolean(value).map(|b| o.fail_if_no_peer_cert = b),
        "honor_cipher_order" => boolean(value).map(|b| o.honor_cipher_order = b),
        "depth" => integer(value).map(|d| o.depth = Some(d)),
        _ => {
            if let Some(_n) = rest.strip_prefix("versions.") {
                if !o.versions.iter().any(|v| v == value) {
                    o.versions.push(value.to_string());
                }
                Ok(())
            } else if let Some(_n) = rest.strip_prefix("ciphers.") {
                o.ciphers.push(value.to_string());
                Ok(())
            } else {
                return None;
            }
        }
    };
    Some(r.map_err(Verdict::Invalid))
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
    let tls = key.starts_with("ssl_options.")
        || key.starts_with("management.ssl.")
        || key.starts_with("prometheus.ssl.");
    Verdict::Ignored(if tls {
        format!("{key}: a TLS option warren does not support (rustls decides it); ignored")
    } else {
        format!("{key}: a RabbitMQ setting warren does not support; ignored")
    })
}
