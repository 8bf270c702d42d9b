//! RabbitMQ definitions files: export of users, vhosts, permissions, policies, queues,
//! exchanges and bindings in RabbitMQ's JSON format, and import of such a file.
//!
//! An import is validated whole before anything is applied: every entry is checked
//! (fields, types, regexes, references to vhosts/users/exchanges/queues defined in the file
//! or already present), and the first bad one is reported by section, index and name.
//! Applying it can still fail on a metadata write: see [`import`] for what is left then.

use std::{collections::HashSet, sync::Arc};

use amq_protocol::types::FieldTable;
use serde_json::{json, Value};
use warren_router::{Binding, Destination, ExchangeKind};

use crate::{
    admin::AdminError,
    model::auth::{HashingAlgorithm, Permission, TopicPermission, HASHING_ALGORITHM},
    model::broker::{Broker, User},
    model::limits::{LimitScope, Limits},
    model::policy::Policy,
    model::vhost::{ExchangeMeta, VHost},
    util::error::AmqpError,
    util::json::{json_to_table, table_to_json},
};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DefinitionsError {
    #[error("{section}[{index}] ({name}): {reason}")]
    Entry {
        section: &'static str,
        index: usize,
        name: String,
        reason: String,
    },
    #[error("{0}")]
    Invalid(String),
    /// A change could not be recorded (a metadata write failed): the import stopped at
    /// that entry. The text names it; the I/O error is logged.
    #[error("{0}")]
    Internal(String),
}

fn is_system_exchange(name: &str) -> bool {
    name.is_empty() || name.starts_with("amq.")
}

/// The queues, exchanges and bindings sections of an export.
#[derive(Default)]
struct ExportedTopology {
    queues: Vec<Value>,
    exchanges: Vec<Value>,
    bindings: Vec<Value>,
}

/// The broker's state as a definitions document (`vhost` limits it to one vhost, in the
/// shorter per-vhost format).
pub fn export(b: &Broker, vhost: Option<&str>) -> Value {
    let version = &b.config.rabbitmq_version;
    let mut topology = ExportedTopology::default();
    for vh in b.vhosts() {
        if vhost.is_some_and(|v| v != vh.name.as_ref()) {
            continue;
        }
        // The full format names each entry's vhost; the per-vhost one leaves it out.
        let entry_vhost = vhost.is_none().then_some(vh.name.as_ref());
        export_vhost_topology(&vh, entry_vhost, &mut topology);
    }
    let ExportedTopology {
        queues,
        exchanges,
        bindings,
    } = topology;
    let policies = export_policies(b, vhost);
    let parameters = export_parameters(b, vhost);
    if vhost.is_some() {
        return json!({
            "rabbit_version": version,
            "parameters": parameters,
            "policies": policies,
            "queues": queues,
            "exchanges": exchanges,
            "bindings": bindings,
        });
    }
    let users = export_users(b);
    let vhosts = export_vhosts(b);
    let permissions = export_permissions(b);
    json!({
        "rabbit_version": version,
        "rabbitmq_version": version,
        "product_name": "warren",
        "product_version": env!("CARGO_PKG_VERSION"),
        "users": users,
        "vhosts": vhosts,
        "permissions": permissions,
        "topic_permissions": export_topic_permissions(b),
        "parameters": parameters,
        "global_parameters": b
            .global_parameters()
            .into_iter()
            .map(|(name, value)| json!({"name": name, "value": value}))
            .collect::<Vec<_>>(),
        "policies": policies,
        "queues": queues,
        "exchanges": exchanges,
        "bindings": bindings,
    })
}

/// `e` with a `vhost` field added when `vhost` is given.
fn with_vhost(mut e: Value, vhost: Option<&str>) -> Value {
    if let Some(v) = vhost {
        e["vhost"] = json!(v);
    }
    e
}

/// Adds one vhost's queues (not exclusive ones), exchanges (not system ones) and bindings
/// to `out`, sorted by name; `entry_vhost` is the vhost to name in each entry, if any.
fn export_vhost_topology(vh: &VHost, entry_vhost: Option<&str>, out: &mut ExportedTopology) {
    let topo = vh.topology.read();
    let mut qs: Vec<_> = topo.queues.values().collect();
    qs.sort_by(|a, b| a.name.cmp(&b.name));
    for q in qs {
        if q.exclusive_owner.is_some() {
            continue;
        }
        let e = json!({
            "name": q.name.as_ref(),
            "durable": q.durable,
            "auto_delete": q.auto_delete,
            "arguments": table_to_json(&q.arguments),
        });
        out.queues.push(with_vhost(e, entry_vhost));
    }
    let mut xs: Vec<_> = topo.exchanges.iter().collect();
    xs.sort_by(|a, b| a.0.cmp(b.0));
    for (name, x) in xs {
        for bnd in x.router.table.bindings() {
            out.bindings
                .push(with_vhost(binding_json(name, &bnd), entry_vhost));
        }
        if is_system_exchange(name) {
            continue;
        }
        out.exchanges
            .push(with_vhost(exchange_json(name, &x.meta), entry_vhost));
    }
}

fn binding_json(source: &str, bnd: &Binding) -> Value {
    json!({
        "source": source,
        "destination": bnd.destination.name().as_ref(),
        "destination_type": if bnd.destination.is_queue() { "queue" } else { "exchange" },
        "routing_key": bnd.routing_key.as_ref(),
        "arguments": table_to_json(&bnd.arguments),
    })
}

fn exchange_json(name: &str, meta: &ExchangeMeta) -> Value {
    json!({
        "name": name,
        "type": meta.kind.as_str(),
        "durable": meta.durable,
        "auto_delete": meta.auto_delete,
        "internal": meta.internal,
        "arguments": table_to_json(&meta.arguments),
    })
}

/// The policies section; the per-vhost format (`vhost` given) leaves out their vhost.
fn export_policies(b: &Broker, vhost: Option<&str>) -> Vec<Value> {
    b.admin
        .policies
        .list(vhost)
        .iter()
        .map(|p| {
            let mut v = p.to_json();
            if vhost.is_some() {
                if let Value::Object(m) = &mut v {
                    m.remove("vhost");
                }
            }
            v
        })
        .collect()
}

fn export_users(b: &Broker) -> Vec<Value> {
    b.users()
        .iter()
        .map(|u| {
            json!({
                "name": u.name,
                "password_hash": u.password_hash,
                "hashing_algorithm": u.hashing_algorithm,
                "tags": u.tags,
                "limits": b.user_limits(&u.name).to_json(),
            })
        })
        .collect()
}

/// Runtime parameters: warren has RabbitMQ's `vhost-limits` component (one `limits`
/// entry per vhost with limits; the per-vhost export keeps its `vhost` field, as
/// RabbitMQ 3.10.8's does).
fn export_parameters(b: &Broker, vhost: Option<&str>) -> Vec<Value> {
    b.all_vhost_limits()
        .iter()
        .filter(|(v, _)| vhost.is_none_or(|only| only == v))
        .map(|(v, limits)| {
            json!({
                "value": limits.to_json(),
                "vhost": v,
                "component": VHOST_LIMITS,
                "name": "limits",
            })
        })
        .collect()
}

/// The runtime parameter component of vhost limits.
const VHOST_LIMITS: &str = "vhost-limits";

fn export_vhosts(b: &Broker) -> Vec<Value> {
    b.vhosts()
        .iter()
        .map(|v| json!({"name": v.name.as_ref()}))
        .collect()
}

fn export_permissions(b: &Broker) -> Vec<Value> {
    b.permissions()
        .iter()
        .map(|(u, v, p)| {
            json!({
                "user": u, "vhost": v,
                "configure": p.configure.source, "write": p.write.source, "read": p.read.source,
            })
        })
        .collect()
}

fn export_topic_permissions(b: &Broker) -> Vec<Value> {
    b.topic_permissions()
        .iter()
        .map(|(u, v, tp)| {
            json!({
                "user": u, "vhost": v, "exchange": tp.exchange,
                "write": tp.write.source, "read": tp.read.source,
            })
        })
        .collect()
}

/// Everything an import will do, checked before any of it happens.
#[derive(Default)]
struct Plan {
    vhosts: Vec<String>,
    users: Vec<User>,
    /// Users' limits (users entries with `limits`), replacing what they had.
    user_limits: PlannedLimits,
    /// Vhosts' limits (`vhost-limits` parameters, or a vhosts entry's `limits`).
    vhost_limits: PlannedLimits,
    permissions: Vec<PlannedPermission>,
    topic_permissions: Vec<PlannedTopicPermission>,
    policies: Vec<Policy>,
    exchanges: Vec<PlannedExchange>,
    queues: Vec<PlannedQueue>,
    bindings: Vec<PlannedBinding>,
}

/// User, vhost, permission.
type PlannedPermission = (String, String, Permission);
/// User, vhost, topic permission.
type PlannedTopicPermission = (String, String, TopicPermission);
/// A vhost's or user's name and the limits an import gives it.
type PlannedLimits = Vec<(String, Limits)>;
/// Vhost, name, exchange.
type PlannedExchange = (String, String, ExchangeMeta);
/// Vhost, name, durable, auto_delete, arguments.
/// vhost, name, durable, auto_delete, arguments, and whether it exists already (skipped).
type PlannedQueue = (String, String, bool, bool, FieldTable, bool);
/// Vhost, source, destination, routing key, arguments.
type PlannedBinding = (String, String, Destination, String, FieldTable);

fn entries<'a>(doc: &'a Value, section: &'static str) -> Result<&'a [Value], DefinitionsError> {
    match doc.get(section) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(DefinitionsError::Invalid(format!(
            "'{section}' must be a list"
        ))),
    }
}

fn field<'a>(e: &'a Value, key: &str) -> Option<&'a str> {
    e.get(key).and_then(Value::as_str)
}

fn flag(e: &Value, key: &str, default: bool) -> Result<bool, String> {
    match e.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s == "true" => Ok(true),
        Some(Value::String(s)) if s == "false" => Ok(false),
        Some(other) => Err(format!("'{key}' must be a boolean, got {other}")),
    }
}

fn tags(v: Option<&Value>) -> Vec<String> {
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

/// An invalid entry: its section, index, name and what is wrong with it.
fn bad(section: &'static str, index: usize, name: &str, reason: String) -> DefinitionsError {
    DefinitionsError::Entry {
        section,
        index,
        name: name.to_string(),
        reason,
    }
}

/// The vhost of an entry: the per-vhost import's, else the entry's own.
fn vhost_of(only_vhost: Option<&str>, e: &Value) -> String {
    only_vhost
        .map(String::from)
        .or_else(|| field(e, "vhost").map(String::from))
        .unwrap_or_default()
}

/// Whether `v` exists already or is created by the import.
fn vhost_known(b: &Broker, p: &Plan, v: &str) -> bool {
    b.vhost(v).is_some() || p.vhosts.iter().any(|x| x == v)
}

fn plan(b: &Broker, doc: &Value, only_vhost: Option<&str>) -> Result<Plan, DefinitionsError> {
    if !doc.is_object() {
        return Err(DefinitionsError::Invalid(
            "a definitions file must be a JSON object".into(),
        ));
    }
    let mut p = Plan::default();
    // Vhosts, users and permissions only come with a whole-broker import.
    if only_vhost.is_none() {
        (p.vhosts, p.vhost_limits) = plan_vhosts(doc)?;
        (p.users, p.user_limits) = plan_users(doc)?;
        p.permissions = plan_permissions(b, doc, &p)?;
        p.topic_permissions = plan_topic_permissions(b, doc, &p)?;
    }
    let parameters = plan_parameters(b, doc, only_vhost, &p)?;
    p.vhost_limits.extend(parameters);
    p.policies = plan_policies(b, doc, only_vhost, &p)?;
    p.exchanges = plan_exchanges(b, doc, only_vhost, &p)?;
    p.queues = plan_queues(b, doc, only_vhost, &p)?;
    p.bindings = plan_bindings(b, doc, only_vhost, &p)?;
    check_queue_limits(b, &p)?;
    Ok(p)
}

/// Vhosts and the limits their entries carry. RabbitMQ 3.10 keeps vhost limits in
/// `parameters` and ignores a vhosts entry's `limits`; warren applies them rather than
/// drop a restriction (an empty `{}` or `[]` is none).
fn plan_vhosts(doc: &Value) -> Result<(Vec<String>, PlannedLimits), DefinitionsError> {
    let mut names = Vec::new();
    let mut limits = Vec::new();
    for (i, e) in entries(doc, "vhosts")?.iter().enumerate() {
        let name =
            field(e, "name").ok_or_else(|| bad("vhosts", i, "?", "missing 'name'".into()))?;
        names.push(name.to_string());
        match e.get("limits") {
            None | Some(Value::Null) => {}
            Some(Value::Array(a)) if a.is_empty() => {}
            Some(v) => {
                let l = Limits::from_json(LimitScope::Vhost, v)
                    .map_err(|err| bad("vhosts", i, name, err.to_string()))?;
                if !l.is_empty() {
                    limits.push((name.to_string(), l));
                }
            }
        }
    }
    Ok((names, limits))
}

/// Users and the limits their entries carry (an entry without `limits` leaves an
/// existing user's as they are).
fn plan_users(doc: &Value) -> Result<(Vec<User>, PlannedLimits), DefinitionsError> {
    let mut users = Vec::new();
    let mut limits = Vec::new();
    for (i, e) in entries(doc, "users")?.iter().enumerate() {
        let user = plan_user(i, e)?;
        match e.get("limits") {
            None | Some(Value::Null) => {}
            Some(v) => {
                let l = Limits::from_json(LimitScope::User, v)
                    .map_err(|err| bad("users", i, &user.name, err.to_string()))?;
                limits.push((user.name.clone(), l));
            }
        }
        users.push(user);
    }
    Ok((users, limits))
}

/// Runtime parameters: `vhost-limits` is applied; any other component is one warren
/// does not have, and fails the import as it does on a RabbitMQ without the plugin
/// (`component federation-upstream not found`), rather than being dropped.
fn plan_parameters(
    b: &Broker,
    doc: &Value,
    only_vhost: Option<&str>,
    p: &Plan,
) -> Result<PlannedLimits, DefinitionsError> {
    let mut out = Vec::new();
    for (i, e) in entries(doc, "parameters")?.iter().enumerate() {
        let vhost = vhost_of(only_vhost, e);
        let component = field(e, "component").unwrap_or("?");
        let name = field(e, "name").unwrap_or("?");
        let label = format!("{vhost}/{component}/{name}");
        let fail = |reason: String| bad("parameters", i, &label, reason);
        if component != VHOST_LIMITS {
            return Err(fail(format!("component {component} not found")));
        }
        if name != "limits" {
            return Err(fail(format!(
                "a {VHOST_LIMITS} parameter must be named 'limits'"
            )));
        }
        if !vhost_known(b, p, &vhost) {
            return Err(fail(format!("no vhost '{vhost}'")));
        }
        let value = e.get("value").unwrap_or(&Value::Null);
        let limits = match value {
            Value::Array(a) if a.is_empty() => Limits::default(),
            v => Limits::from_json(LimitScope::Vhost, v).map_err(|err| fail(err.to_string()))?,
        };
        out.push((vhost, limits));
    }
    Ok(out)
}

/// RabbitMQ's check before an import: the queues it adds to a vhost must fit its
/// `max-queues` (the limit the import leaves it with).
fn check_queue_limits(b: &Broker, p: &Plan) -> Result<(), DefinitionsError> {
    let mut adding: std::collections::BTreeMap<&str, HashSet<&str>> = Default::default();
    for (v, name, ..) in &p.queues {
        if b.vhost(v).and_then(|vh| vh.queue(name)).is_none() {
            adding.entry(v).or_default().insert(name);
        }
    }
    for (vhost, new) in adding {
        let planned = p.vhost_limits.iter().rev().find(|(v, _)| v == vhost);
        let max = match planned {
            Some((_, l)) => l.limit(crate::model::limits::LimitKind::MaxQueues),
            None => b.queue_limit(vhost),
        };
        let Some(max) = max else { continue };
        let current = b
            .vhost(vhost)
            .map_or(0, |vh| vh.topology.read().queues.len());
        if (current + new.len()) as u64 > max {
            return Err(DefinitionsError::Invalid(format!(
                "Adding {} queue(s) to virtual host \"{vhost}\" would exceed the limit of {max} queue(s).\n\nThis virtual host currently has {current} queue(s) defined.\n\nImport aborted!",
                new.len()
            )));
        }
    }
    Ok(())
}

/// A user entry: with a plain `password`, or a `password_hash` in a known algorithm.
fn plan_user(i: usize, e: &Value) -> Result<User, DefinitionsError> {
    let name = field(e, "name").ok_or_else(|| bad("users", i, "?", "missing 'name'".into()))?;
    let algorithm = field(e, "hashing_algorithm").unwrap_or(HASHING_ALGORITHM);
    if let Some(pw) = field(e, "password") {
        return User::with_password(name, pw, tags(e.get("tags"))).map_err(|e| {
            tracing::error!(user = name, error = %e, "definitions import failed");
            DefinitionsError::Internal(format!("users[{i}] ({name}): {e}"))
        });
    }
    let hash = field(e, "password_hash")
        .ok_or_else(|| bad("users", i, name, "missing 'password_hash'".into()))?;
    if HashingAlgorithm::from_name(algorithm).is_none() {
        return Err(bad(
            "users",
            i,
            name,
            format!("unknown hashing_algorithm '{algorithm}'"),
        ));
    }
    Ok(User {
        name: name.to_string(),
        password_hash: hash.to_string(),
        hashing_algorithm: algorithm.to_string(),
        tags: tags(e.get("tags")),
    })
}

fn plan_permissions(
    b: &Broker,
    doc: &Value,
    p: &Plan,
) -> Result<Vec<PlannedPermission>, DefinitionsError> {
    entries(doc, "permissions")?
        .iter()
        .enumerate()
        .map(|(i, e)| plan_permission(b, p, i, e))
        .collect()
}

/// A permission entry, for a user and a vhost that exist or are created by the import.
fn plan_permission(
    b: &Broker,
    p: &Plan,
    i: usize,
    e: &Value,
) -> Result<PlannedPermission, DefinitionsError> {
    let user = field(e, "user").unwrap_or("?");
    let vhost = field(e, "vhost").unwrap_or("?");
    let label = format!("user '{user}' in vhost '{vhost}'");
    if !vhost_known(b, p, vhost) {
        return Err(bad("permissions", i, &label, format!("no vhost '{vhost}'")));
    }
    if b.user(user).is_none() && !p.users.iter().any(|u| u.name == user) {
        return Err(bad("permissions", i, &label, format!("no user '{user}'")));
    }
    let (Some(c), Some(w), Some(r)) = (field(e, "configure"), field(e, "write"), field(e, "read"))
    else {
        return Err(bad(
            "permissions",
            i,
            &label,
            "missing configure, write or read".into(),
        ));
    };
    let perm =
        Permission::new(c, w, r).map_err(|err| bad("permissions", i, &label, err.to_string()))?;
    Ok((user.to_string(), vhost.to_string(), perm))
}

fn plan_topic_permissions(
    b: &Broker,
    doc: &Value,
    p: &Plan,
) -> Result<Vec<PlannedTopicPermission>, DefinitionsError> {
    entries(doc, "topic_permissions")?
        .iter()
        .enumerate()
        .map(|(i, e)| plan_topic_permission(b, p, i, e))
        .collect()
}

/// A topic permission entry, for a user and a vhost that exist or are created by the
/// import.
fn plan_topic_permission(
    b: &Broker,
    p: &Plan,
    i: usize,
    e: &Value,
) -> Result<PlannedTopicPermission, DefinitionsError> {
    const SECTION: &str = "topic_permissions";
    let user = field(e, "user").unwrap_or("?");
    let vhost = field(e, "vhost").unwrap_or("?");
    let label = format!("user '{user}' in vhost '{vhost}'");
    if !vhost_known(b, p, vhost) {
        return Err(bad(SECTION, i, &label, format!("no vhost '{vhost}'")));
    }
    if b.user(user).is_none() && !p.users.iter().any(|u| u.name == user) {
        return Err(bad(SECTION, i, &label, format!("no user '{user}'")));
    }
    let (Some(x), Some(w), Some(r)) = (field(e, "exchange"), field(e, "write"), field(e, "read"))
    else {
        return Err(bad(
            SECTION,
            i,
            &label,
            "missing exchange, write or read".into(),
        ));
    };
    let tp = TopicPermission::new(user, vhost, x, w, r)
        .map_err(|err| bad(SECTION, i, &label, err.to_string()))?;
    Ok((user.to_string(), vhost.to_string(), tp))
}

fn plan_policies(
    b: &Broker,
    doc: &Value,
    only_vhost: Option<&str>,
    p: &Plan,
) -> Result<Vec<Policy>, DefinitionsError> {
    entries(doc, "policies")?
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let name = field(e, "name").unwrap_or("?");
            let vhost = vhost_of(only_vhost, e);
            let label = format!("policy '{name}' in vhost '{vhost}'");
            if !vhost_known(b, p, &vhost) {
                return Err(bad("policies", i, &label, format!("no vhost '{vhost}'")));
            }
            Policy::from_json(&vhost, name, e).map_err(|r| bad("policies", i, &label, r))
        })
        .collect()
}

fn plan_exchanges(
    b: &Broker,
    doc: &Value,
    only_vhost: Option<&str>,
    p: &Plan,
) -> Result<Vec<PlannedExchange>, DefinitionsError> {
    let mut out = Vec::new();
    for (i, e) in entries(doc, "exchanges")?.iter().enumerate() {
        if let Some(x) = plan_exchange(b, p, i, e, vhost_of(only_vhost, e))? {
            out.push(x);
        }
    }
    Ok(out)
}

/// An exchange entry in `vhost`: checked, then skipped if it is a system exchange (as
/// RabbitMQ does); an existing exchange must match its type and durability.
fn plan_exchange(
    b: &Broker,
    p: &Plan,
    i: usize,
    e: &Value,
    vhost: String,
) -> Result<Option<PlannedExchange>, DefinitionsError> {
    let name = field(e, "name").unwrap_or("?");
    let label = format!("exchange '{name}' in vhost '{vhost}'");
    let fail = |reason: String| bad("exchanges", i, &label, reason);
    if !vhost_known(b, p, &vhost) {
        return Err(fail(format!("no vhost '{vhost}'")));
    }
    let type_name = field(e, "type").unwrap_or("");
    let kind = ExchangeKind::parse(type_name)
        .ok_or_else(|| fail(format!("unknown exchange type '{type_name}'")))?;
    let meta = ExchangeMeta {
        kind,
        durable: flag(e, "durable", true).map_err(fail)?,
        auto_delete: flag(e, "auto_delete", false).map_err(fail)?,
        internal: flag(e, "internal", false).map_err(fail)?,
        arguments: json_to_table(e.get("arguments").unwrap_or(&Value::Null)),
    };
    if is_system_exchange(name) {
        return Ok(None); // RabbitMQ skips them too.
    }
    if let Some(existing) = b.vhost(&vhost).and_then(|v| v.exchange_meta(name)) {
        if existing.kind != meta.kind || existing.durable != meta.durable {
            return Err(fail("exists with different type or durability".into()));
        }
    }
    Ok(Some((vhost, name.to_string(), meta)))
}

fn plan_queues(
    b: &Broker,
    doc: &Value,
    only_vhost: Option<&str>,
    p: &Plan,
) -> Result<Vec<PlannedQueue>, DefinitionsError> {
    entries(doc, "queues")?
        .iter()
        .enumerate()
        .map(|(i, e)| plan_queue(b, p, i, e, vhost_of(only_vhost, e)))
        .collect()
}

/// A queue entry in `vhost`; an existing queue must match its durable and auto_delete.
fn plan_queue(
    b: &Broker,
    p: &Plan,
    i: usize,
    e: &Value,
    vhost: String,
) -> Result<PlannedQueue, DefinitionsError> {
    let name = field(e, "name").unwrap_or("?");
    let label = format!("queue '{name}' in vhost '{vhost}'");
    let fail = |reason: String| bad("queues", i, &label, reason);
    if !vhost_known(b, p, &vhost) {
        return Err(fail(format!("no vhost '{vhost}'")));
    }
    if name.starts_with("amq.") {
        return Err(fail("reserved prefix 'amq.'".into()));
    }
    let durable = flag(e, "durable", true).map_err(fail)?;
    let auto_delete = flag(e, "auto_delete", false).map_err(fail)?;
    let args = json_to_table(e.get("arguments").unwrap_or(&Value::Null));
    // RabbitMQ (rabbit_definitions:add_queue_int) keeps an existing queue as it is,
    // whatever the file says about its flags or arguments: the import skips it.
    let exists = b.vhost(&vhost).and_then(|v| v.queue(name)).is_some();
    Ok((vhost, name.to_string(), durable, auto_delete, args, exists))
}

fn plan_bindings(
    b: &Broker,
    doc: &Value,
    only_vhost: Option<&str>,
    p: &Plan,
) -> Result<Vec<PlannedBinding>, DefinitionsError> {
    // What the import creates, for bindings that refer to it.
    let new_exchanges: HashSet<(String, String)> = p
        .exchanges
        .iter()
        .map(|(v, n, _)| (v.clone(), n.clone()))
        .collect();
    let new_queues: HashSet<(String, String)> = p
        .queues
        .iter()
        .map(|(v, n, ..)| (v.clone(), n.clone()))
        .collect();
    entries(doc, "bindings")?
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let vhost = vhost_of(only_vhost, e);
            let known = Known {
                b,
                p,
                vh: b.vhost(&vhost),
                vhost: &vhost,
                new_exchanges: &new_exchanges,
                new_queues: &new_queues,
            };
            plan_binding(&known, i, e)
        })
        .collect()
}

/// What a binding's source and destination may refer to: what exists in its vhost and
/// what the import creates.
struct Known<'a> {
    b: &'a Broker,
    p: &'a Plan,
    vh: Option<Arc<VHost>>,
    vhost: &'a str,
    new_exchanges: &'a HashSet<(String, String)>,
    new_queues: &'a HashSet<(String, String)>,
}

impl Known<'_> {
    fn exchange(&self, n: &str) -> bool {
        self.new_exchanges
            .contains(&(self.vhost.to_string(), n.to_string()))
            || self.vh.as_ref().is_some_and(|v| v.has_exchange(n))
            || (n.starts_with("amq.")
                && [
                    "amq.direct",
                    "amq.fanout",
                    "amq.topic",
                    "amq.headers",
                    "amq.match",
                    "amq.rabbitmq.trace",
                ]
                .contains(&n))
    }

    fn queue(&self, n: &str) -> bool {
        self.new_queues
            .contains(&(self.vhost.to_string(), n.to_string()))
            || self.vh.as_ref().is_some_and(|v| v.queue(n).is_some())
    }
}

/// A binding entry: from a named exchange that exists or is created, to such a queue or
/// exchange.
fn plan_binding(known: &Known, i: usize, e: &Value) -> Result<PlannedBinding, DefinitionsError> {
    let source = field(e, "source").unwrap_or("");
    let dest = field(e, "destination").unwrap_or("");
    let vhost = known.vhost;
    let label = format!("binding '{source}' -> '{dest}' in vhost '{vhost}'");
    let fail = |reason: String| bad("bindings", i, &label, reason);
    if !vhost_known(known.b, known.p, vhost) {
        return Err(fail(format!("no vhost '{vhost}'")));
    }
    if source.is_empty() {
        return Err(fail("cannot bind to the default exchange".into()));
    }
    if !known.exchange(source) {
        return Err(fail(format!("no exchange '{source}'")));
    }
    let destination = match field(e, "destination_type") {
        Some("queue") => {
            if !known.queue(dest) {
                return Err(fail(format!("no queue '{dest}'")));
            }
            Destination::Queue(Arc::from(dest))
        }
        Some("exchange") => {
            if !known.exchange(dest) {
                return Err(fail(format!("no exchange '{dest}'")));
            }
            Destination::Exchange(Arc::from(dest))
        }
        other => {
            return Err(fail(format!(
                "destination_type must be queue or exchange, got {other:?}"
            )))
        }
    };
    let key = field(e, "routing_key").unwrap_or("").to_string();
    let args = json_to_table(e.get("arguments").unwrap_or(&Value::Null));
    Ok((
        vhost.to_string(),
        source.to_string(),
        destination,
        key,
        args,
    ))
}

/// Imports a definitions document (`vhost`: the per-vhost form into that vhost). Nothing
/// is applied unless every entry is valid.
///
/// Each change is recorded before it takes effect, so a failed metadata write stops the
/// import at that entry with [`DefinitionsError::Internal`] naming it. What is left then:
/// the entries applied before it stay, in memory and in the log (an import is not a
/// transaction); the failing entry and all after it are not applied. Policies are
/// re-applied to every vhost either way, so queues obey the policies that did get in.
/// Importing the same file again once the disk is back completes it.
pub fn import(b: &Broker, doc: &Value, vhost: Option<&str>) -> Result<(), DefinitionsError> {
    let p = plan(b, doc, vhost)?;
    let applied = apply_plan(b, p).and_then(|()| import_global_parameters(b, doc));
    for vh in b.vhosts() {
        b.admin.policies.apply(&vh);
    }
    applied
}

/// The file's `global_parameters` (`{name, value}` entries), set as
/// `PUT /api/global-parameters/{name}` sets them; entries without a name are skipped.
fn import_global_parameters(b: &Broker, doc: &Value) -> Result<(), DefinitionsError> {
    let Some(list) = doc.get("global_parameters").and_then(Value::as_array) else {
        return Ok(());
    };
    for e in list {
        let Some(name) = e.get("name").and_then(Value::as_str) else {
            continue;
        };
        let value = e.get("value").cloned().unwrap_or(Value::Null);
        b.set_global_parameter(name, value)
            .map_err(not_recorded(format!("global parameter '{name}'")))?;
    }
    Ok(())
}

/// An operation's failure as an import error: a failed write (500) names the entry it
/// stopped at; other refusals keep their text.
fn not_applied(what: String) -> impl FnOnce(AdminError) -> DefinitionsError {
    move |e| match e {
        AdminError::Internal(reason) => {
            DefinitionsError::Internal(format!("{what} not imported: {reason}"))
        }
        other => DefinitionsError::Invalid(other.to_string()),
    }
}

/// [`not_applied`] for the model's own errors (the cause is logged on the way).
fn not_recorded(what: String) -> impl FnOnce(AmqpError) -> DefinitionsError {
    move |e| not_applied(what)(AdminError::from_amqp(e))
}

/// Applies a checked plan in order, stopping at the first failure (see [`import`]).
fn apply_plan(b: &Broker, p: Plan) -> Result<(), DefinitionsError> {
    for v in &p.vhosts {
        b.admin_add_vhost(v)
            .map_err(not_applied(format!("vhost '{v}'")))?;
    }
    for u in p.users {
        let what = format!("user '{}'", u.name);
        b.put_user(u).map_err(not_recorded(what))?;
    }
    for (u, limits) in p.user_limits {
        b.set_user_limits(&u, limits)
            .map_err(not_recorded(format!("limits of user '{u}'")))?;
    }
    for (u, v, perm) in p.permissions {
        b.set_permission(&u, &v, perm)
            .map_err(not_recorded(format!(
                "permission of user '{u}' in vhost '{v}'"
            )))?;
    }
    for (u, v, tp) in p.topic_permissions {
        let what = format!(
            "topic permission of user '{u}' in vhost '{v}' for exchange '{}'",
            tp.exchange
        );
        b.set_topic_permission(&u, &v, tp)
            .map_err(not_recorded(what))?;
    }
    for (v, limits) in p.vhost_limits {
        b.set_vhost_limits(&v, limits)
            .map_err(not_recorded(format!("limits of vhost '{v}'")))?;
    }
    for pol in p.policies {
        let what = format!("policy '{}' in vhost '{}'", pol.name, pol.vhost);
        b.admin.policies.put(pol).map_err(not_recorded(what))?;
    }
    for (v, name, meta) in p.exchanges {
        b.admin_declare_exchange(&v, &name, meta)
            .map_err(not_applied(format!("exchange '{name}' in vhost '{v}'")))?;
    }
    for (v, name, durable, auto_delete, args, exists) in p.queues {
        if exists {
            continue;
        }
        b.admin_declare_queue(&v, &name, durable, auto_delete, args)
            .map_err(not_applied(format!("queue '{name}' in vhost '{v}'")))?;
    }
    for (v, source, dest, key, args) in p.bindings {
        let what = format!("binding '{source}' -> '{}' in vhost '{v}'", dest.name());
        b.admin_bind(&v, &source, dest, &key, &args, true)
            .map_err(not_applied(what))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::ServerConfig;

    #[test]
    fn bad_entry_is_named_and_nothing_applies() {
        let b = Broker::new(ServerConfig::default());
        let doc = json!({
            "vhosts": [{"name": "new"}],
            "queues": [{"name": "q", "vhost": "new", "durable": true, "auto_delete": false, "arguments": {}}],
            "exchanges": [{"name": "x", "vhost": "new", "type": "nope"}],
        });
        let err = import(&b, &doc, None).err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("exchanges[0] (exchange 'x' in vhost 'new'): unknown exchange type 'nope'")
        );
        assert!(b.vhost("new").is_none(), "nothing was applied");
    }

    #[test]
    fn an_import_whose_write_fails_stops_there() {
        let b = Broker::new(ServerConfig::default());
        let dir = std::env::temp_dir().join(format!(
            "warren-import-failing-{}-{}",
            std::process::id(),
            crate::util::clock::now_ms()
        ));
        let log = crate::persist::MetaLog::failing(&dir).expect("log");
        assert!(b.persistence.attach_log(log).is_ok());
        let doc = json!({
            "users": [{"name": "u", "password": "pw", "tags": ""}],
            "vhosts": [{"name": "new"}],
            "queues": [{"name": "q", "vhost": "new", "durable": true, "auto_delete": false, "arguments": {}}],
        });
        assert_eq!(
            import(&b, &doc, None),
            Err(DefinitionsError::Internal(
                "vhost 'new' not imported: cannot record metadata".into()
            ))
        );
        assert!(b.vhost("new").is_none(), "the failing entry is not applied");
        assert!(b.user("u").is_none(), "nor those after it");
        // The same for the model's own changes (users, permissions, policies).
        let doc = json!({"users": [{"name": "u", "password": "pw", "tags": ""}]});
        assert_eq!(
            import(&b, &doc, None),
            Err(DefinitionsError::Internal(
                "user 'u' not imported: cannot record metadata".into()
            ))
        );
        let doc =
            json!({"policies": [{"name": "p", "pattern": ".*", "definition": {"max-length": 1}}]});
        assert!(matches!(
            import(&b, &doc, Some("/")),
            Err(DefinitionsError::Internal(_))
        ));
        assert!(b.admin.policies.get("/", "p").is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn limits_round_trip_in_rabbitmqs_shape() {
        let a = Broker::new(ServerConfig::default());
        // As RabbitMQ 3.10.8 exports them (tests/fixtures/limits/rabbitmq_3.10.8.json).
        let doc = json!({
            "users": [{"name": "lu", "password_hash": "", "hashing_algorithm": HASHING_ALGORITHM,
                       "tags": [], "limits": {"max-channels": 4}}],
            "vhosts": [{"name": "lv"}],
            "parameters": [{"value": {"max-queues": 3, "max-connections": 5}, "vhost": "lv",
                            "component": "vhost-limits", "name": "limits"}],
        });
        assert_eq!(import(&a, &doc, None), Ok(()));
        let out = export(&a, None);
        assert_eq!(out["parameters"], doc["parameters"]);
        let lu = out["users"]
            .as_array()
            .and_then(|u| u.iter().find(|u| u["name"] == "lu"));
        assert_eq!(lu.map(|u| &u["limits"]), Some(&json!({"max-channels": 4})));
        let b = Broker::new(ServerConfig::default());
        assert_eq!(import(&b, &out, None), Ok(()));
        assert_eq!(export(&b, None)["parameters"], doc["parameters"]);
        assert_eq!(b.user_limits("lu").to_json(), json!({"max-channels": 4}));
        // The per-vhost export keeps the parameter's vhost, as RabbitMQ's does.
        assert_eq!(export(&b, Some("lv"))["parameters"], doc["parameters"]);
        // A vhosts entry's limits are applied rather than dropped.
        let doc = json!({"vhosts": [{"name": "v2", "limits": {"max-queues": 1}}]});
        assert_eq!(import(&b, &doc, None), Ok(()));
        assert_eq!(b.queue_limit("v2"), Some(1));
    }

    #[test]
    fn what_cannot_be_applied_fails_the_import() {
        let b = Broker::new(ServerConfig::default());
        let cases = [
            (
                json!({"vhosts": [{"name": "n1"}], "parameters": [{"vhost": "/", "component": "federation-upstream", "name": "up", "value": {"uri": "amqp://x"}}]}),
                "parameters[0] (//federation-upstream/up): component federation-upstream not found",
            ),
            (
                json!({"vhosts": [{"name": "n1"}], "parameters": [{"vhost": "/", "component": "vhost-limits", "name": "limits", "value": {"max-bogus": 1}}]}),
                "parameters[0] (//vhost-limits/limits): Unrecognised terms [{<<\"max-bogus\">>,1}] in limits",
            ),
            (
                json!({"vhosts": [{"name": "n1"}], "parameters": [{"vhost": "/", "component": "vhost-limits", "name": "limits", "value": {"max-queues": "x"}}]}),
                "parameters[0] (//vhost-limits/limits): max-queues should be a number, actually was <<\"x\">>",
            ),
            (
                json!({"vhosts": [{"name": "n1"}], "users": [{"name": "u", "password": "p", "tags": "", "limits": {"max-queues": 1}}]}),
                "users[0] (u): Unrecognised terms [{<<\"max-queues\">>,1}] in user-limits",
            ),
            (
                json!({"vhosts": [{"name": "n1", "limits": {"max-channels": 1}}]}),
                "vhosts[0] (n1): Unrecognised terms [{<<\"max-channels\">>,1}] in limits",
            ),
        ];
        for (doc, want) in cases {
            let err = import(&b, &doc, None).err().map(|e| e.to_string());
            assert_eq!(err.as_deref(), Some(want));
            assert!(b.vhost("n1").is_none(), "nothing was applied");
        }
    }

    #[test]
    fn queues_beyond_max_queues_abort_the_import() {
        let b = Broker::new(ServerConfig::default());
        let queue = |n: &str| json!({"name": n, "vhost": "/", "durable": true, "auto_delete": false, "arguments": {}});
        let doc = json!({
            "parameters": [{"vhost": "/", "component": "vhost-limits", "name": "limits", "value": {"max-queues": 1}}],
            "queues": [queue("a"), queue("b")],
        });
        let err = import(&b, &doc, None).err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("Adding 2 queue(s) to virtual host \"/\" would exceed the limit of 1 queue(s).\n\nThis virtual host currently has 0 queue(s) defined.\n\nImport aborted!")
        );
        assert_eq!(b.queue_limit("/"), None, "nothing was applied");
        let doc = json!({
            "parameters": [{"vhost": "/", "component": "vhost-limits", "name": "limits", "value": {"max-queues": 1}}],
            "queues": [queue("a")],
        });
        assert_eq!(import(&b, &doc, None), Ok(()));
        // Importing it again adds nothing: the queue exists.
        assert_eq!(import(&b, &doc, None), Ok(()));
    }

    #[test]
    fn export_import_round_trip() {
        let a = Broker::new(ServerConfig::default());
        let doc = json!({
            "users": [{"name": "u", "password_hash": crate::model::auth::hash_password("pw").unwrap(),
                       "hashing_algorithm": HASHING_ALGORITHM, "tags": "management"}],
            "vhosts": [{"name": "v"}],
            "permissions": [{"user": "u", "vhost": "v", "configure": "^c", "write": ".*", "read": ""}],
            "topic_permissions": [{"user": "u", "vhost": "v", "exchange": "x", "write": "^{username}", "read": ""}],
            "policies": [{"vhost": "v", "name": "p", "pattern": "^q", "apply-to": "queues",
                          "definition": {"max-length": 3}, "priority": 1}],
            "exchanges": [{"name": "x", "vhost": "v", "type": "topic", "durable": true,
                           "auto_delete": false, "internal": false, "arguments": {}}],
            "queues": [{"name": "q", "vhost": "v", "durable": true, "auto_delete": false,
                        "arguments": {"x-max-length": 10}}],
            "bindings": [{"source": "x", "vhost": "v", "destination": "q", "destination_type": "queue",
                          "routing_key": "a.#", "arguments": {}}],
        });
        assert_eq!(import(&a, &doc, None), Ok(()));
        assert!(a.authenticate("u", "pw", [127, 0, 0, 1].into()).is_ok());
        let out = export(&a, None);
        let b = Broker::new(ServerConfig::default());
        assert_eq!(import(&b, &out, None), Ok(()));
        let again = export(&b, None);
        for section in [
            "vhosts",
            "permissions",
            "topic_permissions",
            "policies",
            "queues",
            "exchanges",
            "bindings",
        ] {
            assert_eq!(out[section], again[section], "{section}");
        }
        assert_eq!(out["users"], again["users"]);
        assert_eq!(
            out["topic_permissions"],
            json!([{"user": "u", "vhost": "v", "exchange": "x", "write": "^{username}", "read": ""}])
        );
    }
}
