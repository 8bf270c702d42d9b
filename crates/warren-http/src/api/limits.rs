//! `/api/vhost-limits` and `/api/user-limits`: list, set one limit, clear one, in
//! RabbitMQ 3.10's shapes and with its replies (recorded from RabbitMQ 3.10.8 in
//! tests/fixtures/limits/rabbitmq_3.10.8.json). Any management user may read them (vhost
//! limits of the vhosts it can see); setting and clearing is for administrators.

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::{ConnectInfo, Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, put},
    Json, Router,
};
use serde_json::{json, Map, Value};
use warren_server::{
    admin::AdminError,
    limits::{LimitScope, Limits},
    Broker,
};

use super::{auth, no_content, Peer, B};
use crate::{ApiError, ApiResult};

pub(super) fn routes() -> Router<Arc<Broker>> {
    Router::new()
        .route("/api/vhost-limits", get(all_vhosts))
        .route("/api/vhost-limits/{vhost}", get(of_vhost))
        .route(
            "/api/vhost-limits/{vhost}/{name}",
            put(put_vhost_limit).delete(delete_vhost_limit),
        )
        .route("/api/user-limits", get(all_users))
        .route("/api/user-limits/{user}", get(of_user))
        .route(
            "/api/user-limits/{user}/{name}",
            put(put_user_limit).delete(delete_user_limit),
        )
}

fn vhost_entry(vhost: &str, limits: &Limits) -> Value {
    json!({"vhost": vhost, "value": limits.to_json()})
}

fn user_entry(user: &str, limits: &Limits) -> Value {
    json!({"user": user, "value": limits.to_json()})
}

/// RabbitMQ answers a failed limit deletion for an unknown vhost or user with a bare 500.
fn bare_500() -> Response {
    StatusCode::INTERNAL_SERVER_ERROR.into_response()
}

/// The `value` of a limit's PUT body, as RabbitMQ reads it: `not_json` unless the body
/// is a JSON object, `[{key_missing,value}]` without `value`.
fn limit_value_of(body: &Bytes) -> ApiResult<Value> {
    let parsed: Option<Value> = if body.iter().all(u8::is_ascii_whitespace) {
        Some(json!({}))
    } else {
        serde_json::from_slice(body).ok()
    };
    let Some(Value::Object(mut object)) = parsed else {
        return Err(ApiError::bad_request("not_json"));
    };
    object
        .remove("value")
        .ok_or_else(|| ApiError::bad_request("[{key_missing,value}]"))
}

/// The limits `current` would have with `name` set to `value`, checked for `scope`.
fn with_limit(
    scope: LimitScope,
    current: &Limits,
    name: &str,
    value: Value,
) -> Result<Limits, warren_server::limits::LimitError> {
    let mut one = Map::new();
    one.insert(name.to_string(), value);
    let given = Limits::from_json(scope, &Value::Object(one))?;
    Ok(current.merged(&given))
}

async fn all_vhosts(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    let list: Vec<Value> = b
        .all_vhost_limits()
        .iter()
        .filter(|(v, _)| who.can_see_vhost(&b, v))
        .map(|(v, l)| vhost_entry(v, l))
        .collect();
    Ok(Json(list).into_response())
}

async fn of_vhost(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path(vhost): Path<String>,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?.require_vhost(&b, &vhost)?;
    let limits = b.vhost_limits(&vhost);
    let list: Vec<Value> = if limits.is_empty() {
        Vec::new()
    } else {
        vec![vhost_entry(&vhost, &limits)]
    };
    Ok(Json(list).into_response())
}

async fn put_vhost_limit(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path((vhost, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?.require_admin()?;
    let value = limit_value_of(&body)?;
    if b.vhost(&vhost).is_none() {
        return Err(ApiError {
            status: StatusCode::NOT_FOUND,
            error: "not_found",
            reason: "vhost_not_found".into(),
        });
    }
    let limits = with_limit(LimitScope::Vhost, &b.vhost_limits(&vhost), &name, value)
        .map_err(|e| ApiError::bad_request(e.validation_text()))?;
    b.set_vhost_limits(&vhost, limits)
        .map_err(AdminError::from_amqp)?;
    Ok(no_content())
}

async fn delete_vhost_limit(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?.require_admin()?;
    if b.vhost(&vhost).is_none() {
        return Ok(bare_500());
    }
    let mut limits = b.vhost_limits(&vhost);
    let removed = LimitScope::Vhost
        .kind(&name)
        .is_some_and(|kind| limits.remove(kind));
    if removed {
        b.set_vhost_limits(&vhost, limits)
            .map_err(AdminError::from_amqp)?;
    }
    Ok(no_content())
}

async fn all_users(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?;
    let list: Vec<Value> = b
        .all_user_limits()
        .iter()
        .map(|(u, l)| user_entry(u, l))
        .collect();
    Ok(Json(list).into_response())
}

async fn of_user(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path(user): Path<String>,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?;
    b.user(&user).ok_or_else(ApiError::not_found)?;
    let limits = b.user_limits(&user);
    let list: Vec<Value> = if limits.is_empty() {
        Vec::new()
    } else {
        vec![user_entry(&user, &limits)]
    };
    Ok(Json(list).into_response())
}

async fn put_user_limit(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path((user, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?.require_admin()?;
    let value = limit_value_of(&body)?;
    if b.user(&user).is_none() {
        // RabbitMQ's reason here is the Erlang error term as a list.
        let reason = json!({"error": "bad_request", "reason": ["no_such_user", user]});
        return Ok((StatusCode::BAD_REQUEST, Json(reason)).into_response());
    }
    let limits = with_limit(LimitScope::User, &b.user_limits(&user), &name, value)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    b.set_user_limits(&user, limits)
        .map_err(AdminError::from_amqp)?;
    Ok(no_content())
}

async fn delete_user_limit(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path((user, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?.require_admin()?;
    if b.user(&user).is_none() {
        return Ok(bare_500());
    }
    let mut limits = b.user_limits(&user);
    let removed = LimitScope::User
        .kind(&name)
        .is_some_and(|kind| limits.remove(kind));
    if removed {
        b.set_user_limits(&user, limits)
            .map_err(AdminError::from_amqp)?;
    }
    Ok(no_content())
}
