//! `/api/definitions`: export and import.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::{
    body::Bytes,
    extract::{ConnectInfo, Path, State},
    http::HeaderMap,
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use warren_server::{definitions::DefinitionsError, Broker};

use super::{auth, body_json, no_content, Peer, B};
use crate::{ApiError, ApiResult};

pub(super) fn routes() -> Router<Arc<Broker>> {
    Router::new()
        .route("/api/definitions", get(definitions).post(post_definitions))
        .route(
            "/api/definitions/{vhost}",
            get(definitions_vhost).post(post_definitions_vhost),
        )
}

async fn definitions(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?.require_admin()?;
    Ok(Json(warren_server::definitions::export(&b, None)).into_response())
}

async fn definitions_vhost(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path(vhost): Path<String>,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?.require_admin()?;
    b.vhost(&vhost).ok_or_else(ApiError::not_found)?;
    Ok(Json(warren_server::definitions::export(&b, Some(&vhost))).into_response())
}

fn import(b: &Broker, body: &Bytes, vhost: Option<&str>) -> ApiResult<Response> {
    let v = body_json(body)?;
    warren_server::definitions::import(b, &v, vhost).map_err(|e| match e {
        // The import stopped at an entry whose metadata write failed: the broker's fault.
        DefinitionsError::Internal(reason) => ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            error: "internal_server_error",
            reason,
        },
        other => ApiError::bad_request(other.to_string()),
    })?;
    Ok(no_content())
}

async fn post_definitions(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?.require_admin()?;
    import(&b, &body, None)
}

async fn post_definitions_vhost(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path(vhost): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?.require_admin()?;
    b.vhost(&vhost).ok_or_else(ApiError::not_found)?;
    import(&b, &body, Some(&vhost))
}
