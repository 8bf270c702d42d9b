//! The `/api/...` routes and the JSON they return, shaped as RabbitMQ 3.10's management
//! plugin shapes them (recorded answers live in tests/fixtures/management).
//!
//! One module per resource, each with its routes, handlers and JSON shapes; this module
//! joins their routes into one router and holds the request helpers they share (auth,
//! status replies, body fields, the node name). List query options (sorting, pagination,
//! columns) live in `list`, shared message and depth statistics in `stats`.

mod alarms;
mod aliveness;
mod bindings;
mod certificates;
mod channels;
mod cluster_name;
mod connections;
mod consumers;
mod definitions;
mod exchanges;
mod health;
mod limits;
mod list;
mod misc;
mod nodes;
mod operator_policies;
mod orphans;
mod overview;
mod parameters;
mod permissions;
mod plugins;
mod policies;
mod queues;
mod stats;
mod testing;
mod topic_permissions;
mod users;
mod vhosts;
mod whoami;

use std::{collections::HashMap, net::SocketAddr, sync::Arc};

use axum::{
    body::Bytes,
    extract::{ConnectInfo, Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Router,
};
use serde_json::{json, Value};
use warren_server::Broker;

use crate::{
    auth::{authenticate, Authed},
    ApiError, ApiResult,
};

type B = State<Arc<Broker>>;
type Peer = ConnectInfo<SocketAddr>;
type Q = Query<HashMap<String, String>>;

/// Every resource's routes in one router; any other path answers 404 `Object Not Found`.
/// Request bodies up to `management_max_body_size` (RabbitMQ's
/// `management.http.max_body_size`); error answers are JSON (see [`json_errors`]).
pub fn router(broker: Arc<Broker>) -> Router {
    let max_body = usize::try_from(broker.config.management_max_body_size).unwrap_or(usize::MAX);
    Router::new()
        .merge(overview::routes())
        .merge(whoami::routes())
        .merge(cluster_name::routes())
        .merge(nodes::routes())
        .merge(orphans::routes())
        .merge(certificates::routes())
        .merge(vhosts::routes())
        .merge(users::routes())
        .merge(permissions::routes())
        .merge(topic_permissions::routes())
        .merge(limits::routes())
        .merge(exchanges::routes())
        .merge(queues::routes())
        .merge(bindings::routes())
        .merge(connections::routes())
        .merge(channels::routes())
        .merge(consumers::routes())
        .merge(definitions::routes())
        .merge(policies::routes())
        .merge(health::routes())
        .merge(aliveness::routes())
        .merge(alarms::routes())
        .merge(testing::routes())
        // The web UI's static files (no auth; the page logs in through the API).
        .merge(crate::ui::routes())
        .merge(parameters::routes())
        .merge(operator_policies::routes())
        .merge(misc::routes())
        .merge(plugins::routes())
        .fallback(|| async { ApiError::not_found() })
        .layer(axum::middleware::from_fn_with_state(
            broker.clone(),
            with_actor,
        ))
        .layer(axum::middleware::from_fn(
            crate::ui::no_auth_prompt_for_page,
        ))
        .layer(axum::middleware::map_response(json_errors))
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .with_state(broker)
}

/// Runs the request as its user (`rmq-cli` for the CLI tools), the events'
/// `user_who_performed_action`; only looked up while the event exchange is on.
async fn with_actor(
    State(b): B,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let who = if b.admin.events.enabled() {
        req.extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .and_then(|ConnectInfo(peer)| authenticate(&b, req.headers(), *peer).ok())
            .map(|a| a.user)
            .unwrap_or_default()
    } else {
        String::new()
    };
    warren_server::model::events::acting_as(who, next.run(req)).await
}

/// Errors produced before a handler runs, in RabbitMQ's JSON form: a body over the
/// limit is RabbitMQ's 400 `Exceeded HTTP request body size limit`, axum's plain-text
/// rejections (a path segment that is not UTF-8, ...) become `bad_request` with the text.
/// 405 keeps its empty body, as RabbitMQ answers it.
async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::bad_request("Exceeded HTTP request body size limit").into_response();
    }
    let plain_text = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/plain"));
    if !(status.is_client_error() || status.is_server_error()) || !plain_text {
        return resp;
    }
    let reason = match axum::body::to_bytes(resp.into_body(), 64 * 1024).await {
        Ok(text) => String::from_utf8_lossy(&text).into_owned(),
        Err(_) => String::new(),
    };
    let error = if status.is_server_error() {
        "internal_server_error"
    } else {
        "bad_request"
    };
    ApiError {
        status,
        error,
        reason,
    }
    .into_response()
}

fn auth(b: &Broker, headers: &HeaderMap, peer: SocketAddr) -> ApiResult<Authed> {
    authenticate(b, headers, peer)
}

fn created(was_new: bool) -> Response {
    if was_new {
        StatusCode::CREATED.into_response()
    } else {
        StatusCode::NO_CONTENT.into_response()
    }
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// Parses a request body; an empty body is `{}` as in RabbitMQ, and one that is not JSON
/// is RabbitMQ's 400 `not_json`.
fn body_json(body: &Bytes) -> ApiResult<Value> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(body).map_err(|_| ApiError::bad_request("not_json"))
}

fn bool_field(v: &Value, key: &str, default: bool) -> ApiResult<bool> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s == "true" => Ok(true),
        Some(Value::String(s)) if s == "false" => Ok(false),
        Some(other) => Err(ApiError::bad_request(format!(
            "{key} must be a boolean, got {other}"
        ))),
    }
}

fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn node_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into());
    format!("rabbit@{host}")
}

/// The AMQP port actually bound (the configured one may be 0 in tests).
fn amqp_port(b: &Broker) -> u16 {
    b.admin.amqp_port.load(std::sync::atomic::Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The resources' route tables join without overlapping paths (axum panics on those).
    #[test]
    fn resource_routes_merge() {
        let _ = router(Broker::new(warren_server::ServerConfig::default()));
    }
}
