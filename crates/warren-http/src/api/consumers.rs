//! `/api/consumers`.

use std::sync::Arc;

use axum::{
    extract::{ConnectInfo, Path, Query, State},
    http::HeaderMap,
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use serde_json::{json, Value};
use warren_server::Broker;

use super::{auth, channels::channel_details, list::list_reply, Peer, B, Q};
use crate::{auth::Authed, ApiResult};

pub(super) fn routes() -> Router<Arc<Broker>> {
    Router::new()
        .route("/api/consumers", get(consumers))
        .route("/api/consumers/{vhost}", get(consumers_in))
}

/// One consumer as found in a queue.
pub(super) struct ConsumerRow {
    pub(super) vhost: String,
    pub(super) queue: String,
    pub(super) tag: String,
    pub(super) prefetch: u32,
    pub(super) ack_required: bool,
    pub(super) exclusive: bool,
    pub(super) conn: u64,
    pub(super) channel: u16,
    pub(super) unacked: u32,
}

pub(super) fn consumer_rows(b: &Broker, vhost: Option<&str>) -> Vec<ConsumerRow> {
    let mut rows = Vec::new();
    for vh in b.vhosts() {
        if vhost.is_some_and(|v| v != vh.name.as_ref()) {
            continue;
        }
        for q in vh.queues() {
            for c in q.view_with_consumers().consumers {
                rows.push(ConsumerRow {
                    vhost: vh.name.to_string(),
                    queue: q.name.to_string(),
                    tag: c.tag.to_string(),
                    prefetch: c.prefetch,
                    ack_required: c.ack_required,
                    exclusive: c.exclusive,
                    conn: c.conn,
                    channel: c.channel,
                    unacked: c.unacked,
                });
            }
        }
    }
    rows.sort_by(|a, b| (&a.vhost, &a.queue, &a.tag).cmp(&(&b.vhost, &b.queue, &b.tag)));
    rows
}

fn consumers_json(b: &Broker, who: &Authed, vhost: Option<&str>) -> Value {
    Value::Array(
        consumer_rows(b, vhost)
            .iter()
            .filter(|r| who.can_see_vhost(b, &r.vhost))
            .map(|r| {
                json!({
                    "consumer_tag": r.tag,
                    "prefetch_count": r.prefetch,
                    "ack_required": r.ack_required,
                    "exclusive": r.exclusive,
                    "active": true,
                    "activity_status": "up",
                    "arguments": {},
                    "queue": {"name": r.queue, "vhost": r.vhost},
                    "channel_details": channel_details(b, r.conn, r.channel),
                })
            })
            .collect(),
    )
}

async fn consumers(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Query(q): Q,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    list_reply(consumers_json(&b, &who, None), &q)
}

async fn consumers_in(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path(vhost): Path<String>,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    who.require_vhost(&b, &vhost)?;
    Ok(Json(consumers_json(&b, &who, Some(&vhost))).into_response())
}
