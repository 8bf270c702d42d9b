//! warren's own TOML configuration file (`--config FILE`, `WARREN_CONFIG`).

use std::{net::SocketAddr, path::PathBuf};

use serde::Deserialize;

/// The TOML file: every key optional; see docs/configuration.md.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub rabbitmq_version: Option<String>,
    pub cluster_name: Option<String>,
    pub channel_max: Option<u16>,
    pub frame_max: Option<u32>,
    pub heartbeat: Option<u16>,
    pub max_message_size: Option<u64>,
    pub management_max_body_size: Option<u64>,
    pub handshake_timeout_secs: Option<u64>,
    pub consumer_timeout_ms: Option<u64>,
    pub channel_tick_interval_ms: Option<u64>,
    /// Optional plugins to enable besides those in enabled_plugins.
    pub plugins: Option<Vec<String>>,
    pub default_user: Option<String>,
    pub default_pass: Option<String>,
    pub default_vhost: Option<String>,
    pub default_user_tags: Option<Vec<String>>,
    pub default_permissions: Option<PermissionsTable>,
    pub loopback_users: Option<Vec<String>>,
    pub fsync: Option<String>,
    pub memory_budget_mb: Option<u64>,
    pub disk_free_limit: Option<DiskFreeLimit>,
    pub vm_memory_high_watermark: Option<MemoryWatermark>,
    pub http_listen: Option<String>,
    pub prometheus_listen: Option<String>,
    pub load_definitions: Option<PathBuf>,
    /// Test suites only: TTLs read the clock `/api/warren/clock` moves.
    pub test_clock: Option<bool>,
    /// `false`: no plaintext AMQP listener (rabbitmq.conf's `listeners.tcp = none`).
    pub plaintext: Option<bool>,
    /// AMQP over TLS (`listeners.ssl.default`), ADDR:PORT or `off`.
    pub listen_tls: Option<String>,
    /// `ssl_options.*`.
    pub tls: Option<TlsTable>,
    /// Management API over TLS (`management.ssl.port`), ADDR:PORT or `off`.
    pub https_listen: Option<String>,
    /// `management.ssl.*` (defaults to the `[tls]` files).
    pub https_tls: Option<TlsTable>,
    /// Prometheus over TLS (`prometheus.ssl.port`), ADDR:PORT or `off`.
    pub prometheus_tls_listen: Option<String>,
    /// `prometheus.ssl.*` (defaults to the `[tls]` files).
    pub prometheus_tls: Option<TlsTable>,
    pub auth_mechanisms: Option<Vec<String>>,
    pub ssl_cert_login_from: Option<String>,
}

/// A `[tls]` table: rabbitmq.conf's `ssl_options.*` under the same names.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TlsTable {
    pub cacertfile: Option<PathBuf>,
    pub certfile: Option<PathBuf>,
    pub keyfile: Option<PathBuf>,
    pub password: Option<String>,
    pub verify: Option<String>,
    pub fail_if_no_peer_cert: Option<bool>,
    pub depth: Option<u32>,
    pub versions: Option<Vec<String>>,
    pub ciphers: Option<Vec<String>>,
    pub honor_cipher_order: Option<bool>,
}

impl TlsTable {
    /// These settings over `base`.
    pub fn over(
        &self,
        mut base: warren_tls::TlsOptions,
        what: &str,
    ) -> Result<warren_tls::TlsOptions, String> {
        macro_rules! take {
            ($($f:ident),*) => { $( if let Some(v) = &self.$f { base.$f = Some(v.clone()); } )* };
        }
        take!(cacertfile, certfile, keyfile, password, depth);
        if let Some(v) = &self.verify {
            base.verify = warren_tls::Verify::parse(v).ok_or_else(|| {
                format!("{what}.verify must be verify_peer or verify_none, not '{v}'")
            })?;
        }
        if let Some(v) = self.fail_if_no_peer_cert {
            base.fail_if_no_peer_cert = v;
        }
        if let Some(v) = self.honor_cipher_order {
            base.honor_cipher_order = v;
        }
        if let Some(v) = &self.versions {
            base.versions = v.clone();
        }
        if let Some(v) = &self.ciphers {
            base.ciphers = v.clone();
        }
        Ok(base)
    }
}

/// `default_permissions = { configure = ".*", write = ".*", read = ".*" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PermissionsTable {
    pub configure: String,
    pub write: String,
    pub read: String,
}

/// A byte size: a number of bytes or a string with a unit ("50MB", "1GiB").
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum Bytes {
    Number(u64),
    Text(String),
}

impl Bytes {
    pub fn value(&self) -> Result<u64, String> {
        match self {
            Bytes::Number(n) => Ok(*n),
            Bytes::Text(t) => warren_server::alarm::parse_bytes(t),
        }
    }
}

/// `disk_free_limit = "50MB"` or, as in rabbitmq.conf, `disk_free_limit.absolute = "50MB"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum DiskFreeLimit {
    Plain(Bytes),
    Table(AbsoluteOnly),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AbsoluteOnly {
    pub absolute: Bytes,
}

impl DiskFreeLimit {
    pub fn value(&self) -> Result<u64, String> {
        match self {
            DiskFreeLimit::Plain(b) | DiskFreeLimit::Table(AbsoluteOnly { absolute: b }) => b,
        }
        .value()
        .map_err(|e| format!("disk_free_limit: {e}"))
    }
}

/// `vm_memory_high_watermark = 0.4`, `vm_memory_high_watermark.relative = 0.4` or
/// `vm_memory_high_watermark.absolute = "2GB"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum MemoryWatermark {
    Fraction(f64),
    Table(WatermarkTable),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WatermarkTable {
    relative: Option<f64>,
    absolute: Option<Bytes>,
}

impl MemoryWatermark {
    pub fn value(&self) -> Result<warren_server::alarm::Watermark, String> {
        use warren_server::alarm::Watermark;
        let relative = |f: f64| {
            if f.is_finite() && f >= 0.0 {
                Ok(Watermark::Relative(f))
            } else {
                Err(format!(
                    "vm_memory_high_watermark must be a fraction >= 0, not {f}"
                ))
            }
        };
        match self {
            MemoryWatermark::Fraction(f) => relative(*f),
            MemoryWatermark::Table(WatermarkTable {
                relative: Some(f),
                absolute: None,
            }) => relative(*f),
            MemoryWatermark::Table(WatermarkTable {
                relative: None,
                absolute: Some(b),
            }) => b.value().map(Watermark::Absolute),
            MemoryWatermark::Table(_) => {
                Err("vm_memory_high_watermark takes one of .relative or .absolute".into())
            }
        }
    }
}

/// Reads and parses the TOML file at `path`.
pub(crate) fn read(path: &std::path::Path) -> Result<FileConfig, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("invalid config file {}: {e}", path.display()))
}
