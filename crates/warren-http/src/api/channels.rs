//! `/api/channels`, and the channel lists of vhosts and connections.

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

use super::{
    auth,
    connections::{find_connection, visible_connections},
    consumers::{consumer_rows, ConsumerRow},
    list::list_reply,
    node_name, Peer, B, Q,
};
use crate::ApiResult;

pub(super) fn routes() -> Router<Arc<Broker>> {
    Router::new()
        .route("/api/vhosts/{vhost}/channels", get(vhost_channels))
        .route("/api/connections/{name}/channels", get(connection_channels))
        .route("/api/channels", get(channels))
}

pub(super) fn channel_details(b: &Broker, conn: u64, channel: u16) -> Value {
    match b.admin.connection(conn) {
        Some(c) => json!({
            "name": format!("{} ({channel})", c.name),
            "number": channel,
            "connection_name": c.name,
            "peer_host": c.peer.ip().to_string(),
            "peer_port": c.peer.port(),
            "user": c.user,
            "node": node_name(),
        }),
        None => json!([]),
    }
}

async fn vhost_channels(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path(vhost): Path<String>,
    Query(q): Q,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    who.require_vhost(&b, &vhost)?;
    let conns: Vec<Arc<ConnInfo>> = visible_connections(&b, &who)
        .into_iter()
        .filter(|c| c.vhost == vhost)
        .collect();
    list_reply(Value::Array(channels_of(&b, &conns)), &q)
}

fn channel_json(b: &Broker, c: &ConnInfo, number: u16, rows: &[ConsumerRow]) -> Value {
    let mine: Vec<&ConsumerRow> = rows
        .iter()
        .filter(|r| r.conn == c.id && r.channel == number)
        .collect();
    let unacked: u32 = mine.iter().map(|r| r.unacked).sum();
    let prefetch = mine.iter().map(|r| r.prefetch).max().unwrap_or(0);
    let _ = b;
    json!({
        "name": format!("{} ({number})", c.name),
        "number": number,
        "node": node_name(),
        "state": "running",
        "user": c.user,
        "user_who_performed_action": c.user,
        "vhost": c.vhost,
        "connection_details": {
            "name": c.name,
            "peer_host": c.peer.ip().to_string(),
            "peer_port": c.peer.port(),
        },
        "consumer_count": mine.len(),
        "messages_unacknowledged": unacked,
        "prefetch_count": prefetch,
    })
}

fn channels_of(b: &Broker, conns: &[Arc<ConnInfo>]) -> Vec<Value> {
    let rows = consumer_rows(b, None);
    let mut out = Vec::new();
    for c in conns {
        for n in c.channel_numbers() {
            out.push(channel_json(b, c, n, &rows));
        }
    }
    out
}

async fn channels(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Query(q): Q,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    let conns = visible_connections(&b, &who);
    list_reply(Value::Array(channels_of(&b, &conns)), &q)
}

async fn connection_channels(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    let c = find_connection(&b, &who, &name)?;
    Ok(Json(Value::Array(channels_of(&b, &[c]))).into_response())
}
