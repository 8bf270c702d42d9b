//! Management operations and the state they need: details of open connections, broker-wide
//! message statistics, policies, and the declare/delete/bind/purge/get/publish operations
//! the HTTP API and definitions import perform without an AMQP channel.

pub mod definitions;
pub mod orphans;
pub mod testing;

pub use crate::model::registry::{AdminState, ConnInfo, IoCounters, IoSnapshot};

use std::sync::Arc;

use amq_protocol::types::FieldTable;
use bytes::Bytes;
use warren_router::Destination;
use warren_store::{Entry, Message};

use crate::{
    model::broker::Broker,
    model::handles::ConnEvent,
    model::ops::{
        bindings, exchanges,
        publish::{self, Publication},
        queues::{self, QueueSpec},
    },
    model::stats::Stat,
    model::vhost::{ExchangeMeta, VHost, DEFAULT_EXCHANGE},
    util::error::{AmqpError, AmqpResult, ReplyCode},
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
    /// 500: the broker failed (a metadata write, say); the cause is logged.
    #[error("{0}")]
    Internal(String),
}

impl AdminError {
    /// An operation's AMQP error, by reply code: 404 is Not Found, 403 a refusal, 541 an
    /// internal failure (logged with its cause), the rest (406, 405, ...) a bad request
    /// with the text after RabbitMQ's `CODE - ` prefix.
    pub fn from_amqp(e: AmqpError) -> Self {
        match e.code {
            ReplyCode::NotFound => AdminError::NotFound,
            ReplyCode::AccessRefused => AdminError::Refused(e.detail().to_string()),
            ReplyCode::InternalError => {
                tracing::error!(text = %e.text, cause = e.cause.as_deref().unwrap_or(""), "management operation failed");
                AdminError::Internal(e.detail().to_string())
            }
            _ => AdminError::BadRequest(e.detail().to_string()),
        }
    }
}

impl From<AmqpError> for AdminError {
    fn from(e: AmqpError) -> Self {
        AdminError::from_amqp(e)
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
    /// with the same properties. The same operation as AMQP's queue.declare.
    pub fn admin_declare_queue(
        &self,
        vhost: &str,
        name: &str,
        durable: bool,
        auto_delete: bool,
        arguments: FieldTable,
    ) -> AdminResult<bool> {
        let vh = self.vhost_or_404(vhost)?;
        let spec = QueueSpec {
            name,
            server_named: false,
            durable,
            auto_delete,
            exclusive_owner: None,
            arguments: &arguments,
        };
        Ok(queues::declare_queue(self, &vh, spec)?.created())
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
        Ok(remove_queue(self, &vh, name)?.unwrap_or(0))
    }

    /// `DELETE /api/queues/{vhost}/{name}/contents`.
    pub fn admin_purge_queue(&self, vhost: &str, name: &str) -> AdminResult<u32> {
        let vh = self.vhost_or_404(vhost)?;
        let q = vh.queue(name).ok_or(AdminError::NotFound)?;
        if q.is_stream {
            return Err(AdminError::BadRequest(format!(
                "queue.purge not supported by stream queues queue '{name}' in vhost '{vhost}'"
            )));
        }
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
        if q.is_stream {
            // RabbitMQ's API puts the AMQP code in front of this one.
            return Err(AdminError::BadRequest(format!(
                "540 basic.get not supported by stream queues queue '{name}' in vhost '{vhost}'"
            )));
        }
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

    /// `PUT /api/exchanges/{vhost}/{name}`: true when created. The same operation as
    /// AMQP's exchange.declare (equivalence, reserved names, policy alternate exchange).
    pub fn admin_declare_exchange(
        &self,
        vhost: &str,
        name: &str,
        meta: ExchangeMeta,
    ) -> AdminResult<bool> {
        let vh = self.vhost_or_404(vhost)?;
        let name = exchanges::from_api_name(name);
        Ok(exchanges::declare_exchange(self, &vh, name, meta)?)
    }

    /// `DELETE /api/exchanges/{vhost}/{name}`: the same operation as exchange.delete,
    /// except that a missing exchange is a 404 (checked first, as RabbitMQ's API does).
    pub fn admin_delete_exchange(
        &self,
        vhost: &str,
        name: &str,
        if_unused: bool,
    ) -> AdminResult<()> {
        let vh = self.vhost_or_404(vhost)?;
        let name = exchanges::from_api_name(name);
        if !exchanges::is_default_exchange(name) && !vh.has_exchange(name) {
            return Err(AdminError::NotFound);
        }
        match bindings::delete_exchange(&vh, name, if_unused)? {
            true => Ok(()),
            false => Err(AdminError::NotFound),
        }
    }

    /// Adds (or with `bind == false` removes) a binding from exchange `source`: the
    /// operations of queue.bind and exchange.bind; removing a binding that does not
    /// exist is a 404.
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
        let source = exchanges::from_api_name(source);
        if bind {
            bindings::bind(&vh, source, &destination, key, arguments)?;
            return Ok(());
        }
        match bindings::unbind(&vh, source, &destination, key, arguments)? {
            true => Ok(()),
            false => Err(AdminError::NotFound),
        }
    }

    /// `POST /api/exchanges/{vhost}/{name}/publish`: true when routed. The same operation
    /// as AMQP's basic.publish (CC/BCC, expiration, persistence, paging to disk).
    pub fn admin_publish(
        &self,
        vhost: &str,
        exchange: &str,
        routing_key: &str,
        properties: Bytes,
        body: Bytes,
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
        let exchange = exchanges::from_api_name(exchange);
        if exchange != DEFAULT_EXCHANGE && !vh.has_exchange(exchange) {
            return Err(AdminError::NotFound);
        }
        let view = warren_codec::PropertiesView::scan(&properties)
            .map_err(|_| AdminError::BadRequest("invalid message properties".into()))?;
        let publication = Publication {
            exchange: Arc::from(exchange),
            routing_key: Arc::from(routing_key),
            mandatory: false,
            properties,
            body,
        };
        // RabbitMQ's API answers a refused publish with the AMQP error, code and all:
        // `406 PRECONDITION_FAILED - invalid expiration 'abc': no_integer`.
        let with_code = |e: AmqpError| match e.code {
            ReplyCode::InternalError => AdminError::from_amqp(e),
            code => AdminError::BadRequest(format!("{} {}", code.code(), e.text)),
        };
        let prepared = publish::prepare(publication, &view).map_err(with_code)?;
        let mut queues = Vec::new();
        let published =
            publish::route_and_enqueue(&vh, prepared, false, 0, &mut queues, |_| Box::new(|_| {}))
                .map_err(with_code)?;
        Ok(published.routed)
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

    /// `PUT /api/vhosts/{name}`: true when created. A vhost whose record fails is not
    /// created (500).
    pub fn admin_add_vhost(&self, name: &str) -> AdminResult<bool> {
        Ok(self.create_vhost(name)?)
    }

    /// `DELETE /api/vhosts/{name}`: closes its connections and drops everything in it.
    /// When its deletion cannot be recorded the vhost stays, untouched (500).
    pub fn admin_delete_vhost(&self, name: &str) -> AdminResult<()> {
        let vh = self.delete_vhost(name)?.ok_or(AdminError::NotFound)?;
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
            // The vhost is gone already; its metadata goes with the DeleteVhost record.
            if let Err(e) = remove_queue(self, &vh, &q) {
                tracing::warn!(queue = %q, error = %e.text, "queue of a deleted vhost not recorded as deleted");
            }
        }
        Ok(())
    }
}

/// Deletes a queue outside any channel: bindings go, consumers get basic.cancel.
/// `None` when there was no such queue.
pub fn remove_queue(broker: &Broker, vhost: &VHost, name: &str) -> AmqpResult<Option<u32>> {
    let Some(deleted) = crate::model::ops::queues::delete_queue(vhost, name, None)? else {
        return Ok(None);
    };
    broker.admin.retire_queue(&deleted.queue);
    Ok(Some(deleted.message_count))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::ServerConfig;
    use warren_router::ExchangeKind;

    /// An empty property block (no flags set).
    fn props() -> Bytes {
        Bytes::from_static(&[0, 0])
    }

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
        let routed = b.admin_publish("/", "amq.default", "q", props(), Bytes::from("hi"));
        assert_eq!(routed, Ok(true));
        let routed = b.admin_publish("/", "amq.default", "none", props(), Bytes::new());
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
    fn vhost_changes_whose_record_fails_are_internal_errors() {
        let b = Broker::new(ServerConfig::default());
        assert_eq!(
            b.admin_declare_queue("/", "q", false, false, FieldTable::default()),
            Ok(true)
        );
        let dir = std::env::temp_dir().join(format!(
            "warren-admin-failing-{}-{}",
            std::process::id(),
            crate::util::clock::now_ms()
        ));
        let log = crate::persist::MetaLog::failing(&dir).expect("log");
        assert!(b.persistence.attach_log(log).is_ok());
        assert!(matches!(
            b.admin_add_vhost("v"),
            Err(AdminError::Internal(_))
        ));
        assert!(b.vhost("v").is_none());
        assert_eq!(b.admin_add_vhost("/"), Ok(false));
        assert!(matches!(
            b.admin_delete_vhost("/"),
            Err(AdminError::Internal(_))
        ));
        let kept = b.vhost("/").expect("not deleted");
        assert!(kept.queue("q").is_some(), "nor emptied");
        assert_eq!(b.admin_delete_vhost("nope"), Err(AdminError::NotFound));
        let _ = std::fs::remove_dir_all(&dir);
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
            b.admin_publish("/", "x", "any", props(), Bytes::new()),
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
