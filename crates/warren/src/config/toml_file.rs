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
