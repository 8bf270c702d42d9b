//! Declaring exchanges.

use std::sync::Arc;

use crate::{
    model::{
        broker::Broker,
        equivalence::{check_args_equivalent, check_flag},
        vhost::{ExchangeMeta, VHost, DEFAULT_EXCHANGE},
    },
    persist::{encode_args, MetaOp},
    util::error::{AmqpError, AmqpResult},
};

/// The default exchange is `""` on the wire. (The management API calls it `amq.default`
/// and translates; to AMQP, `amq.default` is just a reserved name.)
pub fn is_default_exchange(name: &str) -> bool {
    name == DEFAULT_EXCHANGE
}

/// The management API's name of an exchange as the model knows it.
pub fn from_api_name(name: &str) -> &str {
    if name == "amq.default" {
        DEFAULT_EXCHANGE
    } else {
        name
    }
}

/// Declares an exchange, or checks an existing one for equivalence (type, durable,
/// auto-delete, internal, `alternate-exchange`), with RabbitMQ's texts. A new exchange
/// gets its alternate exchange from its arguments or, failing that, its policy. Returns
/// whether it was created.
pub fn declare_exchange(
    broker: &Broker,
    vhost: &Arc<VHost>,
    name: &str,
    meta: ExchangeMeta,
) -> AmqpResult<bool> {
    if is_default_exchange(name) {
        return Err(AmqpError::access_refused(
            "operation not permitted on the default exchange",
        ));
    }
    let mut topo = vhost.topology.write();
    if let Some(existing) = topo.exchanges.get(name) {
        let current = existing.meta.clone();
        drop(topo);
        check_equivalent(&current, &meta, name, &vhost.name)?;
        return Ok(false);
    }
    if name.starts_with("amq.") {
        return Err(AmqpError::access_refused(format_args!(
            "exchange name '{name}' contains reserved prefix 'amq.*'"
        )));
    }
    if meta.kind == warren_router::ExchangeKind::Delayed {
        check_delayed_type(broker, &meta.arguments)?;
    }
    let routes_as = warren_router::delayed_base(meta.kind, &meta.arguments);
    if routes_as == warren_router::ExchangeKind::ConsistentHash {
        warren_router::HashOn::from_arguments(&meta.arguments).map_err(AmqpError::precondition)?;
    }
    let op = meta.durable.then(|| MetaOp::Exchange {
        vhost: vhost.name.to_string(),
        name: name.to_string(),
        kind: meta.kind.as_str().into(),
        auto_delete: meta.auto_delete,
        internal: meta.internal,
        arguments: encode_args(&meta.arguments),
    });
    let alternate = broker
        .admin
        .policies
        .alternate_exchange(&vhost.name, name, &meta.arguments);
    topo.insert_exchange(name, meta);
    if let Some(x) = topo.exchanges.get_mut(name) {
        x.router.alternate_exchange = alternate;
    }
    drop(topo);
    if let Err(e) = vhost.record(op.into_iter().collect()) {
        // Not recorded, so not declared. Removing it records its deletion, which also
        // undoes a record that reached the disk before its sync failed.
        vhost.topology.write().remove_exchange(name);
        let _ = vhost.record(Vec::new());
        return Err(e);
    }
    if let Some(meta) = vhost.exchange_meta(name) {
        exchange_created_event(vhost, name, &meta);
    }
    Ok(true)
}

/// The plugin's `validate/1`: `x-delayed-type` must name an exchange type that exists
/// (and whose plugin is enabled) other than `x-delayed-message` itself.
fn check_delayed_type(
    broker: &Broker,
    arguments: &amq_protocol::types::FieldTable,
) -> AmqpResult<()> {
    match warren_router::delayed_type_name(arguments).as_deref() {
        None => Err(AmqpError::precondition(
            "Invalid argument, 'x-delayed-type' must be an existing exchange type",
        )),
        Some("x-delayed-message") => Err(AmqpError::precondition(
            "Invalid argument, 'x-delayed-message' can't be used for 'x-delayed-type'",
        )),
        Some(t) => broker
            .exchange_kind(t)
            .map(|_| ())
            .map_err(AmqpError::command_invalid),
    }
}

/// `exchange.created` for the event exchange.
pub fn exchange_created_event(vhost: &VHost, name: &str, meta: &ExchangeMeta) {
    vhost.events.emit("exchange.created", |h| {
        h.str("user_who_performed_action", crate::model::events::actor())
            .str("policy", "")
            .erl_table("arguments", &meta.arguments)
            .bool("internal", meta.internal)
            .bool("auto_delete", meta.auto_delete)
            .bool("durable", meta.durable)
            .str("type", meta.kind.as_str())
            .str("name", name)
            .str("vhost", &*vhost.name);
    });
}

fn check_equivalent(
    current: &ExchangeMeta,
    received: &ExchangeMeta,
    name: &str,
    vhost: &str,
) -> AmqpResult<()> {
    let what = format!("exchange '{name}'");
    if current.kind != received.kind {
        return Err(AmqpError::precondition(format_args!(
            "inequivalent arg 'type' for {what} in vhost '{vhost}': received '{}' but current is '{}'",
            received.kind.as_str(),
            current.kind.as_str()
        )));
    }
    check_flag("durable", received.durable, current.durable, &what, vhost)?;
    check_flag(
        "auto_delete",
        received.auto_delete,
        current.auto_delete,
        &what,
        vhost,
    )?;
    check_flag(
        "internal",
        received.internal,
        current.internal,
        &what,
        vhost,
    )?;
    check_args_equivalent(
        &current.arguments,
        &received.arguments,
        &what,
        vhost,
        &["alternate-exchange"],
    )
}
