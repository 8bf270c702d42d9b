//! `GET /api/warren/plugins`, `PUT /api/warren/plugins` with `{"enabled": [names]}`: the
//! optional plugins enabled now, switched at runtime (RabbitMQ's `rabbitmq-plugins
//! enable/disable` tells the running node; warren's shim calls this). Administrators
//! only. A switch rewrites the enabled_plugins file warren booted with (when it has one)
//! before it takes effect, as RabbitMQ's CLI writes the file before telling the node.

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::{ConnectInfo, State},
    http::HeaderMap,
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use serde_json::{json, Value};
use warren_server::{util::rabbitmq_conf as conf, Broker};

use super::{auth, body_json, Peer, B};
use crate::{ApiError, ApiResult};

pub(super) fn routes() -> Router<Arc<Broker>> {
    Router::new().route("/api/warren/plugins", get(list).put(switch))
}

fn state(b: &Broker) -> Value {
    json!({
        "enabled": b.enabled_plugins(),
        "available": conf::OPTIONAL_PLUGINS,
        "built_in": conf::BUILT_IN_PLUGINS,
        "events_dropped": b.admin.events.dropped(),
    })
}

async fn list(State(b): B, ConnectInfo(peer): Peer, headers: HeaderMap) -> ApiResult<Response> {
    auth(&b, &headers, peer)?.require_admin()?;
    Ok(Json(state(&b)).into_response())
}

async fn switch(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?.require_admin()?;
    let v = body_json(&body)?;
    let Some(names) = v.get("enabled").and_then(Value::as_array) else {
        return Err(ApiError::bad_request(
            "enabled must be a list of plugin names",
        ));
    };
    let mut enabled = Vec::new();
    let mut unknown = Vec::new();
    for n in names {
        let name = n.as_str().unwrap_or_default();
        if conf::OPTIONAL_PLUGINS.contains(&name) {
            enabled.push(name.to_string());
        } else if !conf::BUILT_IN_PLUGINS.contains(&name) {
            unknown.push(name.to_string());
        }
    }
    if !unknown.is_empty() {
        return Err(ApiError::bad_request(format!(
            "plugins not found: {}",
            unknown.join(", ")
        )));
    }
    if let Some(file) = &b.config.enabled_plugins_file {
        write_enabled_plugins(file, &enabled).map_err(|e| {
            ApiError::internal(format!(
                "cannot write enabled plugins file {}: {e}",
                file.display()
            ))
        })?;
    }
    let (started, stopped) = b.set_plugins(enabled);
    let mut answer = state(&b);
    answer["started"] = json!(started);
    answer["stopped"] = json!(stopped);
    Ok(Json(answer).into_response())
}

/// Rewrites the file: its other names kept, the optional plugins as enabled now.
fn write_enabled_plugins(file: &std::path::Path, enabled: &[String]) -> std::io::Result<()> {
    let old = match std::fs::read_to_string(file) {
        Ok(text) => conf::parse_enabled_plugins(&text).unwrap_or_default(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    std::fs::write(file, conf::render_enabled_plugins(&old, enabled))
}
