//! Where the broker's settings come from, and which source wins.
//!
//! Two families, warren's own above RabbitMQ's (see docs/configuration.md):
//! 1. command-line flags, then `WARREN_*` variables (clap merges these two per flag);
//! 2. the TOML file (`--config`, `WARREN_CONFIG`);
//! 3. `RABBITMQ_*` variables, weighed against rabbitmq.conf as RabbitMQ 3.10 does
//!    (`RABBITMQ_DEFAULT_USER/PASS/VHOST` override it, `RABBITMQ_NODE_PORT` only applies
//!    when it sets no `listeners.tcp`);
//! 4. rabbitmq.conf and conf.d (later files win);
//! 5. built-in defaults.

pub(crate) mod rabbitmq;
mod toml_file;

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::PathBuf,
};

use warren_server::{
    util::rabbitmq_conf::{DiskFreeLimit, MemoryWatermark, Settings},
    ServerConfig,
};

use crate::Cli;

/// Where rabbitmq.conf, conf.d/ and enabled_plugins are looked for by default.
pub(crate) const DEFAULT_RABBITMQ_ETC: &str = "/etc/rabbitmq";

/// The process environment as read once at start; an empty variable counts as unset,
/// as in RabbitMQ.
pub(crate) struct Env {
    vars: HashMap<String, String>,
}

impl Env {
    pub fn from_process() -> Env {
        Env {
            vars: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
        }
    }

    #[cfg(test)]
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Env {
        Env {
            vars: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    pub fn get(&self, name: &str) -> Option<String> {
        self.vars.get(name).filter(|v| !v.is_empty()).cloned()
    }
}

/// A message for the log, kept until logging is set up (its level comes from the
/// configuration being read).
#[derive(Debug)]
pub(crate) struct Note {
    pub warning: bool,
    pub text: String,
}

impl Note {
    pub fn info(text: String) -> Note {
        Note {
            warning: false,
            text,
        }
    }

    pub fn warn(text: String) -> Note {
        Note {
            warning: true,
            text,
        }
    }
}

/// What the binary serves besides AMQP.
#[derive(Debug, Clone)]
pub(crate) struct Extras {
    pub http_listen: Option<SocketAddr>,
    pub prometheus_listen: Option<SocketAddr>,
    pub load_definitions: Option<PathBuf>,
    pub repair_metadata: bool,
    /// rabbitmq.conf's `log.file`: a file the log goes to besides standard output.
    pub log_file: Option<PathBuf>,
}

/// The configuration, the log filter to use and what to log about it.
pub(crate) struct Loaded {
    pub cfg: ServerConfig,
    pub extras: Extras,
    pub log_filter: String,
    pub notes: Vec<Note>,
}

/// A configuration that stops the start: the messages, and the notes gathered before.
pub(crate) struct Failure {
    pub errors: Vec<String>,
    pub notes: Vec<Note>,
}

/// `off` (or `none`, `false`) disables a listener; anything else must be ADDR:PORT.
fn listen_setting(what: &str, value: &str) -> Result<Option<SocketAddr>, String> {
    match value {
        "off" | "none" | "false" => Ok(None),
        v => v
            .parse()
            .map(Some)
            .map_err(|e| format!("invalid {what} address '{v}': {e}")),
    }
}

/// Reads every source and merges them.
pub(crate) fn load(cli: &Cli, env: &Env) -> Result<Loaded, Failure> {
    let mut notes = Vec::new();
    match load_into(cli, env, &mut notes) {
        Ok((cfg, extras, log_filter)) => Ok(Loaded {
            cfg,
            extras,
            log_filter,
            notes,
        }),
        Err(errors) => Err(Failure { errors, notes }),
    }
}

fn load_into(
    cli: &Cli,
    env: &Env,
    notes: &mut Vec<Note>,
) -> Result<(ServerConfig, Extras, String), Vec<String>> {
    let etc = match cli.rabbitmq_etc.as_deref() {
        Some("off" | "none" | "false") => None,
        Some(dir) => Some(PathBuf::from(dir)),
        None => Some(PathBuf::from(DEFAULT_RABBITMQ_ETC)),
    };
    let rabbit = rabbitmq::load(env, etc.as_deref(), notes)?;
    let file = match &cli.config {
        Some(path) => toml_file::read(path).map_err(|e| vec![e])?,
        None => toml_file::FileConfig::default(),
    };
    let mut cfg = ServerConfig::default();
    let mut sides = Sides::default();
    apply_rabbit(&mut cfg, &mut sides, &rabbit.settings, notes).map_err(|e| vec![e])?;
    if let Some(dir) = rabbit.data_dir {
        cfg.data_dir = dir;
    }
    apply_toml(&mut cfg, &mut sides, file).map_err(|e| vec![e])?;
    // Flags and WARREN_* variables last.
    if let Some(listen) = cli.listen {
        cfg.listen = listen;
    }
    if let Some(dir) = &cli.data_dir {
        cfg.data_dir = dir.clone();
    }
    let pick = |flag: &Option<String>, side: Option<String>, default: &str| {
        flag.clone().or(side).unwrap_or_else(|| default.to_string())
    };
    let http = pick(&cli.http_listen, sides.http, "0.0.0.0:15672");
    let prometheus = pick(&cli.prometheus_listen, sides.prometheus, "0.0.0.0:15692");
    let extras = Extras {
        http_listen: listen_setting("http_listen", &http).map_err(|e| vec![e])?,
        prometheus_listen: listen_setting("prometheus_listen", &prometheus).map_err(|e| vec![e])?,
        load_definitions: cli.load_definitions.clone().or(sides.definitions),
        repair_metadata: cli.repair_metadata,
        log_file: rabbit
            .settings
            .log_file
            .as_deref()
            .map(|f| log_file_path(env, f)),
    };
    validate(&cfg).map_err(|e| vec![e])?;
    let log_filter = cli
        .log
        .clone()
        .or(sides.log_filter)
        .unwrap_or_else(|| "info".into());
    Ok((cfg, extras, log_filter))
}

/// Settings that are not in [`ServerConfig`], as the lower layers leave them.
#[derive(Default)]
struct Sides {
    http: Option<String>,
    prometheus: Option<String>,
    definitions: Option<PathBuf>,
    log_filter: Option<String>,
}

/// `log.file`: an absolute path, or a name in RabbitMQ's log directory
/// (`$RABBITMQ_LOG_BASE`, default `/var/log/rabbitmq`).
fn log_file_path(env: &Env, file: &str) -> PathBuf {
    let path = PathBuf::from(file);
    if path.is_absolute() {
        path
    } else {
        env.get("RABBITMQ_LOG_BASE")
            .map_or_else(|| PathBuf::from("/var/log/rabbitmq"), PathBuf::from)
            .join(path)
    }
}

fn validate(cfg: &ServerConfig) -> Result<(), String> {
    if cfg.frame_max != 0 && cfg.frame_max < 4096 {
        return Err(format!(
            "frame_max {} is below the AMQP minimum 4096",
            cfg.frame_max
        ));
    }
    let [c, w, r] = &cfg.default_permissions;
    warren_server::auth::Permission::new(c, w, r)
        .map(|_| ())
        .map_err(|e| format!("default_permissions: {e}"))
}

/// `ip:port` from rabbitmq.conf's `X.tcp.ip` / `X.tcp.port` (either may be missing).
fn side_listener(ip: Option<IpAddr>, port: Option<u16>, default_port: u16) -> Option<String> {
    (ip.is_some() || port.is_some()).then(|| {
        SocketAddr::new(
            ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            port.unwrap_or(default_port),
        )
        .to_string()
    })
}

/// rabbitmq.conf and the `RABBITMQ_*` variables, already merged.
fn apply_rabbit(
    cfg: &mut ServerConfig,
    sides: &mut Sides,
    s: &Settings,
    notes: &mut Vec<Note>,
) -> Result<(), String> {
    if let Some(listeners) = &s.tcp_listeners {
        apply_listeners(cfg, listeners, notes);
    }
    macro_rules! take {
        ($($field:ident),*) => { $( if let Some(v) = &s.$field { cfg.$field = v.clone(); } )* };
    }
    take!(
        default_user,
        default_pass,
        default_vhost,
        default_user_tags,
        loopback_users,
        channel_max,
        frame_max,
        heartbeat,
        max_message_size,
        management_max_body_size
    );
    if let Some(p) = &s.default_permissions {
        cfg.default_permissions = [p.configure.clone(), p.write.clone(), p.read.clone()];
    }
    if let Some(ms) = s.handshake_timeout_ms {
        cfg.handshake_timeout_secs = ms.div_ceil(1000).max(1);
    }
    match s.vm_memory_high_watermark {
        Some(MemoryWatermark::Relative(f)) => {
            cfg.vm_memory_high_watermark = warren_server::alarm::Watermark::Relative(f)
        }
        Some(MemoryWatermark::Absolute(b)) => {
            cfg.vm_memory_high_watermark = warren_server::alarm::Watermark::Absolute(b)
        }
        None => {}
    }
    match s.disk_free_limit {
        Some(DiskFreeLimit::Absolute(b)) => cfg.disk_free_limit = b,
        Some(DiskFreeLimit::Relative(f)) => match warren_server::alarm::total_memory() {
            Some(total) => cfg.disk_free_limit = (total as f64 * f) as u64,
            None => notes.push(Note::warn(
                "disk_free_limit.relative: total memory unknown; the default limit applies".into(),
            )),
        },
        None => {}
    }
    sides.http = side_listener(s.management_ip, s.management_port, 15672);
    sides.prometheus = side_listener(s.prometheus_ip, s.prometheus_port, 15692);
    if let Some((key, path)) = &s.load_definitions {
        if std::fs::File::open(path).is_err() {
            return Err(format!(
                "Error preparing configuration: {key} invalid, file does not exist or cannot be read by the node"
            ));
        }
        sides.definitions = Some(PathBuf::from(path));
    }
    sides.log_filter = s.log_level.as_deref().map(|level| {
        match level {
            "debug" => "debug",
            "info" | "notice" => "info",
            "warning" => "warn",
            "none" => "off",
            _ => "error",
        }
        .to_string()
    });
    Ok(())
}

/// warren listens on one AMQP address: `listeners.tcp.default`, or else the first one.
fn apply_listeners(
    cfg: &mut ServerConfig,
    listeners: &[(String, warren_server::util::rabbitmq_conf::Listener)],
    notes: &mut Vec<Note>,
) {
    let chosen = listeners
        .iter()
        .position(|(name, _)| name == "default")
        .or((!listeners.is_empty()).then_some(0));
    let Some(chosen) = chosen else {
        notes.push(Note::warn(
            "listeners.tcp = none: warren always listens for AMQP; ignored".into(),
        ));
        return;
    };
    for (i, (name, l)) in listeners.iter().enumerate() {
        let addr = SocketAddr::new(l.ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)), l.port);
        if i == chosen {
            cfg.listen = addr;
        } else {
            notes.push(Note::warn(format!(
                "listeners.tcp.{name} ({addr}): warren listens on one AMQP address; ignored"
            )));
        }
    }
}

/// The TOML file, over the RabbitMQ side.
fn apply_toml(
    cfg: &mut ServerConfig,
    sides: &mut Sides,
    file: toml_file::FileConfig,
) -> Result<(), String> {
    macro_rules! take {
        ($($field:ident),*) => { $( if let Some(v) = file.$field { cfg.$field = v; } )* };
    }
    take!(
        listen,
        data_dir,
        rabbitmq_version,
        cluster_name,
        channel_max,
        frame_max,
        heartbeat,
        max_message_size,
        management_max_body_size,
        handshake_timeout_secs,
        fsync,
        memory_budget_mb,
        default_user,
        default_pass,
        default_vhost,
        default_user_tags,
        loopback_users
    );
    if let Some(p) = file.default_permissions {
        cfg.default_permissions = [p.configure, p.write, p.read];
    }
    if let Some(limit) = &file.disk_free_limit {
        cfg.disk_free_limit = limit.value()?;
    }
    if let Some(mark) = &file.vm_memory_high_watermark {
        cfg.vm_memory_high_watermark = mark.value()?;
    }
    if file.http_listen.is_some() {
        sides.http = file.http_listen;
    }
    if file.prometheus_listen.is_some() {
        sides.prometheus = file.prometheus_listen;
    }
    if file.load_definitions.is_some() {
        sides.definitions = file.load_definitions;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use clap::Parser;

    /// A directory with rabbitmq.conf and a TOML file; the CLI reading it.
    fn setup(name: &str, conf: &str, toml: Option<&str>, extra: &[&str]) -> (PathBuf, Cli) {
        let dir = std::env::temp_dir().join(format!("warren-cfg-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("rabbitmq.conf"), conf).unwrap();
        let etc = dir.to_str().unwrap().to_string();
        let mut args = vec!["warren".to_string(), "--rabbitmq-etc".into(), etc];
        if let Some(t) = toml {
            std::fs::write(dir.join("warren.toml"), t).unwrap();
            args.push("--config".into());
            args.push(dir.join("warren.toml").to_str().unwrap().into());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        (dir, Cli::parse_from(args))
    }

    #[test]
    fn warren_settings_win_over_rabbitmq_ones() {
        let conf = "default_user = conf\ndefault_vhost = conf\nheartbeat = 11\n\
                    listeners.tcp.default = 127.0.0.1:1111\nmanagement.tcp.port = 2222\n\
                    log.console.level = warning\n";
        let env = Env::from_pairs(&[
            ("RABBITMQ_DEFAULT_USER", "env"),
            ("RABBITMQ_DEFAULT_VHOST", "env"),
            ("RABBITMQ_NODE_PORT", "3333"),
        ]);
        let (dir, cli) = setup("layers", conf, Some("default_vhost = \"toml\"\n"), &[]);
        let l = load(&cli, &env).ok().unwrap();
        assert_eq!(l.cfg.default_user, "env");
        assert_eq!(l.cfg.default_vhost, "toml");
        assert_eq!(l.cfg.heartbeat, 11);
        assert_eq!(l.cfg.listen, "127.0.0.1:1111".parse().unwrap());
        assert_eq!(l.extras.http_listen, Some("0.0.0.0:2222".parse().unwrap()));
        assert_eq!(l.log_filter, "warn");
        let _ = std::fs::remove_dir_all(dir);

        let (dir, cli) = setup(
            "flags",
            conf,
            None,
            &[
                "--listen",
                "127.0.0.1:4444",
                "--http-listen",
                "off",
                "--log",
                "debug",
            ],
        );
        let l = load(&cli, &env).ok().unwrap();
        assert_eq!(l.cfg.listen, "127.0.0.1:4444".parse().unwrap());
        assert_eq!(l.extras.http_listen, None);
        assert_eq!(l.log_filter, "debug");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn unknown_key_error_names_file_and_line() {
        let (dir, cli) = setup(
            "err",
            "mqtt.listeners.tcp.default = 1883\nnope = 1\n",
            None,
            &[],
        );
        let Err(f) = load(&cli, &Env::from_pairs(&[])) else {
            panic!("must fail")
        };
        assert!(f.errors[0].ends_with(":2: Conf file attempted to set unknown variable: nope"));
        let _ = std::fs::remove_dir_all(dir);
    }
}
