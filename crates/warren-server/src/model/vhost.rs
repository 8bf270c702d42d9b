//! A virtual host: its exchanges, queues and bindings, and publish routing.
//!
//! The topology sits behind one `RwLock`: publishes take the read side for the time of a
//! route (a few hash lookups), declarations and bindings the write side. Declarations are
//! rare next to publishes, so readers almost never wait.

use std::{collections::HashMap, sync::Arc};

use amq_protocol::types::{AMQPValue, FieldTable};
use parking_lot::RwLock;
use warren_router::{Destination, Exchange, ExchangeKind, MessageRef, RoutingTable};

use crate::{
    model::handles::ConnEvent,
    model::queue::Queue,
    model::timers::Timers,
    persist::{MetaOp, Persistence},
    util::error::{AmqpError, AmqpResult},
};

pub const DEFAULT_EXCHANGE: &str = "";

/// Declared properties of an exchange.
#[derive(Debug, Clone, PartialEq)]
pub struct ExchangeMeta {
    pub kind: ExchangeKind,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: FieldTable,
}

pub struct ExchangeEntry {
    pub meta: ExchangeMeta,
    pub router: Exchange,
    /// publish_in / publish_out counters for the management API (stats.rs).
    pub stats: crate::model::stats::Stats,
}

#[derive(Default)]
pub struct Topology {
    pub exchanges: HashMap<Arc<str>, ExchangeEntry>,
    pub queues: HashMap<Arc<str>, Arc<Queue>>,
    /// Durable exchanges removed since the last [`VHost::durable_changes`] (auto-delete
    /// cascades included), so they can be recorded as deleted.
    pub(crate) removed_durable: Vec<Arc<str>>,
}

/// What [`VHost::delete_queue`] removed.
pub struct DeletedQueue {
    pub queue: Arc<Queue>,
    /// Ready messages dropped with it.
    pub message_count: u32,
    /// (channel, consumer tag) of the deleting connection's own consumers.
    pub local_consumers: Vec<(u16, Arc<str>)>,
}

pub struct VHost {
    pub name: Arc<str>,
    pub topology: RwLock<Topology>,
    /// The broker's timer task, for queue TTLs and `x-expires`.
    pub timers: Arc<Timers>,
    /// The broker's durable metadata log.
    pub persistence: Arc<Persistence>,
    /// Publish-side message counters of this vhost (management API, stats.rs).
    pub stats: crate::model::stats::Stats,
    /// Messages held by its `x-delayed-message` exchanges.
    pub delayed: Arc<crate::model::delayed::DelayedMessages>,
    /// The broker's event sink (the event exchange).
    pub events: Arc<crate::model::events::Events>,
    /// Firehose tracing (trace.rs) is on: the one flag the publish and delivery paths
    /// read. Not persisted: RabbitMQ 3.10 forgets it on restart too.
    tracing: std::sync::atomic::AtomicBool,
}

/// A publish a delayed exchange holds instead of routing it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DelayedHold {
    /// Milliseconds to hold it.
    pub delay: u64,
    /// The exchange is durable: a persistent message is stored.
    pub durable: bool,
}

fn alternate_exchange(args: &FieldTable) -> Option<Arc<str>> {
    match args.inner().get("alternate-exchange") {
        Some(AMQPValue::LongString(s)) => Some(Arc::from(String::from_utf8_lossy(s.as_bytes()))),
        Some(AMQPValue::ShortString(s)) => Some(Arc::from(s.as_str())),
        _ => None,
    }
}

impl VHost {
    pub fn new(
        name: &str,
        timers: Arc<Timers>,
        persistence: Arc<Persistence>,
        events: Arc<crate::model::events::Events>,
    ) -> Arc<Self> {
        let vhost = Arc::new_cyclic(|me| VHost {
            name: Arc::from(name),
            topology: RwLock::new(Topology::default()),
            delayed: crate::model::delayed::DelayedMessages::new(me.clone(), timers.clone()),
            timers,
            persistence,
            stats: crate::model::stats::Stats::striped(),
            events,
            tracing: std::sync::atomic::AtomicBool::new(false),
        });
        {
            let mut topo = vhost.topology.write();
            for (name, kind) in [
                ("amq.direct", ExchangeKind::Direct),
                ("amq.fanout", ExchangeKind::Fanout),
                ("amq.topic", ExchangeKind::Topic),
                ("amq.headers", ExchangeKind::Headers),
                ("amq.match", ExchangeKind::Headers),
            ] {
                let meta = ExchangeMeta {
                    kind,
                    durable: true,
                    auto_delete: false,
                    internal: false,
                    arguments: FieldTable::default(),
                };
                topo.insert_exchange(name, meta);
            }
            // RabbitMQ declares the firehose exchange in every vhost (rabbit_vhost:do_add).
            let trace = ExchangeMeta {
                kind: ExchangeKind::Topic,
                durable: true,
                auto_delete: false,
                internal: true,
                arguments: FieldTable::default(),
            };
            topo.insert_exchange(crate::model::trace::TRACE_EXCHANGE, trace);
        }
        vhost
    }

    /// Whether firehose tracing is on (one relaxed load: free when off).
    #[inline]
    pub fn tracing(&self) -> bool {
        self.tracing.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Turns firehose tracing on or off; true when that changed it.
    pub fn set_tracing(&self, on: bool) -> bool {
        self.tracing.swap(on, std::sync::atomic::Ordering::Relaxed) != on
    }

    pub fn queue(&self, name: &str) -> Option<Arc<Queue>> {
        self.topology.read().queues.get(name).cloned()
    }

    pub fn has_exchange(&self, name: &str) -> bool {
        self.topology.read().exchanges.contains_key(name)
    }

    pub fn exchange_meta(&self, name: &str) -> Option<ExchangeMeta> {
        self.topology
            .read()
            .exchanges
            .get(name)
            .map(|e| e.meta.clone())
    }

    /// Takes a sample of the vhost's, its exchanges' and its queues' counters (and the
    /// queues' depths), for their rates; the management ticker calls this once a second.
    pub fn sample_stats(&self) {
        self.stats.sample();
        let queues: Vec<Arc<Queue>> = {
            let topo = self.topology.read();
            for x in topo.exchanges.values() {
                x.stats.sample();
            }
            topo.queues.values().cloned().collect()
        };
        for q in queues {
            q.sample_stats();
        }
    }

    /// Routes a publish to its queues. `keys` is the routing key followed by CC/BCC keys.
    pub fn route(
        &self,
        exchange: &str,
        keys: &[&str],
        msg: &MessageRef<'_>,
        out: &mut Vec<Arc<Queue>>,
    ) -> AmqpResult<()> {
        self.route_from(exchange, keys, msg, out, false, false)
            .map(|_| ())
    }

    /// [`VHost::route`] for a client's publish: a delayed exchange holds a message with
    /// a positive `x-delay` instead of routing it (`Some`, and `out` stays empty).
    pub fn route_publish(
        &self,
        exchange: &str,
        keys: &[&str],
        msg: &MessageRef<'_>,
        out: &mut Vec<Arc<Queue>>,
        hold_ok: bool,
    ) -> AmqpResult<Option<DelayedHold>> {
        self.route_from(exchange, keys, msg, out, false, hold_ok)
    }

    /// Routing for the broker's own publishes (dead-lettering), which may start at an
    /// internal exchange.
    pub fn route_internal(
        &self,
        exchange: &str,
        keys: &[&str],
        msg: &MessageRef<'_>,
        out: &mut Vec<Arc<Queue>>,
    ) -> AmqpResult<()> {
        self.route_from(exchange, keys, msg, out, true, false)
            .map(|_| ())
    }

    fn route_from(
        &self,
        exchange: &str,
        keys: &[&str],
        msg: &MessageRef<'_>,
        out: &mut Vec<Arc<Queue>>,
        internal_ok: bool,
        hold_ok: bool,
    ) -> AmqpResult<Option<DelayedHold>> {
        let topo = self.topology.read();
        if exchange == DEFAULT_EXCHANGE {
            for key in keys {
                if let Some(q) = topo.queues.get(*key) {
                    if !out.iter().any(|o| Arc::ptr_eq(o, q)) {
                        out.push(q.clone());
                    }
                }
            }
            return Ok(None);
        }
        let Some(start) = topo.exchanges.get(exchange) else {
            return Err(AmqpError::no_exchange(exchange, &self.name));
        };
        if start.meta.internal && !internal_ok {
            return Err(AmqpError::access_refused(format_args!(
                "cannot publish to internal exchange '{exchange}' in vhost '{}'",
                self.name
            )));
        }
        // One comparison for every other exchange type: the hot path stays as it was.
        if hold_ok && start.meta.kind == ExchangeKind::Delayed {
            if let Some(delay) = crate::model::delayed::delay_of(msg.headers) {
                start.stats.inc_local(crate::model::stats::Stat::PublishIn);
                return Ok(Some(DelayedHold {
                    delay,
                    durable: start.meta.durable,
                }));
            }
        }
        let names = warren_router::route_message(&start.router, keys, msg, |n| {
            topo.exchanges.get(n).map(|e| &e.router)
        });
        let before = out.len();
        out.extend(names.iter().filter_map(|n| topo.queues.get(n).cloned()));
        // management stats
        start.stats.inc_local(crate::model::stats::Stat::PublishIn);
        if out.len() > before {
            start.stats.inc_local(crate::model::stats::Stat::PublishOut);
        }
        Ok(None)
    }
}

impl VHost {
    /// Records durable changes: `ops`, plus deletions of durable exchanges that
    /// cascaded from the last topology change.
    pub fn record(&self, mut ops: Vec<MetaOp>) -> AmqpResult<()> {
        if !self.persistence.is_enabled() {
            self.topology.write().removed_durable.clear();
            return Ok(());
        }
        let removed = std::mem::take(&mut self.topology.write().removed_durable);
        ops.extend(removed.into_iter().map(|name| MetaOp::DeleteExchange {
            vhost: self.name.to_string(),
            name: name.to_string(),
        }));
        self.persistence
            .record(&ops)
            .map_err(|e| AmqpError::internal("cannot record metadata").caused_by(e))
    }

    /// The op that records the deletion of `queue`, if it was durable.
    pub fn queue_deleted_op(&self, queue: &Queue) -> Vec<MetaOp> {
        if queue.durable && queue.exclusive_owner.is_none() {
            vec![MetaOp::DeleteQueue {
                vhost: self.name.to_string(),
                name: queue.name.to_string(),
            }]
        } else {
            Vec::new()
        }
    }

    /// Deletes a queue: bindings go, the deletion is recorded, messages are dropped
    /// (and released on disk), consumers are told through their connections, except
    /// those of connection `local`, returned as (channel, tag) for it to handle in order.
    ///
    /// A durable queue's deletion is recorded before the queue leaves the topology; when
    /// that fails nothing changes and the error is returned. Durable auto-delete
    /// exchanges that lose their last binding with it are recorded afterwards; a failure
    /// there is logged (the queue is gone by then).
    pub fn delete_queue(&self, name: &str, local: Option<u64>) -> AmqpResult<Option<DeletedQueue>> {
        let Some(queue) = self.queue(name) else {
            return Ok(None);
        };
        let op = self.queue_deleted_op(&queue);
        if !op.is_empty() {
            self.persistence
                .record(&op)
                .map_err(|e| AmqpError::internal("cannot record metadata").caused_by(e))?;
        }
        // The bindings it takes with it, for the event exchange (only while it is on).
        let bindings: Vec<(Arc<str>, warren_router::Binding)> = if self.events.enabled() {
            let dest = Destination::Queue(Arc::from(name));
            let topo = self.topology.read();
            topo.exchanges
                .iter()
                .filter(|(_, x)| x.router.table.has_destination(&dest))
                .flat_map(|(source, x)| {
                    x.router
                        .table
                        .bindings()
                        .into_iter()
                        .filter(|b| b.destination == dest)
                        .map(move |b| (Arc::from(&**source), b))
                })
                .collect()
        } else {
            Vec::new()
        };
        let Some(queue) = self.topology.write().remove_queue(name) else {
            return Ok(None);
        };
        for (source, b) in &bindings {
            crate::model::ops::bindings::binding_event_as(
                self,
                "binding.deleted",
                "rmq-internal",
                source,
                &b.destination,
                &b.routing_key,
                &b.arguments,
            );
        }
        if let Err(e) = self.record(Vec::new()) {
            tracing::warn!(queue = %name, error = %e.text, cause = e.cause.as_deref().unwrap_or(""), "auto-deleted exchanges not recorded");
        }
        queue
            .deleted
            .store(true, std::sync::atomic::Ordering::Release);
        self.events.emit("queue.deleted", |h| {
            h.str("user_who_performed_action", crate::model::events::actor())
                .str("name", name)
                .str("vhost", &*self.name);
        });
        let count = queue.purge();
        queue.forget_stored();
        let consumers = queue.state.lock().drain_consumers();
        let mut here = Vec::new();
        for c in consumers {
            if Some(c.handle.conn.id) == local {
                here.push((c.handle.channel, c.tag));
            } else {
                let _ = c.handle.conn.inbox.send(ConnEvent::Cancelled {
                    channel: c.handle.channel,
                    consumer_tag: c.tag,
                });
            }
        }
        Ok(Some(DeletedQueue {
            queue,
            message_count: count,
            local_consumers: here,
        }))
    }
}

impl Topology {
    pub fn insert_exchange(&mut self, name: &str, meta: ExchangeMeta) {
        let name: Arc<str> = Arc::from(name);
        let router = Exchange {
            name: name.clone(),
            table: RoutingTable::for_exchange(meta.kind, &meta.arguments),
            alternate_exchange: alternate_exchange(&meta.arguments),
            internal: meta.internal,
        };
        self.exchanges.insert(
            name,
            ExchangeEntry {
                meta,
                router,
                stats: crate::model::stats::Stats::striped(),
            },
        );
    }

    /// Removes an exchange and every binding that leads to it; auto-delete exchanges left
    /// without bindings go too.
    pub fn remove_exchange(&mut self, name: &str) {
        if let Some(entry) = self.exchanges.remove(name) {
            if entry.meta.durable {
                self.removed_durable.push(Arc::from(name));
            }
            self.remove_destination(&Destination::Exchange(Arc::from(name)));
        }
    }

    /// Removes every binding to `dest` and then deletes auto-delete exchanges that lost
    /// their last binding, cascading as RabbitMQ does.
    pub fn remove_destination(&mut self, dest: &Destination) {
        let mut emptied = Vec::new();
        for (name, entry) in self.exchanges.iter_mut() {
            if entry.router.table.remove_destination(dest) > 0
                && entry.meta.auto_delete
                && entry.router.table.is_empty()
            {
                emptied.push(name.clone());
            }
        }
        for name in emptied {
            self.remove_exchange(&name);
        }
    }

    /// After an unbind: an auto-delete source exchange without bindings is deleted.
    pub fn maybe_auto_delete(&mut self, source: &str) {
        let empty_auto = self
            .exchanges
            .get(source)
            .is_some_and(|e| e.meta.auto_delete && e.router.table.is_empty());
        if empty_auto {
            self.remove_exchange(source);
        }
    }

    /// Does anything (a binding where it is the destination, or as source) use it?
    pub fn exchange_in_use(&self, name: &str) -> bool {
        self.exchanges
            .get(name)
            .is_some_and(|e| !e.router.table.is_empty())
    }

    pub fn remove_queue(&mut self, name: &str) -> Option<Arc<Queue>> {
        let queue = self.queues.remove(name)?;
        self.remove_destination(&Destination::Queue(queue.name.clone()));
        Some(queue)
    }
}

/// Ops for a binding change, when both ends are durable.
pub fn binding_op(
    vhost: &VHost,
    bind: bool,
    source: &str,
    destination: &Destination,
    key: &str,
    arguments: &FieldTable,
) -> Option<MetaOp> {
    let topo = vhost.topology.read();
    let source_durable = topo.exchanges.get(source).is_some_and(|e| e.meta.durable);
    let (to_queue, dest_durable) = match destination {
        Destination::Queue(q) => (
            true,
            topo.queues
                .get(q)
                .is_some_and(|q| q.durable && q.exclusive_owner.is_none()),
        ),
        Destination::Exchange(x) => (false, topo.exchanges.get(x).is_some_and(|x| x.meta.durable)),
    };
    // An unbind must be recorded even if an end is gone by now (the source may have
    // been auto-deleted by it); replaying it is harmless.
    if bind && !(source_durable && dest_durable) {
        return None;
    }
    let (vhost, source, destination, key, arguments) = (
        vhost.name.to_string(),
        source.to_string(),
        destination.name().to_string(),
        key.to_string(),
        crate::persist::encode_args(arguments),
    );
    Some(if bind {
        MetaOp::Bind {
            vhost,
            source,
            destination,
            to_queue,
            key,
            arguments,
        }
    } else {
        MetaOp::Unbind {
            vhost,
            source,
            destination,
            to_queue,
            key,
            arguments,
        }
    })
}
