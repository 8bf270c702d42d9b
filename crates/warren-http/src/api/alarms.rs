//! `PUT /api/warren/vm-memory-high-watermark` and `PUT /api/warren/disk-free-limit`:
//! the resource alarms' limits changed at runtime, what `rabbitmqctl
//! set_vm_memory_high_watermark` and `set_disk_free_limit` do in RabbitMQ (which has no
//! HTTP endpoint for them; `warren ctl` calls these). Administrators only; the new
//! limits show in `/api/nodes` (`mem_limit`, `disk_free_limit`) at once.
//!
//! `POST /api/warren/sync` answers once the message store has written and synced every
//! message, ack and delivery mark the broker took in before the request: a way for an
//! operator (before copying the data directory) or a test (before a SIGKILL) to know that
//! nothing is still waiting for the journal writer, instead of guessing with a sleep.

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::{ConnectInfo, State},
    http::HeaderMap,
    response::{IntoResponse, Response},
    routing::{post, put},
    Json, Router,
};
use serde_json::{json, Value};
use warren_server::{alarm::Watermark, Broker};

use super::{auth, body_json, Peer, B};
use crate::{ApiError, ApiResult};

pub(super) fn routes() -> Router<Arc<Broker>> {
    Router::new()
        .route("/api/warren/vm-memory-high-watermark", put(set_watermark))
        .route("/api/warren/disk-free-limit", put(set_disk_free_limit))
        .route("/api/warren/sync", post(sync_store))
}

/// A byte count given as a number or as RabbitMQ's text (`2GB`, `512MiB`).
fn bytes_value(v: &Value) -> Result<u64, String> {
    match v {
        Value::Number(n) => n.as_u64().ok_or_else(|| format!("{n} is not a byte count")),
        Value::String(s) => warren_server::alarm::parse_bytes(s),
        other => Err(format!("{other} is not a byte count")),
    }
}

/// `{"relative": 0.6}` or `{"absolute": "2GB"}`.
async fn set_watermark(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?.require_admin()?;
    let v = body_json(&body)?;
    let watermark = match (v.get("relative"), v.get("absolute")) {
        (Some(r), None) => match r.as_f64() {
            Some(f) if (0.0..=1.0).contains(&f) => Watermark::Relative(f),
            _ => {
                return Err(ApiError::bad_request(
                    "relative must be a fraction from 0 to 1",
                ))
            }
        },
        (None, Some(a)) => Watermark::Absolute(bytes_value(a).map_err(ApiError::bad_request)?),
        _ => {
            return Err(ApiError::bad_request(
                "give one of relative (a fraction of memory) or absolute (bytes)",
            ))
        }
    };
    let limit = b.alarms.set_memory_watermark(watermark);
    Ok(Json(json!({"mem_limit": limit})).into_response())
}

/// `{"limit": "1GB"}` or `{"limit": 1000000000}`.
async fn set_disk_free_limit(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?.require_admin()?;
    let v = body_json(&body)?;
    let limit = v
        .get("limit")
        .ok_or_else(|| ApiError::bad_request("limit (bytes) is missing"))
        .and_then(|l| bytes_value(l).map_err(ApiError::bad_request))?;
    b.alarms.set_disk_free_limit(limit);
    Ok(Json(json!({"disk_free_limit": limit})).into_response())
}

/// Flushes the message store (a no-op without a data directory); 204 when done.
async fn sync_store(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?.require_admin()?;
    let broker = Arc::clone(&b);
    let flushed = tokio::task::spawn_blocking(move || match broker.persistence.storage() {
        Some(storage) => storage.flush().map_err(|e| e.to_string()),
        None => Ok(()),
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r);
    match flushed {
        Ok(()) => Ok(axum::http::StatusCode::NO_CONTENT.into_response()),
        Err(e) => Err(ApiError::internal(format!(
            "message store flush failed: {e}"
        ))),
    }
}
