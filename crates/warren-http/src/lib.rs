//! warren's management HTTP API, compatible with RabbitMQ 3.x's management plugin (same
//! paths, JSON field names and shapes, HTTP basic auth with user tags, errors as
//! `{"error": ..., "reason": ...}`), and the Prometheus endpoint of rabbitmq_prometheus.
//!
//! Handlers read the broker model through its read-only views (`warren_server::views`:
//! snapshots copied under the model's locks, so no handler holds one) and mutate it
//! through `Broker::admin_*` operations.
#![forbid(unsafe_code)]

mod api;
mod auth;
pub mod convert;
mod metrics;
mod ui;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use serde_json::json;
use tokio::{net::TcpListener, sync::watch};
use tracing::warn;
use warren_server::Broker;

pub use metrics::render as render_metrics;
pub use ui::total_size as ui_size;

/// The management API's router (every `/api/...` route), for serving it some other way
/// than [`serve`] does: in-process in tests and fuzzing, with a `ConnectInfo<SocketAddr>`
/// extension on each request standing for the client's address.
pub fn api_router(broker: Arc<Broker>) -> axum::Router {
    api::router(broker)
}

/// An API error: status code plus RabbitMQ's `error` and `reason` fields.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub error: &'static str,
    pub reason: String,
}

impl ApiError {
    pub fn not_found() -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            error: "Object Not Found",
            reason: "Not Found".into(),
        }
    }
    pub fn bad_request(reason: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            error: "bad_request",
            reason: reason.into(),
        }
    }
    pub fn internal(reason: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            error: "internal_server_error",
            reason: reason.into(),
        }
    }
    pub fn not_authorised(reason: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            error: "not_authorised",
            reason: reason.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (
            self.status,
            Json(json!({"error": self.error, "reason": self.reason})),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Basic realm=\"RabbitMQ Management\""),
            );
        }
        resp
    }
}

impl From<warren_server::admin::AdminError> for ApiError {
    fn from(e: warren_server::admin::AdminError) -> Self {
        use warren_server::admin::AdminError;
        match e {
            AdminError::NotFound => ApiError::not_found(),
            AdminError::BadRequest(reason) => ApiError::bad_request(reason),
            // RabbitMQ's API answers an operation's ACCESS_REFUSED (reserved names, the
            // default exchange) with 401 and no detail.
            AdminError::Refused(_) => ApiError::not_authorised("Access refused."),
            AdminError::Internal(reason) => ApiError::internal(reason),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// Serves the management API on `listener` until `stop` turns true.
pub async fn serve(listener: TcpListener, broker: Arc<Broker>, stop: watch::Receiver<bool>) {
    if let Ok(addr) = listener.local_addr() {
        broker.admin.add_listener("http", addr);
    }
    let ticker = tokio::spawn(sample_rates(broker.clone()));
    let app = api::router(broker);
    run(listener, app, stop).await;
    ticker.abort();
}

/// Serves Prometheus metrics (`/metrics`, `/metrics/detailed`, `/metrics/per-object`).
pub async fn serve_metrics(
    listener: TcpListener,
    broker: Arc<Broker>,
    stop: watch::Receiver<bool>,
) {
    if let Ok(addr) = listener.local_addr() {
        broker.admin.add_listener("http/prometheus", addr);
    }
    let app = metrics::router(broker);
    run(listener, app, stop).await;
}

async fn run(listener: TcpListener, app: axum::Router, mut stop: watch::Receiver<bool>) {
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    let result = axum::serve(listener, service)
        .with_graceful_shutdown(async move {
            while !*stop.borrow() {
                if stop.changed().await.is_err() {
                    break;
                }
            }
        })
        .await;
    if let Err(e) = result {
        warn!(error = %e, "HTTP server stopped");
    }
}

/// What [`serve_tls`] serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsApp {
    /// The management API; `sample`: run the rate sampler (no plaintext API listener
    /// runs it).
    Management {
        sample: bool,
    },
    Prometheus,
}

/// The management API or the Prometheus endpoint over TLS. The listener is registered
/// (overview, health checks) before this returns, so it is listed once the start is
/// logged.
pub fn serve_tls(
    listener: TcpListener,
    broker: Arc<Broker>,
    stop: watch::Receiver<bool>,
    tls: Arc<warren_tls::TlsServer>,
    app: TlsApp,
) -> impl std::future::Future<Output = ()> + Send {
    let addr = listener.local_addr().ok();
    let metrics = app == TlsApp::Prometheus;
    let protocol = if metrics { "https/prometheus" } else { "https" };
    if let Some(addr) = addr {
        broker.admin.add_tls_listener(protocol, addr, tls.clone());
    }
    let sample = matches!(app, TlsApp::Management { sample: true });
    serve_tls_loop(listener, broker, stop, tls, metrics, sample)
}

async fn serve_tls_loop(
    listener: TcpListener,
    broker: Arc<Broker>,
    mut stop: watch::Receiver<bool>,
    tls: Arc<warren_tls::TlsServer>,
    metrics: bool,
    sample: bool,
) {
    let ticker = sample.then(|| tokio::spawn(sample_rates(broker.clone())));
    let app = if metrics {
        metrics::router(broker.clone())
    } else {
        api::router(broker.clone())
    };
    let timeout = Duration::from_millis(broker.config.ssl_handshake_timeout_ms);
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        warn!(error = %e, "HTTPS accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let app = app.clone().layer(axum::Extension(axum::extract::ConnectInfo(peer)));
                let tls = tls.clone();
                conns.spawn(async move {
                    let stream = match tls.accept(tcp, timeout).await {
                        Ok((s, _)) => s,
                        Err(e) => {
                            tracing::debug!(%peer, error = %e, "HTTPS handshake failed");
                            return;
                        }
                    };
                    let service = hyper_util::service::TowerToHyperService::new(app);
                    let io = hyper_util::rt::TokioIo::new(stream);
                    if let Err(e) = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await
                    {
                        tracing::debug!(%peer, error = %e, "HTTPS connection ended");
                    }
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            changed = stop.changed() => if changed.is_err() || *stop.borrow() { break },
        }
    }
    conns.abort_all();
    if let Some(t) = ticker {
        t.abort();
    }
}

/// Samples every queue's and the broker's counters once a second, so rates cover the
/// window even when nobody reads them for a while.
async fn sample_rates(broker: Arc<Broker>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        for conn in broker.admin.connection_list() {
            conn.io.sample();
            for (_, channel) in conn.channel_states() {
                channel.stats.sample();
            }
        }
        for vhost in broker.vhosts() {
            vhost.sample_stats();
        }
    }
}
