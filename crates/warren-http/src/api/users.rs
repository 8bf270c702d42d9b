//! `/api/users`.

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
use warren_server::{admin::AdminError, auth::HASHING_ALGORITHM, broker::User, Broker};

use super::{auth, body_json, created, list::list_reply, no_content, str_field, Peer, B, Q};
use crate::{ApiError, ApiResult};

pub(super) fn routes() -> Router<Arc<Broker>> {
    Router::new().route("/api/users", get(users)).route(
        "/api/users/{user}",
        get(user).put(put_user).delete(delete_user),
    )
}

fn user_json(b: &Broker, u: &User) -> Value {
    json!({
        "name": u.name,
        "password_hash": u.password_hash,
        "hashing_algorithm": u.hashing_algorithm,
        "tags": u.tags,
        "limits": b.user_limits(&u.name).to_json(),
    })
}

async fn users(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Query(q): Q,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?.require_admin()?;
    let list: Vec<Value> = b.users().iter().map(|u| user_json(&b, u)).collect();
    list_reply(Value::Array(list), &q)
}

async fn user(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?.require_admin()?;
    let u = b.user(&name).ok_or_else(ApiError::not_found)?;
    Ok(Json(user_json(&b, &u)).into_response())
}

/// Tags as RabbitMQ accepts them: a comma-separated string or a list.
pub(crate) fn parse_tags(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => s
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(String::from)
            .collect(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|t| t.as_str().map(String::from))
            .collect(),
        _ => Vec::new(),
    }
}

async fn put_user(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?.require_admin()?;
    let v = body_json(&body)?;
    let tags = parse_tags(v.get("tags"));
    let existing = b.user(&name);
    let (hash, algorithm) = if let Some(pw) = str_field(&v, "password") {
        let hash = warren_server::auth::hash_password(pw).map_err(|e| {
            tracing::error!(user = %name, error = %e, "user not changed");
            AdminError::Internal(e.to_string())
        })?;
        (hash, HASHING_ALGORITHM.to_string())
    } else if let Some(h) = str_field(&v, "password_hash") {
        (
            h.to_string(),
            str_field(&v, "hashing_algorithm")
                .unwrap_or(HASHING_ALGORITHM)
                .to_string(),
        )
    } else if let Some(u) = &existing {
        (u.password_hash.clone(), u.hashing_algorithm.clone())
    } else {
        return Err(ApiError::bad_request(
            "Mandatory fields missing: [password_hash, password]",
        ));
    };
    // Recorded before it takes effect: a failed write leaves the user as it was (500).
    let is_new = b
        .put_user(User {
            name: name.clone(),
            password_hash: hash,
            hashing_algorithm: algorithm,
            tags,
        })
        .map_err(AdminError::from_amqp)?;
    Ok(created(is_new))
}

async fn delete_user(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?.require_admin()?;
    // A failed write leaves the user, its permissions and its connections (500).
    if !b.delete_user(&name).map_err(AdminError::from_amqp)? {
        return Err(ApiError::not_found());
    }
    // Its connections go too, with RabbitMQ's reason.
    for c in b.admin.connection_list() {
        if c.user == name {
            let _ = b.admin_close_connection(&c.name, &format!("user '{name}' is deleted"));
        }
    }
    Ok(no_content())
}
