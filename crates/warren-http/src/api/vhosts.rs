//! `/api/vhosts`.

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::{ConnectInfo, Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use serde_json::{json, Value};
use warren_server::{admin::AdminError, auth::Permission, vhost::VHost, Broker};

use super::{
    auth, body_json, created,
    list::list_reply,
    no_content, node_name,
    stats::{message_stats, vhost_totals, CHANNEL_STATS},
    Peer, B, Q,
};
use crate::{convert::rate, ApiError, ApiResult};

pub(super) fn routes() -> Router<Arc<Broker>> {
    Router::new().route("/api/vhosts", get(vhosts)).route(
        "/api/vhosts/{vhost}",
        get(vhost).put(put_vhost).delete(delete_vhost),
    )
}

fn vhost_json(b: &Broker, vh: &VHost) -> Value {
    let (snap, depth) = vhost_totals(vh);
    let description = if vh.name.as_ref() == b.config.default_vhost {
        "Default virtual host"
    } else {
        ""
    };
    let mut v = json!({
        "name": vh.name.as_ref(),
        "description": description,
        "tags": [],
        "metadata": {"description": description, "tags": []},
        "default_queue_type": "undefined",
        "tracing": vh.tracing(),
        "cluster_state": {node_name(): "running"},
        "message_stats": message_stats(&snap, CHANNEL_STATS, true),
    });
    if let Value::Object(m) = &mut v {
        depth.fields(m);
        // Socket traffic of the vhost's open connections.
        let (mut recv, mut send, mut recv_rate, mut send_rate) = (0u64, 0u64, 0.0, 0.0);
        for c in b.admin.connection_list() {
            if c.vhost == vh.name.as_ref() {
                let io = c.io.snapshot();
                recv += io.recv_oct;
                send += io.send_oct;
                recv_rate += io.recv_rate;
                send_rate += io.send_rate;
            }
        }
        m.insert("recv_oct".into(), json!(recv));
        m.insert("recv_oct_details".into(), rate(recv_rate));
        m.insert("send_oct".into(), json!(send));
        m.insert("send_oct_details".into(), rate(send_rate));
    }
    v
}

async fn vhosts(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Query(q): Q,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    let list: Vec<Value> = b
        .vhosts()
        .iter()
        .filter(|v| who.can_see_vhost(&b, &v.name))
        .map(|v| vhost_json(&b, v))
        .collect();
    list_reply(Value::Array(list), &q)
}

async fn vhost(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    let vh = b.vhost(&name).ok_or_else(ApiError::not_found)?;
    if !who.can_see_vhost(&b, &name) {
        return Err(ApiError::not_authorised(
            "User not authorised to access virtual host",
        ));
    }
    Ok(Json(vhost_json(&b, &vh)).into_response())
}

async fn put_vhost(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    who.require_admin()?;
    let tracing = match tracing_field(&body_json(&body)?) {
        Ok(t) => t,
        Err(bad) => {
            let reason = json!({"error": "bad_request", "reason": ["not_boolean", bad]});
            return Ok((StatusCode::BAD_REQUEST, Json(reason)).into_response());
        }
    };
    let is_new = b.admin_add_vhost(&name)?;
    if is_new && !who.cli {
        // As RabbitMQ's management plugin: the creating user gets full permissions there.
        // Should that write fail, the vhost stays (it is recorded) without the permission,
        // and the answer is a 500; an administrator can grant it with PUT /api/permissions.
        // (rabbitmqctl add_vhost, through the CLI cookie, grants nobody anything.)
        b.set_permission(&who.user, &name, Permission::allow_all())
            .map_err(AdminError::from_amqp)?;
    }
    if let (Some(on), Some(vh)) = (tracing, b.vhost(&name)) {
        warren_server::trace::set(&vh, on);
    }
    Ok(created(is_new))
}

/// `tracing` as rabbit_mgmt_util:parse_bool reads it: absent leaves tracing as it is;
/// anything but true/false (or their strings) is a 400 whose reason is RabbitMQ's
/// `{not_boolean, Value}` (the value comes back as the error).
fn tracing_field(v: &Value) -> Result<Option<bool>, Value> {
    match v.get("tracing") {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) if s == "true" => Ok(Some(true)),
        Some(Value::String(s)) if s == "false" => Ok(Some(false)),
        Some(other) => Err(other.clone()),
    }
}

async fn delete_vhost(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?.require_admin()?;
    b.admin_delete_vhost(&name)?;
    Ok(no_content())
}
