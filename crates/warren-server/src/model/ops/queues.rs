//! Declaring and deleting queues.

use std::sync::{atomic::Ordering, Arc};

use amq_protocol::types::FieldTable;

use crate::{
    model::{
        args::QueueKind,
        broker::Broker,
        equivalence::{check_args_equivalent, check_flag, EQUIVALENCE_ARGS},
        limits::queue_limit_reached,
        queue::{Queue, QueueDecl},
        vhost::{DeletedQueue, VHost},
    },
    persist::{encode_args, MetaOp},
    util::error::{AmqpError, AmqpResult},
};

/// A queue declaration, whoever makes it.
#[derive(Debug, Clone, Copy)]
pub struct QueueSpec<'a> {
    pub name: &'a str,
    /// The broker chose the name (`amq.gen-...`) for an empty one in queue.declare.
    pub server_named: bool,
    pub durable: bool,
    pub auto_delete: bool,
    /// The declaring connection, for an exclusive queue.
    pub exclusive_owner: Option<u64>,
    pub arguments: &'a FieldTable,
}

/// What a declaration did.
#[derive(Debug, Clone)]
pub enum Declared {
    Created(Arc<Queue>),
    /// It existed with equivalent properties.
    Existing(Arc<Queue>),
}

impl Declared {
    pub fn queue(&self) -> &Arc<Queue> {
        match self {
            Declared::Created(q) | Declared::Existing(q) => q,
        }
    }

    pub fn created(&self) -> bool {
        matches!(self, Declared::Created(_))
    }
}

/// `RESOURCE_LOCKED` for an exclusive queue of another connection (or an exclusivity
/// mismatch), RabbitMQ's text.
pub fn locked(name: &str, vhost: &str) -> AmqpError {
    AmqpError::resource_locked(format_args!(
        "cannot obtain exclusive access to locked queue '{name}' in vhost '{vhost}'. It could be originally declared on another connection or the exclusive property value does not match that of the original declaration."
    ))
}

/// Names starting with `amq.` are reserved for the broker (checked before permissions).
pub fn check_queue_name(name: &str) -> AmqpResult<()> {
    if name.starts_with("amq.") {
        return Err(AmqpError::access_refused(format_args!(
            "queue name '{name}' contains reserved prefix 'amq.*'"
        )));
    }
    Ok(())
}

/// What RabbitMQ 3.10's `rabbit_quorum_queue:declare` refuses (arguments are checked
/// by [`args::queue_settings`]).
fn check_quorum_declare(spec: &QueueSpec, what: &str) -> AmqpResult<()> {
    for (refused, property) in [
        (spec.auto_delete, "auto-delete"),
        (spec.exclusive_owner.is_some(), "exclusive-owner"),
        (!spec.durable, "non-durable"),
    ] {
        if refused {
            return Err(AmqpError::precondition(format_args!(
                "invalid property '{property}' for {what}"
            )));
        }
    }
    Ok(())
}

/// Declares a queue, or checks an existing one for equivalence (RabbitMQ's
/// `queue.declare` without `passive`). The name is final: server-named queues are
/// named by the caller (`server_named`); other reserved `amq.` names are refused here.
pub fn declare_queue(broker: &Broker, vhost: &Arc<VHost>, spec: QueueSpec) -> AmqpResult<Declared> {
    let name = spec.name;
    if !spec.server_named {
        check_queue_name(name)?;
    }
    if let Some(existing) = vhost.queue(name) {
        check_equivalent(&existing, &spec, &vhost.name)?;
        existing.touch();
        return Ok(Declared::Existing(existing));
    }
    let what = format!("queue '{name}' in vhost '{}'", vhost.name);
    let settings = broker.queue_settings_with_policy(&vhost.name, name, spec.arguments)?;
    if matches!(settings.kind, QueueKind::Quorum | QueueKind::Stream) {
        // rabbit_stream_queue:declare runs the same checks, in the same order.
        check_quorum_declare(&spec, &what)?;
    }
    let queue = Queue::new(
        QueueDecl {
            name: Arc::from(name),
            durable: spec.durable,
            auto_delete: spec.auto_delete,
            exclusive_owner: spec.exclusive_owner,
            arguments: spec.arguments.clone(),
            settings,
            // Every queue gets a message-store id once the store is open: durable ones
            // for persistence, all of them for paging bodies out. The others are marked,
            // so that recovery drops what they held instead of keeping it as orphans.
            store_id: vhost.persistence.is_enabled().then(|| {
                let id = vhost.persistence.next_queue_id();
                if spec.durable && spec.exclusive_owner.is_none() {
                    id
                } else {
                    id | warren_journal::QueueId::TRANSIENT_BIT
                }
            }),
        },
        vhost,
    );
    if queue.is_stream {
        let root = match vhost.persistence.stream_root.get() {
            Some(root) => root.clone(),
            None => std::env::temp_dir().join("warren-streams"),
        };
        if let Err(e) = queue.open_stream(&root) {
            queue.deleted.store(true, Ordering::Release);
            return Err(AmqpError::internal("cannot open the stream's log").caused_by(e));
        }
    }
    {
        let mut topo = vhost.topology.write();
        // Another declaration may have won the race since the look above.
        if let Some(existing) = topo.queues.get(name).cloned() {
            drop(topo);
            // Ours never existed: its x-expires timer must not fire.
            queue.deleted.store(true, Ordering::Release);
            queue.drop_stream();
            check_equivalent(&existing, &spec, &vhost.name)?;
            return Ok(Declared::Existing(existing));
        }
        // The vhost's max-queues, counted under the lock that adds the queue.
        if let Some(max) = broker.queue_limit(&vhost.name) {
            if topo.queues.len() as u64 >= max {
                drop(topo);
                queue.deleted.store(true, Ordering::Release);
                queue.drop_stream();
                return Err(queue_limit_reached(name, &vhost.name, max));
            }
        }
        topo.queues.insert(queue.name.clone(), queue.clone());
    }
    if spec.durable && spec.exclusive_owner.is_none() {
        let op = MetaOp::Queue {
            vhost: vhost.name.to_string(),
            name: name.to_string(),
            auto_delete: spec.auto_delete,
            arguments: encode_args(spec.arguments),
            id: queue.store_id.unwrap_or(0),
        };
        if let Err(e) = vhost.record(vec![op]) {
            discard(vhost, &queue);
            return Err(e);
        }
    }
    broker.admin.queues_declared.fetch_add(1, Ordering::Relaxed); // management stats
    broker.admin.events.emit("queue.created", |h| {
        h.str("user_who_performed_action", crate::model::events::actor())
            .bool("exclusive", spec.exclusive_owner.is_some())
            .str(
                "owner_pid",
                spec.exclusive_owner
                    .map(|c| broker.admin.events.pid(c, 0))
                    .unwrap_or_default(),
            )
            .erl_table("arguments", spec.arguments)
            .bool("auto_delete", spec.auto_delete)
            .bool("durable", spec.durable)
            .str("name", name)
            .str("vhost", &*vhost.name);
    });
    Ok(Declared::Created(queue))
}

/// Undoes a declaration whose record failed: nobody was told of the queue, so it goes
/// without a trace in memory. Its deletion is recorded if the disk takes it now, in case
/// the failed record reached the file before its sync failed.
fn discard(vhost: &VHost, queue: &Arc<Queue>) {
    {
        let mut topo = vhost.topology.write();
        if topo
            .queues
            .get(&queue.name)
            .is_some_and(|q| Arc::ptr_eq(q, queue))
        {
            topo.remove_queue(&queue.name);
        }
    }
    queue.deleted.store(true, Ordering::Release);
    queue.drop_stream();
    let _ = vhost.record(vhost.queue_deleted_op(queue));
}

/// RabbitMQ's redeclaration checks: exclusivity, then durable, auto-delete and the
/// arguments it compares.
fn check_equivalent(existing: &Queue, spec: &QueueSpec, vhost: &str) -> AmqpResult<()> {
    let name = &*existing.name;
    let exclusive_differs = existing.exclusive_owner.is_some() != spec.exclusive_owner.is_some();
    let other_owner = matches!(
        (existing.exclusive_owner, spec.exclusive_owner),
        (Some(owner), Some(asker)) if owner != asker
    );
    if exclusive_differs || other_owner {
        return Err(locked(name, vhost));
    }
    let what = format!("queue '{name}'");
    check_flag("durable", spec.durable, existing.durable, &what, vhost)?;
    check_flag(
        "auto_delete",
        spec.auto_delete,
        existing.auto_delete,
        &what,
        vhost,
    )?;
    check_args_equivalent(
        &existing.arguments,
        spec.arguments,
        &what,
        vhost,
        EQUIVALENCE_ARGS,
    )
}

/// Deletes a queue: its deletion is recorded before it leaves the topology (see
/// [`VHost::delete_queue`]). `None` when there is no such queue.
pub fn delete_queue(
    vhost: &VHost,
    name: &str,
    local: Option<u64>,
) -> AmqpResult<Option<DeletedQueue>> {
    vhost.delete_queue(name, local)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        model::{config::ServerConfig, ops::exchanges::declare_exchange, vhost::ExchangeMeta},
        persist::meta::MetaLog,
        util::error::ReplyCode,
    };
    use warren_router::ExchangeKind;

    #[test]
    fn a_change_whose_record_fails_is_rolled_back() {
        let broker = Broker::new(ServerConfig::default());
        let dir = std::env::temp_dir().join(format!(
            "warren-ops-rollback-{}-{}",
            std::process::id(),
            crate::util::clock::now_ms()
        ));
        let log = MetaLog::failing(&dir).expect("log");
        assert!(broker.persistence.attach_log(log).is_ok());
        let vhost = broker.vhost("/").expect("default vhost");
        let args = FieldTable::default();
        let spec = |durable| QueueSpec {
            name: "q",
            server_named: false,
            durable,
            auto_delete: false,
            exclusive_owner: None,
            arguments: &args,
        };
        let err = declare_queue(&broker, &vhost, spec(true)).expect_err("not recorded");
        assert_eq!(err.code, ReplyCode::InternalError);
        assert!(err.cause.is_some(), "the I/O error is kept for the log");
        assert!(vhost.queue("q").is_none(), "rolled back");
        // A transient queue needs no record.
        assert!(declare_queue(&broker, &vhost, spec(false)).is_ok_and(|d| d.created()));
        // Nor can a queue be deleted when its deletion cannot be recorded.
        let meta = |durable| ExchangeMeta {
            kind: ExchangeKind::Direct,
            durable,
            auto_delete: false,
            internal: false,
            arguments: FieldTable::default(),
        };
        let err = declare_exchange(&broker, &vhost, "x", meta(true)).expect_err("not recorded");
        assert_eq!(err.code, ReplyCode::InternalError);
        assert!(!vhost.has_exchange("x"), "rolled back");
        assert_eq!(
            declare_exchange(&broker, &vhost, "x", meta(false)),
            Ok(true)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
