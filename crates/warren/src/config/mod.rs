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
    util::rabbitmq_conf::{DiskFreeLimit, MemoryWatermark, Settings, SslListener},
    ServerConfig,
};
use warren_tls::TlsOptions;

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
    /// Whether the plaintext AMQP listener runs (`listeners.tcp = none` turns it off).
    pub amqp_tcp: bool,
    /// AMQP over TLS: address and `ssl_options`.
    pub amqps: Option<(SocketAddr, TlsOptions)>,
    /// The management API over TLS.
    pub https: Option<(SocketAddr, TlsOptions)>,
    /// Prometheus over TLS.
    pub prometheus_tls: Option<(SocketAddr, TlsOptions)>,
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
    cfg.plugins = rabbit.plugins.clone();
    cfg.enabled_plugins_file = env
        .get("RABBITMQ_ENABLED_PLUGINS_FILE")
        .map(PathBuf::from)
        .or_else(|| etc.as_ref().map(|d| d.join("enabled_plugins")));
    let external_plugin = rabbit
        .plugins
        .iter()
        .any(|p| p == rabbitmq::AUTH_MECHANISM_SSL);
    if cfg.auth_mechanisms.iter().any(|m| m == "EXTERNAL") && !external_plugin {
        // RabbitMQ offers no mechanism whose plugin is off.
        notes.push(Note::warn(format!(
            "auth_mechanisms: EXTERNAL needs the {} plugin enabled; not offered",
            rabbitmq::AUTH_MECHANISM_SSL
        )));
        cfg.auth_mechanisms.retain(|m| m != "EXTERNAL");
    }
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
    if cli.test_clock {
        cfg.test_clock = true;
    }
    let pick = |flag: &Option<String>, side: Option<String>, default: &str| {
        flag.clone().or(side).unwrap_or_else(|| default.to_string())
    };
    let http = pick(&cli.http_listen, sides.http.clone(), "0.0.0.0:15672");
    let prometheus = pick(
        &cli.prometheus_listen,
        sides.prometheus.clone(),
        "0.0.0.0:15692",
    );
    let tls = apply_tls_flags(cli, &mut sides, &mut cfg).map_err(|e| vec![e])?;
    let extras = Extras {
        amqp_tcp: tls.amqp_tcp,
        amqps: tls.amqps,
        https: tls.https,
        prometheus_tls: tls.prometheus_tls,
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
    /// `listeners.tcp = none` / `plaintext = false`.
    tcp_off: bool,
    amqps: Option<String>,
    ssl_options: TlsOptions,
    https: Option<String>,
    https_options: Option<TlsOptions>,
    prometheus_tls: Option<String>,
    prometheus_tls_options: Option<TlsOptions>,
}

/// The TLS listeners, after flags.
struct TlsListeners {
    amqp_tcp: bool,
    amqps: Option<(SocketAddr, TlsOptions)>,
    https: Option<(SocketAddr, TlsOptions)>,
    prometheus_tls: Option<(SocketAddr, TlsOptions)>,
}

/// The TLS flags over the files' settings; resolves the listeners.
fn apply_tls_flags(
    cli: &Cli,
    sides: &mut Sides,
    cfg: &mut ServerConfig,
) -> Result<TlsListeners, String> {
    let o = &mut sides.ssl_options;
    if let Some(p) = &cli.tls_cert {
        o.certfile = Some(p.clone());
    }
    if let Some(p) = &cli.tls_key {
        o.keyfile = Some(p.clone());
    }
    if let Some(p) = &cli.tls_password {
        o.password = Some(p.clone());
    }
    if let Some(p) = &cli.tls_ca {
        o.cacertfile = Some(p.clone());
    }
    if let Some(v) = &cli.tls_verify {
        o.verify = warren_tls::Verify::parse(v)
            .ok_or_else(|| format!("--tls-verify must be verify_peer or verify_none, not '{v}'"))?;
    }
    if cli.tls_fail_if_no_peer_cert {
        o.fail_if_no_peer_cert = true;
    }
    if !cli.tls_versions.is_empty() {
        o.versions = cli.tls_versions.clone();
    }
    let amqps = cli.listen_tls.clone().or(sides.amqps.clone());
    let amqps = match amqps {
        Some(v) => listen_setting("listen_tls", &v)?,
        None => None,
    };
    // HTTPS without files of its own uses the AMQP ones (handy with flags).
    let fallback = |own: &Option<TlsOptions>| match own {
        Some(o) if o.certfile.is_some() => o.clone(),
        _ => sides.ssl_options.clone(),
    };
    let https = match cli.https_listen.clone().or(sides.https.clone()) {
        Some(v) => listen_setting("https_listen", &v)?.map(|a| (a, fallback(&sides.https_options))),
        None => None,
    };
    let prometheus_tls = match cli
        .prometheus_tls_listen
        .clone()
        .or(sides.prometheus_tls.clone())
    {
        Some(v) => listen_setting("prometheus_tls_listen", &v)?
            .map(|a| (a, fallback(&sides.prometheus_tls_options))),
        None => None,
    };
    let amqp_tcp = !(cli.no_plaintext || sides.tcp_off);
    if cfg.ssl_cert_login_from != "distinguished_name" && cfg.ssl_cert_login_from != "common_name" {
        return Err(format!(
            "ssl_cert_login_from must be distinguished_name or common_name, not '{}'",
            cfg.ssl_cert_login_from
        ));
    }
    Ok(TlsListeners {
        amqp_tcp,
        amqps: amqps.map(|a| (a, sides.ssl_options.clone())),
        https,
        prometheus_tls,
    })
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
        if listeners.is_empty() {
            sides.tcp_off = true;
        }
        apply_listeners(cfg, listeners, notes);
    }
    if let Some(listeners) = &s.ssl_listeners {
        sides.amqps = first_listener("ssl", listeners, notes).map(|a| a.to_string());
    }
    sides.ssl_options = s.ssl_options.clone();
    let ssl_side = |l: &SslListener, default_port| side_listener(l.ip, l.port, default_port);
    sides.https = ssl_side(&s.management_ssl, 15671);
    sides.https_options = Some(s.management_ssl.options.clone());
    sides.prometheus_tls = ssl_side(&s.prometheus_ssl, 15691);
    sides.prometheus_tls_options = Some(s.prometheus_ssl.options.clone());
    if let Some(m) = &s.auth_mechanisms {
        cfg.auth_mechanisms = m.clone();
    }
    if let Some(v) = &s.ssl_cert_login_from {
        cfg.ssl_cert_login_from = v.clone();
    }
    if let Some(ms) = s.ssl_handshake_timeout_ms {
        cfg.ssl_handshake_timeout_ms = ms.max(1);
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
    if let Some(ms) = s.consumer_timeout_ms {
        cfg.consumer_timeout_ms = Some(ms);
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

/// `listeners.ssl.default`, or else the first one; others are named in warnings.
fn first_listener(
    kind: &str,
    listeners: &[(String, warren_server::util::rabbitmq_conf::Listener)],
    notes: &mut Vec<Note>,
) -> Option<SocketAddr> {
    let chosen = listeners
        .iter()
        .position(|(name, _)| name == "default")
        .or((!listeners.is_empty()).then_some(0))?;
    let mut out = None;
    for (i, (name, l)) in listeners.iter().enumerate() {
        let addr = SocketAddr::new(l.ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)), l.port);
        if i == chosen {
            out = Some(addr);
        } else {
            notes.push(Note::warn(format!(
                "listeners.{kind}.{name} ({addr}): warren listens on one address per kind; ignored"
            )));
        }
    }
    out
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
        loopback_users,
        test_clock
    );
    if let Some(p) = file.default_permissions {
        cfg.default_permissions = [p.configure, p.write, p.read];
    }
    // 0 turns the timeout off (RabbitMQ: `consumer_timeout = undefined` in advanced.config).
    if let Some(ms) = file.consumer_timeout_ms {
        cfg.consumer_timeout_ms = (ms > 0).then_some(ms);
    }
    if let Some(plugins) = file.plugins {
        for p in plugins {
            if !cfg.plugins.contains(&p) {
                cfg.plugins.push(p);
            }
        }
    }
    if let Some(ms) = file.channel_tick_interval_ms {
        cfg.channel_tick_interval_ms = ms.max(1);
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
    if let Some(on) = file.plaintext {
        sides.tcp_off = !on;
    }
    if file.listen_tls.is_some() {
        sides.amqps = file.listen_tls;
    }
    if let Some(t) = &file.tls {
        sides.ssl_options = t.over(sides.ssl_options.clone(), "tls")?;
    }
    if file.https_listen.is_some() {
        sides.https = file.https_listen;
    }
    if let Some(t) = &file.https_tls {
        let base = sides.https_options.clone().unwrap_or_default();
        sides.https_options = Some(t.over(base, "https_tls")?);
    }
    if file.prometheus_tls_listen.is_some() {
        sides.prometheus_tls = file.prometheus_tls_listen;
    }
    if let Some(t) = &file.prometheus_tls {
        let base = sides.prometheus_tls_options.clone().unwrap_or_default();
        sides.prometheus_tls_options = Some(t.over(base, "prometheus_tls")?);
    }
    if let Some(m) = file.auth_mechanisms {
        cfg.auth_mechanisms = m;
    }
    if let Some(v) = file.ssl_cert_login_from {
        cfg.ssl_cert_login_from = v;
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
    fn consumer_timeout_and_plugins_from_both_sides() {
        let env = Env::from_pairs(&[]);
        let (dir, cli) = setup("ct", "consumer_timeout = 5000\n", None, &[]);
        std::fs::write(
            dir.join("enabled_plugins"),
            "[rabbitmq_management,rabbitmq_consistent_hash_exchange].",
        )
        .unwrap();
        let l = load(&cli, &env).ok().unwrap();
        assert_eq!(l.cfg.consumer_timeout_ms, Some(5000));
        assert_eq!(l.cfg.channel_tick_interval_ms, 60_000);
        assert_eq!(l.cfg.plugins, ["rabbitmq_consistent_hash_exchange"]);
        assert!(l.cfg.exchange_kind("x-consistent-hash").is_ok());
        let (dir2, cli) = setup(
            "ct-off",
            "",
            Some("consumer_timeout_ms = 0\nchannel_tick_interval_ms = 250\n"),
            &[],
        );
        let l = load(&cli, &env).ok().unwrap();
        assert_eq!(l.cfg.consumer_timeout_ms, None);
        assert_eq!(l.cfg.channel_tick_interval_ms, 250);
        assert!(l.cfg.plugins.is_empty());
        assert_eq!(
            l.cfg.exchange_kind("x-consistent-hash"),
            Err("unknown exchange type 'x-consistent-hash'".into())
        );
        assert_eq!(ServerConfig::default().consumer_timeout_ms, Some(1_800_000));
        let _ = std::fs::remove_dir_all(dir);
        let _ = std::fs::remove_dir_all(dir2);
    }

    #[test]
    fn the_test_clock_is_off_unless_a_flag_or_the_toml_file_asks() {
        let env = Env::from_pairs(&[]);
        let (dir, cli) = setup("clock-off", "", None, &[]);
        assert!(!load(&cli, &env).ok().unwrap().cfg.test_clock);
        std::fs::remove_dir_all(dir).unwrap();
        let (dir, cli) = setup("clock-flag", "", None, &["--test-clock"]);
        assert!(load(&cli, &env).ok().unwrap().cfg.test_clock);
        std::fs::remove_dir_all(dir).unwrap();
        let (dir, cli) = setup("clock-toml", "", Some("test_clock = true\n"), &[]);
        assert!(load(&cli, &env).ok().unwrap().cfg.test_clock);
        std::fs::remove_dir_all(dir).unwrap();
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
    fn tls_listeners_from_conf_toml_and_flags() {
        let conf = "listeners.tcp = none\nlisteners.ssl.default = 127.0.0.1:5999\n\
                    ssl_options.certfile = /conf.pem\nssl_options.keyfile = /conf.key\n\
                    management.ssl.port = 15999\nauth_mechanisms.1 = EXTERNAL\n";
        let (dir, cli) = setup("tls", conf, None, &[]);
        let l = load(&cli, &Env::from_pairs(&[])).ok().unwrap();
        assert!(!l.extras.amqp_tcp);
        let (addr, o) = l.extras.amqps.clone().unwrap();
        assert_eq!(addr, "127.0.0.1:5999".parse().unwrap());
        assert_eq!(o.certfile, Some(PathBuf::from("/conf.pem")));
        // management.ssl without files of its own takes ssl_options'.
        let (addr, o) = l.extras.https.clone().unwrap();
        assert_eq!(addr.port(), 15999);
        assert_eq!(o.keyfile, Some(PathBuf::from("/conf.key")));
        // EXTERNAL without rabbitmq_auth_mechanism_ssl enabled is dropped, with a warning.
        assert!(l.cfg.auth_mechanisms.is_empty());
        assert!(l.notes.iter().any(|n| n.text.contains("EXTERNAL needs")));
        let _ = std::fs::remove_dir_all(dir);

        let toml = "plaintext = true\nlisten_tls = \"0.0.0.0:5998\"\n\
                    [tls]\ncertfile = \"/toml.pem\"\nverify = \"verify_peer\"\nversions = [\"tlsv1.3\"]\n";
        let (dir, cli) = setup(
            "tls-flags",
            conf,
            Some(toml),
            &["--tls-cert", "/flag.pem", "--listen-tls", "127.0.0.1:5997"],
        );
        let l = load(&cli, &Env::from_pairs(&[])).ok().unwrap();
        assert!(
            l.extras.amqp_tcp,
            "plaintext = true wins over listeners.tcp = none"
        );
        let (addr, o) = l.extras.amqps.unwrap();
        assert_eq!(addr, "127.0.0.1:5997".parse().unwrap());
        assert_eq!(o.certfile, Some(PathBuf::from("/flag.pem")));
        assert_eq!(o.keyfile, Some(PathBuf::from("/conf.key")));
        assert_eq!(o.verify, warren_tls::Verify::VerifyPeer);
        assert_eq!(o.versions, ["tlsv1.3"]);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn tls_password_from_conf_toml_and_flag() {
        let conf = "listeners.ssl.default = 127.0.0.1:5999\nssl_options.certfile = /c.pem\n\
                    ssl_options.keyfile = /enc.key\nssl_options.password = from conf\n";
        let (dir, cli) = setup("tls-pw-conf", conf, None, &[]);
        let l = load(&cli, &Env::from_pairs(&[])).ok().unwrap();
        assert_eq!(
            l.extras.amqps.unwrap().1.password.as_deref(),
            Some("from conf")
        );
        let _ = std::fs::remove_dir_all(dir);

        let toml = "[tls]\npassword = \"from toml\"\n";
        let (dir, cli) = setup("tls-pw-toml", conf, Some(toml), &[]);
        let l = load(&cli, &Env::from_pairs(&[])).ok().unwrap();
        assert_eq!(
            l.extras.amqps.unwrap().1.password.as_deref(),
            Some("from toml")
        );
        let _ = std::fs::remove_dir_all(dir);

        let (dir, cli) = setup(
            "tls-pw-flag",
            conf,
            Some(toml),
            &["--tls-password", "from flag"],
        );
        let l = load(&cli, &Env::from_pairs(&[])).ok().unwrap();
        assert_eq!(
            l.extras.amqps.unwrap().1.password.as_deref(),
            Some("from flag")
        );
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
