//! `/api/permissions`, and the per-vhost and per-user permission lists.

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::{ConnectInfo, Path, Query, State},
    http::HeaderMap,
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use serde_json::{json, Value};
use warren_server::{admin::AdminError, auth::Permission, Broker};

use super::{auth, body_json, created, list::list_reply, no_content, str_field, Peer, B, Q};
use crate::{ApiError, ApiResult};

pub(super) fn routes() -> Router<Arc<Broker>> {
    Router::new()
        .route("/api/vhosts/{vhost}/permissions", get(vhost_permissions))
        .route("/api/users/{user}/permissions", get(user_permissions))
        .route("/api/permissions", get(permissions))
        .route(
            "/api/permissions/{vhost}/{user}",
            get(permission)
                .put(put_permission)
                .delete(delete_permission),
        )
}

fn permission_json(user: &str, vhost: &str, p: &Permission) -> Value {
    json!({
        "user": user,
        "vhost": vhost,
        "configure": p.configure.source,
        "write": p.write.source,
        "read": p.read.source,
    })
}

fn permission_list(b: &Broker, filter: impl Fn(&str, &str) -> bool) -> Value {
    Value::Array(
        b.permissions()
            .iter()
            .filter(|(u, v, _)| filter(u, v))
            .map(|(u, v, p)| permission_json(u, v, p))
            .collect(),
    )
}

async fn permissions(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Query(q): Q,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?.require_admin()?;
    list_reply(permission_list(&b, |_, _| true), &q)
}

async fn vhost_permissions(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path(vhost): Path<String>,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?.require_admin()?;
    b.vhost(&vhost).ok_or_else(ApiError::not_found)?;
    Ok(Json(permission_list(&b, |_, v| v == vhost)).into_response())
}

async fn user_permissions(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path(user): Path<String>,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?.require_admin()?;
    b.user(&user).ok_or_else(ApiError::not_found)?;
    Ok(Json(permission_list(&b, |u, _| u == user)).into_response())
}

async fn permission(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path((vhost, user)): Path<(String, String)>,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?.require_admin()?;
    let p = b
        .permission(&user, &vhost)
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(permission_json(&user, &vhost, &p)).into_response())
}

async fn put_permission(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path((vhost, user)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?.require_admin()?;
    if b.vhost(&vhost).is_none() || b.user(&user).is_none() {
        return Err(ApiError::not_found());
    }
    let v = body_json(&body)?;
    let (Some(c), Some(w), Some(r)) = (
        str_field(&v, "configure"),
        str_field(&v, "write"),
        str_field(&v, "read"),
    ) else {
        return Err(ApiError::bad_request(
            "Mandatory fields missing: [configure, write, read]",
        ));
    };
    let p = Permission::new(c, w, r).map_err(|e| ApiError::bad_request(e.to_string()))?;
    // Recorded before it takes effect: a failed write leaves the permission as it was (500).
    let is_new = b
        .set_permission(&user, &vhost, p)
        .map_err(AdminError::from_amqp)?;
    Ok(created(is_new))
}

async fn delete_permission(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path((vhost, user)): Path<(String, String)>,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?.require_admin()?;
    if !b
        .clear_permission(&user, &vhost)
        .map_err(AdminError::from_amqp)?
    {
        return Err(ApiError::not_found());
    }
    Ok(no_content())
}
