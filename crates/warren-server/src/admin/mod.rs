//! Management operations and the state they need: details of open connections, broker-wide
//! message statistics, policies, and the declare/delete/bind/purge/get/publish operations
//! the HTTP API and definitions import perform without an AMQP channel.

pub mod definitions;

pub use crate::model::registry::{AdminState, ConnInfo, IoCounters, IoSnapshot};

use std::sync::{atomic::Ordering, Arc};

use amq_protocol::types::FieldTable;
use bytes::Bytes;
use warren_router::{Destination, ExchangeKind};
use warren_store::{Entry, Message};

use crate::{
    model::broker::Broker,
    model::equivalence::{check_args_equivalent, check_flag, EQUIVALENCE_ARGS},
    model::handles::ConnEvent,
    model::queue::Queue,
    model::stats::Stat,
    model::vhost::{ExchangeMeta, VHost, DEFAULT_EXCHANGE},
    util::error::AmqpError,
};

/// Why a management operation failed; the HTTP layer maps these to status codes.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AdminError {
    #[error("Not Found")]
    NotFound,
    /// 400 with RabbitMQ's reason text.
    #[error("{0}")]
    BadRequest(String),
    /// 403-class refusals from the AMQP model (e.g. `amq.` names).
    #[error("{0}")]
    Refused(String),
}

impl AdminError {
    /// The AMQP error's text without its `CODE - ` prefix, as the API shows it.
    fn from_amqp(e: AmqpError) -> Self {
        let text = match e.text.split_once(" - ") {
            Some((_, rest)) => rest.to_string(),
            None => e.text,
        };
        AdminError::BadRequest(text)
    }
}

pub type AdminResult<T> = Result<T, AdminError>;

/// A message taken by `POST /api/queues/{vhost}/{name}/get`.
#[derive(Debug)]
pub struct GotMessage {
    pub message: Arc<Message>,
    pub redelivered: bool,
    /// Ready messages left after this one was taken.
    pub remaining: u32,
}

/// What `POST .../get` does with the messages it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetMode {
    AckRequeueTrue,
    AckRequeueFalse,
    RejectRequeueTrue,
    RejectRequeueFalse,
}

impl Broker {
    fn vhost_or_404(&self, vhost: &str) -> AdminResult<Arc<VHost>> {
        self.vhost(vhost).ok_or(AdminError::NotFound)
    }

    /// `PUT /api/queues/{vhost}/{name}`: true when created, false when it existed already
    /// with the same properties.
    pub fn admin_declare_queue(
        &self,
        vhost: &str,
        name: &str,
        durable: bool,
        auto_delete: bool,
        arguments: FieldTable,
    ) -> AdminResult<bool> {
        let vh = self.vhost_or_404(vhost)?;
        if name.starts_with("amq.") {
            return Err(AdminError::Refused(format!(
                "queue name '{name}' contains reserved prefix 'amq.*'"
            )));
        }
        let what = format!("queue '{name}'");
        let mut topo = vh.topology.write();
        if let Some(q) = topo.queues.get(name).cloned() {
            drop(topo);
            check_flag("durable", durable, q.durable, &what, vhost)
                .map_err(AdminError::from_amqp)?;
            check_flag("auto_delete", auto_delete, q.auto_delete, &what, vhost)
                .map_err(AdminError::from_amqp)?;
            check_args_equivalent(&q.arguments, &arguments, &what, vhost, EQUIVALENCE_ARGS)
                .map_err(AdminError::from_amqp)?;
            return Ok(false);
        }
        let what = format!("queue '{name}' in vhost '{vhost}'");
        let _ = &what;
        let settings = self
            .queue_settings_with_policy(vhost, name, &arguments)
            .map_err(AdminError::from_amqp)?;
        let q = Queue::new(
            crate::model::queue::QueueDecl {
                name: Arc::from(name),
                durable,
                auto_delete,
                exclusive_owner: None,
                arguments: arguments.clone(),
                settings,
                store_id: vh
                    .persistence
                    .is_enabled()
                    .then(|| vh.persistence.next_queue_id()),
            },
            &vh,
        );
        let store_id = q.store_id.unwrap_or(0);
        topo.queues.insert(Arc::from(name), q);
        drop(topo);
        if durable {
            vh.record(vec![crate::persist::MetaOp::Queue {
                vhost: vhost.to_string(),
                name: name.to_string(),
                auto_delete,
                arguments: crate::persist::encode_args(&arguments),
                id: store_id,
            }])
            .map_err(AdminError::from_amqp)?;
        }
        self.admin.queues_declared.fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }

    /// `DELETE /api/queues/{vhost}/{name}`; returns the number of ready messages dropped.
    pub fn admin_delete_queue(
        &self,
        vhost: &str,
        name: &str,
        if_unused: bool,
        if_empty: bool,
    ) -> AdminResult<u32> {
        let vh = self.vhost_or_404(vhost)?;
        let q = vh.queue(name).ok_or(AdminError::NotFound)?;
        {
            let st = q.state.lock();
            if if_unused && st.consumer_count() > 0 {
                return Err(AdminError::BadRequest(format!(
                    "queue '{name}' in vhost '{vhost}' in use"
                )));
            }
            if if_empty && !st.is_empty() {
                return Err(AdminError::BadRequest(format!(
                    "queue '{name}' in vhost '{vhost}' not empty"
                )));
            }
        }
        Ok(remove_queue(self, &vh, name).unwrap_or(0))
    }

    /// `DELETE /api/queues/{vhost}/{name}/contents`.
    pub fn admin_purge_queue(&self, vhost: &str, name: &str) -> AdminResult<u32> {
        let vh = self.vhost_or_404(vhost)?;
        let q = vh.queue(name).ok_or(AdminError::NotFound)?;
        Ok(q.purge())
    }

    /// `POST /api/queues/{vhost}/{name}/get`.
    pub fn admin_get(
        &self,
        vhost: &str,
        name: &str,
        count: usize,
        mode: GetMode,
    ) -> AdminResult<Vec<GotMessage>> {
        let vh = self.vhost_or_404(vhost)?;
        let q = vh.queue(name).ok_or(AdminError::NotFound)?;
        let requeue = matches!(mode, GetMode::AckRequeueTrue | GetMode::RejectRequeueTrue);
        let mut taken: Vec<Entry> = Vec::new();
        let mut out = Vec::new();
        for _ in 0..count {
            let Some((entry, remaining)) = q.get(requeue) else {
                break;
            };
            q.stats.inc(Stat::Get);
            // A paged-out body is read back for the answer.
            let message = if entry.message.is_paged() {
                Arc::new(Message {
                    body: q.load_body(&entry.message).unwrap_or_default(),
                    paged_len: None,
                    ..(*entry.message).clone()
                })
            } else {
                entry.message.clone()
            };
            out.push(GotMessage {
                message,
                redelivered: entry.redelivered,
                remaining,
            });
            if requeue {
                taken.push(entry);
            } else {
                q.release(&entry.message);
            }
        }
        if out.is_empty() {
            q.stats.inc(Stat::GetEmpty);
        }
        if requeue && !taken.is_empty() {
            q.requeue(None, taken);
        }
        Ok(out)
    }

    /// `PUT /api/exchanges/{vhost}/{name}`: true when created.
    pub fn admin_declare_exchange(
        &self,
        vhost: &str,
        name: &str,
        meta: ExchangeMeta,
    ) -> AdminResult<bool> {
        let vh = self.vhost_or_404(vhost)?;
        if name.is_empty() || name == "amq.default" {
            return Err(AdminError::Refused(
                "operation not permitted on the default exchange".into(),
            ));
        }
        let what = format!("exchange '{name}'");
        let mut topo = vh.topology.write();
        if let Some(cur) = topo.exchanges.get(name) {
            let cur = cur.meta.clone();
            drop(topo);
            if cur.kind != meta.kind {
                return Err(AdminError::BadRequest(format!(
                    "inequivalent arg 'type' for {what} in vhost '{vhost}': received '{}' but current is '{}'",
                    meta.kind.as_str(),
                    cur.kind.as_str()
                )));
            }
            check_flag("durable", meta.durable, cur.durable, &what, vhost)
                .map_err(AdminError::from_amqp)?;
            check_flag(
                "auto_delete",
                meta.auto_delete,
                cur.auto_delete,
                &what,
                vhost,
            )
            .map_err(AdminError::from_amqp)?;
            check_flag("internal", meta.internal, cur.internal, &what, vhost)
                .map_err(AdminError::from_amqp)?;
            return Ok(false);
        }
        if name.starts_with("amq.") {
            return Err(AdminError::Refused(format!(
                "exchange name '{name}' contains reserved prefix 'amq.*'"
            )));
        }
        let op = meta.durable.then(|| crate::persist::MetaOp::Exchange {
            vhost: vhost.to_string(),
            name: name.to_string(),
            kind: meta.kind.as_str().into(),
            auto_delete: meta.auto_delete,
            internal: meta.internal,
            arguments: crate::persist::encode_args(&meta.arguments),
        });
        topo.insert_exchange(name, meta);
        drop(topo);
        vh.record(op.into_iter().collect())
            .map_err(AdminError::from_amqp)?;
        Ok(true)
    }

    pub fn admin_delete_exchange(
        &self,
        vhost: &str,
        name: &str,
        if_unused: bool,
    ) -> AdminResult<()> {
        let vh = self.vhost_or_404(vhost)?;
        if name.is_empty() || name == "amq.default" {
            return Err(AdminError::Refused(
                "operation not permitted on the default exchange".into(),
            ));
        }
        let mut topo = vh.topology.write();
        if !topo.exchanges.contains_key(name) {
            return Err(AdminError::NotFound);
        }
        if name.starts_with("amq.") {
            return Err(AdminError::Refused(format!(
                "deletion of system exchange '{name}' in vhost '{vhost}' not allowed"
            )));
        }
        if if_unused && topo.exchange_in_use(name) {
            return Err(AdminError::BadRequest(format!(
                "exchange '{name}' in vhost '{vhost}' in use"
            )));
        }
        topo.remove_exchange(name);
        drop(topo);
        vh.record(Vec::new()).map_err(AdminError::from_amqp)?;
        Ok(())
    }

    /// Adds (or with `bind == false` removes) a binding from exchange `source`.
    pub fn admin_bind(
        &self,
        vhost: &str,
        source: &str,
        destination: Destination,
        key: &str,
        arguments: &FieldTable,
        bind: bool,
    ) -> AdminResult<()> {
        let vh = self.vhost_or_404(vhost)?;
        if source.is_empty() || source == "amq.default" {
            return Err(AdminError::Refused(
                "operation not permitted on the default exchange".into(),
            ));
        }
        let mut topo = vh.topology.write();
        let dest_exists = match &destination {
            Destination::Queue(q) => topo.queues.contains_key(q),
            Destination::Exchange(x) => topo.exchanges.contains_key(x),
        };
        if !dest_exists {
            return Err(AdminError::NotFound);
        }
        let Some(entry) = topo.exchanges.get_mut(source) else {
            return Err(AdminError::NotFound);
        };
        if bind {
            if entry.meta.kind == ExchangeKind::Headers {
                warren_router::validate_headers_binding(arguments)
                    .map_err(|e| AdminError::BadRequest(e.to_string()))?;
            }
            entry.router.table.bind(destination.clone(), key, arguments);
        } else {
            if !entry.router.table.has_binding(&destination, key, arguments) {
                return Err(AdminError::NotFound);
            }
            entry.router.table.unbind(&destination, key, arguments);
        }
        drop(topo);
        let op = crate::model::vhost::binding_op(&vh, bind, source, &destination, key, arguments);
        if !bind {
            vh.topology.write().maybe_auto_delete(source);
        }
        vh.record(op.into_iter().collect())
            .map_err(AdminError::from_amqp)?;
        Ok(())
    }

    /// `POST /api/exchanges/{vhost}/{name}/publish`: routes one message; true if it
    /// reached a queue.
    pub fn admin_publish(
        &self,
        vhost: &str,
        exchange: &str,
        routing_key: &str,
        properties: Bytes,
        body: Bytes,
        persistent: bool,
    ) -> AdminResult<bool> {
        let vh = self.vhost_or_404(vhost)?;
        // AMQP carries routing keys as shortstrs. RabbitMQ 3.10 accepts a longer one here
        // and then fails every basic.get of the message with 541 (shortstr overflow);
        // refusing it up front keeps such a message out of the queues.
        if routing_key.len() > 255 {
            return Err(AdminError::BadRequest(format!(
                "routing_key is {} bytes long; AMQP 0-9-1 allows at most 255",
                routing_key.len()
            )));
        }
        let exchange = if exchange == "amq.default" {
            DEFAULT_EXCHANGE
        } else {
            exchange
        };
        if exchange != DEFAULT_EXCHANGE && !vh.has_exchange(exchange) {
            return Err(AdminError::NotFound);
        }
        let mut queues = Vec::new();
        vh.route(exchange, &[routing_key], None, &mut queues)
            .map_err(AdminError::from_amqp)?;
        vh.stats.inc(Stat::Publish);
        if queues.is_empty() {
            vh.stats.inc(Stat::DropUnroutable);
            return Ok(false);
        }
        let view = warren_codec::PropertiesView::scan(&properties).ok();
        let mut message = Message {
            exchange: Arc::from(exchange),
            routing_key: Arc::from(routing_key),
            priority: view.as_ref().and_then(|v| v.priority).unwrap_or(0),
            expiration: view
                .as_ref()
                .and_then(|v| v.expiration.clone())
                .and_then(|r| std::str::from_utf8(properties.get(r)?).ok()?.parse().ok()),
            properties,
            body,
            persistent,
            bcc: None,
            stored: None,
            paged_len: None,
        };
        // Persistent messages for durable queues are stored as from AMQP (without a
        // confirm to wait for).
        if let Some(storage) = vh.persistence.storage() {
            let durable = persistent && queues.iter().any(|q| q.is_recoverable());
            let ids: Option<Vec<u64>> = queues.iter().map(|q| q.store_id).collect();
            if let (true, Some(ids)) = (durable, ids) {
                if let Ok(r) = storage.append(&message, true, ids, Box::new(|_| {})) {
                    message.stored = Some(r);
                }
            }
        }
        let message = Arc::new(message);
        for q in queues {
            q.publish(message.clone());
        }
        Ok(true)
    }

    /// `DELETE /api/connections/{name}`: closes it with 320 CONNECTION_FORCED.
    pub fn admin_close_connection(&self, name: &str, reason: &str) -> AdminResult<()> {
        let info = self
            .admin
            .connections
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.value().clone())
            .ok_or(AdminError::NotFound)?;
        let _ = info.handle.inbox.send(ConnEvent::ForceClose {
            code: 320,
            text: format!("CONNECTION_FORCED - {reason}"),
        });
        Ok(())
    }

    /// `PUT /api/vhosts/{name}`: true when created.
    pub fn admin_add_vhost(&self, name: &str) -> bool {
        if self.vhost(name).is_some() {
            return false;
        }
        self.add_vhost(name);
        true
    }

    /// `DELETE /api/vhosts/{name}`: closes its connections and drops everything in it.
    pub fn admin_delete_vhost(&self, name: &str) -> AdminResult<()> {
        let vh = self.delete_vhost(name).ok_or(AdminError::NotFound)?;
        {
            let snap = vh.stats.snapshot();
            let mut retired = self.admin.retired_vhosts.lock();
            for (r, c) in retired.iter_mut().zip(snap.counts) {
                *r += c;
            }
        }
        for c in self.admin.connections.iter() {
            if c.vhost == name {
                let _ = c.handle.inbox.send(ConnEvent::ForceClose {
                    code: 320,
                    text: format!("CONNECTION_FORCED - vhost '{name}' is deleted"),
                });
            }
        }
        let names: Vec<Arc<str>> = vh.topology.read().queues.keys().cloned().collect();
        for q in names {
            remove_queue(self, &vh, &q);
        }
        self.admin.policies.remove_vhost(name);
        Ok(())
    }
}

/// Deletes a queue outside any channel: bindings go, consumers get basic.cancel.
pub fn remove_queue(broker: &Broker, vhost: &VHost, name: &str) -> Option<u32> {
    let deleted = vhost.delete_queue(name, None)?;
    broker.admin.retire_queue(&deleted.queue);
    Some(deleted.message_count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::ServerConfig;

    #[test]
    fn declare_publish_get_purge_delete() {
        let b = Broker::new(ServerConfig::default());
        assert_eq!(
            b.admin_declare_queue("/", "q", true, false, FieldTable::default()),
            Ok(true)
        );
        assert_eq!(
            b.admin_declare_queue("/", "q", true, false, FieldTable::default()),
            Ok(false)
        );
        assert_eq!(
            b.admin_declare_queue("/", "q", false, false, FieldTable::default()),
            Err(AdminError::BadRequest(
                "inequivalent arg 'durable' for queue 'q' in vhost '/': received 'false' but current is 'true'".into()
            ))
        );
        assert_eq!(
            b.admin_declare_queue("nope", "q", true, false, FieldTable::default()),
            Err(AdminError::NotFound)
        );
        let routed = b.admin_publish(
            "/",
            "amq.default",
            "q",
            Bytes::new(),
            Bytes::from("hi"),
            false,
        );
        assert_eq!(routed, Ok(true));
        let routed = b.admin_publish(
            "/",
            "amq.default",
            "none",
            Bytes::new(),
            Bytes::new(),
            false,
        );
        assert_eq!(routed, Ok(false));
        let got = b
            .admin_get("/", "q", 5, GetMode::AckRequeueTrue)
            .unwrap_or_default();
        assert_eq!(got.len(), 1);
        assert_eq!(&got[0].message.body[..], b"hi");
        assert_eq!(got[0].remaining, 0);
        // Requeued: still there, now redelivered.
        let got = b
            .admin_get("/", "q", 5, GetMode::AckRequeueFalse)
            .unwrap_or_default();
        assert_eq!(got.len(), 1);
        assert!(got[0].redelivered);
        assert_eq!(b.admin_purge_queue("/", "q"), Ok(0));
        assert_eq!(b.admin_delete_queue("/", "q", false, false), Ok(0));
        assert_eq!(
            b.admin_delete_queue("/", "q", false, false),
            Err(AdminError::NotFound)
        );
    }

    #[test]
    fn exchanges_and_bindings() {
        let b = Broker::new(ServerConfig::default());
        let meta = ExchangeMeta {
            kind: ExchangeKind::Fanout,
            durable: true,
            auto_delete: false,
            internal: false,
            arguments: FieldTable::default(),
        };
        assert_eq!(b.admin_declare_exchange("/", "x", meta.clone()), Ok(true));
        assert_eq!(b.admin_declare_exchange("/", "x", meta.clone()), Ok(false));
        assert!(b.admin_declare_exchange("/", "amq.custom", meta).is_err());
        b.admin_declare_queue("/", "q", false, false, FieldTable::default())
            .unwrap_or_default();
        let q = Destination::Queue("q".into());
        let args = FieldTable::default();
        assert_eq!(b.admin_bind("/", "x", q.clone(), "", &args, true), Ok(()));
        assert_eq!(
            b.admin_publish("/", "x", "any", Bytes::new(), Bytes::new(), false),
            Ok(true)
        );
        assert_eq!(b.admin_bind("/", "x", q.clone(), "", &args, false), Ok(()));
        assert_eq!(
            b.admin_bind("/", "x", q, "", &args, false),
            Err(AdminError::NotFound)
        );
        assert!(b.admin_delete_exchange("/", "amq.direct", false).is_err());
        assert_eq!(b.admin_delete_exchange("/", "x", false), Ok(()));
        assert_eq!(
            b.admin_delete_exchange("/", "x", false),
            Err(AdminError::NotFound)
        );
    }
}
