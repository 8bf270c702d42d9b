use std::{net::SocketAddr, path::PathBuf};

use serde::{Deserialize, Serialize};

/// Settings of the AMQP server. Defaults match RabbitMQ's out-of-the-box behaviour.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// The RabbitMQ release whose behaviour warren matches, reported as `version` in
    /// connection.start (Spring Boot's health check reads it).
    pub rabbitmq_version: String,
    pub cluster_name: String,
    pub channel_max: u16,
    pub frame_max: u32,
    /// Heartbeat interval proposed in connection.tune, in seconds.
    pub heartbeat: u16,
    /// Largest message body accepted (RabbitMQ 3.10's max_message_size).
    pub max_message_size: u64,
    /// Seconds a client has to complete the handshake.
    pub handshake_timeout_secs: u64,
    pub default_user: String,
    pub default_pass: String,
    pub default_vhost: String,
    /// Tags of the default user (RabbitMQ's default_user_tags; `administrator`).
    pub default_user_tags: Vec<String>,
    /// The default user's permissions on the default vhost as configure, write and read
    /// patterns (RabbitMQ's default_permissions; `.*` each).
    pub default_permissions: [String; 3],
    /// Users that may only connect from loopback addresses (RabbitMQ's loopback_users).
    pub loopback_users: Vec<String>,
    /// When persistent messages are synced to disk: `always` (group commit before every
    /// confirm, the default), `never` (on shutdown only), or a number of milliseconds
    /// (at most that long after the write; confirms do not wait).
    pub fsync: String,
    /// Memory for message bodies of ready messages, in MiB, all queues together: beyond
    /// it new bodies stay on disk only and are read back in order on delivery.
    pub memory_budget_mb: u64,
    /// Free space (bytes) on the data directory's filesystem below which the disk alarm
    /// blocks publishers (RabbitMQ's disk_free_limit.absolute, default 50 MB).
    pub disk_free_limit: u64,
    /// Resident memory above which the memory alarm blocks publishers: a fraction of
    /// total RAM or bytes (RabbitMQ's vm_memory_high_watermark, default 0.4).
    pub vm_memory_high_watermark: crate::model::alarm::Watermark,
    /// The CLI tools' shared secret (RabbitMQ's Erlang cookie): a management API request
    /// from a loopback address that carries it acts as the node's operator. `None`: the
    /// tools need a user's credentials.
    pub cli_cookie: Option<String>,
    /// Milliseconds a delivery may stay unacknowledged before its channel is closed with
    /// 406 (RabbitMQ's consumer_timeout, default 30 min); `None` never.
    pub consumer_timeout_ms: Option<u64>,
    /// How often a channel holding unacknowledged deliveries checks them against
    /// `consumer_timeout_ms` (RabbitMQ's channel_tick_interval, 60 s).
    pub channel_tick_interval_ms: u64,
    /// Plugins enabled beyond the built-in ones (enabled_plugins, `plugins` in TOML):
    /// `rabbitmq_consistent_hash_exchange` makes `x-consistent-hash` declarable.
    pub plugins: Vec<String>,
    /// The enabled_plugins file read at boot (or where it would be): `rabbitmq-plugins`
    /// switches rewrite it, as RabbitMQ's do. `None`: switches change the running broker
    /// only.
    pub enabled_plugins_file: Option<PathBuf>,
    /// The SASL mechanisms offered, in order (RabbitMQ's auth_mechanisms): PLAIN,
    /// AMQPLAIN, and EXTERNAL (offered on TLS connections only).
    pub auth_mechanisms: Vec<String>,
    /// What EXTERNAL takes as the user name from the client certificate:
    /// `distinguished_name` (RabbitMQ's default) or `common_name`.
    pub ssl_cert_login_from: String,
    /// Milliseconds a client has to finish the TLS handshake (RabbitMQ's
    /// ssl_handshake_timeout, default 5000); the AMQP handshake timeout starts after it.
    pub ssl_handshake_timeout_ms: u64,
    /// Largest management API request body, in bytes (RabbitMQ's
    /// `management.http.max_body_size`, 20 MiB by default).
    pub management_max_body_size: u64,
    /// TTLs, `x-expires` and `x-death` times read a clock that `/api/warren/clock` can
    /// advance or freeze: for test suites only, never for production.
    pub test_clock: bool,
}

impl ServerConfig {
    pub fn plugin_enabled(&self, name: &str) -> bool {
        self.plugins.iter().any(|p| p == name)
    }

    /// The exchange type a declaration names, when it exists and its plugin is enabled;
    /// else RabbitMQ's refusal text (`unknown exchange type ...` for a plugin type that
    /// is not enabled, as its atom does not exist then).
    pub fn exchange_kind(&self, name: &str) -> Result<warren_router::ExchangeKind, String> {
        match warren_router::ExchangeKind::parse(name) {
            Some(kind) if kind.plugin().is_none_or(|p| self.plugin_enabled(p)) => Ok(kind),
            _ => Err(warren_router::ExchangeKind::type_error_text(name)),
        }
    }

    /// The message store's sync policy from [`ServerConfig::fsync`].
    pub fn sync_policy(&self) -> Result<warren_journal::SyncPolicy, String> {
        match self.fsync.as_str() {
            "always" => Ok(warren_journal::SyncPolicy::Always),
            "never" => Ok(warren_journal::SyncPolicy::Never),
            ms => ms
                .parse::<u64>()
                .map(|ms| {
                    warren_journal::SyncPolicy::Interval(std::time::Duration::from_millis(ms))
                })
                .map_err(|_| format!("fsync must be always, never or milliseconds, not '{ms}'")),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 5672)),
            data_dir: PathBuf::from("warren-data"),
            rabbitmq_version: "3.10.7".into(),
            cluster_name: "warren".into(),
            channel_max: 2047,
            frame_max: 131_072,
            heartbeat: 60,
            max_message_size: 128 * 1024 * 1024,
            management_max_body_size: 20 * 1024 * 1024,
            handshake_timeout_secs: 10,
            default_user: "guest".into(),
            default_pass: "guest".into(),
            default_vhost: "/".into(),
            default_user_tags: vec!["administrator".into()],
            default_permissions: [".*".into(), ".*".into(), ".*".into()],
            loopback_users: vec!["guest".into()],
            fsync: "always".into(),
            memory_budget_mb: 256,
            disk_free_limit: 50_000_000,
            vm_memory_high_watermark: crate::model::alarm::Watermark::default(),
            cli_cookie: None,
            consumer_timeout_ms: Some(1_800_000),
            channel_tick_interval_ms: 60_000,
            plugins: Vec::new(),
            enabled_plugins_file: None,
            auth_mechanisms: vec!["PLAIN".into(), "AMQPLAIN".into()],
            ssl_cert_login_from: "distinguished_name".into(),
            ssl_handshake_timeout_ms: 5000,
            test_clock: false,
        }
    }
}
