//! `/api/whoami`.

use std::sync::Arc;

use axum::{
    extract::{ConnectInfo, State},
    http::HeaderMap,
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use serde_json::json;
use warren_server::Broker;

use super::{auth, Peer, B};
use crate::ApiResult;

pub(super) fn routes() -> Router<Arc<Broker>> {
    Router::new().route("/api/whoami", get(whoami))
}

async fn whoami(State(b): B, ConnectInfo(peer): Peer, headers: HeaderMap) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    Ok(Json(json!({"name": who.user, "tags": who.tags})).into_response())
}
