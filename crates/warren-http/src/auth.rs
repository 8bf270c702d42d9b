//! HTTP basic auth against the broker's users, and what each user tag allows
//! (rabbit_mgmt_util's is_authorized_* family).

use std::net::SocketAddr;

use axum::http::HeaderMap;
use base64::{engine::general_purpose::STANDARD, Engine};
use warren_server::{
    auth::{Access, Resource},
    Broker,
};

use crate::{ApiError, ApiResult};

/// An authenticated management user, or the node's own CLI tools (see [`CLI_COOKIE_HEADER`]).
#[derive(Debug, Clone)]
pub struct Authed {
    pub user: String,
    pub tags: Vec<String>,
    /// rabbitmqctl & co. with the node's cookie: an administrator allowed into every vhost,
    /// as RabbitMQ's tools are through Erlang distribution.
    pub cli: bool,
}

/// The header of the CLI tools' shared secret (`ServerConfig::cli_cookie`, RabbitMQ's
/// Erlang cookie), honoured from loopback addresses only.
pub const CLI_COOKIE_HEADER: &str = "x-warren-cookie";

/// The name the CLI tools act under, as RabbitMQ's (`rmq-cli`).
const CLI_USER: &str = "rmq-cli";

impl Authed {
    fn has(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }
    pub fn is_admin(&self) -> bool {
        self.has("administrator")
    }
    /// monitoring sees every vhost, connection and channel.
    pub fn is_monitor(&self) -> bool {
        self.is_admin() || self.has("monitoring")
    }
    pub fn is_policymaker(&self) -> bool {
        self.is_admin() || self.has("policymaker")
    }

    pub fn require_admin(&self) -> ApiResult<()> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(ApiError::not_authorised("Not administrator user"))
        }
    }

    pub fn require_monitor(&self) -> ApiResult<()> {
        if self.is_monitor() {
            Ok(())
        } else {
            Err(ApiError::not_authorised("Not monitor user"))
        }
    }

    pub fn require_policymaker(&self) -> ApiResult<()> {
        if self.is_policymaker() {
            Ok(())
        } else {
            Err(ApiError::not_authorised("Not policymaker user"))
        }
    }

    /// Vhosts this user may see: all for monitoring users, else those it has permissions in.
    pub fn can_see_vhost(&self, broker: &Broker, vhost: &str) -> bool {
        self.is_monitor() || self.cli || broker.has_vhost_access(&self.user, vhost)
    }

    /// Whether list answers (queues, exchanges, bindings, policies, parameters) include
    /// objects of this vhost: rabbit_mgmt_util's filter_vhost shows administrators every
    /// vhost and everybody else, monitoring users included, only those they may log into.
    pub fn lists_vhost(&self, broker: &Broker, vhost: &str) -> bool {
        self.is_admin() || self.cli || broker.has_vhost_access(&self.user, vhost)
    }

    /// rabbit_mgmt_util's is_authorized_policies: administrators, or policymakers in a
    /// vhost they may log into (`vhost`: the one the path names, if any).
    pub fn require_policies(&self, broker: &Broker, vhost: Option<&str>) -> ApiResult<()> {
        let allowed = self.is_admin()
            || self.cli
            || (self.is_policymaker()
                && vhost.is_none_or(|v| {
                    broker.vhost(v).is_none() || broker.has_vhost_access(&self.user, v)
                }));
        if allowed {
            Ok(())
        } else {
            Err(ApiError::not_authorised(
                "User not authorised to access object",
            ))
        }
    }

    /// For operations inside a vhost: it must exist (404) and the user needs access (401).
    pub fn require_vhost(&self, broker: &Broker, vhost: &str) -> ApiResult<()> {
        if broker.vhost(vhost).is_none() {
            return Err(ApiError::not_found());
        }
        if !self.cli && !broker.has_vhost_access(&self.user, vhost) {
            return Err(ApiError::not_authorised(
                "User not authorised to access virtual host",
            ));
        }
        Ok(())
    }

    /// The permission check of declare/delete/purge/bind: RabbitMQ answers 401
    /// "Access refused." (recorded in tests/fixtures/management/more.json).
    pub fn check(
        &self,
        broker: &Broker,
        vhost: &str,
        access: Access,
        resource: Resource,
        name: &str,
    ) -> ApiResult<()> {
        if self.cli {
            return Ok(());
        }
        broker
            .check_access(&self.user, vhost, access, resource, name)
            .map_err(|_| ApiError::not_authorised("Access refused."))
    }

    /// The check of `POST .../get`, which goes through an AMQP channel: 401 with the
    /// channel's ACCESS_REFUSED text.
    pub fn check_amqp(
        &self,
        broker: &Broker,
        vhost: &str,
        access: Access,
        resource: Resource,
        name: &str,
    ) -> ApiResult<()> {
        if self.cli {
            return Ok(());
        }
        broker
            .check_access(&self.user, vhost, access, resource, name)
            .map_err(|e| ApiError::not_authorised(e.text))
    }

    /// The check of `POST .../publish`: RabbitMQ answers 400 with "403 ACCESS_REFUSED - ...".
    pub fn check_publish(&self, broker: &Broker, vhost: &str, exchange: &str) -> ApiResult<()> {
        if self.cli {
            return Ok(());
        }
        broker
            .check_access(
                &self.user,
                vhost,
                Access::Write,
                Resource::Exchange,
                exchange,
            )
            .map_err(|e| ApiError::bad_request(format!("403 {}", e.text)))
    }
}

/// Authenticates the request's basic credentials; the user must carry a management tag.
pub fn authenticate(broker: &Broker, headers: &HeaderMap, peer: SocketAddr) -> ApiResult<Authed> {
    let login_failed = || ApiError {
        status: axum::http::StatusCode::UNAUTHORIZED,
        error: "not_authorized",
        reason: "Login failed".into(),
    };
    if cli_cookie_matches(broker, headers, peer) {
        return Ok(Authed {
            user: CLI_USER.into(),
            tags: vec!["administrator".into()],
            cli: true,
        });
    }
    let Some((user, pass)) = basic_credentials(headers) else {
        return Err(login_failed());
    };
    if broker.authenticate(&user, &pass, peer.ip()).is_err() {
        return Err(login_failed());
    }
    let tags = broker.user(&user).map(|u| u.tags).unwrap_or_default();
    let authed = Authed {
        user,
        tags,
        cli: false,
    };
    let management = ["administrator", "management", "monitoring", "policymaker"];
    if !authed.tags.iter().any(|t| management.contains(&t.as_str())) {
        return Err(ApiError::not_authorised("Not management user"));
    }
    Ok(authed)
}

/// Whether the request carries the node's CLI cookie and comes from this machine. A wrong
/// or absent cookie is no error: basic credentials decide then.
fn cli_cookie_matches(broker: &Broker, headers: &HeaderMap, peer: SocketAddr) -> bool {
    let (Some(expected), Some(given)) = (
        broker.config.cli_cookie.as_deref(),
        headers.get(CLI_COOKIE_HEADER),
    ) else {
        return false;
    };
    peer.ip().is_loopback() && constant_time_eq(expected.as_bytes(), given.as_bytes())
}

/// Compares without stopping at the first difference, so timing tells nothing of the cookie.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let decoded = STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_string(), pass.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_basic_header() {
        let mut h = HeaderMap::new();
        h.insert(
            axum::http::header::AUTHORIZATION,
            axum::http::HeaderValue::from_static("Basic Z3Vlc3Q6Z3Vlc3Q="),
        );
        assert_eq!(
            basic_credentials(&h),
            Some(("guest".to_string(), "guest".to_string()))
        );
        assert_eq!(basic_credentials(&HeaderMap::new()), None);
    }
}
