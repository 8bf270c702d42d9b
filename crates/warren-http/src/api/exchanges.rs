//! `/api/exchanges`, and publishing through an exchange.

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::{ConnectInfo, Path, Query, State},
    http::HeaderMap,
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use serde_json::{json, Value};
use warren_server::{
    auth::{Access, Resource},
    stats::Stat,
    vhost::{ExchangeMeta, VHost},
    views::ExchangeView,
    Broker,
};

use super::{
    auth, body_json, bool_field, created, list::list_reply, no_content, stats::message_stats,
    str_field, Peer, B, Q,
};
use crate::{
    convert::{json_to_table, properties_from_json, table_to_json},
    ApiError, ApiResult,
};

pub(super) fn routes() -> Router<Arc<Broker>> {
    Router::new()
        .route("/api/exchanges", get(exchanges))
        .route("/api/exchanges/{vhost}", get(exchanges_in))
        .route(
            "/api/exchanges/{vhost}/{name}",
            get(exchange).put(put_exchange).delete(delete_exchange),
        )
        .route("/api/exchanges/{vhost}/{name}/publish", post(publish))
}

fn exchange_json(b: &Broker, vhost: &str, x: &ExchangeView) -> Value {
    let (name, meta) = (x.name.as_ref(), &x.meta);
    let mut v = json!({
        "name": name,
        "vhost": vhost,
        "type": meta.kind.as_str(),
        "durable": meta.durable,
        "auto_delete": meta.auto_delete,
        "internal": meta.internal,
        "arguments": table_to_json(&meta.arguments),
        "user_who_performed_action": "rmq-internal",
        "message_stats": message_stats(&x.stats, &[Stat::PublishIn, Stat::PublishOut], false),
    });
    if let Some(p) = b.admin.policies.effective(vhost, name, false) {
        v["policy"] = json!(p.name);
    }
    // The plugin adds its exchanges' held count to their info items.
    if meta.kind == warren_router::ExchangeKind::Delayed {
        let held = b.vhost(vhost).map_or(0, |vh| vh.delayed.count(name));
        v["messages_delayed"] = json!(held);
    }
    v
}

fn default_exchange_json(vhost: &str) -> Value {
    json!({
        "name": "", "vhost": vhost, "type": "direct", "durable": true, "auto_delete": false,
        "internal": false, "arguments": {}, "user_who_performed_action": "rmq-internal",
    })
}

fn vhost_exchanges(b: &Broker, vh: &VHost) -> Vec<Value> {
    let mut out = vec![default_exchange_json(&vh.name)];
    out.extend(vh.exchanges().iter().map(|x| exchange_json(b, &vh.name, x)));
    out
}

async fn exchanges(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Query(q): Q,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    let mut all = Vec::new();
    for vh in b.vhosts() {
        if who.lists_vhost(&b, &vh.name) {
            all.extend(vhost_exchanges(&b, &vh));
        }
    }
    list_reply(Value::Array(all), &q)
}

async fn exchanges_in(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path(vhost): Path<String>,
    Query(q): Q,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    who.require_vhost(&b, &vhost)?;
    let vh = b.vhost(&vhost).ok_or_else(ApiError::not_found)?;
    list_reply(Value::Array(vhost_exchanges(&b, &vh)), &q)
}

async fn exchange(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    who.require_vhost(&b, &vhost)?;
    let vh = b.vhost(&vhost).ok_or_else(ApiError::not_found)?;
    if name.is_empty() || name == "amq.default" {
        return Ok(Json(default_exchange_json(&vhost)).into_response());
    }
    let x = vh.exchange(&name).ok_or_else(ApiError::not_found)?;
    let mut v = exchange_json(&b, &vhost, &x);
    v["incoming"] = json!([]);
    v["outgoing"] = json!([]);
    Ok(Json(v).into_response())
}

async fn put_exchange(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path((vhost, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    who.require_vhost(&b, &vhost)?;
    let v = body_json(&body)?;
    // RabbitMQ 3.10 takes a longer exchange name here, but no AMQP client could name it
    // and no delivery from it could carry it (a shortstr): refused as queue names are.
    super::queues::check_name_length("exchange", &name)?;
    let type_name = str_field(&v, "type").unwrap_or("");
    let kind = b.exchange_kind(type_name).map_err(ApiError::bad_request)?;
    who.check(&b, &vhost, Access::Configure, Resource::Exchange, &name)?;
    let meta = ExchangeMeta {
        kind,
        durable: bool_field(&v, "durable", true)?,
        auto_delete: bool_field(&v, "auto_delete", false)?,
        internal: bool_field(&v, "internal", false)?,
        arguments: json_to_table(v.get("arguments").unwrap_or(&Value::Null)),
    };
    let is_new = b.admin_declare_exchange(&vhost, &name, meta)?;
    if let Some(vh) = b.vhost(&vhost) {
        b.admin.policies.apply(&vh);
    }
    Ok(created(is_new))
}

async fn delete_exchange(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path((vhost, name)): Path<(String, String)>,
    Query(q): Q,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    who.require_vhost(&b, &vhost)?;
    // A missing exchange is 404 before any permission check, as in RabbitMQ.
    if !b.vhost(&vhost).is_some_and(|v| v.has_exchange(&name)) {
        return Err(ApiError::not_found());
    }
    who.check(&b, &vhost, Access::Configure, Resource::Exchange, &name)?;
    let if_unused = q.get("if-unused").is_some_and(|v| v == "true");
    b.admin_delete_exchange(&vhost, &name, if_unused)?;
    Ok(no_content())
}

async fn publish(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path((vhost, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    who.require_vhost(&b, &vhost)?;
    let v = body_json(&body)?;
    let target = if name.is_empty() {
        "amq.default"
    } else {
        name.as_str()
    };
    if target != "amq.default" && !b.vhost(&vhost).is_some_and(|v| v.has_exchange(target)) {
        return Err(ApiError::not_found());
    }
    who.check_publish(&b, &vhost, target)?;
    let (Some(key), Some(payload)) = (str_field(&v, "routing_key"), str_field(&v, "payload"))
    else {
        return Err(ApiError::bad_request(
            "Mandatory fields missing: [routing_key, payload, payload_encoding]",
        ));
    };
    let body = match str_field(&v, "payload_encoding").unwrap_or("string") {
        "string" => Bytes::from(payload.as_bytes().to_vec()),
        "base64" => {
            use base64::{engine::general_purpose::STANDARD, Engine};
            Bytes::from(
                STANDARD
                    .decode(payload)
                    .map_err(|e| ApiError::bad_request(format!("invalid base64 payload: {e}")))?,
            )
        }
        other => {
            return Err(ApiError::bad_request(format!(
                "payload_encoding must be string or base64, got {other}"
            )))
        }
    };
    let (props, _persistent) = properties_from_json(v.get("properties").unwrap_or(&Value::Null))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let routed = b.admin_publish(&vhost, &name, key, props, body)?;
    Ok(Json(json!({"routed": routed})).into_response())
}
