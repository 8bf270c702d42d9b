//! `/api/aliveness-test/{vhost}`.

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::{ConnectInfo, Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use serde_json::{json, Value};
use warren_server::{admin::GetMode, Broker};

use super::{auth, Peer, B};
use crate::{convert::properties_from_json, ApiError, ApiResult};

pub(super) fn routes() -> Router<Arc<Broker>> {
    Router::new().route("/api/aliveness-test/{vhost}", get(aliveness))
}

async fn aliveness(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path(vhost): Path<String>,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    who.require_vhost(&b, &vhost)?;
    // As RabbitMQ: declare `aliveness-test`, publish a message to it and get it back.
    b.admin_declare_queue(&vhost, "aliveness-test", false, false, Default::default())?;
    let props = properties_from_json(&Value::Null)
        .map_err(|e| ApiError::bad_request(e.to_string()))?
        .0;
    b.admin_publish(
        &vhost,
        "",
        "aliveness-test",
        props,
        Bytes::from_static(b"test_message"),
    )?;
    let got = b.admin_get(&vhost, "aliveness-test", 1, GetMode::AckRequeueFalse)?;
    if got.is_empty() {
        return Ok((
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "failed", "reason": "aliveness test message not received"})),
        )
            .into_response());
    }
    Ok(Json(json!({"status": "ok"})).into_response())
}
