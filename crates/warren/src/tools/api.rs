//! Where the tools find the broker: the management API address and credentials, from
//! `-n rabbit@HOST` and the environment, since warren's tools speak HTTP, not Erlang
//! distribution.

use serde_json::Value;

use crate::ctl::http::{self, Reply, SendError};

/// The management API port RabbitMQ's management plugin (and warren) listen on.
const DEFAULT_PORT: u16 = 15672;

/// The management API of one node.
#[derive(Debug, Clone)]
pub(crate) struct Api {
    /// ADDR:PORT of the management API.
    pub(crate) addr: String,
    pub(crate) user: String,
    pub(crate) password: String,
    /// The node name the tool reports (`rabbit@host`).
    pub(crate) node: String,
    /// The node's CLI cookie (`crate::cookie`), sent besides the credentials: the broker
    /// takes it over them when it matches.
    pub(crate) cookie: Option<String>,
    /// CA file for an `https://` address (`WARREN_CTL_CACERT`).
    pub(crate) cacert: Option<std::path::PathBuf>,
}

/// The value of an environment variable, when set and not empty.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// This machine's host name (short), as RabbitMQ's default node name uses it.
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| env("HOSTNAME"))
        .unwrap_or_else(|| "localhost".into())
}

/// RabbitMQ's default node name: `$RABBITMQ_NODENAME`, or `rabbit@<short host name>`.
pub(crate) fn default_node() -> String {
    env("RABBITMQ_NODENAME").unwrap_or_else(|| {
        let host = hostname();
        let short = host.split('.').next().unwrap_or("localhost");
        format!("rabbit@{short}")
    })
}

/// The management API address for a node: `$WARREN_CTL_HOST` when set; else the node's
/// host on port 15672, loopback for this machine (`localhost` or its own name).
pub(crate) fn api_addr(node: Option<&str>, ctl_host: Option<String>) -> String {
    if let Some(addr) = ctl_host {
        return addr;
    }
    let host = node
        .and_then(|n| n.split_once('@').map(|(_, h)| h.to_string()))
        .unwrap_or_default();
    let local = hostname();
    let short = local.split('.').next().unwrap_or_default();
    if host.is_empty() || host == "localhost" || host == local || host == short {
        format!("127.0.0.1:{DEFAULT_PORT}")
    } else if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{DEFAULT_PORT}")
    } else {
        format!("{host}:{DEFAULT_PORT}")
    }
}

/// Credentials: `$WARREN_CTL_USER`/`$WARREN_CTL_PASSWORD`, else the broker's own
/// `$RABBITMQ_DEFAULT_USER`/`$RABBITMQ_DEFAULT_PASS` (set in a container), else guest.
/// (rabbitmqctl and rabbitmq-diagnostics send the node's cookie too, which the broker
/// prefers when it matches: see `crate::cookie`.)
pub(crate) fn credentials() -> (String, String) {
    let user = env("WARREN_CTL_USER")
        .or_else(|| env("RABBITMQ_DEFAULT_USER"))
        .unwrap_or_else(|| "guest".into());
    let password = env("WARREN_CTL_PASSWORD")
        .or_else(|| env("RABBITMQ_DEFAULT_PASS"))
        .unwrap_or_else(|| "guest".into());
    (user, password)
}

impl Api {
    /// The API for `-n NODE` (or the default node), from the environment.
    pub(crate) fn for_node(node: Option<&str>) -> Api {
        let (user, password) = credentials();
        // Explicit credentials mean "act as this user": no cookie then.
        let cookie = if env("WARREN_CTL_USER").is_some() {
            None
        } else {
            crate::cookie::for_tool()
        };
        Api {
            addr: api_addr(node, env("WARREN_CTL_HOST")),
            user,
            password,
            node: node.map_or_else(default_node, str::to_string),
            cookie,
            cacert: env("WARREN_CTL_CACERT").map(std::path::PathBuf::from),
        }
    }

    /// One request; `extra` are additional header lines.
    pub(crate) fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        extra: &[String],
    ) -> Result<Reply, SendError> {
        let mut headers = extra.to_vec();
        if let Some(cookie) = &self.cookie {
            headers.push(format!("{}: {cookie}", crate::cookie::HEADER));
        }
        http::send(
            &self.addr,
            self.cacert.as_deref(),
            (&self.user, &self.password),
            method,
            path,
            body,
            &headers,
        )
    }
}

/// A reply body as JSON (null when empty or not JSON).
pub(crate) fn json(reply: &Reply) -> Value {
    serde_json::from_slice(&reply.body).unwrap_or(Value::Null)
}

/// The `reason` of an error reply, or its body.
pub(crate) fn reason(reply: &Reply) -> String {
    json(reply)
        .get("reason")
        .and_then(Value::as_str)
        .map(String::from)
        .unwrap_or_else(|| String::from_utf8_lossy(&reply.body).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_map_to_api_addresses() {
        assert_eq!(api_addr(None, None), "127.0.0.1:15672");
        assert_eq!(api_addr(Some("rabbit@localhost"), None), "127.0.0.1:15672");
        let me = format!("rabbit@{}", hostname());
        assert_eq!(api_addr(Some(&me), None), "127.0.0.1:15672");
        assert_eq!(api_addr(Some("rabbit@mq1"), None), "mq1:15672");
        assert_eq!(api_addr(Some("rabbit@::1"), None), "[::1]:15672");
        assert_eq!(
            api_addr(Some("rabbit@mq1"), Some("10.0.0.1:1567".into())),
            "10.0.0.1:1567"
        );
        assert_eq!(api_addr(Some("bare"), None), "127.0.0.1:15672");
    }
}
