//! `/api/overview`: the broker's totals, listeners and contexts.

use std::sync::Arc;

use axum::{
    extract::{ConnectInfo, Query, State},
    http::HeaderMap,
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use serde_json::{json, Map, Value};
use warren_router::ExchangeKind;
use warren_server::{
    stats::{Stat, StatsSnapshot},
    Broker,
};

use super::{
    amqp_port, auth,
    list::with_columns,
    node_name,
    stats::{add_snap, message_stats, vhost_totals, Depth, CHANNEL_STATS},
    Peer, B, Q,
};
use crate::{convert::rate, ApiResult};

pub(super) fn routes() -> Router<Arc<Broker>> {
    Router::new().route("/api/overview", get(overview))
}

/// The exchange types, plugin ones when enabled (RabbitMQ 3.10.8 lists
/// `x-consistent-hash` as `Consistent Hashing Exchange` after the AMQP four).
pub(super) fn exchange_types(b: &Broker) -> Value {
    let mut v = Vec::new();
    for (name, _) in [
        ("direct", ExchangeKind::Direct),
        ("fanout", ExchangeKind::Fanout),
        ("headers", ExchangeKind::Headers),
        ("topic", ExchangeKind::Topic),
    ] {
        v.push(json!({
            "name": name,
            "description": format!("AMQP {name} exchange, as per the AMQP specification"),
            "enabled": true,
        }));
    }
    if b.plugin_enabled(ExchangeKind::ConsistentHash.plugin().unwrap_or_default()) {
        v.push(json!({
            "name": ExchangeKind::ConsistentHash.as_str(),
            "description": "Consistent Hashing Exchange",
            "enabled": true,
        }));
    }
    if b.config
        .plugin_enabled(ExchangeKind::Delayed.plugin().unwrap_or_default())
    {
        v.push(json!({
            "name": ExchangeKind::Delayed.as_str(),
            "description": "Delayed Message Exchange.",
            "enabled": true,
        }));
    }
    Value::Array(v)
}

fn listeners_json(b: &Broker) -> Value {
    let node = node_name();
    let mut v = Vec::new();
    // Port 0: no plaintext AMQP listener (`listeners.tcp = none`).
    if amqp_port(b) != 0 {
        v.push(json!({
            "node": node,
            "protocol": "amqp",
            "ip_address": b.config.listen.ip().to_string(),
            "port": amqp_port(b),
            "socket_opts": {"nodelay": true},
        }));
    }
    let tls = b.admin.tls_listeners();
    for (protocol, addr) in b.admin.listeners() {
        let server = tls
            .iter()
            .find(|(p, a, _)| *p == protocol && *a == addr)
            .map(|(_, _, s)| s);
        let socket_opts = match server {
            Some(s) if protocol == "amqp/ssl" => {
                let mut opts = tls_opts(s);
                opts["nodelay"] = json!(true);
                opts
            }
            Some(s) => json!({"port": addr.port(), "ssl": true, "ssl_opts": tls_opts(s)}),
            None => json!({"port": addr.port()}),
        };
        v.push(json!({
            "node": node,
            "protocol": protocol,
            "ip_address": addr.ip().to_string(),
            "port": addr.port(),
            "socket_opts": socket_opts,
        }));
    }
    Value::Array(v)
}

/// A TLS listener's options as RabbitMQ lists them (files, verify, versions).
fn tls_opts(s: &warren_tls::TlsServer) -> Value {
    let o = s.options();
    let path = |p: &Option<std::path::PathBuf>| p.as_ref().map(|p| p.display().to_string());
    let versions: Vec<&str> = if o.versions.is_empty() {
        vec!["tlsv1.3", "tlsv1.2"]
    } else {
        o.versions.iter().map(String::as_str).collect()
    };
    let mut v = json!({
        "versions": versions,
        "verify": o.verify.as_str(),
        "fail_if_no_peer_cert": o.fail_if_no_peer_cert,
    });
    for (key, p) in [
        ("certfile", &o.certfile),
        ("keyfile", &o.keyfile),
        ("cacertfile", &o.cacertfile),
    ] {
        if let Some(p) = path(p) {
            v[key] = json!(p);
        }
    }
    v
}

pub(super) fn contexts_json(b: &Broker) -> Value {
    let node = node_name();
    Value::Array(
        b.admin
            .listeners()
            .into_iter()
            .filter(|(protocol, _)| protocol != "amqp/ssl")
            .map(|(protocol, addr)| {
                let description = if protocol == "http" || protocol == "https" {
                    "RabbitMQ Management"
                } else {
                    "RabbitMQ Prometheus"
                };
                json!({
                    "node": node,
                    "description": description,
                    "path": "/",
                    "port": addr.port().to_string(),
                    "ssl_opts": [],
                })
            })
            .collect(),
    )
}

pub(super) fn churn(b: &Broker) -> Value {
    use std::sync::atomic::Ordering::Relaxed;
    let a = &b.admin;
    let mut m = Map::new();
    for (name, n) in [
        ("channel_closed", a.channels_closed.load(Relaxed)),
        ("channel_created", a.channels_opened.load(Relaxed)),
        ("connection_closed", a.connections_closed.load(Relaxed)),
        ("connection_created", a.connections_opened.load(Relaxed)),
        ("queue_created", a.queues_declared.load(Relaxed)),
        ("queue_declared", a.queues_declared.load(Relaxed)),
        ("queue_deleted", a.queues_deleted.load(Relaxed)),
    ] {
        m.insert(name.into(), json!(n));
        m.insert(format!("{name}_details"), rate(0.0));
    }
    Value::Object(m)
}

async fn overview(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Query(q): Q,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    let mut total = StatsSnapshot::default();
    let mut depth = Depth::default();
    let (mut queues, mut exchanges, mut consumers) = (0, 0, 0);
    for vh in b.vhosts() {
        if !who.can_see_vhost(&b, &vh.name) {
            continue;
        }
        let (s, d) = vhost_totals(&vh);
        add_snap(&mut total, &s);
        depth.add(&d);
        let counts = vh.counts();
        queues += counts.queues;
        exchanges += counts.exchanges + 1;
        consumers += counts.consumers;
    }
    // Publish-side counters come from the channels (a publish counts once, however many
    // queues it reached).
    let global = b.admin.publish_totals(&b);
    for s in [
        Stat::Publish,
        Stat::Confirm,
        Stat::ReturnUnroutable,
        Stat::DropUnroutable,
    ] {
        total.counts[s as usize] = global.count(s);
        total.rates[s as usize] = global.rate(s);
    }
    let conns = b.admin.connection_list();
    let visible: Vec<_> = conns
        .iter()
        .filter(|c| who.is_monitor() || c.user == who.user)
        .collect();
    let channels: usize = visible.iter().map(|c| c.channel_count()).sum();
    let version = &b.config.rabbitmq_version;
    let v = json!({
        "management_version": version,
        "rates_mode": "basic",
        "sample_retention_policies": {"global": [600, 3600, 28800, 86400], "basic": [600, 3600], "detailed": [600]},
        "exchange_types": exchange_types(&b),
        "product_version": env!("CARGO_PKG_VERSION"),
        "product_name": "warren",
        "rabbitmq_version": version,
        "cluster_name": b.config.cluster_name,
        "disable_stats": false,
        "enable_queue_totals": false,
        "message_stats": message_stats(&total, CHANNEL_STATS, true),
        "churn_rates": churn(&b),
        "queue_totals": {},
        "object_totals": {
            "channels": channels,
            "connections": visible.len(),
            "consumers": consumers,
            "exchanges": exchanges,
            "queues": queues,
        },
        "statistics_db_event_queue": 0,
        "node": node_name(),
        "listeners": listeners_json(&b),
        "contexts": contexts_json(&b),
    });
    let mut v = v;
    if let Some(Value::Object(totals)) = v.get_mut("queue_totals") {
        depth.fields(totals);
    }
    // Only on a broker started with --test-clock, so it can't go unnoticed.
    if b.timers.clock().is_test() {
        if let Value::Object(m) = &mut v {
            m.insert("warren_test_clock".into(), json!(true));
        }
    }
    Ok(Json(with_columns(v, &q)).into_response())
}
