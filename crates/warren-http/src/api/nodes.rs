//! `/api/nodes`: the single node's resources and settings.

use std::sync::Arc;

use axum::{
    extract::{ConnectInfo, Path, Query, State},
    http::HeaderMap,
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use serde_json::{json, Value};
use warren_server::Broker;

use super::{
    auth,
    list::with_columns,
    node_name,
    overview::{churn, contexts_json, exchange_types},
    Peer, B, Q,
};
use crate::{convert::rate, ApiError, ApiResult};

pub(super) fn routes() -> Router<Arc<Broker>> {
    Router::new()
        .route("/api/nodes", get(nodes))
        .route("/api/nodes/{node}", get(node))
}

fn proc_rss_bytes() -> u64 {
    // Second field of /proc/self/statm is resident pages.
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}

fn fd_counts() -> (u64, u64) {
    let used = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
    let total = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0);
    (used, total)
}

fn node_json(b: &Broker) -> Value {
    use std::sync::atomic::Ordering::Relaxed;
    let (fd_used, fd_total) = fd_counts();
    let alarms = b.alarms.current();
    let mut v = churn(b);
    if let Value::Object(m) = &mut v {
        let extra = json!({
            "name": node_name(),
            "type": "disc",
            "running": true,
            "os_pid": std::process::id().to_string(),
            "uptime": b.admin.started.elapsed().as_millis() as u64,
            "mem_used": proc_rss_bytes(),
            "mem_used_details": rate(0.0),
            "mem_limit": b.alarms.mem_limit.load(Relaxed),
            "mem_alarm": alarms.memory,
            "disk_free": b.alarms.disk_free.load(Relaxed),
            "disk_free_details": rate(0.0),
            "disk_free_limit": b.alarms.disk_free_limit.load(Relaxed),
            "disk_free_alarm": alarms.disk,
            "fd_used": fd_used,
            "fd_total": fd_total,
            "sockets_used": b.admin.connection_count(),
            "processors": std::thread::available_parallelism().map_or(1, |n| n.get()),
            "rates_mode": "basic",
            "exchange_types": exchange_types(b),
            "auth_mechanisms": [
                {"name": "PLAIN", "description": "SASL PLAIN authentication mechanism", "enabled": true},
                {"name": "AMQPLAIN", "description": "QPid AMQPLAIN mechanism", "enabled": true},
            ],
            "partitions": [],
            "cluster_links": [],
            "contexts": contexts_json(b),
            "enabled_plugins": ["rabbitmq_management", "rabbitmq_prometheus"],
            "config_files": [],
            "log_files": [],
            "db_dir": b.config.data_dir.display().to_string(),
            "net_ticktime": 60,
            "run_queue": 0,
            "applications": [],
        });
        if let Value::Object(e) = extra {
            m.extend(e);
        }
    }
    v
}

async fn nodes(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Query(q): Q,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?.require_monitor()?;
    Ok(Json(with_columns(json!([node_json(&b)]), &q)).into_response())
}

async fn node(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?.require_monitor()?;
    if name != node_name() {
        return Err(ApiError::not_found());
    }
    Ok(Json(node_json(&b)).into_response())
}
