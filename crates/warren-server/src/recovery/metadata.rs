//! Replays the durable metadata into a broker at start: the snapshot and the log, through
//! the same topology code the channel uses, so cascades (auto-delete exchanges losing
//! their last binding) replay exactly; then writes the state back as a fresh snapshot.

use std::{io, path::Path, sync::Arc};

use tracing::warn;
use warren_router::{Destination, ExchangeKind};

use crate::{
    model::broker::Broker,
    model::limits::{LimitScope, Limits},
    model::queue::{Queue, QueueDecl},
    model::vhost::ExchangeMeta,
    persist::meta::{decode_args, encode_args, MetaLog, MetaOp},
    util::error::AmqpResult,
};

/// Applies one change to the broker's topology, as at declare time. Replay runs before
/// the log is attached, so the changes it makes record nothing and cannot fail on a
/// write; an error is still passed on rather than dropped.
pub fn apply(broker: &Broker, op: &MetaOp) -> AmqpResult<()> {
    match op {
        MetaOp::Vhost { name } => {
            broker.add_vhost(name)?;
        }
        MetaOp::DeleteVhost { name } => {
            broker.delete_vhost(name)?;
        }
        MetaOp::Exchange {
            vhost,
            name,
            kind,
            auto_delete,
            internal,
            arguments,
        } => apply_exchange(
            broker,
            vhost,
            name,
            kind,
            *auto_delete,
            *internal,
            arguments,
        )?,
        MetaOp::DeleteExchange { vhost, name } => {
            if let Some(v) = broker.vhost(vhost) {
                v.topology.write().remove_exchange(name);
            }
        }
        MetaOp::Queue {
            vhost,
            name,
            auto_delete,
            arguments,
            id,
        } => apply_queue(broker, vhost, name, *auto_delete, arguments, *id)?,
        MetaOp::DeleteQueue { vhost, name } => {
            if let Some(v) = broker.vhost(vhost) {
                v.topology.write().remove_queue(name);
            }
        }
        MetaOp::Bind {
            vhost,
            source,
            destination,
            to_queue,
            key,
            arguments,
        } => apply_bind(
            broker,
            vhost,
            source,
            destination_of(destination, *to_queue),
            key,
            arguments,
        ),
        MetaOp::Unbind {
            vhost,
            source,
            destination,
            to_queue,
            key,
            arguments,
        } => apply_unbind(
            broker,
            vhost,
            source,
            destination_of(destination, *to_queue),
            key,
            arguments,
        ),
        _ => apply_settings(broker, op)?,
    }
    Ok(())
}

/// Users, permissions, limits, policies and parameters (what [`apply`] leaves: the
/// topology is its own).
fn apply_settings(broker: &Broker, op: &MetaOp) -> AmqpResult<()> {
    match op {
        MetaOp::User {
            name,
            password_hash,
            hashing_algorithm,
            tags,
        } => {
            broker.put_user(crate::model::broker::User {
                name: name.clone(),
                password_hash: password_hash.clone(),
                hashing_algorithm: hashing_algorithm.clone(),
                tags: tags.clone(),
            })?;
        }
        MetaOp::DeleteUser { name } => {
            broker.delete_user(name)?;
        }
        MetaOp::Permission {
            user,
            vhost,
            configure,
            write,
            read,
        } => apply_permission(broker, user, vhost, configure, write, read)?,
        MetaOp::ClearPermission { user, vhost } => {
            broker.clear_permission(user, vhost)?;
        }
        MetaOp::TopicPermission { .. } | MetaOp::ClearTopicPermission { .. } => {
            apply_topic_op(broker, op)?;
        }
        MetaOp::VhostLimits { vhost, limits } => {
            let limits = Limits::from_stored(LimitScope::Vhost, limits);
            broker.set_vhost_limits(vhost, limits)?;
        }
        MetaOp::UserLimits { user, limits } => {
            let limits = Limits::from_stored(LimitScope::User, limits);
            broker.set_user_limits(user, limits)?;
        }
        MetaOp::Policy {
            vhost,
            name,
            policy,
        } => apply_policy(broker, vhost, name, policy)?,
        MetaOp::DeletePolicy { vhost, name } => {
            broker.admin.policies.remove(vhost, name)?;
        }
        MetaOp::GlobalParameter { name, value } => {
            // A value that no longer parses is kept as the text it was.
            let value = serde_json::from_str(value)
                .unwrap_or_else(|_| serde_json::Value::String(value.clone()));
            broker.set_global_parameter(name, value)?;
        }
        MetaOp::ClearGlobalParameter { name } => {
            broker.clear_global_parameter(name)?;
        }
        MetaOp::OperatorPolicy {
            vhost,
            name,
            policy,
        } => {
            let parsed = serde_json::from_str(policy)
                .map_err(|e| e.to_string())
                .and_then(|v| crate::model::params::operator_policy_from_json(vhost, name, &v));
            match parsed {
                Ok(p) => {
                    broker.put_operator_policy(p)?;
                }
                Err(e) => warn!(%vhost, %name, error = %e, "operator policy not recovered"),
            }
        }
        MetaOp::DeleteOperatorPolicy { vhost, name } => {
            broker.delete_operator_policy(vhost, name)?;
        }
        // Vhosts, exchanges, queues and bindings: applied by `apply`.
        _ => {}
    }
    Ok(())
}

/// A stored permission; one whose patterns no longer compile is skipped.
fn apply_permission(
    broker: &Broker,
    user: &str,
    vhost: &str,
    configure: &str,
    write: &str,
    read: &str,
) -> AmqpResult<()> {
    match crate::model::auth::Permission::new(configure, write, read) {
        Ok(p) => {
            broker.set_permission(user, vhost, p)?;
        }
        Err(e) => warn!(user = %user, vhost = %vhost, error = ?e, "stored permission skipped"),
    }
    Ok(())
}

/// A stored topic permission; one whose patterns no longer compile is skipped.
fn apply_topic_permission(
    broker: &Broker,
    user: &str,
    vhost: &str,
    exchange: &str,
    write: &str,
    read: &str,
) -> AmqpResult<()> {
    match crate::model::auth::TopicPermission::new(user, vhost, exchange, write, read) {
        Ok(p) => {
            broker.set_topic_permission(user, vhost, p)?;
        }
        Err(e) => {
            warn!(user = %user, vhost = %vhost, exchange = %exchange, error = ?e, "stored topic permission skipped")
        }
    }
    Ok(())
}

/// A topic permission's record or its clearing.
fn apply_topic_op(broker: &Broker, op: &MetaOp) -> AmqpResult<()> {
    match op {
        MetaOp::TopicPermission {
            user,
            vhost,
            exchange,
            write,
            read,
        } => apply_topic_permission(broker, user, vhost, exchange, write, read),
        MetaOp::ClearTopicPermission {
            user,
            vhost,
            exchange,
        } => broker
            .clear_topic_permissions(user, vhost, exchange.as_deref())
            .map(drop),
        _ => Ok(()),
    }
}

/// The records of every topic permission, for the snapshot.
fn topic_permission_snapshot(broker: &Broker) -> impl Iterator<Item = MetaOp> {
    broker
        .topic_permissions()
        .into_iter()
        .map(|(user, vhost, tp)| MetaOp::TopicPermission {
            user,
            vhost,
            exchange: tp.exchange,
            write: tp.write.source,
            read: tp.read.source,
        })
}

/// A stored policy (its management JSON); one that no longer parses is skipped.
fn apply_policy(broker: &Broker, vhost: &str, name: &str, policy: &str) -> AmqpResult<()> {
    let parsed = serde_json::from_str::<serde_json::Value>(policy)
        .map_err(|e| e.to_string())
        .and_then(|v| crate::model::policy::Policy::from_json(vhost, name, &v));
    match parsed {
        Ok(p) => {
            broker.admin.policies.put(p)?;
        }
        Err(e) => warn!(policy = %name, error = %e, "stored policy skipped"),
    }
    Ok(())
}

/// A durable exchange, unless one of that name exists; one of an unknown type is skipped.
fn apply_exchange(
    broker: &Broker,
    vhost: &str,
    name: &str,
    kind: &str,
    auto_delete: bool,
    internal: bool,
    arguments: &str,
) -> AmqpResult<()> {
    let Some(kind) = ExchangeKind::parse(kind) else {
        warn!(exchange = %name, kind = %kind, "stored exchange of unknown type skipped");
        return Ok(());
    };
    let v = broker.add_vhost(vhost)?;
    let mut topo = v.topology.write();
    if !topo.exchanges.contains_key(name) {
        topo.insert_exchange(
            name,
            ExchangeMeta {
                kind,
                durable: true,
                auto_delete,
                internal,
                arguments: decode_args(arguments),
            },
        );
    }
    Ok(())
}

/// A durable queue, unless one of that name exists, with its store id (a new one for
/// files written before ids were stored) and the settings its arguments and the policies
/// give it now (defaults if the arguments are no longer valid).
fn apply_queue(
    broker: &Broker,
    vhost: &str,
    name: &str,
    auto_delete: bool,
    arguments: &str,
    id: u64,
) -> AmqpResult<()> {
    let v = broker.add_vhost(vhost)?;
    if v.queue(name).is_some() {
        return Ok(());
    }
    let id = if id == 0 {
        broker.persistence.next_queue_id()
    } else {
        broker.persistence.saw_queue_id(id);
        id
    };
    let arguments = decode_args(arguments);
    let settings = broker.queue_settings_with_policy(vhost, name, &arguments).unwrap_or_else(|e| {
        warn!(queue = %name, error = %e.text, "stored queue arguments no longer valid; using defaults");
        Default::default()
    });
    let q = Queue::new(
        QueueDecl {
            name: Arc::from(name),
            durable: true,
            auto_delete,
            exclusive_owner: None,
            arguments,
            settings,
            store_id: Some(id),
        },
        &v,
    );
    v.topology.write().queues.insert(Arc::from(name), q);
    Ok(())
}

fn destination_of(name: &str, to_queue: bool) -> Destination {
    if to_queue {
        Destination::Queue(Arc::from(name))
    } else {
        Destination::Exchange(Arc::from(name))
    }
}

/// A binding, if its source and destination exist.
fn apply_bind(
    broker: &Broker,
    vhost: &str,
    source: &str,
    dest: Destination,
    key: &str,
    arguments: &str,
) {
    let Some(v) = broker.vhost(vhost) else { return };
    let mut topo = v.topology.write();
    let exists = match &dest {
        Destination::Queue(q) => topo.queues.contains_key(q),
        Destination::Exchange(x) => topo.exchanges.contains_key(x),
    };
    let Some(entry) = topo.exchanges.get_mut(source) else {
        return;
    };
    if exists {
        entry.router.table.bind(dest, key, &decode_args(arguments));
    }
}

/// Removes a binding; an auto-delete source left without bindings goes too.
fn apply_unbind(
    broker: &Broker,
    vhost: &str,
    source: &str,
    dest: Destination,
    key: &str,
    arguments: &str,
) {
    let Some(v) = broker.vhost(vhost) else { return };
    let mut topo = v.topology.write();
    let Some(entry) = topo.exchanges.get_mut(source) else {
        return;
    };
    entry
        .router
        .table
        .unbind(&dest, key, &decode_args(arguments));
    topo.maybe_auto_delete(source);
}

/// The durable state of the broker as changes that recreate it.
pub fn snapshot(broker: &Broker) -> Vec<MetaOp> {
    let mut ops = Vec::new();
    for u in broker.users() {
        ops.push(MetaOp::User {
            name: u.name,
            password_hash: u.password_hash,
            hashing_algorithm: u.hashing_algorithm,
            tags: u.tags,
        });
    }
    let existing: std::collections::HashSet<String> =
        broker.users().into_iter().map(|u| u.name).collect();
    // The default user is created at every start; if it was deleted, say so.
    if !existing.contains(&broker.config.default_user) {
        ops.push(MetaOp::DeleteUser {
            name: broker.config.default_user.clone(),
        });
    }
    // So is the default vhost.
    if broker.vhost(&broker.config.default_vhost).is_none() {
        ops.push(MetaOp::DeleteVhost {
            name: broker.config.default_vhost.clone(),
        });
    }
    for v in broker.vhosts() {
        vhost_snapshot(&v, &mut ops);
    }
    for p in broker.admin.policies.list(None) {
        ops.push(MetaOp::Policy {
            vhost: p.vhost.clone(),
            name: p.name.clone(),
            policy: p.to_json().to_string(),
        });
    }
    for (user, vhost, p) in broker.permissions() {
        ops.push(MetaOp::Permission {
            user,
            vhost,
            configure: p.configure.source.clone(),
            write: p.write.source.clone(),
            read: p.read.source.clone(),
        });
    }
    ops.extend(topic_permission_snapshot(broker));
    for (vhost, limits) in broker.all_vhost_limits() {
        ops.push(MetaOp::VhostLimits {
            vhost,
            limits: limits.to_stored(),
        });
    }
    for (user, limits) in broker.all_user_limits() {
        ops.push(MetaOp::UserLimits {
            user,
            limits: limits.to_stored(),
        });
    }
    ops.extend(crate::model::params::snapshot(broker));
    ops
}

/// A vhost and its durable exchanges, queues and bindings, in a stable order.
fn vhost_snapshot(v: &crate::model::vhost::VHost, ops: &mut Vec<MetaOp>) {
    let vhost = v.name.to_string();
    ops.push(MetaOp::Vhost {
        name: vhost.clone(),
    });
    let topo = v.topology.read();
    let mut exchanges: Vec<_> = topo
        .exchanges
        .iter()
        .filter(|(n, e)| e.meta.durable && !n.starts_with("amq.") && !n.is_empty())
        .collect();
    exchanges.sort_by(|a, b| a.0.cmp(b.0));
    for (name, e) in &exchanges {
        ops.push(MetaOp::Exchange {
            vhost: vhost.clone(),
            name: name.to_string(),
            kind: e.meta.kind.as_str().into(),
            auto_delete: e.meta.auto_delete,
            internal: e.meta.internal,
            arguments: encode_args(&e.meta.arguments),
        });
    }
    let mut queues: Vec<_> = topo
        .queues
        .values()
        .filter(|q| q.durable && q.exclusive_owner.is_none())
        .collect();
    queues.sort_by(|a, b| a.name.cmp(&b.name));
    for q in queues {
        ops.push(MetaOp::Queue {
            vhost: vhost.clone(),
            name: q.name.to_string(),
            auto_delete: q.auto_delete,
            arguments: encode_args(&q.arguments),
            id: q.store_id.unwrap_or(0),
        });
    }
    let mut sources: Vec<_> = topo.exchanges.iter().collect();
    sources.sort_by(|a, b| a.0.cmp(b.0));
    for (source, e) in sources {
        if !e.meta.durable {
            continue;
        }
        for b in e.router.table.bindings() {
            let (to_queue, durable) = match &b.destination {
                Destination::Queue(q) => (
                    true,
                    topo.queues
                        .get(q)
                        .is_some_and(|q| q.durable && q.exclusive_owner.is_none()),
                ),
                Destination::Exchange(x) => {
                    (false, topo.exchanges.get(x).is_some_and(|x| x.meta.durable))
                }
            };
            if durable {
                ops.push(MetaOp::Bind {
                    vhost: vhost.clone(),
                    source: source.to_string(),
                    destination: b.destination.name().to_string(),
                    to_queue,
                    key: b.routing_key.to_string(),
                    arguments: encode_args(&b.arguments),
                });
            }
        }
    }
}

/// Loads the durable metadata from `dir` into `broker`, writes a compacted snapshot and
/// attaches the log so later changes are recorded. Returns how many changes it replayed.
///
/// Damaged metadata stops the start, as a damaged schema stops RabbitMQ: the error names
/// each file, offset and what it held, and nothing in `dir` is changed. With `repair`,
/// the damaged files are first copied aside (`*.damaged-<ms>`), then what is readable is
/// kept and the rest reported. A directory that holds metadata gets no default user or
/// vhost beyond what it recorded.
pub fn open(broker: &Broker, dir: &Path, repair: bool) -> io::Result<usize> {
    let (log, contents) = MetaLog::open(dir)?;
    if !contents.damage.is_empty() {
        if !repair {
            let found: Vec<String> = contents.damage.iter().map(ToString::to_string).collect();
            return Err(io::Error::other(format!(
                "{}; nothing was changed. Start with --repair-metadata (WARREN_REPAIR_METADATA=1) to keep what is readable; the damaged files are copied aside first",
                found.join("; ")
            )));
        }
        let kept = log.keep_damaged(&contents.damage)?;
        for damage in &contents.damage {
            warn!(%damage, "repairing metadata: left out");
        }
        warn!(copies = ?kept, "damaged metadata files kept for inspection");
    }
    if !contents.ops.is_empty() || !contents.damage.is_empty() {
        broker.drop_defaults();
    }
    for op in &contents.ops {
        apply(broker, op).map_err(|e| {
            io::Error::other(format!(
                "replaying the metadata: {} ({})",
                e.text,
                e.cause.as_deref().unwrap_or("no cause")
            ))
        })?;
    }
    // Policies may have been replayed after the queues they apply to.
    for vhost in broker.vhosts() {
        broker.admin.policies.apply(&vhost);
    }
    log.compact(&snapshot(broker))?;
    let _ = broker.persistence.attach_log(log);
    Ok(contents.ops.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::ServerConfig;
    use crate::persist::meta::{LOG, SNAPSHOT};
    use amq_protocol::types::AMQPValue;
    use amq_protocol::types::FieldTable;
    use std::{
        fs::{self, OpenOptions},
        io::Write,
        path::PathBuf,
    };

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "warren-persist-{tag}-{}-{}",
            std::process::id(),
            crate::util::clock::now_ms()
        ));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn args_table() -> FieldTable {
        let mut t = FieldTable::default();
        t.insert("x-max-priority".into(), AMQPValue::ShortShortUInt(5));
        t.insert("x-message-ttl".into(), AMQPValue::LongInt(1000));
        t
    }

    #[test]
    fn arguments_keep_their_wire_types() {
        let t = args_table();
        assert_eq!(decode_args(&encode_args(&t)), t);
        assert_eq!(decode_args("zz"), FieldTable::default());
    }

    #[test]
    fn changes_survive_a_reopen_and_torn_tails_are_ignored() {
        let dir = temp_dir("reopen");
        let broker = Broker::new(ServerConfig::default());
        open(&broker, &dir, false).expect("open");
        let ops = vec![
            MetaOp::Exchange {
                vhost: "/".into(),
                name: "x".into(),
                kind: "topic".into(),
                auto_delete: false,
                internal: false,
                arguments: encode_args(&FieldTable::default()),
            },
            MetaOp::Queue {
                vhost: "/".into(),
                name: "q".into(),
                auto_delete: false,
                arguments: encode_args(&args_table()),
                id: 42,
            },
            MetaOp::Bind {
                vhost: "/".into(),
                source: "x".into(),
                destination: "q".into(),
                to_queue: true,
                key: "a.#".into(),
                arguments: encode_args(&FieldTable::default()),
            },
        ];
        broker.persistence.record(&ops).expect("record");
        // A crash in the middle of the next append.
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.join(LOG))
            .expect("log");
        f.write_all(b"0123456789abcdef {\"op\":\"delete_qu")
            .expect("write");
        drop(f);

        let again = Broker::new(ServerConfig::default());
        let replayed = open(&again, &dir, false).expect("reopen");
        assert!(replayed >= 3);
        let v = again.vhost("/").expect("vhost");
        let q = v.queue("q").expect("queue restored");
        assert_eq!(q.arguments, args_table());
        assert_eq!(q.settings().config.max_priority, Some(5));
        let topo = v.topology.read();
        let x = topo.exchanges.get("x").expect("exchange restored");
        assert_eq!(x.router.table.bindings().len(), 1);
        drop(topo);
        // The compacted snapshot holds the same state; the log is empty again.
        assert_eq!(fs::metadata(dir.join(LOG)).map(|m| m.len()).ok(), Some(0));
        let snap = snapshot(&again);
        for op in &ops {
            assert!(snap.contains(op), "{op:?} missing from {snap:?}");
        }
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn users_permissions_vhosts_and_policies_survive_a_reopen() {
        use crate::model::{auth::Permission, broker::User, policy::Policy};
        let dir = temp_dir("accounts");
        let broker = Broker::new(ServerConfig::default());
        open(&broker, &dir, false).expect("open");
        let policy = |vhost: &str| {
            let v = serde_json::json!({"pattern": "^q", "definition": {"max-length": 1}});
            Policy::from_json(vhost, "p", &v).expect("policy")
        };
        assert_eq!(broker.create_vhost("v"), Ok(true));
        assert_eq!(broker.create_vhost("gone"), Ok(true));
        assert_eq!(
            broker.put_user(User::with_password("u", "pw", Vec::new()).unwrap()),
            Ok(true)
        );
        assert_eq!(
            broker.set_permission("u", "v", Permission::allow_all()),
            Ok(true)
        );
        assert_eq!(broker.clear_permission("guest", "/"), Ok(true));
        let topic = |x: &str, w: &str| {
            crate::model::auth::TopicPermission::new("u", "v", x, w, ".*").expect("topic")
        };
        assert_eq!(
            broker.set_topic_permission("u", "v", topic("t", "^a")),
            Ok(true)
        );
        assert_eq!(
            broker.set_topic_permission("u", "v", topic("t", "^{username}")),
            Ok(false)
        );
        assert_eq!(
            broker.set_topic_permission("u", "v", topic("gone", "^b")),
            Ok(true)
        );
        assert_eq!(
            broker.clear_topic_permissions("u", "v", Some("gone")),
            Ok(true)
        );
        assert_eq!(
            broker.set_topic_permission("u", "v", topic("t2", "^c")),
            Ok(true)
        );
        assert_eq!(
            broker.set_topic_permission("guest", "v", topic("t", "^c")),
            Ok(true)
        );
        assert_eq!(broker.clear_topic_permissions("guest", "v", None), Ok(true));
        assert_eq!(broker.admin.policies.put(policy("v")), Ok(true));
        assert_eq!(broker.admin.policies.put(policy("gone")), Ok(true));
        assert!(matches!(broker.delete_vhost("gone"), Ok(Some(_))));
        assert!(broker.admin.policies.get("gone", "p").is_none());

        let again = Broker::new(ServerConfig::default());
        open(&again, &dir, false).expect("reopen");
        assert!(again.vhost("v").is_some());
        assert!(again.authenticate("u", "pw", [127, 0, 0, 1].into()).is_ok());
        assert!(again.has_vhost_access("u", "v"));
        let topics: Vec<(String, String, String)> = again
            .topic_permissions()
            .into_iter()
            .map(|(u, v, tp)| (u, v, format!("{}:{}", tp.exchange, tp.write.source)))
            .collect();
        let expect = |x: &str| ("u".to_string(), "v".to_string(), x.to_string());
        assert_eq!(topics, vec![expect("t:^{username}"), expect("t2:^c")]);
        let set = again.topic_permissions_of("u", "v").expect("set");
        assert!(set
            .get("t")
            .is_some_and(|t| t.allows(crate::model::auth::Access::Write, "u.x")));
        assert!(!again.has_vhost_access("guest", "/"));
        assert!(again.admin.policies.get("v", "p").is_some());
        assert!(again.vhost("gone").is_none());
        assert!(
            again.admin.policies.get("gone", "p").is_none(),
            "a deleted vhost's policies stay deleted"
        );
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn limits_survive_a_reopen_and_go_with_their_vhost_or_user() {
        use crate::model::limits::{LimitScope, Limits};
        let dir = temp_dir("limits");
        let broker = Broker::new(ServerConfig::default());
        open(&broker, &dir, false).expect("open");
        let vhost =
            |v: serde_json::Value| Limits::from_json(LimitScope::Vhost, &v).expect("limits");
        let user = |v: serde_json::Value| Limits::from_json(LimitScope::User, &v).expect("limits");
        assert_eq!(broker.create_vhost("v"), Ok(true));
        assert_eq!(broker.create_vhost("gone"), Ok(true));
        let lv = vhost(serde_json::json!({"max-connections": 2, "max-queues": -1}));
        assert!(broker.set_vhost_limits("v", lv.clone()).is_ok());
        assert!(broker.set_vhost_limits("gone", lv.clone()).is_ok());
        assert!(matches!(broker.delete_vhost("gone"), Ok(Some(_))));
        let lu = user(serde_json::json!({"max-channels": 0}));
        assert!(broker.set_user_limits("guest", lu.clone()).is_ok());
        assert!(broker
            .set_user_limits("guest", user(serde_json::json!({"max-channels": 3})))
            .is_ok());
        assert!(broker.set_user_limits("guest", lu.clone()).is_ok());
        assert!(broker
            .put_user(crate::model::broker::User::with_password("u", "pw", Vec::new()).unwrap())
            .is_ok());
        assert!(broker.set_user_limits("u", lu.clone()).is_ok());
        assert_eq!(broker.delete_user("u"), Ok(true));
        drop(broker);

        let again = Broker::new(ServerConfig::default());
        open(&again, &dir, false).expect("reopen");
        assert_eq!(again.all_vhost_limits(), vec![("v".to_string(), lv)]);
        assert_eq!(again.all_user_limits(), vec![("guest".to_string(), lu)]);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn damaged_metadata_stops_the_start_until_repaired() {
        let dir = temp_dir("damaged");
        let broker = Broker::new(ServerConfig::default());
        open(&broker, &dir, false).expect("open");
        assert_eq!(broker.delete_user("guest"), Ok(true));
        let vhost = broker.vhost("/").expect("vhost");
        let args = FieldTable::default();
        let spec = crate::model::ops::queues::QueueSpec {
            name: "keep",
            server_named: false,
            durable: true,
            auto_delete: false,
            exclusive_owner: None,
            arguments: &args,
        };
        crate::model::ops::queues::declare_queue(&broker, &vhost, spec).expect("declare");
        drop(broker);
        // Flip a byte in the snapshot's body.
        let mut data = fs::read(dir.join(SNAPSHOT)).expect("read");
        let at = data.len() / 2;
        data[at] ^= 0x01;
        fs::write(dir.join(SNAPSHOT), &data).expect("write");
        let before = (
            fs::read(dir.join(SNAPSHOT)).ok(),
            fs::read(dir.join(LOG)).ok(),
        );

        let again = Broker::new(ServerConfig::default());
        let err = open(&again, &dir, false).expect_err("refuses");
        assert!(err.to_string().contains("meta.json"), "{err}");
        assert!(err.to_string().contains("--repair-metadata"), "{err}");
        let after = (
            fs::read(dir.join(SNAPSHOT)).ok(),
            fs::read(dir.join(LOG)).ok(),
        );
        assert_eq!(before, after, "the damaged files are untouched");

        let repaired = Broker::new(ServerConfig::default());
        open(&repaired, &dir, true).expect("repairs");
        assert!(
            repaired.user("guest").is_none(),
            "no default user on a directory with metadata"
        );
        let copies = fs::read_dir(&dir)
            .expect("dir")
            .filter_map(Result::ok)
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("meta.json.damaged-")
            })
            .count();
        assert_eq!(copies, 1, "the damaged snapshot is kept aside");
        let _ = fs::remove_dir_all(&dir);
    }
}
