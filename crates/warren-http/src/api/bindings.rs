//! `/api/bindings`, and the binding lists of exchanges and queues.

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
use warren_router::Destination;
use warren_server::{
    auth::{Access, Resource},
    views::BindingView,
    Broker,
};

use super::{auth, body_json, list::list_reply, no_content, str_field, Peer, B, Q};
use crate::{
    convert::{json_to_table, table_to_json},
    ApiError, ApiResult,
};

pub(super) fn routes() -> Router<Arc<Broker>> {
    Router::new()
        .route(
            "/api/exchanges/{vhost}/{name}/bindings/source",
            get(exchange_bindings_source),
        )
        .route(
            "/api/exchanges/{vhost}/{name}/bindings/destination",
            get(exchange_bindings_destination),
        )
        .route("/api/queues/{vhost}/{name}/bindings", get(queue_bindings))
        .route("/api/bindings", get(bindings))
        .route("/api/bindings/{vhost}", get(bindings_in))
        .route(
            "/api/bindings/{vhost}/e/{src}/{kind}/{dst}",
            get(bindings_between).post(post_binding),
        )
        .route(
            "/api/bindings/{vhost}/e/{src}/{kind}/{dst}/{props}",
            get(binding).delete(delete_binding),
        )
}

/// RabbitMQ's `quote_plus` (rabbit_http_util) with `~` escaped too (quote_binding):
/// letters, digits and `.-_` stay, a space becomes `+`, anything else `%XX`.
fn quote_binding(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => quoted.push(b as char),
            b' ' => quoted.push('+'),
            other => quoted.push_str(&format!("%{other:02X}")),
        }
    }
    quoted
}

/// RabbitMQ's `unquote` (qs_revdecode): `+` is a space, `%XX` a byte.
fn unquote(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |c: u8| char::from(c).to_digit(16);
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push((hi * 16 + lo) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A stable hash of a binding's arguments, base64url as RabbitMQ's `args_hash` writes
/// its (erlang:phash2) value: the value differs, the purpose is the same (telling
/// bindings with equal keys apart in URLs).
fn args_hash(args: &warren_codec::FieldTable) -> String {
    use base64::Engine;
    let text = table_to_json(args).to_string();
    let mut h: u32 = 0x811c_9dc5;
    for b in text.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(h.to_be_bytes())
}

/// RabbitMQ's `properties_key` (pack_binding_props): the quoted routing key, plus
/// `~hash` of the arguments when there are any; `~` alone for an empty key without
/// arguments. It goes into URLs as one path segment (clients quote it once more).
fn properties_key(key: &str, args: &warren_codec::FieldTable) -> String {
    if args.inner().is_empty() {
        if key.is_empty() {
            "~".into()
        } else {
            quote_binding(key)
        }
    } else {
        format!("{}~{}", quote_binding(key), quote_binding(&args_hash(args)))
    }
}

/// Whether a binding is the one a `properties_key` path segment names (RabbitMQ's
/// unpack: the key unquoted, the arguments by their hash; no hash, no arguments).
fn names_binding(props: &str, key: &str, args: &warren_codec::FieldTable) -> bool {
    let (key_part, hash) = match props.split_once('~') {
        Some((k, h)) => (k, Some(h)),
        None => (props, None),
    };
    if unquote(key_part) != key {
        return false;
    }
    match hash.filter(|h| !h.is_empty()) {
        None => args.inner().is_empty(),
        Some(h) => !args.inner().is_empty() && unquote(h) == args_hash(args),
    }
}

fn binding_json(vhost: &str, r: &BindingView) -> Value {
    json!({
        "source": r.source.as_ref(),
        "vhost": vhost,
        "destination": r.destination_name(),
        "destination_type": if r.to_queue() { "queue" } else { "exchange" },
        "routing_key": r.routing_key.as_ref(),
        "arguments": table_to_json(&r.arguments),
        "properties_key": properties_key(&r.routing_key, &r.arguments),
    })
}

fn bindings_where(b: &Broker, vhost: &str, f: impl Fn(&BindingView) -> bool) -> ApiResult<Value> {
    let vh = b.vhost(vhost).ok_or_else(ApiError::not_found)?;
    Ok(Value::Array(
        vh.bindings()
            .iter()
            .filter(|r| f(r))
            .map(|r| binding_json(vhost, r))
            .collect(),
    ))
}

async fn bindings(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Query(q): Q,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    let mut all = Vec::new();
    for vh in b.vhosts() {
        if who.lists_vhost(&b, &vh.name) {
            all.extend(vh.bindings().iter().map(|r| binding_json(&vh.name, r)));
        }
    }
    list_reply(Value::Array(all), &q)
}

async fn bindings_in(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path(vhost): Path<String>,
    Query(q): Q,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    who.require_vhost(&b, &vhost)?;
    list_reply(bindings_where(&b, &vhost, |_| true)?, &q)
}

async fn exchange_bindings_source(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    who.require_vhost(&b, &vhost)?;
    let vh = b.vhost(&vhost).ok_or_else(ApiError::not_found)?;
    if !vh.has_exchange(&name) && name != "amq.default" {
        return Err(ApiError::not_found());
    }
    let src = if name == "amq.default" {
        ""
    } else {
        name.as_str()
    };
    Ok(Json(bindings_where(&b, &vhost, |r| r.source.as_ref() == src)?).into_response())
}

async fn exchange_bindings_destination(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    who.require_vhost(&b, &vhost)?;
    let vh = b.vhost(&vhost).ok_or_else(ApiError::not_found)?;
    if !vh.has_exchange(&name) {
        return Err(ApiError::not_found());
    }
    Ok(Json(bindings_where(&b, &vhost, |r| {
        !r.to_queue() && r.destination_name() == name
    })?)
    .into_response())
}

async fn queue_bindings(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    who.require_vhost(&b, &vhost)?;
    let vh = b.vhost(&vhost).ok_or_else(ApiError::not_found)?;
    vh.queue(&name).ok_or_else(ApiError::not_found)?;
    Ok(Json(bindings_where(&b, &vhost, |r| {
        r.to_queue() && r.destination_name() == name
    })?)
    .into_response())
}

fn dest_kind(kind: &str) -> ApiResult<bool> {
    match kind {
        "q" => Ok(true),
        "e" => Ok(false),
        _ => Err(ApiError::not_found()),
    }
}

async fn bindings_between(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path((vhost, src, kind, dst)): Path<(String, String, String, String)>,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    who.require_vhost(&b, &vhost)?;
    let is_queue = dest_kind(&kind)?;
    let vh = b.vhost(&vhost).ok_or_else(ApiError::not_found)?;
    let dest_exists = if is_queue {
        vh.queue(&dst).is_some()
    } else {
        vh.has_exchange(&dst)
    };
    if !vh.has_exchange(&src) || !dest_exists {
        return Err(ApiError::not_found());
    }
    Ok(Json(bindings_where(&b, &vhost, |r| {
        r.source.as_ref() == src && r.to_queue() == is_queue && r.destination_name() == dst
    })?)
    .into_response())
}

async fn post_binding(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path((vhost, src, kind, dst)): Path<(String, String, String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    who.require_vhost(&b, &vhost)?;
    let is_queue = dest_kind(&kind)?;
    let v = body_json(&body)?;
    let key = str_field(&v, "routing_key").unwrap_or("").to_string();
    let args = json_to_table(v.get("arguments").unwrap_or(&Value::Null));
    let dest_resource = if is_queue {
        Resource::Queue
    } else {
        Resource::Exchange
    };
    who.check(&b, &vhost, Access::Write, dest_resource, &dst)?;
    who.check(&b, &vhost, Access::Read, Resource::Exchange, &src)?;
    let dest = if is_queue {
        Destination::Queue(dst.as_str().into())
    } else {
        Destination::Exchange(dst.as_str().into())
    };
    b.admin_bind(&vhost, &src, dest, &key, &args, true)?;
    let location = properties_key(&key, &args);
    let mut resp = StatusCode::CREATED.into_response();
    if let Ok(h) = axum::http::HeaderValue::from_str(&location) {
        resp.headers_mut().insert(axum::http::header::LOCATION, h);
    }
    Ok(resp)
}

fn find_binding(
    b: &Broker,
    vhost: &str,
    src: &str,
    is_queue: bool,
    dst: &str,
    props: &str,
) -> ApiResult<BindingView> {
    let vh = b.vhost(vhost).ok_or_else(ApiError::not_found)?;
    vh.bindings()
        .into_iter()
        .find(|r| {
            r.source.as_ref() == src
                && r.to_queue() == is_queue
                && r.destination_name() == dst
                && names_binding(props, &r.routing_key, &r.arguments)
        })
        .ok_or_else(ApiError::not_found)
}

async fn binding(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path((vhost, src, kind, dst, props)): Path<(String, String, String, String, String)>,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    who.require_vhost(&b, &vhost)?;
    let row = find_binding(&b, &vhost, &src, dest_kind(&kind)?, &dst, &props)?;
    Ok(Json(binding_json(&vhost, &row)).into_response())
}

async fn delete_binding(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path((vhost, src, kind, dst, props)): Path<(String, String, String, String, String)>,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    who.require_vhost(&b, &vhost)?;
    let is_queue = dest_kind(&kind)?;
    let row = find_binding(&b, &vhost, &src, is_queue, &dst, &props)?;
    let dest_resource = if is_queue {
        Resource::Queue
    } else {
        Resource::Exchange
    };
    who.check(&b, &vhost, Access::Write, dest_resource, &dst)?;
    who.check(&b, &vhost, Access::Read, Resource::Exchange, &src)?;
    let dest = if is_queue {
        Destination::Queue(dst.as_str().into())
    } else {
        Destination::Exchange(dst.as_str().into())
    };
    b.admin_bind(&vhost, &src, dest, &row.routing_key, &row.arguments, false)?;
    Ok(no_content())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_keys() {
        let empty = warren_codec::FieldTable::default();
        assert_eq!(properties_key("k1", &empty), "k1");
        assert_eq!(properties_key("", &empty), "~");
        // As RabbitMQ 3.10.8 answers (tests/fixtures/management/completeness.json).
        assert_eq!(properties_key("a/b c", &empty), "a%2Fb+c");
        assert_eq!(properties_key("x.*", &empty), "x.%2A");
        assert_eq!(properties_key("order.#", &empty), "order.%23");
        assert_eq!(properties_key("a~b", &empty), "a%7Eb");
        let mut args = warren_codec::FieldTable::default();
        args.insert("x".into(), warren_codec::AMQPValue::Boolean(true));
        let with_args = properties_key("k", &args);
        assert!(
            with_args.starts_with("k~") && with_args.len() == 8,
            "{with_args}"
        );
        assert!(properties_key("", &args).starts_with('~'));
    }

    #[test]
    fn properties_keys_name_their_bindings() {
        let empty = warren_codec::FieldTable::default();
        let mut args = warren_codec::FieldTable::default();
        args.insert("x".into(), warren_codec::AMQPValue::Boolean(true));
        for (key, a) in [
            ("a/b c", &empty),
            ("x.*", &empty),
            ("", &empty),
            ("k", &args),
            ("", &args),
        ] {
            assert!(names_binding(&properties_key(key, a), key, a), "{key}");
        }
        assert!(!names_binding("k", "k", &args), "arguments need their hash");
        assert!(!names_binding("k~AAAAAA", "k", &args));
        assert!(!names_binding("x.%2A", "x.#", &empty));
        assert_eq!(unquote("a%2Fb+c%"), "a/b c%");
    }
}
