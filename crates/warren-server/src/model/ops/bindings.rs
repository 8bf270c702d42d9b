//! Binding, unbinding and deleting exchanges.

use amq_protocol::types::FieldTable;
use warren_router::{Destination, ExchangeKind};

use crate::{
    model::{
        ops::exchanges::is_default_exchange,
        vhost::{binding_op, VHost},
    },
    util::error::{AmqpError, AmqpResult},
};

fn default_exchange_refused() -> AmqpError {
    AmqpError::access_refused("operation not permitted on the default exchange")
}

fn destination_exists(vhost: &VHost, destination: &Destination) -> bool {
    let topo = vhost.topology.read();
    match destination {
        Destination::Queue(q) => topo.queues.contains_key(q),
        Destination::Exchange(x) => topo.exchanges.contains_key(x),
    }
}

fn missing(vhost: &VHost, destination: &Destination) -> AmqpError {
    match destination {
        Destination::Queue(q) => AmqpError::no_queue(q, &vhost.name),
        Destination::Exchange(x) => AmqpError::no_exchange(x, &vhost.name),
    }
}

/// Binds `destination` to exchange `source` with `key` and `arguments` (a headers
/// exchange's `x-match` is validated). A binding between durable ends is recorded before
/// it takes effect.
pub fn bind(
    vhost: &VHost,
    source: &str,
    destination: &Destination,
    key: &str,
    arguments: &FieldTable,
) -> AmqpResult<()> {
    if is_default_exchange(source) {
        return Err(default_exchange_refused());
    }
    if !destination_exists(vhost, destination) {
        return Err(missing(vhost, destination));
    }
    let kind = vhost
        .topology
        .read()
        .exchanges
        .get(source)
        .map(|x| warren_router::delayed_base(x.meta.kind, &x.meta.arguments));
    match kind {
        None => return Err(AmqpError::no_exchange(source, &vhost.name)),
        Some(ExchangeKind::Headers) => {
            warren_router::validate_headers_binding(arguments).map_err(AmqpError::precondition)?
        }
        Some(ExchangeKind::ConsistentHash) => {
            warren_router::binding_weight(key).map_err(AmqpError::precondition)?;
        }
        Some(_) => {}
    }
    let op = binding_op(vhost, true, source, destination, key, arguments);
    vhost.record(op.into_iter().collect())?;
    let mut topo = vhost.topology.write();
    match topo.exchanges.get_mut(source) {
        Some(entry) => {
            entry.router.table.bind(destination.clone(), key, arguments);
            drop(topo);
            binding_event(
                vhost,
                "binding.created",
                source,
                destination,
                key,
                arguments,
            );
            Ok(())
        }
        // Deleted meanwhile: its deletion, recorded after our record, wins on replay too.
        None => Err(AmqpError::no_exchange(source, &vhost.name)),
    }
}

/// Removes a binding; false when there was no such binding (or no such source or
/// destination: RabbitMQ 3.x answers unbind-ok then, its API a 404). The removal is
/// recorded before it takes effect; auto-delete exchanges left without bindings go too.
pub fn unbind(
    vhost: &VHost,
    source: &str,
    destination: &Destination,
    key: &str,
    arguments: &FieldTable,
) -> AmqpResult<bool> {
    if is_default_exchange(source) {
        return Err(default_exchange_refused());
    }
    let bound = destination_exists(vhost, destination)
        && vhost
            .topology
            .read()
            .exchanges
            .get(source)
            .is_some_and(|x| x.router.table.has_binding(destination, key, arguments));
    if !bound {
        return Ok(false);
    }
    let op = binding_op(vhost, false, source, destination, key, arguments);
    if let Some(op) = op {
        vhost
            .persistence
            .record(&[op])
            .map_err(|e| AmqpError::internal("cannot record metadata").caused_by(e))?;
    }
    {
        let mut topo = vhost.topology.write();
        if let Some(entry) = topo.exchanges.get_mut(source) {
            entry.router.table.unbind(destination, key, arguments);
        }
        topo.maybe_auto_delete(source);
    }
    record_cascade(vhost);
    binding_event(
        vhost,
        "binding.deleted",
        source,
        destination,
        key,
        arguments,
    );
    Ok(true)
}

/// `binding.created` / `binding.deleted` for the event exchange.
fn binding_event(
    vhost: &VHost,
    key_name: &'static str,
    source: &str,
    destination: &Destination,
    key: &str,
    arguments: &FieldTable,
) {
    let who = crate::model::events::actor();
    binding_event_as(vhost, key_name, &who, source, destination, key, arguments);
}

/// [`binding_event`] performed by `who` (`rmq-internal` for the bindings a deleted
/// queue takes with it).
pub fn binding_event_as(
    vhost: &VHost,
    key_name: &'static str,
    who: &str,
    source: &str,
    destination: &Destination,
    key: &str,
    arguments: &FieldTable,
) {
    vhost.events.emit(key_name, |h| {
        let (kind, name) = match destination {
            Destination::Queue(q) => ("queue", q),
            Destination::Exchange(x) => ("exchange", x),
        };
        h.str("user_who_performed_action", who)
            .str("vhost", &*vhost.name)
            .erl_table("arguments", arguments)
            .str("routing_key", key)
            .str("destination_kind", kind)
            .str("destination_name", &**name)
            .str("source_kind", "exchange")
            .str("source_name", source);
    });
}

/// Deletes exchange `name`; false when there was none. System exchanges (`amq.*`) and the
/// default exchange are refused; `if_unused` refuses one that is a binding source. A
/// durable exchange's deletion is recorded before it goes (a failed record leaves it in
/// place); auto-delete exchanges it leaves without bindings are recorded after.
pub fn delete_exchange(vhost: &VHost, name: &str, if_unused: bool) -> AmqpResult<bool> {
    if is_default_exchange(name) {
        return Err(default_exchange_refused());
    }
    if name.starts_with("amq.") {
        return Err(AmqpError::access_refused(format_args!(
            "deletion of system exchange '{name}' in vhost '{}' not allowed",
            vhost.name
        )));
    }
    let durable = {
        let topo = vhost.topology.read();
        let Some(entry) = topo.exchanges.get(name) else {
            return Ok(false);
        };
        if if_unused && topo.exchange_in_use(name) {
            return Err(AmqpError::precondition(format_args!(
                "exchange '{name}' in vhost '{}' in use",
                vhost.name
            )));
        }
        entry.meta.durable
    };
    if durable {
        let op = crate::persist::MetaOp::DeleteExchange {
            vhost: vhost.name.to_string(),
            name: name.to_string(),
        };
        vhost
            .persistence
            .record(&[op])
            .map_err(|e| AmqpError::internal("cannot record metadata").caused_by(e))?;
    }
    {
        let mut topo = vhost.topology.write();
        topo.remove_exchange(name);
        // Recorded above already; the cascade below records the rest.
        topo.removed_durable.retain(|x| &**x != name);
    }
    record_cascade(vhost);
    exchange_deleted_events(vhost, name);
    Ok(true)
}

/// What RabbitMQ 3.10.8 emits for a deleted exchange: the `exchange-delete-in-progress`
/// parameter set, `exchange.deleted`, the parameter cleared.
pub fn exchange_deleted_events(vhost: &VHost, name: &str) {
    let who = crate::model::events::actor();
    vhost.events.emit("parameter.set", |h| {
        h.str("user_who_performed_action", &who)
            .bool("value", true)
            .str("name", name)
            .str("component", "exchange-delete-in-progress")
            .str("vhost", &*vhost.name);
    });
    vhost.events.emit("exchange.deleted", |h| {
        h.str("user_who_performed_action", &who)
            .str("name", name)
            .str("vhost", &*vhost.name);
    });
    vhost.events.emit("parameter.cleared", |h| {
        h.str("user_who_performed_action", &who)
            .str("name", name)
            .str("component", "exchange-delete-in-progress")
            .str("vhost", &*vhost.name);
    });
}

/// Records durable auto-delete exchanges that a change left without bindings. They are
/// gone from memory already, so a failure can only be logged.
fn record_cascade(vhost: &VHost) {
    if let Err(e) = vhost.record(Vec::new()) {
        tracing::warn!(vhost = %vhost.name, error = %e.text, cause = e.cause.as_deref().unwrap_or(""), "auto-deleted exchanges not recorded");
    }
}
