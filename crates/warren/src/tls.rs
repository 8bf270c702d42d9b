//! The binary's TLS listeners: their configurations loaded at start (a bad file stops
//! the start, named) and reloaded on SIGHUP, so rotated certificates serve new
//! connections without a restart.

use std::{net::SocketAddr, sync::Arc};

use tracing::{error, info};
use warren_tls::TlsServer;

use crate::config::Extras;

/// The loaded TLS configurations, each with its listen address.
pub(crate) struct Loaded {
    pub amqps: Option<(SocketAddr, Arc<TlsServer>)>,
    pub https: Option<(SocketAddr, Arc<TlsServer>)>,
    pub prometheus_tls: Option<(SocketAddr, Arc<TlsServer>)>,
}

impl Loaded {
    pub fn servers(&self) -> Vec<Arc<TlsServer>> {
        [&self.amqps, &self.https, &self.prometheus_tls]
            .into_iter()
            .flatten()
            .map(|(_, s)| s.clone())
            .collect()
    }
}

/// Loads every configured TLS listener's files.
pub(crate) fn load_all(extras: &Extras) -> Result<Loaded, String> {
    let http = vec![b"http/1.1".to_vec()];
    let load =
        |slot: &Option<(SocketAddr, warren_tls::TlsOptions)>, prefix: &str, alpn: Vec<Vec<u8>>| {
            slot.as_ref()
                .map(|(addr, o)| {
                    TlsServer::load_with_alpn(prefix, o.clone(), alpn)
                        .map(|s| (*addr, Arc::new(s)))
                        .map_err(|e| format!("TLS listener on {addr}: {e}"))
                })
                .transpose()
        };
    Ok(Loaded {
        amqps: load(&extras.amqps, "ssl_options", Vec::new())?,
        https: load(&extras.https, "management.ssl", http.clone())?,
        prometheus_tls: load(&extras.prometheus_tls, "prometheus.ssl", http)?,
    })
}

/// Reloads every TLS configuration on SIGHUP; a failed reload keeps the one in use.
pub(crate) fn watch_reload(servers: Vec<Arc<TlsServer>>) {
    if servers.is_empty() {
        return;
    }
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            error!("cannot watch SIGHUP: TLS certificates reload only at restart");
            return;
        };
        while hup.recv().await.is_some() {
            reload(&servers);
        }
    });
}

/// Reloads each configuration, logging the outcome.
pub(crate) fn reload(servers: &[Arc<TlsServer>]) {
    for s in servers {
        match s.reload() {
            Ok(()) => info!(settings = s.prefix(), "TLS certificates reloaded"),
            Err(e) => error!(
                settings = s.prefix(),
                "TLS reload failed, keeping the certificates in use: {e}"
            ),
        }
    }
}
