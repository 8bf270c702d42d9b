//! `/api/queues`: declare, delete, purge and get.

use std::{collections::HashMap, sync::Arc};

use axum::{
    body::Bytes,
    extract::{ConnectInfo, Path, Query, State},
    http::HeaderMap,
    response::{IntoResponse, Response},
    routing::{delete, get, post},
    Json, Router,
};
use serde_json::{json, Value};
use warren_server::{
    admin::GetMode,
    args::QueueKind,
    auth::{Access, Resource},
    queue::Queue,
    views::QueueView,
    Broker,
};

use super::{
    auth, body_json, bool_field,
    channels::channel_details,
    created,
    list::{list_reply_by_name, with_columns},
    no_content, node_name,
    stats::{message_stats, QUEUE_STATS},
    str_field, Peer, B, Q,
};
use crate::{
    convert::{json_to_table, properties_to_json, rate, table_to_json},
    ApiError, ApiResult,
};

pub(super) fn routes() -> Router<Arc<Broker>> {
    Router::new()
        .route("/api/queues", get(queues))
        .route("/api/queues/{vhost}", get(queues_in))
        .route(
            "/api/queues/{vhost}/{name}",
            get(queue).put(put_queue).delete(delete_queue),
        )
        .route("/api/queues/{vhost}/{name}/get", post(queue_get))
        .route("/api/queues/{vhost}/{name}/contents", delete(purge_queue))
}

fn queue_json(b: &Broker, q: &Queue, detailed: bool) -> Value {
    let snap = q.stats.snapshot();
    let view = q.view_with_consumers();
    let utilisation = consumer_utilisation(&view);
    let (ready, unacked, ready_bytes, consumers) = (
        view.ready,
        view.unacked,
        view.ready_bytes,
        view.consumer_count,
    );
    let policy = b.admin.policies.effective(&q.vhost, &q.name, true);
    let messages = ready + unacked;
    let (ready_rate, unacked_rate) = q.stats.depth_rates(ready, unacked);
    let mut v = json!({
        "name": q.name.as_ref(),
        "vhost": q.vhost.as_ref(),
        "durable": q.durable,
        "auto_delete": q.auto_delete,
        "exclusive": q.exclusive_owner.is_some(),
        "arguments": table_to_json(&q.arguments),
        "node": node_name(),
        "type": queue_type(q),
        "state": "running",
        "consumers": consumers,
        "consumer_utilisation": utilisation,
        "consumer_capacity": utilisation,
        "exclusive_consumer_tag": Value::Null,
        "single_active_consumer_tag": Value::Null,
        "policy": policy.as_ref().map(|p| p.name.clone()),
        "operator_policy": Value::Null,
        "effective_policy_definition": policy.as_ref().map_or(json!({}), |p| Value::Object(p.definition.clone())),
        "head_message_timestamp": Value::Null,
        "recoverable_slaves": Value::Null,
        "memory": ready_bytes + 1024 + 64 * messages,
        "messages": messages,
        "messages_details": rate(ready_rate + unacked_rate),
        "messages_ready": ready,
        "messages_ready_details": rate(ready_rate),
        "messages_unacknowledged": unacked,
        "messages_unacknowledged_details": rate(unacked_rate),
        "messages_ram": messages,
        "messages_ready_ram": ready,
        "messages_unacknowledged_ram": unacked,
        "messages_persistent": 0,
        "messages_paged_out": 0,
        "message_bytes_ready": ready_bytes,
        "message_bytes_ram": ready_bytes,
        "message_bytes_persistent": 0,
        "message_bytes_paged_out": 0,
        "message_stats": message_stats(&snap, QUEUE_STATS, true),
    });
    if queue_type(q) == "quorum" {
        // A one-node cluster: this node leads and is the only member.
        v["leader"] = json!(node_name());
        v["members"] = json!([node_name()]);
        v["online"] = json!([node_name()]);
    }
    if detailed {
        let details: Vec<Value> = view
            .consumers
            .iter()
            .map(|c| {
                json!({
                    "consumer_tag": c.tag.as_ref(),
                    "prefetch_count": c.prefetch,
                    "ack_required": c.ack_required,
                    "exclusive": c.exclusive,
                    "active": true,
                    "activity_status": "up",
                    "arguments": {},
                    "queue": {"name": q.name.as_ref(), "vhost": q.vhost.as_ref()},
                    "channel_details": channel_details(b, c.conn, c.channel),
                })
            })
            .collect();
        v["consumer_details"] = Value::Array(details);
        v["deliveries"] = json!([]);
        v["incoming"] = json!([]);
    }
    v
}

/// RabbitMQ's `consumer_utilisation` (and `consumer_capacity`): the share of the time
/// the queue could hand a message to a consumer at once. warren samples it when asked:
/// 0 without consumers, 1 when nothing waits, else the share of consumers with room
/// under their prefetch.
fn consumer_utilisation(view: &QueueView) -> f64 {
    if view.consumer_count == 0 {
        return 0.0;
    }
    if view.ready == 0 || view.consumers.is_empty() {
        return 1.0;
    }
    let free = view
        .consumers
        .iter()
        .filter(|c| c.prefetch == 0 || c.unacked < c.prefetch)
        .count();
    free as f64 / view.consumers.len() as f64
}

/// The queue's type as RabbitMQ names it (`x-queue-type`).
fn queue_type(q: &Queue) -> &'static str {
    if q.is_stream {
        return "stream";
    }
    match q.settings().kind {
        QueueKind::Quorum => "quorum",
        _ => "classic",
    }
}

/// RabbitMQ's refusal of a queue name longer than a shortstr (its text, newline and all).
pub(super) fn check_name_length(kind: &str, name: &str) -> ApiResult<()> {
    if name.len() > 255 {
        return Err(ApiError::bad_request(format!(
            "{kind} should be less than 255 bytes, actually was {}\n",
            name.len()
        )));
    }
    Ok(())
}

/// 404 unless the queue exists (RabbitMQ checks existence before permissions).
fn require_queue(b: &Broker, vhost: &str, name: &str) -> ApiResult<()> {
    match b.vhost(vhost).and_then(|v| v.queue(name)) {
        Some(_) => Ok(()),
        None => Err(ApiError::not_found()),
    }
}

async fn queues(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Query(q): Q,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    let mut all = Vec::new();
    for vh in b.vhosts() {
        if who.lists_vhost(&b, &vh.name) {
            all.extend(vh.queues());
        }
    }
    queue_list_reply(&b, all, &q)
}

/// Pages of queues render only the page's queues (see `list_reply_by_name`).
fn queue_list_reply(
    b: &Broker,
    queues: Vec<Arc<Queue>>,
    q: &HashMap<String, String>,
) -> ApiResult<Response> {
    list_reply_by_name(
        queues,
        |x| x.name.as_ref(),
        |x| x.vhost.as_ref(),
        |x| queue_json(b, x, false),
        q,
    )
}

async fn queues_in(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path(vhost): Path<String>,
    Query(q): Q,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    who.require_vhost(&b, &vhost)?;
    let vh = b.vhost(&vhost).ok_or_else(ApiError::not_found)?;
    queue_list_reply(&b, vh.queues(), &q)
}

async fn queue(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path((vhost, name)): Path<(String, String)>,
    Query(q): Q,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    who.require_vhost(&b, &vhost)?;
    let vh = b.vhost(&vhost).ok_or_else(ApiError::not_found)?;
    let queue = vh.queue(&name).ok_or_else(ApiError::not_found)?;
    Ok(Json(with_columns(queue_json(&b, &queue, true), &q)).into_response())
}

async fn put_queue(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path((vhost, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    who.require_vhost(&b, &vhost)?;
    let v = body_json(&body)?;
    check_name_length("queue", &name)?;
    who.check(&b, &vhost, Access::Configure, Resource::Queue, &name)?;
    let durable = bool_field(&v, "durable", true)?;
    let auto_delete = bool_field(&v, "auto_delete", false)?;
    let args = json_to_table(v.get("arguments").unwrap_or(&Value::Null));
    let is_new = b.admin_declare_queue(&vhost, &name, durable, auto_delete, args)?;
    Ok(created(is_new))
}

async fn delete_queue(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path((vhost, name)): Path<(String, String)>,
    Query(q): Q,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    who.require_vhost(&b, &vhost)?;
    require_queue(&b, &vhost, &name)?;
    who.check(&b, &vhost, Access::Configure, Resource::Queue, &name)?;
    let if_unused = q.get("if-unused").is_some_and(|v| v == "true");
    let if_empty = q.get("if-empty").is_some_and(|v| v == "true");
    b.admin_delete_queue(&vhost, &name, if_unused, if_empty)?;
    Ok(no_content())
}

async fn purge_queue(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    who.require_vhost(&b, &vhost)?;
    require_queue(&b, &vhost, &name)?;
    who.check(&b, &vhost, Access::Read, Resource::Queue, &name)?;
    b.admin_purge_queue(&vhost, &name)?;
    Ok(no_content())
}

/// One message as `POST .../get` shows it (and `/api/warren/.../peek`).
pub(super) fn got_json(
    m: &warren_server::admin::GotMessage,
    encoding: &str,
    truncate: Option<usize>,
) -> Value {
    let body = &m.message.body;
    let shown = match truncate {
        Some(n) if n < body.len() => &body[..n],
        _ => &body[..],
    };
    let (payload, enc) = match (encoding, std::str::from_utf8(shown)) {
        ("auto", Ok(s)) => (s.to_string(), "string"),
        _ => {
            use base64::{engine::general_purpose::STANDARD, Engine};
            (STANDARD.encode(shown), "base64")
        }
    };
    json!({
        "payload_bytes": body.len(),
        "redelivered": m.redelivered,
        "exchange": m.message.exchange.as_ref(),
        "routing_key": m.message.routing_key.as_ref(),
        "message_count": m.remaining,
        "properties": properties_to_json(&m.message.properties),
        "payload": payload,
        "payload_encoding": enc,
    })
}

async fn queue_get(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path((vhost, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    who.require_vhost(&b, &vhost)?;
    require_queue(&b, &vhost, &name)?;
    who.check_amqp(&b, &vhost, Access::Read, Resource::Queue, &name)?;
    let v = body_json(&body)?;
    let count = v.get("count").and_then(Value::as_u64).unwrap_or(1) as usize;
    let mode = match str_field(&v, "ackmode") {
        Some("ack_requeue_true") => GetMode::AckRequeueTrue,
        Some("ack_requeue_false") => GetMode::AckRequeueFalse,
        Some("reject_requeue_true") => GetMode::RejectRequeueTrue,
        Some("reject_requeue_false") => GetMode::RejectRequeueFalse,
        _ => {
            return Err(ApiError::bad_request(
                "Mandatory fields missing: [ackmode, encoding, count]",
            ))
        }
    };
    let encoding = str_field(&v, "encoding").unwrap_or("auto");
    let truncate = v
        .get("truncate")
        .and_then(Value::as_u64)
        .map(|n| n as usize);
    let got = b.admin_get(&vhost, &name, count, mode)?;
    let out: Vec<Value> = got
        .iter()
        .map(|m| got_json(m, encoding, truncate))
        .collect();
    Ok(Json(Value::Array(out)).into_response())
}
