//! warren's routes for test suites (RabbitMQ has none of these):
//!
//! - `GET /api/warren/clock`, `POST /api/warren/clock` with `{"advance_ms": N}` and/or
//!   `{"freeze": true|false}`: the test clock of a broker started with `--test-clock`
//!   (404 otherwise). An advance answers once every expiry it made due has run, the
//!   dead-lettered messages routed to their queues.
//! - `POST /api/warren/vhosts/{vhost}/reset`: the vhost emptied (queues, exchanges but
//!   the default ones, bindings, policies), kept with its permissions.
//! - `GET /api/warren/queues/{vhost}/{name}/peek?count=N`: ready messages as `.../get`
//!   shows them, without taking them or marking them redelivered.
//! - `GET /api/warren/queues/{vhost}/{name}/wait?count=N&timeout_ms=T`: answers as soon as
//!   the queue holds at least N messages (ready + unacknowledged), 408 after T ms.

use std::{sync::Arc, time::Duration};

use axum::{
    body::Bytes,
    extract::{ConnectInfo, Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use serde_json::{json, Value};
use warren_server::{
    auth::{Access, Resource},
    util::clock::ClockState,
    Broker,
};

use super::{auth, body_json, bool_field, queues::got_json, Peer, B, Q};
use crate::{ApiError, ApiResult};

/// The longest a wait may ask for.
const MAX_WAIT_MS: u64 = 300_000;
const DEFAULT_WAIT_MS: u64 = 5_000;
/// How often a wait looks at the queue: a lock and two loads, so cheap enough at 1 ms.
const WAIT_POLL: Duration = Duration::from_millis(1);

pub(super) fn routes() -> Router<Arc<Broker>> {
    Router::new()
        .route("/api/warren/clock", get(clock).post(move_clock))
        .route("/api/warren/vhosts/{vhost}/reset", post(reset_vhost))
        .route("/api/warren/queues/{vhost}/{name}/peek", get(peek))
        .route("/api/warren/queues/{vhost}/{name}/wait", get(wait))
}

fn no_test_clock() -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        error: "Object Not Found",
        reason: warren_server::util::clock::NotTestClock.to_string(),
    }
}

fn clock_json(s: ClockState) -> Value {
    json!({"enabled": true, "now_ms": s.now_ms, "offset_ms": s.offset_ms, "frozen": s.frozen})
}

async fn clock(State(b): B, ConnectInfo(peer): Peer, headers: HeaderMap) -> ApiResult<Response> {
    auth(&b, &headers, peer)?.require_admin()?;
    let state = b.timers.clock().state().map_err(|_| no_test_clock())?;
    Ok(Json(clock_json(state)).into_response())
}

async fn move_clock(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?.require_admin()?;
    if !b.timers.clock().is_test() {
        return Err(no_test_clock());
    }
    let v = body_json(&body)?;
    let advance = match v.get("advance_ms") {
        None | Some(Value::Null) => None,
        Some(n) => Some(n.as_u64().ok_or_else(|| {
            ApiError::bad_request("advance_ms must be a non-negative integer (milliseconds)")
        })?),
    };
    let freeze = match v.get("freeze") {
        None | Some(Value::Null) => None,
        Some(_) => Some(bool_field(&v, "freeze", false)?),
    };
    if advance.is_none() && freeze.is_none() {
        return Err(ApiError::bad_request(
            "give advance_ms (milliseconds) and/or freeze (true or false)",
        ));
    }
    let timers = b.timers.clone();
    // Expiries run synchronously (queue locks, dead-letter routing): off the reactor.
    let state = tokio::task::spawn_blocking(move || {
        // Freeze first, so `{"freeze": true, "advance_ms": N}` lands exactly N later.
        if let Some(f) = freeze {
            timers.freeze(f)?;
        }
        match advance {
            Some(ms) => timers.advance(ms),
            None => timers.clock().state(),
        }
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
    .map_err(|_| no_test_clock())?;
    Ok(Json(clock_json(state)).into_response())
}

async fn reset_vhost(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path(vhost): Path<String>,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    who.require_admin()?;
    let counts = b.admin_reset_vhost(&vhost)?;
    Ok(Json(json!({
        "queues": counts.queues,
        "exchanges": counts.exchanges,
        "bindings": counts.bindings,
        "policies": counts.policies,
    }))
    .into_response())
}

fn number(
    q: &std::collections::HashMap<String, String>,
    key: &str,
    default: u64,
) -> ApiResult<u64> {
    match q.get(key) {
        None => Ok(default),
        Some(s) => s
            .parse()
            .map_err(|_| ApiError::bad_request(format!("{key} must be a non-negative integer"))),
    }
}

async fn peek(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path((vhost, name)): Path<(String, String)>,
    Query(q): Q,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    who.require_vhost(&b, &vhost)?;
    who.check_amqp(&b, &vhost, Access::Read, Resource::Queue, &name)?;
    let count = usize::try_from(number(&q, "count", 1)?).unwrap_or(usize::MAX);
    let encoding = q.get("encoding").map_or("auto", String::as_str);
    let got = b.admin_peek(&vhost, &name, count)?;
    let out: Vec<Value> = got.iter().map(|m| got_json(m, encoding, None)).collect();
    Ok(Json(Value::Array(out)).into_response())
}

async fn wait(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path((vhost, name)): Path<(String, String)>,
    Query(q): Q,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    who.require_vhost(&b, &vhost)?;
    who.check_amqp(&b, &vhost, Access::Read, Resource::Queue, &name)?;
    let count = number(&q, "count", 1)?;
    let timeout = number(&q, "timeout_ms", DEFAULT_WAIT_MS)?.min(MAX_WAIT_MS);
    let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout);
    loop {
        let depth = b.admin_queue_depth(&vhost, &name)?;
        let total = (depth.ready + depth.unacked) as u64;
        let body = json!({
            "messages": total,
            "messages_ready": depth.ready,
            "messages_unacknowledged": depth.unacked,
        });
        if total >= count {
            return Ok(Json(body).into_response());
        }
        if tokio::time::Instant::now() >= deadline {
            let mut body = body;
            if let Value::Object(m) = &mut body {
                m.insert("error".into(), json!("timeout"));
                m.insert(
                    "reason".into(),
                    json!(format!(
                        "queue '{name}' holds {total} of {count} messages after {timeout} ms"
                    )),
                );
            }
            return Ok((StatusCode::REQUEST_TIMEOUT, Json(body)).into_response());
        }
        tokio::time::sleep(WAIT_POLL).await;
    }
}
