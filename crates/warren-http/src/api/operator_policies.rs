//! `/api/operator-policies`: policies an operator sets over the users' own, limited to
//! RabbitMQ's operator keys (max-length, message-ttl, ...). Stored, listed and kept
//! across restarts as RabbitMQ 3.10 does (answers recorded in
//! tests/fixtures/management/completeness.json); warren does not apply them to queues
//! yet (docs/compatibility.md).

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::{ConnectInfo, Path, Query, State},
    http::HeaderMap,
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use serde_json::Value;
use warren_server::{admin::AdminError, params::operator_policy_from_json, Broker};

use super::{auth, body_json, created, list::list_reply, misc::vhost_not_found, no_content};
use super::{Peer, B, Q};
use crate::{ApiError, ApiResult};

pub(super) fn routes() -> Router<Arc<Broker>> {
    Router::new()
        .route("/api/operator-policies", get(all))
        .route("/api/operator-policies/{vhost}", get(of_vhost))
        .route(
            "/api/operator-policies/{vhost}/{name}",
            get(one).put(put).delete(delete),
        )
}

/// Sorted by priority, as RabbitMQ's list (then by name, for a stable answer).
fn sorted(mut list: Vec<Value>) -> Value {
    list.sort_by(|a, b| {
        let key = |v: &Value| {
            (
                v.get("priority").and_then(Value::as_i64).unwrap_or(0),
                v.get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            )
        };
        key(a).cmp(&key(b))
    });
    Value::Array(list)
}

async fn all(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Query(q): Q,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    let list: Vec<Value> = b
        .operator_policies(None)
        .iter()
        .filter(|p| who.lists_vhost(&b, &p.vhost))
        .map(|p| p.to_json())
        .collect();
    list_reply(sorted(list), &q)
}

async fn of_vhost(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path(vhost): Path<String>,
    Query(q): Q,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?.require_vhost(&b, &vhost)?;
    let list: Vec<Value> = b
        .operator_policies(Some(&vhost))
        .iter()
        .map(|p| p.to_json())
        .collect();
    list_reply(sorted(list), &q)
}

async fn one(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?.require_admin()?;
    let p = b
        .operator_policy(&vhost, &name)
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(p.to_json()).into_response())
}

async fn put(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path((vhost, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?.require_admin()?;
    if b.vhost(&vhost).is_none() {
        return Err(vhost_not_found());
    }
    let v = body_json(&body)?;
    let p = operator_policy_from_json(&vhost, &name, &v).map_err(ApiError::bad_request)?;
    let is_new = b.put_operator_policy(p).map_err(AdminError::from_amqp)?;
    Ok(created(is_new))
}

async fn delete(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?.require_admin()?;
    if b.delete_operator_policy(&vhost, &name)
        .map_err(AdminError::from_amqp)?
    {
        Ok(no_content())
    } else {
        Err(ApiError::not_found())
    }
}
