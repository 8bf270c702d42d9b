//! `/api/parameters`: vhost-scoped runtime parameters by component, as RabbitMQ 3.10
//! answers them (tests/fixtures/management/completeness.json). warren's one component is
//! `vhost-limits` (the limits of `/api/vhost-limits`, under the name `limits`); the
//! federation and shovel components belong to plugins warren does not have, so, as
//! RabbitMQ without them, their lists are empty and a PUT is refused with
//! `component ... not found`.

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::{ConnectInfo, Path, Query, State},
    http::HeaderMap,
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use serde_json::{json, Value};
use warren_server::{
    admin::AdminError,
    limits::{LimitScope, Limits},
    Broker,
};

use super::{
    auth, created,
    list::list_reply,
    misc::{value_of, vhost_not_found},
    no_content, Peer, B, Q,
};
use crate::{auth::Authed, ApiError, ApiResult};

const VHOST_LIMITS: &str = "vhost-limits";
const LIMITS_NAME: &str = "limits";

pub(super) fn routes() -> Router<Arc<Broker>> {
    Router::new()
        .route("/api/parameters", get(all))
        .route("/api/parameters/{component}", get(of_component))
        .route(
            "/api/parameters/{component}/{vhost}",
            get(of_component_in_vhost),
        )
        .route(
            "/api/parameters/{component}/{vhost}/{name}",
            get(one).put(put).delete(delete),
        )
}

fn entry(vhost: &str, limits: &Limits) -> Value {
    json!({
        "component": VHOST_LIMITS,
        "vhost": vhost,
        "name": LIMITS_NAME,
        "value": limits.to_json(),
    })
}

/// Every parameter the user may list, of one component or all, in one vhost or all.
fn listed(b: &Broker, who: &Authed, component: Option<&str>, vhost: Option<&str>) -> Value {
    if component.is_some_and(|c| c != VHOST_LIMITS) {
        return json!([]);
    }
    Value::Array(
        b.all_vhost_limits()
            .iter()
            .filter(|(v, _)| vhost.is_none_or(|want| want == v))
            .filter(|(v, _)| who.lists_vhost(b, v))
            .map(|(v, l)| entry(v, l))
            .collect(),
    )
}

async fn all(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Query(q): Q,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    who.require_policies(&b, None)?;
    list_reply(listed(&b, &who, None, None), &q)
}

async fn of_component(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path(component): Path<String>,
    Query(q): Q,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    who.require_policies(&b, None)?;
    list_reply(listed(&b, &who, Some(&component), None), &q)
}

async fn of_component_in_vhost(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path((component, vhost)): Path<(String, String)>,
    Query(q): Q,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    who.require_policies(&b, Some(&vhost))?;
    b.vhost(&vhost).ok_or_else(ApiError::not_found)?;
    list_reply(listed(&b, &who, Some(&component), Some(&vhost)), &q)
}

/// The vhost's limits when `component`/`name` name them and it has some.
fn find(b: &Broker, component: &str, vhost: &str, name: &str) -> Option<Limits> {
    if component != VHOST_LIMITS || name != LIMITS_NAME {
        return None;
    }
    b.vhost(vhost)?;
    Some(b.vhost_limits(vhost)).filter(|l| !l.is_empty())
}

async fn one(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path((component, vhost, name)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?.require_policies(&b, Some(&vhost))?;
    let limits = find(&b, &component, &vhost, &name).ok_or_else(ApiError::not_found)?;
    Ok(Json(entry(&vhost, &limits)).into_response())
}

/// Sets a parameter: for `vhost-limits`, the vhost's whole set of limits (RabbitMQ
/// replaces the value). Other components are not there to validate it.
async fn put(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path((component, vhost, name)): Path<(String, String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?.require_policies(&b, Some(&vhost))?;
    if b.vhost(&vhost).is_none() {
        return Err(vhost_not_found());
    }
    let value = value_of(&body)?;
    if component != VHOST_LIMITS {
        return Err(ApiError::bad_request(format!(
            "Validation failed\n\ncomponent {component} not found\n"
        )));
    }
    // This path HTML-escapes the Erlang terms in its text (`&lt;&lt;"max-foo"&gt;&gt;`),
    // unlike /api/vhost-limits.
    let limits = Limits::from_json(LimitScope::Vhost, &value).map_err(|e| {
        ApiError::bad_request(
            e.validation_text()
                .replace('<', "&lt;")
                .replace('>', "&gt;"),
        )
    })?;
    // RabbitMQ keeps vhost limits under the one name `limits`.
    if name != LIMITS_NAME {
        return Err(ApiError::bad_request(format!(
            "Validation failed\n\nname {name} not recognised for component {VHOST_LIMITS}\n"
        )));
    }
    let is_new = b.vhost_limits(&vhost).is_empty();
    b.set_vhost_limits(&vhost, limits)
        .map_err(AdminError::from_amqp)?;
    Ok(created(is_new))
}

async fn delete(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path((component, vhost, name)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?.require_policies(&b, Some(&vhost))?;
    find(&b, &component, &vhost, &name).ok_or_else(ApiError::not_found)?;
    b.set_vhost_limits(&vhost, Limits::default())
        .map_err(AdminError::from_amqp)?;
    Ok(no_content())
}
