//! `/api/warren/certificates`: each TLS listener's certificates with their expiry dates
//! (warren's own; RabbitMQ's `check_certificate_expiration` asks the node over Erlang
//! distribution, warren's tools ask here). `POST /api/warren/certificates/reload` reads
//! the files again, as SIGHUP does.

use std::sync::Arc;

use axum::{
    extract::{ConnectInfo, State},
    http::HeaderMap,
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use serde_json::{json, Value};
use warren_server::Broker;
use warren_tls::CertSummary;

use super::{auth, Peer, B};
use crate::{ApiError, ApiResult};

pub(super) fn routes() -> Router<Arc<Broker>> {
    Router::new()
        .route("/api/warren/certificates", get(list))
        .route("/api/warren/certificates/reload", post(reload))
}

fn certs_json(certs: &[CertSummary]) -> Value {
    Value::Array(
        certs
            .iter()
            .map(|c| {
                json!({
                    "subject": c.subject,
                    "issuer": c.issuer,
                    "not_before": c.not_before,
                    "not_after": c.not_after,
                })
            })
            .collect(),
    )
}

async fn list(State(b): B, ConnectInfo(peer): Peer, headers: HeaderMap) -> ApiResult<Response> {
    auth(&b, &headers, peer)?.require_monitor()?;
    let rows: Vec<Value> = b
        .admin
        .tls_listeners()
        .into_iter()
        .map(|(protocol, addr, server)| {
            let o = server.options();
            let path = |p: &Option<std::path::PathBuf>| {
                p.as_ref()
                    .map_or(Value::Null, |p| json!(p.display().to_string()))
            };
            json!({
                "protocol": protocol,
                "ip_address": addr.ip().to_string(),
                "port": addr.port(),
                "certfile": path(&o.certfile),
                "cacertfile": path(&o.cacertfile),
                "certificates": certs_json(&server.certificates()),
                "ca_certificates": certs_json(&server.ca_certificates()),
            })
        })
        .collect();
    Ok(Json(Value::Array(rows)).into_response())
}

async fn reload(State(b): B, ConnectInfo(peer): Peer, headers: HeaderMap) -> ApiResult<Response> {
    auth(&b, &headers, peer)?.require_admin()?;
    let mut failed = Vec::new();
    for (protocol, _, server) in b.admin.tls_listeners() {
        if let Err(e) = server.reload() {
            failed.push(format!("{protocol}: {e}"));
        }
    }
    if failed.is_empty() {
        Ok(Json(json!({"status": "ok"})).into_response())
    } else {
        Err(ApiError::bad_request(failed.join("; ")))
    }
}
