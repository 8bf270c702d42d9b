//! `/api/warren/orphans`: persistent messages whose queue the metadata does not know
//! (warren's own; RabbitMQ has no such thing). Recovery keeps them on disk and names them
//! in the log; an administrator lists them, attaches them to a durable queue
//! (`POST .../{id}/attach` with `{"vhost": "/", "queue": "q"}`) or drops them (`DELETE`).

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::{ConnectInfo, Path, State},
    http::HeaderMap,
    response::{IntoResponse, Response},
    routing::{delete, get, post},
    Json, Router,
};
use serde_json::{json, Value};
use warren_server::Broker;

use super::{auth, body_json, Peer, B};
use crate::{ApiError, ApiResult};

pub(super) fn routes() -> Router<Arc<Broker>> {
    Router::new()
        .route("/api/warren/orphans", get(list))
        .route("/api/warren/orphans/{id}", delete(drop_them))
        .route("/api/warren/orphans/{id}/attach", post(attach))
}

fn store_id(text: &str) -> ApiResult<u64> {
    text.parse()
        .map_err(|_| ApiError::bad_request(format!("'{text}' is not an orphan queue id")))
}

async fn list(State(b): B, ConnectInfo(peer): Peer, headers: HeaderMap) -> ApiResult<Response> {
    auth(&b, &headers, peer)?.require_admin()?;
    let rows: Vec<Value> = b
        .orphan_queues()
        .into_iter()
        .map(|o| json!({"id": o.store_id, "messages": o.messages, "bytes": o.bytes}))
        .collect();
    Ok(Json(Value::Array(rows)).into_response())
}

async fn attach(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?.require_admin()?;
    let id = store_id(&id)?;
    let v = body_json(&body)?;
    let field = |name: &str| {
        v.get(name)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| ApiError::bad_request(format!("{name} is missing")))
    };
    let (vhost, queue) = (field("vhost")?, field("queue")?);
    let broker = Arc::clone(&b);
    let moved = tokio::task::spawn_blocking(move || broker.attach_orphans(id, &vhost, &queue))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
    Ok(Json(json!({"moved": moved})).into_response())
}

async fn drop_them(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?.require_admin()?;
    let dropped = b.drop_orphans(store_id(&id)?)?;
    Ok(Json(json!({"dropped": dropped})).into_response())
}
