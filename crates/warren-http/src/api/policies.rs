//! `/api/policies`.

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::{ConnectInfo, Path, State},
    http::HeaderMap,
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use serde_json::Value;
use warren_server::{admin::AdminError, policy::Policy, Broker};

use super::{auth, body_json, created, no_content, Peer, B};
use crate::{ApiError, ApiResult};

pub(super) fn routes() -> Router<Arc<Broker>> {
    Router::new()
        .route("/api/policies", get(policies))
        .route("/api/policies/{vhost}", get(policies_in))
        .route(
            "/api/policies/{vhost}/{name}",
            get(policy).put(put_policy).delete(delete_policy),
        )
}

fn policy_json(p: &Policy) -> Value {
    p.to_json()
}

async fn policies(State(b): B, ConnectInfo(peer): Peer, headers: HeaderMap) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    let list: Vec<Value> = b
        .admin
        .policies
        .list(None)
        .iter()
        .filter(|p| who.lists_vhost(&b, &p.vhost))
        .map(|p| policy_json(p))
        .collect();
    Ok(Json(Value::Array(list)).into_response())
}

async fn policies_in(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path(vhost): Path<String>,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    who.require_vhost(&b, &vhost)?;
    let list: Vec<Value> = b
        .admin
        .policies
        .list(Some(&vhost))
        .iter()
        .map(|p| policy_json(p))
        .collect();
    Ok(Json(Value::Array(list)).into_response())
}

async fn policy(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    who.require_vhost(&b, &vhost)?;
    let p = b
        .admin
        .policies
        .get(&vhost, &name)
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(policy_json(&p)).into_response())
}

async fn put_policy(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path((vhost, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    who.require_policymaker()?;
    who.require_vhost(&b, &vhost)?;
    let v = body_json(&body)?;
    let p = Policy::from_json(&vhost, &name, &v).map_err(ApiError::bad_request)?;
    // Recorded before it takes effect: a failed write leaves the policies as they were
    // (500), and nothing is re-applied.
    let event = p.clone();
    let is_new = b.admin.policies.put(p).map_err(AdminError::from_amqp)?;
    warren_server::model::events::policy_set(&b.admin.events, &event);
    if let Some(vh) = b.vhost(&vhost) {
        b.admin.policies.apply(&vh);
    }
    Ok(created(is_new))
}

async fn delete_policy(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    who.require_policymaker()?;
    who.require_vhost(&b, &vhost)?;
    if !b
        .admin
        .policies
        .remove(&vhost, &name)
        .map_err(AdminError::from_amqp)?
    {
        return Err(ApiError::not_found());
    }
    warren_server::model::events::policy_cleared(&b.admin.events, &vhost, &name);
    if let Some(vh) = b.vhost(&vhost) {
        b.admin.policies.apply(&vh);
    }
    Ok(no_content())
}
