//! `/api/extensions`, `/api/auth`, `/api/feature-flags` and `/api/global-parameters`,
//! answered as RabbitMQ 3.10.8 answers them (tests/fixtures/management/completeness.json).

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::{ConnectInfo, Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use serde_json::{json, Value};
use warren_server::{admin::AdminError, Broker};

use super::{auth, created, list::list_reply, no_content, Peer, B, Q};
use crate::{auth::Authed, ApiError, ApiResult};

pub(super) fn routes() -> Router<Arc<Broker>> {
    Router::new()
        .route("/api/extensions", get(extensions))
        .route("/api/auth", get(auth_settings))
        .route("/api/feature-flags", get(feature_flags))
        .route("/api/global-parameters", get(global_parameters))
        .route(
            "/api/global-parameters/{name}",
            get(global_parameter)
                .put(put_global_parameter)
                .delete(delete_global_parameter),
        )
}

/// The management UI's plugin scripts (RabbitMQ lists its own dispatcher).
async fn extensions(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?;
    Ok(Json(json!([{"javascript": "dispatcher.js"}])).into_response())
}

/// OAuth 2 (UAA) login settings; open to anyone, as the login page reads them.
async fn auth_settings() -> Response {
    Json(json!({"enable_uaa": false, "uaa_client_id": "", "uaa_location": ""})).into_response()
}

/// RabbitMQ 3.10.8's feature flags, all enabled: what warren behaves as.
const FEATURE_FLAGS: &[(&str, &str, &str, &str)] = &[
    (
        "classic_mirrored_queue_version",
        "Support setting version for classic mirrored queues",
        "",
        "rabbit",
    ),
    (
        "drop_unroutable_metric",
        "Count unroutable publishes to be dropped in stats",
        "",
        "rabbitmq_management_agent",
    ),
    (
        "empty_basic_get_metric",
        "Count AMQP `basic.get` on empty queues in stats",
        "",
        "rabbitmq_management_agent",
    ),
    (
        "implicit_default_bindings",
        "Default bindings are now implicit, instead of being stored in the database",
        "",
        "rabbit",
    ),
    (
        "maintenance_mode_status",
        "Maintenance mode status",
        "",
        "rabbit",
    ),
    (
        "quorum_queue",
        "Support queues of type `quorum`",
        "https://www.rabbitmq.com/quorum-queues.html",
        "rabbit",
    ),
    (
        "stream_queue",
        "Support queues of type `stream`",
        "https://www.rabbitmq.com/stream.html",
        "rabbit",
    ),
    (
        "user_limits",
        "Configure connection and channel limits for a user",
        "",
        "rabbit",
    ),
    (
        "virtual_host_metadata",
        "Virtual host metadata (description, tags, etc)",
        "",
        "rabbit",
    ),
];

async fn feature_flags(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Query(q): Q,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?.require_admin()?;
    let list: Vec<Value> = FEATURE_FLAGS
        .iter()
        .map(|(name, desc, doc_url, provided_by)| {
            json!({
                "name": name,
                "desc": desc,
                "doc_url": doc_url,
                "provided_by": provided_by,
                "stability": "stable",
                "state": "enabled",
            })
        })
        .collect();
    list_reply(Value::Array(list), &q)
}

/// rabbit_mgmt_util's is_authorized_global_parameters: policymakers (and administrators).
fn require_global_parameters(who: &Authed) -> ApiResult<()> {
    if who.is_policymaker() || who.cli {
        Ok(())
    } else {
        Err(ApiError::not_authorised(
            "User not authorised to access object",
        ))
    }
}

async fn global_parameters(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Query(q): Q,
) -> ApiResult<Response> {
    require_global_parameters(&auth(&b, &headers, peer)?)?;
    let list: Vec<Value> = b
        .global_parameters()
        .into_iter()
        .map(|(name, value)| json!({"name": name, "value": value}))
        .collect();
    list_reply(Value::Array(list), &q)
}

async fn global_parameter(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    require_global_parameters(&auth(&b, &headers, peer)?)?;
    let value = b.global_parameter(&name).ok_or_else(ApiError::not_found)?;
    Ok(Json(json!({"name": name, "value": value})).into_response())
}

/// The `value` of a parameter's PUT body, with RabbitMQ's texts when it is missing.
pub(super) fn value_of(body: &Bytes) -> ApiResult<Value> {
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

async fn put_global_parameter(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    require_global_parameters(&auth(&b, &headers, peer)?)?;
    let value = value_of(&body)?;
    let is_new = b
        .set_global_parameter(&name, value)
        .map_err(AdminError::from_amqp)?;
    Ok(created(is_new))
}

async fn delete_global_parameter(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    require_global_parameters(&auth(&b, &headers, peer)?)?;
    if b.clear_global_parameter(&name)
        .map_err(AdminError::from_amqp)?
    {
        Ok(no_content())
    } else {
        Err(ApiError::not_found())
    }
}

/// A 404 with RabbitMQ's `not_found`/`vhost_not_found` body (PUT into a missing vhost).
pub(super) fn vhost_not_found() -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        error: "not_found",
        reason: "vhost_not_found".into(),
    }
}
