//! The optional plugins enabled now: read from enabled_plugins at boot
//! ([`crate::ServerConfig::plugins`]) and switched at runtime by `rabbitmq-plugins`
//! (through the management API). A plugin's effect is applied when it switches:
//! `rabbitmq_event_exchange` declares (or deletes) `amq.rabbitmq.event` and starts (or
//! stops) the events; an exchange type's plugin makes its type declarable at once.

use std::sync::Arc;

use amq_protocol::types::FieldTable;

use crate::{
    model::{
        broker::Broker,
        events,
        vhost::{ExchangeMeta, VHost},
    },
    persist::{encode_args, MetaOp},
};

impl Broker {
    /// Whether optional plugin `name` is enabled now.
    pub fn plugin_enabled(&self, name: &str) -> bool {
        self.plugins.read().iter().any(|p| p == name)
    }

    /// The optional plugins enabled now, sorted.
    pub fn enabled_plugins(&self) -> Vec<String> {
        let mut all = self.plugins.read().clone();
        all.sort();
        all
    }

    /// The exchange type a declaration names, when it exists and its plugin is enabled
    /// now; else RabbitMQ's refusal text (see [`crate::ServerConfig::exchange_kind`]).
    pub fn exchange_kind(&self, name: &str) -> Result<warren_router::ExchangeKind, String> {
        match warren_router::ExchangeKind::parse(name) {
            Some(kind) if kind.plugin().is_none_or(|p| self.plugin_enabled(p)) => Ok(kind),
            _ => Err(warren_router::ExchangeKind::type_error_text(name)),
        }
    }

    /// Makes `enabled` the set of optional plugins and applies what changed; returns
    /// (started, stopped).
    pub fn set_plugins(&self, enabled: Vec<String>) -> (Vec<String>, Vec<String>) {
        let before = self.enabled_plugins();
        {
            let mut now = self.plugins.write();
            *now = enabled;
            now.sort();
            now.dedup();
        }
        let after = self.enabled_plugins();
        let started: Vec<String> = after
            .iter()
            .filter(|p| !before.contains(p))
            .cloned()
            .collect();
        let stopped: Vec<String> = before
            .iter()
            .filter(|p| !after.contains(p))
            .cloned()
            .collect();
        self.apply_plugins();
        (started, stopped)
    }

    /// Brings the broker in line with the enabled plugins (at boot, after recovery, and
    /// after each switch).
    pub fn apply_plugins(&self) {
        let on = self.plugin_enabled(events::PLUGIN);
        if let Some(vhost) = self.vhost(&self.config.default_vhost) {
            if on {
                declare_event_exchange(&vhost);
            } else {
                delete_event_exchange(&vhost);
            }
        }
        self.admin.events.set_enabled(on);
    }
}

/// `amq.rabbitmq.event` as the plugin declares it: a durable internal topic exchange,
/// recorded like any durable exchange so that durable bindings to it survive restarts.
fn declare_event_exchange(vhost: &Arc<VHost>) {
    {
        let mut topo = vhost.topology.write();
        if topo.exchanges.contains_key(events::EXCHANGE) {
            return;
        }
        topo.insert_exchange(
            events::EXCHANGE,
            ExchangeMeta {
                kind: warren_router::ExchangeKind::Topic,
                durable: true,
                auto_delete: false,
                internal: true,
                arguments: FieldTable::default(),
            },
        );
    }
    let op = MetaOp::Exchange {
        vhost: vhost.name.to_string(),
        name: events::EXCHANGE.to_string(),
        kind: "topic".into(),
        auto_delete: false,
        internal: true,
        arguments: encode_args(&FieldTable::default()),
    };
    if let Err(e) = vhost.record(vec![op]) {
        tracing::warn!(error = %e.text, "amq.rabbitmq.event not recorded; declared again at the next start while the plugin is enabled");
    }
}

/// Disabling the plugin deletes the exchange and its bindings (rabbit_exchange_type_event
/// unregister); the deletion is recorded.
fn delete_event_exchange(vhost: &Arc<VHost>) {
    if !vhost.has_exchange(events::EXCHANGE) {
        return;
    }
    vhost.topology.write().remove_exchange(events::EXCHANGE);
    if let Err(e) = vhost.record(Vec::new()) {
        tracing::warn!(error = %e.text, "deletion of amq.rabbitmq.event not recorded");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::ServerConfig;

    #[test]
    fn switching_the_event_exchange_plugin() {
        let b = Broker::new(ServerConfig::default());
        let vh = b.vhost("/").expect("default vhost");
        b.apply_plugins();
        assert!(!vh.has_exchange(events::EXCHANGE));
        assert!(!b.admin.events.enabled());
        let (started, stopped) = b.set_plugins(vec![events::PLUGIN.into()]);
        assert_eq!(started, [events::PLUGIN]);
        assert!(stopped.is_empty());
        let meta = vh.exchange_meta(events::EXCHANGE).expect("declared");
        assert!(meta.durable && meta.internal && !meta.auto_delete);
        assert_eq!(meta.kind, warren_router::ExchangeKind::Topic);
        assert!(b.admin.events.enabled());
        let (started, stopped) = b.set_plugins(Vec::new());
        assert!(started.is_empty());
        assert_eq!(stopped, [events::PLUGIN]);
        assert!(!vh.has_exchange(events::EXCHANGE));
        assert!(!b.admin.events.enabled());
    }

    #[test]
    fn an_exchange_type_plugin_takes_effect_at_once() {
        let b = Broker::new(ServerConfig::default());
        assert!(b.exchange_kind("x-consistent-hash").is_err());
        b.set_plugins(vec!["rabbitmq_consistent_hash_exchange".into()]);
        assert!(b.exchange_kind("x-consistent-hash").is_ok());
        assert!(b.exchange_kind("topic").is_ok());
    }
}
