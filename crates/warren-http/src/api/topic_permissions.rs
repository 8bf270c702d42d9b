//! `/api/topic-permissions`, and the per-vhost and per-user topic permission lists, in
//! RabbitMQ 3.10's shapes (checked against RabbitMQ 3.10.8).

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::{ConnectInfo, Path, Query, State},
    http::HeaderMap,
    response::{IntoResponse, Response},
    routing::{delete, get},
    Json, Router,
};
use serde_json::{json, Value};
use warren_server::{admin::AdminError, auth::TopicPermission, Broker};

use super::{auth, body_json, created, list::list_reply, no_content, str_field, Peer, B, Q};
use crate::{ApiError, ApiResult};

pub(super) fn routes() -> Router<Arc<Broker>> {
    Router::new()
        .route("/api/vhosts/{vhost}/topic-permissions", get(vhost_list))
        .route("/api/users/{user}/topic-permissions", get(user_list))
        .route("/api/topic-permissions", get(all))
        .route(
            "/api/topic-permissions/{vhost}/{user}",
            get(of_user_in_vhost).put(put).delete(delete_all),
        )
        .route(
            "/api/topic-permissions/{vhost}/{user}/{exchange}",
            delete(delete_one),
        )
}

fn topic_permission_json(user: &str, vhost: &str, tp: &TopicPermission) -> Value {
    json!({
        "user": user,
        "vhost": vhost,
        "exchange": tp.exchange,
        "write": tp.write.source,
        "read": tp.read.source,
    })
}

fn topic_list(b: &Broker, filter: impl Fn(&str, &str) -> bool) -> Value {
    Value::Array(
        b.topic_permissions()
            .iter()
            .filter(|(u, v, _)| filter(u, v))
            .map(|(u, v, tp)| topic_permission_json(u, v, tp))
            .collect(),
    )
}

async fn all(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Query(q): Q,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?.require_admin()?;
    list_reply(topic_list(&b, |_, _| true), &q)
}

async fn vhost_list(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path(vhost): Path<String>,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?.require_admin()?;
    b.vhost(&vhost).ok_or_else(ApiError::not_found)?;
    Ok(Json(topic_list(&b, |_, v| v == vhost)).into_response())
}

async fn user_list(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path(user): Path<String>,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?.require_admin()?;
    b.user(&user).ok_or_else(ApiError::not_found)?;
    Ok(Json(topic_list(&b, |u, _| u == user)).into_response())
}

/// A user's topic permissions in a vhost: a list, 404 when it has none.
async fn of_user_in_vhost(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path((vhost, user)): Path<(String, String)>,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?.require_admin()?;
    let set = b
        .topic_permissions_of(&user, &vhost)
        .ok_or_else(ApiError::not_found)?;
    let list: Vec<Value> = set
        .values()
        .map(|tp| topic_permission_json(&user, &vhost, tp))
        .collect();
    Ok(Json(list).into_response())
}

/// Sets the topic permission for the body's exchange: 201 when the user had none in
/// the vhost, 204 otherwise, as RabbitMQ answers.
async fn put(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path((vhost, user)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?.require_admin()?;
    let v = body_json(&body)?;
    let mut missing = ["exchange", "write", "read"]
        .into_iter()
        .filter(|k| str_field(&v, k).is_none());
    if let Some(key) = missing.next() {
        return Err(ApiError::bad_request(format!("[{{key_missing,{key}}}]")));
    }
    let field = |k| str_field(&v, k).unwrap_or_default();
    if b.vhost(&vhost).is_none() || b.user(&user).is_none() {
        return Err(ApiError::bad_request("vhost_or_user_not_found"));
    }
    let tp = TopicPermission::new(
        &user,
        &vhost,
        field("exchange"),
        field("write"),
        field("read"),
    )
    .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let had_any = b.topic_permissions_of(&user, &vhost).is_some();
    // Recorded before it takes effect: a failed write leaves things as they were (500).
    b.set_topic_permission(&user, &vhost, tp)
        .map_err(AdminError::from_amqp)?;
    Ok(created(!had_any))
}

/// Clears `exchange`'s topic permission, or all of the user's in the vhost: 404 when
/// it has none there, 204 otherwise (also for an exchange it has none for).
fn clear(b: &Broker, vhost: &str, user: &str, exchange: Option<&str>) -> ApiResult<Response> {
    if b.topic_permissions_of(user, vhost).is_none() {
        return Err(ApiError::not_found());
    }
    b.clear_topic_permissions(user, vhost, exchange)
        .map_err(AdminError::from_amqp)?;
    Ok(no_content())
}

async fn delete_all(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path((vhost, user)): Path<(String, String)>,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?.require_admin()?;
    clear(&b, &vhost, &user, None)
}

async fn delete_one(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path((vhost, user, exchange)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?.require_admin()?;
    clear(&b, &vhost, &user, Some(&exchange))
}
