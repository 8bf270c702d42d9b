//! The broker to load: `--uri` as `HOST:PORT` or an AMQP URI (`amqp://` / `amqps://`,
//! with optional user, password and vhost), and the TLS client for `amqps` or `--tls`.

use std::{net::ToSocketAddrs, path::PathBuf, sync::Arc};

use tokio_rustls::{rustls::pki_types::ServerName, TlsConnector};

use crate::{client::Target, PerfError};

/// What `--uri` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uri {
    pub host: String,
    pub port: u16,
    pub tls: bool,
    pub user: Option<String>,
    pub password: Option<String>,
    pub vhost: Option<String>,
}

/// `%XX` escapes, as AMQP URIs use them (`%2F` for the vhost `/`).
fn unescape(s: &str) -> Result<String, PerfError> {
    let bad = || PerfError::Address(format!("bad %-escape in {s}"));
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3).ok_or_else(bad)?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

/// Parses `HOST:PORT`, `amqp://[USER[:PASS]@]HOST[:PORT][/VHOST]` or the same with
/// `amqps://` (default port 5671).
pub fn parse_uri(uri: &str) -> Result<Uri, PerfError> {
    let bad = || PerfError::Address(uri.to_string());
    let (tls, rest) = if let Some(r) = uri.strip_prefix("amqps://") {
        (true, r)
    } else if let Some(r) = uri.strip_prefix("amqp://") {
        (false, r)
    } else {
        let (host, port) = uri.rsplit_once(':').ok_or_else(bad)?;
        return Ok(Uri {
            host: host.trim_matches(['[', ']']).to_string(),
            port: port.parse().map_err(|_| bad())?,
            tls: false,
            user: None,
            password: None,
            vhost: None,
        });
    };
    let (authority, vhost) = match rest.split_once('/') {
        Some((a, v)) => (a, Some(unescape(v)?)),
        None => (rest, None),
    };
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (user, password) = match userinfo {
        Some(u) => match u.split_once(':') {
            Some((n, p)) => (Some(unescape(n)?), Some(unescape(p)?)),
            None => (Some(unescape(u)?), None),
        },
        None => (None, None),
    };
    let default_port = if tls { 5671 } else { 5672 };
    let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
        // [v6]:port
        let (h, p) = h.split_once(']').ok_or_else(bad)?;
        let port = match p.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| bad())?,
            None => default_port,
        };
        (h.to_string(), port)
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse().map_err(|_| bad())?),
            None => (hostport.to_string(), default_port),
        }
    };
    if host.is_empty() {
        return Err(bad());
    }
    Ok(Uri {
        host,
        port,
        tls,
        user,
        password,
        vhost: vhost.filter(|v| !v.is_empty()),
    })
}

/// The TLS flags of `warren perf`.
#[derive(Debug, Clone, Default)]
pub struct TlsFlags {
    pub tls: bool,
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub key_password: Option<String>,
}

/// The address and TLS client of a parsed URI.
pub fn target(uri: &Uri, flags: &TlsFlags) -> Result<Target, PerfError> {
    let addr = (uri.host.as_str(), uri.port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| PerfError::Address(format!("{}:{}", uri.host, uri.port)))?;
    if !(uri.tls || flags.tls) {
        if flags.ca.is_some() || flags.cert.is_some() {
            return Err(PerfError::Options(
                "--tls-ca / --tls-cert need --tls or an amqps:// URI".into(),
            ));
        }
        return Ok(Target { addr, tls: None });
    }
    let config = warren_tls::client_config_with(&warren_tls::ClientOptions {
        cacertfile: flags.ca.clone(),
        certfile: flags.cert.clone(),
        keyfile: flags.key.clone(),
        password: flags.key_password.clone(),
    })
    .map_err(|e| PerfError::Options(e.to_string()))?;
    let name = ServerName::try_from(uri.host.clone())
        .map_err(|e| PerfError::Address(format!("{}: {e}", uri.host)))?;
    Ok(Target {
        addr,
        tls: Some((TlsConnector::from(Arc::new(config)), name)),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn uris() {
        let u = parse_uri("127.0.0.1:5672").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.tls), ("127.0.0.1", 5672, false));
        let u = parse_uri("amqps://localhost").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.tls), ("localhost", 5671, true));
        let u = parse_uri("amqps://bob:p%40ss@127.0.0.1:27401/%2F").unwrap();
        assert_eq!(
            u,
            Uri {
                host: "127.0.0.1".into(),
                port: 27401,
                tls: true,
                user: Some("bob".into()),
                password: Some("p@ss".into()),
                vhost: Some("/".into()),
            }
        );
        let u = parse_uri("amqp://[::1]:5673/vh").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.vhost),
            ("::1", 5673, Some("vh".into()))
        );
        assert!(parse_uri("amqps://:5671").is_err());
        assert!(parse_uri("amqp://h:notaport").is_err());
        assert!(parse_uri("nohostport").is_err());
        assert!(parse_uri("amqp://h/%zz").is_err());
    }

    #[test]
    fn tls_flags_without_tls_are_refused() {
        let u = parse_uri("127.0.0.1:5672").unwrap();
        let flags = TlsFlags {
            ca: Some("/ca.pem".into()),
            ..TlsFlags::default()
        };
        assert!(matches!(target(&u, &flags), Err(PerfError::Options(_))));
        assert!(target(&u, &TlsFlags::default()).unwrap().tls.is_none());
        let flags = TlsFlags {
            tls: true,
            ..TlsFlags::default()
        };
        assert!(target(&u, &flags).unwrap().tls.is_some());
    }
}
