//! The `/api/...` routes and the JSON they return, shaped as RabbitMQ 3.10's management
//! plugin shapes them (recorded answers live in tests/fixtures/management).

use std::{collections::HashMap, net::SocketAddr, sync::Arc};

use axum::{
    body::Bytes,
    extract::{ConnectInfo, Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{delete, get, post},
    Json, Router,
};
use serde_json::{json, Map, Value};
use warren_router::{Destination, ExchangeKind};
use warren_server::{
    admin::{ConnInfo, GetMode},
    auth::{Access, Pattern, Permission, Resource, HASHING_ALGORITHM},
    broker::User,
    policy::Policy,
    queue::Queue,
    stats::{Stat, StatsSnapshot, STAT_COUNT},
    vhost::{ExchangeMeta, VHost},
    Broker,
};

use crate::{
    auth::{authenticate, Authed},
    convert::{json_to_table, properties_from_json, properties_to_json, rate, table_to_json},
    ApiError, ApiResult,
};

type B = State<Arc<Broker>>;
type Peer = ConnectInfo<SocketAddr>;
type Q = Query<HashMap<String, String>>;

pub fn router(broker: Arc<Broker>) -> Router {
    Router::new()
        .route("/api/overview", get(overview))
        .route("/api/whoami", get(whoami))
        .route("/api/nodes", get(nodes))
        .route("/api/nodes/{node}", get(node))
        .route("/api/vhosts", get(vhosts))
        .route(
            "/api/vhosts/{vhost}",
            get(vhost).put(put_vhost).delete(delete_vhost),
        )
        .route("/api/vhosts/{vhost}/permissions", get(vhost_permissions))
        .route("/api/vhosts/{vhost}/connections", get(vhost_connections))
        .route("/api/vhosts/{vhost}/channels", get(vhost_channels))
        .route("/api/users", get(users))
        .route(
            "/api/users/{user}",
            get(user).put(put_user).delete(delete_user),
        )
        .route("/api/users/{user}/permissions", get(user_permissions))
        .route("/api/permissions", get(permissions))
        .route(
            "/api/permissions/{vhost}/{user}",
            get(permission)
                .put(put_permission)
                .delete(delete_permission),
        )
        .route("/api/exchanges", get(exchanges))
        .route("/api/exchanges/{vhost}", get(exchanges_in))
        .route(
            "/api/exchanges/{vhost}/{name}",
            get(exchange).put(put_exchange).delete(delete_exchange),
        )
        .route(
            "/api/exchanges/{vhost}/{name}/bindings/source",
            get(exchange_bindings_source),
        )
        .route(
            "/api/exchanges/{vhost}/{name}/bindings/destination",
            get(exchange_bindings_destination),
        )
        .route("/api/exchanges/{vhost}/{name}/publish", post(publish))
        .route("/api/queues", get(queues))
        .route("/api/queues/{vhost}", get(queues_in))
        .route(
            "/api/queues/{vhost}/{name}",
            get(queue).put(put_queue).delete(delete_queue),
        )
        .route("/api/queues/{vhost}/{name}/get", post(queue_get))
        .route("/api/queues/{vhost}/{name}/contents", delete(purge_queue))
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
        .route("/api/connections", get(connections))
        .route(
            "/api/connections/{name}",
            get(connection).delete(close_connection),
        )
        .route("/api/connections/{name}/channels", get(connection_channels))
        .route("/api/channels", get(channels))
        .route("/api/consumers", get(consumers))
        .route("/api/consumers/{vhost}", get(consumers_in))
        .route("/api/definitions", get(definitions).post(post_definitions))
        .route(
            "/api/definitions/{vhost}",
            get(definitions_vhost).post(post_definitions_vhost),
        )
        .route("/api/policies", get(policies))
        .route("/api/policies/{vhost}", get(policies_in))
        .route(
            "/api/policies/{vhost}/{name}",
            get(policy).put(put_policy).delete(delete_policy),
        )
        .route("/api/healthchecks/node", get(health_ok))
        .route("/api/health/checks/alarms", get(health_alarms))
        .route("/api/health/checks/local-alarms", get(health_local_alarms))
        .route("/api/health/checks/virtual-hosts", get(health_ok))
        .route("/api/health/checks/port-listener/{port}", get(health_port))
        .route(
            "/api/health/checks/protocol-listener/{protocol}",
            get(health_protocol),
        )
        .route(
            "/api/health/checks/node-is-quorum-critical",
            get(health_single_node),
        )
        .route(
            "/api/health/checks/node-is-mirror-sync-critical",
            get(health_single_node),
        )
        .route(
            "/api/health/checks/certificate-expiration/{within}/{unit}",
            get(health_ok),
        )
        .route("/api/cluster-name", get(cluster_name))
        .route("/api/aliveness-test/{vhost}", get(aliveness))
        .fallback(|| async { ApiError::not_found() })
        .with_state(broker)
}

// ---- helpers ------------------------------------------------------------------------

fn auth(b: &Broker, headers: &HeaderMap, peer: SocketAddr) -> ApiResult<Authed> {
    authenticate(b, headers, peer)
}

fn created(was_new: bool) -> Response {
    if was_new {
        StatusCode::CREATED.into_response()
    } else {
        StatusCode::NO_CONTENT.into_response()
    }
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// Parses a request body; an empty body is `{}` as in RabbitMQ.
fn body_json(body: &Bytes) -> ApiResult<Value> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("{e}")))
}

fn bool_field(v: &Value, key: &str, default: bool) -> ApiResult<bool> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s == "true" => Ok(true),
        Some(Value::String(s)) if s == "false" => Ok(false),
        Some(other) => Err(ApiError::bad_request(format!(
            "{key} must be a boolean, got {other}"
        ))),
    }
}

fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// The value at a dotted path.
fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, p| v.get(p))
}

fn cmp_values(a: Option<&Value>, b: Option<&Value>) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (a, b) {
        (Some(Value::Number(x)), Some(Value::Number(y))) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Some(Value::String(x)), Some(Value::String(y))) => x.cmp(y),
        (Some(Value::Bool(x)), Some(Value::Bool(y))) => x.cmp(y),
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        _ => Ordering::Equal,
    }
}

/// A list answer with RabbitMQ's query options: `sort`/`sort_reverse`, and with `page`
/// the paginated form (`name` filter, `use_regex`, `page_size` up to 500) wrapped as
/// `{items, page, page_count, page_size, item_count, filtered_count, total_count}`;
/// `columns` applies to the items.
fn list_reply(list: Value, q: &HashMap<String, String>) -> ApiResult<Response> {
    let Value::Array(mut items) = list else {
        return Ok(Json(with_columns(list, q)).into_response());
    };
    if let Some(key) = q.get("sort").filter(|k| !k.is_empty()) {
        items.sort_by(|a, b| cmp_values(lookup(a, key), lookup(b, key)));
    }
    if q.get("sort_reverse").is_some_and(|v| v == "true") {
        items.reverse();
    }
    let Some(page_text) = q.get("page") else {
        return Ok(Json(with_columns(Value::Array(items), q)).into_response());
    };
    let size_text = q.get("page_size").cloned();
    let page = page_text.parse::<usize>().ok().filter(|p| *p >= 1);
    let size = match &size_text {
        None => Some(100),
        Some(t) => t.parse::<usize>().ok().filter(|s| (1..=500).contains(s)),
    };
    let (Some(page), Some(size)) = (page, size) else {
        return Err(ApiError {
            status: StatusCode::BAD_REQUEST,
            error: "invalid_pagination_parameters",
            reason: format!(
                "Invalid pagination parameters: page number {page_text}, page size {}",
                size_text.as_deref().unwrap_or("undefined")
            ),
        });
    };
    let total = items.len();
    if let Some(filter) = q.get("name").filter(|n| !n.is_empty()) {
        if q.get("use_regex").is_some_and(|v| v == "true") {
            let re = Pattern::new(filter).map_err(|e| ApiError::bad_request(e.to_string()))?;
            items.retain(|i| {
                i.get("name")
                    .and_then(Value::as_str)
                    .is_some_and(|n| re.matches(n))
            });
        } else {
            items.retain(|i| {
                i.get("name")
                    .and_then(Value::as_str)
                    .is_some_and(|n| n.contains(filter.as_str()))
            });
        }
    }
    let filtered = items.len();
    let page_count = filtered.div_ceil(size);
    if page > page_count.max(1) {
        return Err(ApiError {
            status: StatusCode::BAD_REQUEST,
            error: "page_out_of_range",
            reason: format!("Page out of range, page: {page} page size: {size}, len: {filtered}"),
        });
    }
    let page_items: Vec<Value> = items
        .into_iter()
        .skip((page - 1) * size)
        .take(size)
        .collect();
    Ok(Json(json!({
        "filtered_count": filtered,
        "item_count": page_items.len(),
        "items": with_columns(Value::Array(page_items), q),
        "page": page,
        "page_count": page_count,
        "page_size": size,
        "total_count": total,
    }))
    .into_response())
}

/// Sets `parts` (a dotted path) in `map`, creating the objects on the way.
fn insert_path(map: &mut Map<String, Value>, parts: &[&str], value: Value) {
    match parts {
        [] => {}
        [last] => {
            map.insert(last.to_string(), value);
        }
        [first, rest @ ..] => {
            let entry = map
                .entry(first.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            if let Value::Object(inner) = entry {
                insert_path(inner, rest, value);
            }
        }
    }
}

/// `?columns=a,b.c` keeps only those fields (dotted paths reach into objects).
fn with_columns(value: Value, q: &HashMap<String, String>) -> Value {
    let Some(cols) = q.get("columns") else {
        return value;
    };
    let cols: Vec<&str> = cols.split(',').filter(|c| !c.is_empty()).collect();
    let pick = |obj: &Value| -> Value {
        let mut out = Map::new();
        for col in &cols {
            let mut src = obj;
            let parts: Vec<&str> = col.split('.').collect();
            let mut found = true;
            for p in &parts {
                match src.get(*p) {
                    Some(v) => src = v,
                    None => {
                        found = false;
                        break;
                    }
                }
            }
            if !found {
                continue;
            }
            insert_path(&mut out, &parts, src.clone());
        }
        Value::Object(out)
    };
    match value {
        Value::Array(items) => Value::Array(items.iter().map(pick).collect()),
        other => pick(&other),
    }
}

fn node_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into());
    format!("rabbit@{host}")
}

/// `message_stats` with `*_details.rate` for the given counters.
fn message_stats(snap: &StatsSnapshot, keys: &[Stat], deliver_get: bool) -> Value {
    let mut m = Map::new();
    for s in keys {
        let name = warren_server::stats::STAT_NAMES[*s as usize];
        m.insert(name.to_string(), json!(snap.count(*s)));
        m.insert(format!("{name}_details"), rate(snap.rate(*s)));
    }
    if deliver_get {
        let (n, r) = snap.deliver_get();
        m.insert("deliver_get".into(), json!(n));
        m.insert("deliver_get_details".into(), rate(r));
    }
    Value::Object(m)
}

const QUEUE_STATS: &[Stat] = &[
    Stat::Ack,
    Stat::Deliver,
    Stat::DeliverNoAck,
    Stat::Get,
    Stat::GetEmpty,
    Stat::GetNoAck,
    Stat::Publish,
    Stat::Redeliver,
];

const CHANNEL_STATS: &[Stat] = &[
    Stat::Ack,
    Stat::Confirm,
    Stat::Deliver,
    Stat::DeliverNoAck,
    Stat::DropUnroutable,
    Stat::Get,
    Stat::GetEmpty,
    Stat::GetNoAck,
    Stat::Publish,
    Stat::Redeliver,
    Stat::ReturnUnroutable,
];

fn add_snap(total: &mut StatsSnapshot, s: &StatsSnapshot) {
    for i in 0..STAT_COUNT {
        total.counts[i] += s.counts[i];
        total.rates[i] += s.rates[i];
    }
}

/// Per-vhost totals: delivery-side counters summed over queues, publish-side from the
/// vhost's own counters.
/// Queue depth totals of a vhost with their rates of change.
#[derive(Default, Clone, Copy)]
struct Depth {
    ready: u64,
    unacked: u64,
    ready_rate: f64,
    unacked_rate: f64,
}

impl Depth {
    fn add(&mut self, o: &Depth) {
        self.ready += o.ready;
        self.unacked += o.unacked;
        self.ready_rate += o.ready_rate;
        self.unacked_rate += o.unacked_rate;
    }

    /// `messages`, `messages_ready`, `messages_unacknowledged` with their `_details`.
    fn fields(&self, m: &mut Map<String, Value>) {
        for (k, n, r) in [
            (
                "messages",
                self.ready + self.unacked,
                self.ready_rate + self.unacked_rate,
            ),
            ("messages_ready", self.ready, self.ready_rate),
            ("messages_unacknowledged", self.unacked, self.unacked_rate),
        ] {
            m.insert(k.into(), json!(n));
            m.insert(format!("{k}_details"), rate(r));
        }
    }
}

fn vhost_totals(vh: &VHost) -> (StatsSnapshot, Depth) {
    let mut snap = StatsSnapshot::default();
    let mut depth = Depth::default();
    let queues: Vec<Arc<Queue>> = vh.topology.read().queues.values().cloned().collect();
    for q in queues {
        add_snap(&mut snap, &q.stats.snapshot());
        let (ready, unacked) = {
            let st = q.state.lock();
            (st.ready_len() as u64, st.unacked_len() as u64)
        };
        let (ready_rate, unacked_rate) = q.stats.depth_rates(ready, unacked);
        depth.add(&Depth {
            ready,
            unacked,
            ready_rate,
            unacked_rate,
        });
    }
    // Publish-side counters come from the channels (a publish counts once, however many
    // queues it reached).
    let own = vh.stats.snapshot();
    for s in [
        Stat::Publish,
        Stat::Confirm,
        Stat::ReturnUnroutable,
        Stat::DropUnroutable,
    ] {
        snap.counts[s as usize] = own.count(s);
        snap.rates[s as usize] = own.rate(s);
    }
    (snap, depth)
}

// ---- overview, whoami, nodes --------------------------------------------------------

fn exchange_types() -> Value {
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
    Value::Array(v)
}

fn listeners_json(b: &Broker) -> Value {
    let node = node_name();
    let mut v = vec![json!({
        "node": node,
        "protocol": "amqp",
        "ip_address": b.config.listen.ip().to_string(),
        "port": amqp_port(b),
        "socket_opts": {"nodelay": true},
    })];
    for (protocol, addr) in b.admin.listeners.lock().iter() {
        v.push(json!({
            "node": node,
            "protocol": protocol,
            "ip_address": addr.ip().to_string(),
            "port": addr.port(),
            "socket_opts": {"port": addr.port()},
        }));
    }
    Value::Array(v)
}

fn contexts_json(b: &Broker) -> Value {
    let node = node_name();
    Value::Array(
        b.admin
            .listeners
            .lock()
            .iter()
            .map(|(protocol, addr)| {
                let description = if protocol == "http" {
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

/// The AMQP port actually bound (the configured one may be 0 in tests).
fn amqp_port(b: &Broker) -> u16 {
    b.admin.amqp_port.load(std::sync::atomic::Ordering::Relaxed)
}

fn churn(b: &Broker) -> Value {
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
        let topo = vh.topology.read();
        queues += topo.queues.len();
        exchanges += topo.exchanges.len() + 1;
        for q in topo.queues.values() {
            consumers += q.state.lock().consumer_count();
        }
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
    let channels: usize = visible.iter().map(|c| c.channels.lock().len()).sum();
    let version = &b.config.rabbitmq_version;
    let v = json!({
        "management_version": version,
        "rates_mode": "basic",
        "sample_retention_policies": {"global": [600, 3600, 28800, 86400], "basic": [600, 3600], "detailed": [600]},
        "exchange_types": exchange_types(),
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
    Ok(Json(with_columns(v, &q)).into_response())
}

async fn whoami(State(b): B, ConnectInfo(peer): Peer, headers: HeaderMap) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    Ok(Json(json!({"name": who.user, "tags": who.tags})).into_response())
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
            "sockets_used": b.admin.connections.len(),
            "processors": std::thread::available_parallelism().map_or(1, |n| n.get()),
            "rates_mode": "basic",
            "exchange_types": exchange_types(),
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

// ---- vhosts -------------------------------------------------------------------------

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
        "tracing": false,
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
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    who.require_admin()?;
    let is_new = b.admin_add_vhost(&name);
    if is_new {
        // As RabbitMQ's management plugin: the creating user gets full permissions there.
        b.set_permission(&who.user, &name, Permission::allow_all());
    }
    Ok(created(is_new))
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

// ---- users and permissions ----------------------------------------------------------

fn user_json(u: &User) -> Value {
    json!({
        "name": u.name,
        "password_hash": u.password_hash,
        "hashing_algorithm": u.hashing_algorithm,
        "tags": u.tags,
        "limits": {},
    })
}

async fn users(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Query(q): Q,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?.require_admin()?;
    let list: Vec<Value> = b.users().iter().map(user_json).collect();
    list_reply(Value::Array(list), &q)
}

async fn user(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?.require_admin()?;
    let u = b.user(&name).ok_or_else(ApiError::not_found)?;
    Ok(Json(user_json(&u)).into_response())
}

/// Tags as RabbitMQ accepts them: a comma-separated string or a list.
pub(crate) fn parse_tags(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => s
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(String::from)
            .collect(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|t| t.as_str().map(String::from))
            .collect(),
        _ => Vec::new(),
    }
}

async fn put_user(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?.require_admin()?;
    let v = body_json(&body)?;
    let tags = parse_tags(v.get("tags"));
    let existing = b.user(&name);
    let (hash, algorithm) = if let Some(pw) = str_field(&v, "password") {
        (
            warren_server::auth::hash_password(pw),
            HASHING_ALGORITHM.to_string(),
        )
    } else if let Some(h) = str_field(&v, "password_hash") {
        (
            h.to_string(),
            str_field(&v, "hashing_algorithm")
                .unwrap_or(HASHING_ALGORITHM)
                .to_string(),
        )
    } else if let Some(u) = &existing {
        (u.password_hash.clone(), u.hashing_algorithm.clone())
    } else {
        return Err(ApiError::bad_request(
            "Mandatory fields missing: [password_hash, password]",
        ));
    };
    b.put_user(User {
        name: name.clone(),
        password_hash: hash,
        hashing_algorithm: algorithm,
        tags,
    });
    Ok(created(existing.is_none()))
}

async fn delete_user(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?.require_admin()?;
    if !b.delete_user(&name) {
        return Err(ApiError::not_found());
    }
    // Its connections go too, with RabbitMQ's reason.
    for c in b.admin.connection_list() {
        if c.user == name {
            let _ = b.admin_close_connection(&c.name, &format!("user '{name}' is deleted"));
        }
    }
    Ok(no_content())
}

fn permission_json(user: &str, vhost: &str, p: &Permission) -> Value {
    json!({
        "user": user,
        "vhost": vhost,
        "configure": p.configure.source,
        "write": p.write.source,
        "read": p.read.source,
    })
}

fn permission_list(b: &Broker, filter: impl Fn(&str, &str) -> bool) -> Value {
    Value::Array(
        b.permissions()
            .iter()
            .filter(|(u, v, _)| filter(u, v))
            .map(|(u, v, p)| permission_json(u, v, p))
            .collect(),
    )
}

async fn permissions(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Query(q): Q,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?.require_admin()?;
    list_reply(permission_list(&b, |_, _| true), &q)
}

async fn vhost_permissions(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path(vhost): Path<String>,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?.require_admin()?;
    b.vhost(&vhost).ok_or_else(ApiError::not_found)?;
    Ok(Json(permission_list(&b, |_, v| v == vhost)).into_response())
}

async fn user_permissions(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path(user): Path<String>,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?.require_admin()?;
    b.user(&user).ok_or_else(ApiError::not_found)?;
    Ok(Json(permission_list(&b, |u, _| u == user)).into_response())
}

async fn permission(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path((vhost, user)): Path<(String, String)>,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?.require_admin()?;
    let p = b
        .permission(&user, &vhost)
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(permission_json(&user, &vhost, &p)).into_response())
}

async fn put_permission(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path((vhost, user)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?.require_admin()?;
    if b.vhost(&vhost).is_none() || b.user(&user).is_none() {
        return Err(ApiError::not_found());
    }
    let v = body_json(&body)?;
    let (Some(c), Some(w), Some(r)) = (
        str_field(&v, "configure"),
        str_field(&v, "write"),
        str_field(&v, "read"),
    ) else {
        return Err(ApiError::bad_request(
            "Mandatory fields missing: [configure, write, read]",
        ));
    };
    let p = Permission::new(c, w, r).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let is_new = b.permission(&user, &vhost).is_none();
    b.set_permission(&user, &vhost, p);
    Ok(created(is_new))
}

async fn delete_permission(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path((vhost, user)): Path<(String, String)>,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?.require_admin()?;
    if !b.clear_permission(&user, &vhost) {
        return Err(ApiError::not_found());
    }
    Ok(no_content())
}

// ---- exchanges ----------------------------------------------------------------------

fn exchange_json(
    b: &Broker,
    vhost: &str,
    name: &str,
    meta: &ExchangeMeta,
    stats: &warren_server::stats::Stats,
) -> Value {
    let mut v = json!({
        "name": name,
        "vhost": vhost,
        "type": meta.kind.as_str(),
        "durable": meta.durable,
        "auto_delete": meta.auto_delete,
        "internal": meta.internal,
        "arguments": table_to_json(&meta.arguments),
        "user_who_performed_action": "rmq-internal",
        "message_stats": message_stats(&stats.snapshot(), &[Stat::PublishIn, Stat::PublishOut], false),
    });
    if let Some(p) = b.admin.policies.effective(vhost, name, false) {
        v["policy"] = json!(p.name);
    }
    v
}

fn default_exchange_json(vhost: &str) -> Value {
    json!({
        "name": "", "vhost": vhost, "type": "direct", "durable": true, "auto_delete": false,
        "internal": false, "arguments": {}, "user_who_performed_action": "rmq-internal",
    })
}

fn vhost_exchanges(b: &Broker, vh: &VHost) -> Vec<Value> {
    let topo = vh.topology.read();
    let mut names: Vec<&Arc<str>> = topo.exchanges.keys().collect();
    names.sort();
    let mut out = vec![default_exchange_json(&vh.name)];
    for n in names {
        if let Some(x) = topo.exchanges.get(n) {
            out.push(exchange_json(b, &vh.name, n, &x.meta, &x.stats));
        }
    }
    out
}

async fn exchanges(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Query(q): Q,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    let mut all = Vec::new();
    for vh in b.vhosts() {
        if who.can_see_vhost(&b, &vh.name) {
            all.extend(vhost_exchanges(&b, &vh));
        }
    }
    list_reply(Value::Array(all), &q)
}

async fn exchanges_in(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path(vhost): Path<String>,
    Query(q): Q,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    who.require_vhost(&b, &vhost)?;
    let vh = b.vhost(&vhost).ok_or_else(ApiError::not_found)?;
    list_reply(Value::Array(vhost_exchanges(&b, &vh)), &q)
}

async fn exchange(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    who.require_vhost(&b, &vhost)?;
    let vh = b.vhost(&vhost).ok_or_else(ApiError::not_found)?;
    if name.is_empty() || name == "amq.default" {
        return Ok(Json(default_exchange_json(&vhost)).into_response());
    }
    let mut v = {
        let topo = vh.topology.read();
        let x = topo
            .exchanges
            .get(name.as_str())
            .ok_or_else(ApiError::not_found)?;
        exchange_json(&b, &vhost, &name, &x.meta, &x.stats)
    };
    v["incoming"] = json!([]);
    v["outgoing"] = json!([]);
    Ok(Json(v).into_response())
}

async fn put_exchange(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path((vhost, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    who.require_vhost(&b, &vhost)?;
    let v = body_json(&body)?;
    let type_name = str_field(&v, "type").unwrap_or("");
    let Some(kind) = ExchangeKind::parse(type_name) else {
        return Err(ApiError::bad_request(format!(
            "unknown exchange type '{type_name}'"
        )));
    };
    who.check(&b, &vhost, Access::Configure, Resource::Exchange, &name)?;
    let meta = ExchangeMeta {
        kind,
        durable: bool_field(&v, "durable", true)?,
        auto_delete: bool_field(&v, "auto_delete", false)?,
        internal: bool_field(&v, "internal", false)?,
        arguments: json_to_table(v.get("arguments").unwrap_or(&Value::Null)),
    };
    let is_new = b.admin_declare_exchange(&vhost, &name, meta)?;
    if let Some(vh) = b.vhost(&vhost) {
        b.admin.policies.apply(&vh);
    }
    Ok(created(is_new))
}

async fn delete_exchange(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path((vhost, name)): Path<(String, String)>,
    Query(q): Q,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    who.require_vhost(&b, &vhost)?;
    // A missing exchange is 404 before any permission check, as in RabbitMQ.
    if !b.vhost(&vhost).is_some_and(|v| v.has_exchange(&name)) {
        return Err(ApiError::not_found());
    }
    who.check(&b, &vhost, Access::Configure, Resource::Exchange, &name)?;
    let if_unused = q.get("if-unused").is_some_and(|v| v == "true");
    b.admin_delete_exchange(&vhost, &name, if_unused)?;
    Ok(no_content())
}

async fn publish(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path((vhost, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    who.require_vhost(&b, &vhost)?;
    let v = body_json(&body)?;
    let target = if name.is_empty() {
        "amq.default"
    } else {
        name.as_str()
    };
    if target != "amq.default" && !b.vhost(&vhost).is_some_and(|v| v.has_exchange(target)) {
        return Err(ApiError::not_found());
    }
    who.check_publish(&b, &vhost, target)?;
    let (Some(key), Some(payload)) = (str_field(&v, "routing_key"), str_field(&v, "payload"))
    else {
        return Err(ApiError::bad_request(
            "Mandatory fields missing: [routing_key, payload, payload_encoding]",
        ));
    };
    let body = match str_field(&v, "payload_encoding").unwrap_or("string") {
        "string" => Bytes::from(payload.as_bytes().to_vec()),
        "base64" => {
            use base64::{engine::general_purpose::STANDARD, Engine};
            Bytes::from(
                STANDARD
                    .decode(payload)
                    .map_err(|e| ApiError::bad_request(format!("invalid base64 payload: {e}")))?,
            )
        }
        other => {
            return Err(ApiError::bad_request(format!(
                "payload_encoding must be string or base64, got {other}"
            )))
        }
    };
    let (props, persistent) = properties_from_json(v.get("properties").unwrap_or(&Value::Null))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let routed = b.admin_publish(&vhost, &name, key, props, body, persistent)?;
    Ok(Json(json!({"routed": routed})).into_response())
}

// ---- queues -------------------------------------------------------------------------

fn queue_json(b: &Broker, q: &Queue, detailed: bool) -> Value {
    let snap = q.stats.snapshot();
    let (ready, unacked, ready_bytes, consumers, consumer_rows) = {
        let st = q.state.lock();
        let rows: Vec<(String, u32, bool, bool, u64, u16)> = if detailed {
            st.consumers()
                .map(|c| {
                    (
                        c.tag.to_string(),
                        c.prefetch,
                        !c.no_ack,
                        c.exclusive,
                        c.handle.conn.id,
                        c.handle.channel,
                    )
                })
                .collect()
        } else {
            Vec::new()
        };
        (
            st.ready_len() as u64,
            st.unacked_len() as u64,
            st.ready_bytes() as u64,
            st.consumer_count(),
            rows,
        )
    };
    let policy = b.admin.policies.effective(&q.vhost, &q.name, true);
    let messages = ready + unacked;
    let (ready_rate, unacked_rate) = q.stats.depth_rates(ready, unacked);
    let mut v = json!({
        "name": q.name.as_ref(),
        "vhost": q.vhost.as_ref(),
        "durable": q.durable,
        "auto_delete": q.auto_delete,
        "exclusive": q.exclusive_owner.is_some(),
        "arguments": table_to_json(&q.arguments),
        "node": node_name(),
        "type": "classic",
        "state": "running",
        "consumers": consumers,
        "exclusive_consumer_tag": Value::Null,
        "single_active_consumer_tag": Value::Null,
        "policy": policy.as_ref().map(|p| p.name.clone()),
        "operator_policy": Value::Null,
        "effective_policy_definition": policy.as_ref().map_or(json!({}), |p| Value::Object(p.definition.clone())),
        "head_message_timestamp": Value::Null,
        "recoverable_slaves": Value::Null,
        "memory": ready_bytes + 1024 + 64 * messages,
        "messages": messages,
        "messages_details": rate(ready_rate + unacked_rate),
        "messages_ready": ready,
        "messages_ready_details": rate(ready_rate),
        "messages_unacknowledged": unacked,
        "messages_unacknowledged_details": rate(unacked_rate),
        "messages_ram": messages,
        "messages_ready_ram": ready,
        "messages_unacknowledged_ram": unacked,
        "messages_persistent": 0,
        "messages_paged_out": 0,
        "message_bytes_ready": ready_bytes,
        "message_bytes_ram": ready_bytes,
        "message_bytes_persistent": 0,
        "message_bytes_paged_out": 0,
        "message_stats": message_stats(&snap, QUEUE_STATS, true),
    });
    if detailed {
        let details: Vec<Value> = consumer_rows
            .into_iter()
            .map(|(tag, prefetch, ack, exclusive, conn, channel)| {
                json!({
                    "consumer_tag": tag,
                    "prefetch_count": prefetch,
                    "ack_required": ack,
                    "exclusive": exclusive,
                    "active": true,
                    "activity_status": "up",
                    "arguments": {},
                    "queue": {"name": q.name.as_ref(), "vhost": q.vhost.as_ref()},
                    "channel_details": channel_details(b, conn, channel),
                })
            })
            .collect();
        v["consumer_details"] = Value::Array(details);
        v["deliveries"] = json!([]);
        v["incoming"] = json!([]);
    }
    v
}

fn channel_details(b: &Broker, conn: u64, channel: u16) -> Value {
    match b.admin.connections.get(&conn) {
        Some(c) => json!({
            "name": format!("{} ({channel})", c.name),
            "number": channel,
            "connection_name": c.name,
            "peer_host": c.peer.ip().to_string(),
            "peer_port": c.peer.port(),
            "user": c.user,
            "node": node_name(),
        }),
        None => json!([]),
    }
}

/// 404 unless the queue exists (RabbitMQ checks existence before permissions).
fn require_queue(b: &Broker, vhost: &str, name: &str) -> ApiResult<()> {
    match b.vhost(vhost).and_then(|v| v.queue(name)) {
        Some(_) => Ok(()),
        None => Err(ApiError::not_found()),
    }
}

fn vhost_queues(b: &Broker, vh: &VHost) -> Vec<Value> {
    let mut qs: Vec<Arc<Queue>> = vh.topology.read().queues.values().cloned().collect();
    qs.sort_by(|a, b| a.name.cmp(&b.name));
    qs.iter().map(|q| queue_json(b, q, false)).collect()
}

async fn queues(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Query(q): Q,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    let mut all = Vec::new();
    for vh in b.vhosts() {
        if who.can_see_vhost(&b, &vh.name) {
            all.extend(vhost_queues(&b, &vh));
        }
    }
    list_reply(Value::Array(all), &q)
}

async fn queues_in(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path(vhost): Path<String>,
    Query(q): Q,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    who.require_vhost(&b, &vhost)?;
    let vh = b.vhost(&vhost).ok_or_else(ApiError::not_found)?;
    list_reply(Value::Array(vhost_queues(&b, &vh)), &q)
}

async fn queue(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path((vhost, name)): Path<(String, String)>,
    Query(q): Q,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    who.require_vhost(&b, &vhost)?;
    let vh = b.vhost(&vhost).ok_or_else(ApiError::not_found)?;
    let queue = vh.queue(&name).ok_or_else(ApiError::not_found)?;
    Ok(Json(with_columns(queue_json(&b, &queue, true), &q)).into_response())
}

async fn put_queue(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path((vhost, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    who.require_vhost(&b, &vhost)?;
    let v = body_json(&body)?;
    who.check(&b, &vhost, Access::Configure, Resource::Queue, &name)?;
    let durable = bool_field(&v, "durable", true)?;
    let auto_delete = bool_field(&v, "auto_delete", false)?;
    let args = json_to_table(v.get("arguments").unwrap_or(&Value::Null));
    let is_new = b.admin_declare_queue(&vhost, &name, durable, auto_delete, args)?;
    Ok(created(is_new))
}

async fn delete_queue(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path((vhost, name)): Path<(String, String)>,
    Query(q): Q,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    who.require_vhost(&b, &vhost)?;
    require_queue(&b, &vhost, &name)?;
    who.check(&b, &vhost, Access::Configure, Resource::Queue, &name)?;
    let if_unused = q.get("if-unused").is_some_and(|v| v == "true");
    let if_empty = q.get("if-empty").is_some_and(|v| v == "true");
    b.admin_delete_queue(&vhost, &name, if_unused, if_empty)?;
    Ok(no_content())
}

async fn purge_queue(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    who.require_vhost(&b, &vhost)?;
    require_queue(&b, &vhost, &name)?;
    who.check(&b, &vhost, Access::Read, Resource::Queue, &name)?;
    b.admin_purge_queue(&vhost, &name)?;
    Ok(no_content())
}

async fn queue_get(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path((vhost, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    who.require_vhost(&b, &vhost)?;
    require_queue(&b, &vhost, &name)?;
    who.check_amqp(&b, &vhost, Access::Read, Resource::Queue, &name)?;
    let v = body_json(&body)?;
    let count = v.get("count").and_then(Value::as_u64).unwrap_or(1) as usize;
    let mode = match str_field(&v, "ackmode") {
        Some("ack_requeue_true") => GetMode::AckRequeueTrue,
        Some("ack_requeue_false") => GetMode::AckRequeueFalse,
        Some("reject_requeue_true") => GetMode::RejectRequeueTrue,
        Some("reject_requeue_false") => GetMode::RejectRequeueFalse,
        _ => {
            return Err(ApiError::bad_request(
                "Mandatory fields missing: [ackmode, encoding, count]",
            ))
        }
    };
    let encoding = str_field(&v, "encoding").unwrap_or("auto");
    let truncate = v
        .get("truncate")
        .and_then(Value::as_u64)
        .map(|n| n as usize);
    let got = b.admin_get(&vhost, &name, count, mode)?;
    let out: Vec<Value> = got
        .iter()
        .map(|m| {
            let body = &m.message.body;
            let shown = match truncate {
                Some(n) if n < body.len() => &body[..n],
                _ => &body[..],
            };
            let (payload, enc) = match (encoding, std::str::from_utf8(shown)) {
                ("auto", Ok(s)) => (s.to_string(), "string"),
                _ => {
                    use base64::{engine::general_purpose::STANDARD, Engine};
                    (STANDARD.encode(shown), "base64")
                }
            };
            json!({
                "payload_bytes": body.len(),
                "redelivered": m.redelivered,
                "exchange": m.message.exchange.as_ref(),
                "routing_key": m.message.routing_key.as_ref(),
                "message_count": m.remaining,
                "properties": properties_to_json(&m.message.properties),
                "payload": payload,
                "payload_encoding": enc,
            })
        })
        .collect();
    Ok(Json(Value::Array(out)).into_response())
}

// ---- bindings -----------------------------------------------------------------------

/// RabbitMQ's `properties_key`: the routing key, URL-quoted, plus `~hash` of the
/// arguments when there are any ("~" alone for an empty key without arguments).
fn properties_key(key: &str, args: &warren_codec::FieldTable) -> String {
    let mut quoted = String::new();
    for b in key.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => quoted.push(b as char),
            b' ' => quoted.push('+'),
            other => quoted.push_str(&format!("%25{other:02X}")),
        }
    }
    if args.inner().is_empty() {
        if quoted.is_empty() {
            "~".into()
        } else {
            quoted
        }
    } else {
        // A stable hash of the arguments (RabbitMQ uses erlang:phash2; the value differs but
        // serves the same purpose: telling bindings with equal keys apart in URLs).
        let text = table_to_json(args).to_string();
        let mut h: u32 = 0x811c_9dc5;
        for b in text.bytes() {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
        format!("{quoted}~{h}")
    }
}

struct BindingRow {
    source: String,
    destination: String,
    is_queue: bool,
    key: String,
    args: warren_codec::FieldTable,
}

fn binding_json(vhost: &str, r: &BindingRow) -> Value {
    json!({
        "source": r.source,
        "vhost": vhost,
        "destination": r.destination,
        "destination_type": if r.is_queue { "queue" } else { "exchange" },
        "routing_key": r.key,
        "arguments": table_to_json(&r.args),
        "properties_key": properties_key(&r.key, &r.args),
    })
}

/// Every binding of a vhost, the default exchange's implicit ones first.
fn vhost_binding_rows(vh: &VHost) -> Vec<BindingRow> {
    let topo = vh.topology.read();
    let mut queues: Vec<&Arc<str>> = topo.queues.keys().collect();
    queues.sort();
    let mut rows: Vec<BindingRow> = queues
        .iter()
        .map(|q| BindingRow {
            source: String::new(),
            destination: q.to_string(),
            is_queue: true,
            key: q.to_string(),
            args: Default::default(),
        })
        .collect();
    let mut explicit = Vec::new();
    for (name, x) in topo.exchanges.iter() {
        for bnd in x.router.table.bindings() {
            explicit.push(BindingRow {
                source: name.to_string(),
                destination: bnd.destination.name().to_string(),
                is_queue: bnd.destination.is_queue(),
                key: bnd.routing_key.to_string(),
                args: bnd.arguments.clone(),
            });
        }
    }
    explicit.sort_by(|a, b| {
        (&a.source, !a.is_queue, &a.destination, &a.key).cmp(&(
            &b.source,
            !b.is_queue,
            &b.destination,
            &b.key,
        ))
    });
    rows.extend(explicit);
    rows
}

fn bindings_where(b: &Broker, vhost: &str, f: impl Fn(&BindingRow) -> bool) -> ApiResult<Value> {
    let vh = b.vhost(vhost).ok_or_else(ApiError::not_found)?;
    Ok(Value::Array(
        vhost_binding_rows(&vh)
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
        if who.can_see_vhost(&b, &vh.name) {
            all.extend(
                vhost_binding_rows(&vh)
                    .iter()
                    .map(|r| binding_json(&vh.name, r)),
            );
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
    Ok(Json(bindings_where(&b, &vhost, |r| r.source == src)?).into_response())
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
        !r.is_queue && r.destination == name
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
        r.is_queue && r.destination == name
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
        r.source == src && r.is_queue == is_queue && r.destination == dst
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
) -> ApiResult<BindingRow> {
    let vh = b.vhost(vhost).ok_or_else(ApiError::not_found)?;
    vhost_binding_rows(&vh)
        .into_iter()
        .find(|r| {
            r.source == src
                && r.is_queue == is_queue
                && r.destination == dst
                && properties_key(&r.key, &r.args).replace("%25", "%") == props.replace("%25", "%")
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
    b.admin_bind(&vhost, &src, dest, &row.key, &row.args, false)?;
    Ok(no_content())
}

// ---- connections, channels, consumers -----------------------------------------------

fn connection_json(c: &ConnInfo) -> Value {
    let props = table_to_json(&c.client_properties);
    let user_provided = props.get("connection_name").cloned();
    let mut v = json!({
        "name": c.name,
        "node": node_name(),
        "type": "network",
        "state": c.handle.flow_state().as_str(),
        "protocol": "AMQP 0-9-1",
        "host": c.local.ip().to_string(),
        "port": c.local.port(),
        "peer_host": c.peer.ip().to_string(),
        "peer_port": c.peer.port(),
        "user": c.user,
        "user_who_performed_action": c.user,
        "vhost": c.vhost,
        "auth_mechanism": c.auth_mechanism,
        "ssl": false,
        "ssl_protocol": "",
        "ssl_key_exchange": "",
        "ssl_cipher": "",
        "ssl_hash": "",
        "peer_cert_subject": "",
        "peer_cert_issuer": "",
        "peer_cert_validity": "",
        "client_properties": props,
        "channel_max": c.channel_max,
        "frame_max": c.frame_max,
        "timeout": c.heartbeat,
        "connected_at": c.connected_at,
        "channels": c.channels.lock().len(),
        "send_pend": c.handle.write_backlog.load(std::sync::atomic::Ordering::Relaxed),
    });
    let io = c.io.snapshot();
    v["recv_oct"] = json!(io.recv_oct);
    v["recv_oct_details"] = rate(io.recv_rate);
    v["recv_cnt"] = json!(io.recv_cnt);
    v["send_oct"] = json!(io.send_oct);
    v["send_oct_details"] = rate(io.send_rate);
    v["send_cnt"] = json!(io.send_cnt);
    if let Some(n) = user_provided {
        v["user_provided_name"] = n;
    }
    v
}

fn visible_connections(b: &Broker, who: &Authed) -> Vec<Arc<ConnInfo>> {
    b.admin
        .connection_list()
        .into_iter()
        .filter(|c| who.is_monitor() || c.user == who.user)
        .collect()
}

async fn connections(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Query(q): Q,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    let list: Vec<Value> = visible_connections(&b, &who)
        .iter()
        .map(|c| connection_json(c))
        .collect();
    list_reply(Value::Array(list), &q)
}

async fn vhost_connections(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path(vhost): Path<String>,
    Query(q): Q,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    who.require_vhost(&b, &vhost)?;
    let list: Vec<Value> = visible_connections(&b, &who)
        .iter()
        .filter(|c| c.vhost == vhost)
        .map(|c| connection_json(c))
        .collect();
    list_reply(Value::Array(list), &q)
}

async fn vhost_channels(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path(vhost): Path<String>,
    Query(q): Q,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    who.require_vhost(&b, &vhost)?;
    let conns: Vec<Arc<ConnInfo>> = visible_connections(&b, &who)
        .into_iter()
        .filter(|c| c.vhost == vhost)
        .collect();
    list_reply(Value::Array(channels_of(&b, &conns)), &q)
}

fn find_connection(b: &Broker, who: &Authed, name: &str) -> ApiResult<Arc<ConnInfo>> {
    visible_connections(b, who)
        .into_iter()
        .find(|c| c.name == name)
        .ok_or_else(ApiError::not_found)
}

async fn connection(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    let c = find_connection(&b, &who, &name)?;
    Ok(Json(connection_json(&c)).into_response())
}

async fn close_connection(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    let c = find_connection(&b, &who, &name)?;
    if !who.is_admin() && c.user != who.user {
        return Err(ApiError::not_authorised("Not administrator user"));
    }
    let reason = headers
        .get("x-reason")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("Closed via management plugin");
    b.admin_close_connection(&name, reason)?;
    Ok(no_content())
}

/// One consumer as found in a queue.
struct ConsumerRow {
    vhost: String,
    queue: String,
    tag: String,
    prefetch: u32,
    ack_required: bool,
    exclusive: bool,
    conn: u64,
    channel: u16,
    unacked: u32,
}

fn consumer_rows(b: &Broker, vhost: Option<&str>) -> Vec<ConsumerRow> {
    let mut rows = Vec::new();
    for vh in b.vhosts() {
        if vhost.is_some_and(|v| v != vh.name.as_ref()) {
            continue;
        }
        let queues: Vec<Arc<Queue>> = vh.topology.read().queues.values().cloned().collect();
        for q in queues {
            let st = q.state.lock();
            for c in st.consumers() {
                rows.push(ConsumerRow {
                    vhost: vh.name.to_string(),
                    queue: q.name.to_string(),
                    tag: c.tag.to_string(),
                    prefetch: c.prefetch,
                    ack_required: !c.no_ack,
                    exclusive: c.exclusive,
                    conn: c.handle.conn.id,
                    channel: c.handle.channel,
                    unacked: c.unacked,
                });
            }
        }
    }
    rows.sort_by(|a, b| (&a.vhost, &a.queue, &a.tag).cmp(&(&b.vhost, &b.queue, &b.tag)));
    rows
}

fn channel_json(b: &Broker, c: &ConnInfo, number: u16, rows: &[ConsumerRow]) -> Value {
    let mine: Vec<&ConsumerRow> = rows
        .iter()
        .filter(|r| r.conn == c.id && r.channel == number)
        .collect();
    let unacked: u32 = mine.iter().map(|r| r.unacked).sum();
    let prefetch = mine.iter().map(|r| r.prefetch).max().unwrap_or(0);
    let _ = b;
    json!({
        "name": format!("{} ({number})", c.name),
        "number": number,
        "node": node_name(),
        "state": "running",
        "user": c.user,
        "user_who_performed_action": c.user,
        "vhost": c.vhost,
        "connection_details": {
            "name": c.name,
            "peer_host": c.peer.ip().to_string(),
            "peer_port": c.peer.port(),
        },
        "consumer_count": mine.len(),
        "messages_unacknowledged": unacked,
        "prefetch_count": prefetch,
    })
}

fn channels_of(b: &Broker, conns: &[Arc<ConnInfo>]) -> Vec<Value> {
    let rows = consumer_rows(b, None);
    let mut out = Vec::new();
    for c in conns {
        let numbers: Vec<u16> = c.channels.lock().iter().copied().collect();
        for n in numbers {
            out.push(channel_json(b, c, n, &rows));
        }
    }
    out
}

async fn channels(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Query(q): Q,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    let conns = visible_connections(&b, &who);
    list_reply(Value::Array(channels_of(&b, &conns)), &q)
}

async fn connection_channels(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    let c = find_connection(&b, &who, &name)?;
    Ok(Json(Value::Array(channels_of(&b, &[c]))).into_response())
}

fn consumers_json(b: &Broker, who: &Authed, vhost: Option<&str>) -> Value {
    Value::Array(
        consumer_rows(b, vhost)
            .iter()
            .filter(|r| who.can_see_vhost(b, &r.vhost))
            .map(|r| {
                json!({
                    "consumer_tag": r.tag,
                    "prefetch_count": r.prefetch,
                    "ack_required": r.ack_required,
                    "exclusive": r.exclusive,
                    "active": true,
                    "activity_status": "up",
                    "arguments": {},
                    "queue": {"name": r.queue, "vhost": r.vhost},
                    "channel_details": channel_details(b, r.conn, r.channel),
                })
            })
            .collect(),
    )
}

async fn consumers(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Query(q): Q,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    list_reply(consumers_json(&b, &who, None), &q)
}

async fn consumers_in(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path(vhost): Path<String>,
) -> ApiResult<Response> {
    let who = auth(&b, &headers, peer)?;
    who.require_vhost(&b, &vhost)?;
    Ok(Json(consumers_json(&b, &who, Some(&vhost))).into_response())
}

// ---- definitions --------------------------------------------------------------------

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
    warren_server::definitions::import(b, &v, vhost)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
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

// ---- policies -----------------------------------------------------------------------

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
        .filter(|p| who.can_see_vhost(&b, &p.vhost))
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
    let is_new = b.admin.policies.put(p);
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
    if !b.admin.policies.remove(&vhost, &name) {
        return Err(ApiError::not_found());
    }
    if let Some(vh) = b.vhost(&vhost) {
        b.admin.policies.apply(&vh);
    }
    Ok(no_content())
}

// ---- health checks ------------------------------------------------------------------

async fn health_ok(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?;
    Ok(Json(json!({"status": "ok"})).into_response())
}

/// 503 with the alarms in effect, as RabbitMQ 3.10.8 answers (measured; resource names
/// "disk space" and "memory").
fn alarms_health(b: &Broker, reason: &str) -> Response {
    let alarms = b.alarms.current();
    if !alarms.any() {
        return Json(json!({"status": "ok"})).into_response();
    }
    let list: Vec<Value> = [(alarms.disk, "disk space"), (alarms.memory, "memory")]
        .into_iter()
        .filter(|(on, _)| *on)
        .map(|(_, resource)| json!({"node": node_name(), "resource": resource}))
        .collect();
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"status": "failed", "reason": reason, "alarms": list})),
    )
        .into_response()
}

async fn health_alarms(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?;
    Ok(alarms_health(
        &b,
        "There are alarms in effect in the cluster",
    ))
}

async fn health_local_alarms(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?;
    Ok(alarms_health(&b, "There are alarms in effect on the node"))
}

async fn health_port(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path(port): Path<String>,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?;
    let port: u16 = port
        .parse()
        .map_err(|_| ApiError::bad_request(format!("Invalid port: {port}")))?;
    let mut ports: Vec<u16> = vec![amqp_port(&b)];
    ports.extend(b.admin.listeners.lock().iter().map(|(_, a)| a.port()));
    ports.sort_unstable();
    if ports.contains(&port) {
        Ok(Json(json!({"status": "ok", "port": port})).into_response())
    } else {
        Ok((
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "failed", "reason": "No active listener", "missing": port, "ports": ports})),
        )
            .into_response())
    }
}

async fn health_single_node(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?;
    Ok(Json(json!({"status": "ok", "reason": "single node cluster"})).into_response())
}

/// Protocols with a listener, under RabbitMQ's names (amqp091 is an alias of amqp).
fn protocols(b: &Broker) -> Vec<String> {
    let mut p: Vec<String> = b
        .admin
        .listeners
        .lock()
        .iter()
        .map(|(proto, _)| proto.clone())
        .collect();
    p.push("amqp".into());
    p
}

async fn health_protocol(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path(protocol): Path<String>,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?;
    let wanted = match protocol.as_str() {
        "amqp091" | "amqp0-9-1" | "amqp" => "amqp",
        other => other,
    };
    let have = protocols(&b);
    if have.iter().any(|p| p == wanted) {
        return Ok(Json(json!({"status": "ok", "protocol": wanted})).into_response());
    }
    Ok((
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"status": "failed", "reason": "No active listener", "missing": protocol, "protocols": have})),
    )
        .into_response())
}

async fn cluster_name(
    State(b): B,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
) -> ApiResult<Response> {
    auth(&b, &headers, peer)?;
    Ok(Json(json!({"name": b.config.cluster_name})).into_response())
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
        false,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_filter_nested_fields() {
        let v = json!([{"name": "q", "messages": 3, "message_stats": {"publish": 1, "ack": 2}}]);
        let mut q = HashMap::new();
        q.insert(
            "columns".to_string(),
            "name,message_stats.publish".to_string(),
        );
        assert_eq!(
            with_columns(v, &q),
            json!([{"name": "q", "message_stats": {"publish": 1}}])
        );
    }

    #[test]
    fn properties_keys() {
        let empty = warren_codec::FieldTable::default();
        assert_eq!(properties_key("k1", &empty), "k1");
        assert_eq!(properties_key("", &empty), "~");
        assert_eq!(properties_key("a/b", &empty), "a%252Fb");
        let mut args = warren_codec::FieldTable::default();
        args.insert("x".into(), warren_codec::AMQPValue::Boolean(true));
        assert!(properties_key("k", &args).starts_with("k~"));
    }
}
