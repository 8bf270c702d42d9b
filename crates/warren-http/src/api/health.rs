//! `/api/healthchecks/node` and `/api/health/checks/...`.

use std::sync::Arc;

use axum::{
    extract::{ConnectInfo, Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use serde_json::{json, Value};
use warren_server::Broker;

use super::{amqp_port, auth, node_name, Peer, B};
use crate::{ApiError, ApiResult};

pub(super) fn routes() -> Router<Arc<Broker>> {
    Router::new()
        .route("/api/healthchecks/node", get(health_ok))
        .route("/api/health/checks/alarms", get(health_alarms))
        .route("/api/health/checks/local-alarms", get(health_local_alarms))
        .route("/api/health/checks/virtual-hosts", get(health_ok))
        .route("/api/health/checks/port-listener/{port}", get(health_port))
        .route(
            "/api/health/checks/protocol-listener/{protocol}",
            get(health_protocol),
        )
        .route(
            "/api/health/checks/node-is-quorum-critical",
            get(health_single_node),
        )
        .route(
            "/api/health/checks/node-is-mirror-sync-critical",
            get(health_single_node),
        )
        .route(
            "/api/health/checks/certificate-expiration/{within}/{unit}",
            get(health_ok),
        )
}

async fn health_ok(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?;
    Ok(Json(json!({"status": "ok"})).into_response())
}

/// 503 with the alarms in effect, as RabbitMQ 3.10.8 answers (measured; resource names
/// "disk space" and "memory").
fn alarms_health(b: &Broker, reason: &str) -> Response {
    let alarms = b.alarms.current();
    if !alarms.any() {
        return Json(json!({"status": "ok"})).into_response();
    }
    let list: Vec<Value> = [(alarms.disk, "disk space"), (alarms.memory, "memory")]
        .into_iter()
        .filter(|(on, _)| *on)
        .map(|(_, resource)| json!({"node": node_name(), "resource": resource}))
        .collect();
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"status": "failed", "reason": reason, "alarms": list})),
    )
        .into_response()
}

async fn health_alarms(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?;
    Ok(alarms_health(
        &b,
        "There are alarms in effect in the cluster",
    ))
}

async fn health_local_alarms(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?;
    Ok(alarms_health(&b, "There are alarms in effect on the node"))
}

async fn health_port(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path(port): Path<String>,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?;
    let port: u16 = port
        .parse()
        .map_err(|_| ApiError::bad_request(format!("Invalid port: {port}")))?;
    let mut ports: Vec<u16> = vec![amqp_port(&b)];
    ports.retain(|p| *p != 0);
    ports.extend(b.admin.listeners().iter().map(|(_, a)| a.port()));
    ports.sort_unstable();
    if ports.contains(&port) {
        Ok(Json(json!({"status": "ok", "port": port})).into_response())
    } else {
        Ok((
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "failed", "reason": "No active listener", "missing": port, "ports": ports})),
        )
            .into_response())
    }
}

async fn health_single_node(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?;
    Ok(Json(json!({"status": "ok", "reason": "single node cluster"})).into_response())
}

/// Protocols with a listener, under RabbitMQ's names (amqp091 is an alias of amqp).
fn protocols(b: &Broker) -> Vec<String> {
    let mut p: Vec<String> = b
        .admin
        .listeners()
        .into_iter()
        .map(|(proto, _)| proto)
        .collect();
    p.push("amqp".into());
    p
}

async fn health_protocol(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path(protocol): Path<String>,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?;
    let wanted = match protocol.as_str() {
        "amqp091" | "amqp0-9-1" | "amqp" => "amqp",
        other => other,
    };
    let have = protocols(&b);
    if have.iter().any(|p| p == wanted) {
        return Ok(Json(json!({"status": "ok", "protocol": wanted})).into_response());
    }
    Ok((
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"status": "failed", "reason": "No active listener", "missing": protocol, "protocols": have})),
    )
        .into_response())
}
