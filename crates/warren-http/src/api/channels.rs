//! `/api/channels`, and the channel lists of vhosts and connections.

use std::sync::Arc;

use axum::{
    extract::{ConnectInfo, Path, Query, State},
    http::HeaderMap,
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use std::sync::atomic::Ordering;

use serde_json::{json, Map, Value};
use warren_server::{
    admin::ConnInfo,
    model::handles::ChannelShared,
    stats::{Stat, StatsSnapshot},
    Broker,
};

use super::{
    auth,
    connections::{find_connection, visible_connections},
    consumers::{consumer_rows, ConsumerRow},
    list::list_reply,
    node_name,
    stats::message_stats,
    Peer, B, Q,
};
use crate::{ApiError, ApiResult};

pub(super) fn routes() -> Router<Arc<Broker>> {
    Router::new()
        .route("/api/vhosts/{vhost}/channels", get(vhost_channels))
        .route("/api/connections/{name}/channels", get(connection_channels))
        .route("/api/channels", get(channels))
        .route("/api/channels/{name}", get(channel))
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

/// The publish-side and delivery-side counters RabbitMQ lists in a channel's
/// `message_stats`; each group appears once the channel has done that kind of work.
const PUBLISH_SIDE: &[Stat] = &[
    Stat::Confirm,
    Stat::DropUnroutable,
    Stat::Publish,
    Stat::ReturnUnroutable,
];
const DELIVERY_SIDE: &[Stat] = &[
    Stat::Ack,
    Stat::Deliver,
    Stat::DeliverNoAck,
    Stat::Get,
    Stat::GetEmpty,
    Stat::GetNoAck,
    Stat::Redeliver,
];

pub(super) fn channel_message_stats(snap: &StatsSnapshot) -> Value {
    let any = |keys: &[Stat]| keys.iter().any(|k| snap.count(*k) > 0);
    let mut m = Map::new();
    if any(PUBLISH_SIDE) {
        if let Value::Object(part) = message_stats(snap, PUBLISH_SIDE, false) {
            m.extend(part);
        }
    }
    if any(DELIVERY_SIDE) {
        if let Value::Object(part) = message_stats(snap, DELIVERY_SIDE, true) {
            m.extend(part);
        }
    }
    Value::Object(m)
}

fn channel_json(c: &ConnInfo, number: u16, shared: &ChannelShared, rows: &[ConsumerRow]) -> Value {
    let mine: Vec<&ConsumerRow> = rows
        .iter()
        .filter(|r| r.conn == c.id && r.channel == number)
        .collect();
    let unacked: u32 = mine.iter().map(|r| r.unacked).sum();
    let prefetch = mine.iter().map(|r| r.prefetch).max().unwrap_or(0);
    let snap = shared.stats.snapshot();
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
        "messages_unconfirmed": shared.unconfirmed.load(Ordering::Relaxed),
        "messages_uncommitted": 0,
        "acks_uncommitted": 0,
        "prefetch_count": prefetch,
        "global_prefetch_count": shared.global_prefetch.load(Ordering::Relaxed),
        "confirm": shared.confirm.load(Ordering::Relaxed),
        "transactional": shared.transactional.load(Ordering::Relaxed),
        "message_stats": channel_message_stats(&snap),
    })
}

fn channels_of(b: &Broker, conns: &[Arc<ConnInfo>]) -> Vec<Value> {
    let rows = consumer_rows(b, None);
    let mut out = Vec::new();
    for c in conns {
        for (n, shared) in c.channel_states() {
            out.push(channel_json(c, n, &shared, &rows));
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

/// One channel by its name (`CONNECTION (NUMBER)`), among those the user may see.
async fn channel(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    let (conn_name, number) = name
        .strip_suffix(')')
        .and_then(|rest| rest.rsplit_once(" ("))
        .and_then(|(c, n)| Some((c, n.parse::<u16>().ok()?)))
        .ok_or_else(ApiError::not_found)?;
    let c = visible_connections(&b, &who)
        .into_iter()
        .find(|c| c.name == conn_name)
        .ok_or_else(ApiError::not_found)?;
    let shared = c
        .channel_states()
        .into_iter()
        .find(|(n, _)| *n == number)
        .map(|(_, s)| s)
        .ok_or_else(ApiError::not_found)?;
    let rows = consumer_rows(&b, None);
    Ok(Json(channel_json(&c, number, &shared, &rows)).into_response())
}
