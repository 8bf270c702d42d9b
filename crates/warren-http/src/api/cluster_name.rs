//! `/api/cluster-name`.

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
    Router::new().route("/api/cluster-name", get(cluster_name))
}

async fn cluster_name(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?;
    Ok(Json(json!({"name": b.config.cluster_name})).into_response())
}
