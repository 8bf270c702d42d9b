//! `/api/connections`.

use std::sync::Arc;

use axum::{
    extract::{ConnectInfo, Path, Query, State},
    http::HeaderMap,
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use serde_json::{json, Value};
use warren_server::{admin::ConnInfo, Broker};

use super::{auth, list::list_reply, no_content, node_name, Peer, B, Q};
use crate::{
    auth::Authed,
    convert::{rate, table_to_json},
    ApiError, ApiResult,
};

pub(super) fn routes() -> Router<Arc<Broker>> {
    Router::new()
        .route("/api/vhosts/{vhost}/connections", get(vhost_connections))
        .route("/api/connections", get(connections))
        .route(
            "/api/connections/{name}",
            get(connection).delete(close_connection),
        )
}

fn connection_json(c: &ConnInfo) -> Value {
    let props = table_to_json(&c.client_properties);
    let user_provided = props.get("connection_name").cloned();
    let mut v = json!({
        "name": c.name,
        "node": node_name(),
        "type": "network",
        "state": c.handle.flow_state().as_str(),
        "protocol": "AMQP 0-9-1",
        "host": c.local.ip().to_string(),
        "port": c.local.port(),
        "peer_host": c.peer.ip().to_string(),
        "peer_port": c.peer.port(),
        "user": c.user,
        "user_who_performed_action": c.user,
        "vhost": c.vhost,
        "auth_mechanism": c.auth_mechanism,
        "ssl": false,
        "ssl_protocol": "",
        "ssl_key_exchange": "",
        "ssl_cipher": "",
        "ssl_hash": "",
        "peer_cert_subject": "",
        "peer_cert_issuer": "",
        "peer_cert_validity": "",
        "client_properties": props,
        "channel_max": c.channel_max,
        "frame_max": c.frame_max,
        "timeout": c.heartbeat,
        "connected_at": c.connected_at,
        "channels": c.channel_count(),
        "send_pend": c.handle.write_backlog.load(std::sync::atomic::Ordering::Relaxed),
    });
    let io = c.io.snapshot();
    v["recv_oct"] = json!(io.recv_oct);
    v["recv_oct_details"] = rate(io.recv_rate);
    v["recv_cnt"] = json!(io.recv_cnt);
    v["send_oct"] = json!(io.send_oct);
    v["send_oct_details"] = rate(io.send_rate);
    v["send_cnt"] = json!(io.send_cnt);
    if let Some(n) = user_provided {
        v["user_provided_name"] = n;
    }
    if let Some(t) = &c.tls {
        v["ssl"] = json!(true);
        v["ssl_protocol"] = json!(t.protocol);
        v["ssl_key_exchange"] = json!(t.key_exchange);
        v["ssl_cipher"] = json!(t.cipher);
        v["ssl_hash"] = json!(t.hash);
        if let Some(cert) = &t.peer_cert {
            v["peer_cert_subject"] = json!(cert.subject);
            v["peer_cert_issuer"] = json!(cert.issuer);
            v["peer_cert_validity"] = json!(cert.validity);
        }
    }
    v
}

pub(super) fn visible_connections(b: &Broker, who: &Authed) -> Vec<Arc<ConnInfo>> {
    b.admin
        .connection_list()
        .into_iter()
        .filter(|c| who.is_monitor() || c.user == who.user)
        .collect()
}

async fn connections(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Query(q): Q,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    let list: Vec<Value> = visible_connections(&b, &who)
        .iter()
        .map(|c| connection_json(c))
        .collect();
    list_reply(Value::Array(list), &q)
}

async fn vhost_connections(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path(vhost): Path<String>,
    Query(q): Q,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    who.require_vhost(&b, &vhost)?;
    let list: Vec<Value> = visible_connections(&b, &who)
        .iter()
        .filter(|c| c.vhost == vhost)
        .map(|c| connection_json(c))
        .collect();
    list_reply(Value::Array(list), &q)
}

pub(super) fn find_connection(b: &Broker, who: &Authed, name: &str) -> ApiResult<Arc<ConnInfo>> {
    visible_connections(b, who)
        .into_iter()
        .find(|c| c.name == name)
        .ok_or_else(ApiError::not_found)
}

async fn connection(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    let c = find_connection(&b, &who, &name)?;
    Ok(Json(connection_json(&c)).into_response())
}

async fn close_connection(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    let c = find_connection(&b, &who, &name)?;
    if !who.is_admin() && c.user != who.user {
        return Err(ApiError::not_authorised("Not administrator user"));
    }
    let reason = headers
        .get("x-reason")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("Closed via management plugin");
    b.admin_close_connection(&name, reason)?;
    Ok(no_content())
}
