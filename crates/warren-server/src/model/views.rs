//! Read-only views of the broker model, for the management API and the Prometheus
//! metrics: plain snapshot structs and the query functions that fill them.
//!
//! Each query takes the one lock it needs (a vhost's topology, a queue's state, a
//! connection's channel set) only for as long as it copies what it returns, and never
//! holds two of them at once. Callers get owned values: they hold no guard while they
//! format an answer, so a slow reader cannot hold up publishers or deliveries. A view
//! is a snapshot: the model may have changed by the time it is read.

use std::sync::Arc;

use amq_protocol::types::FieldTable;
use warren_router::Destination;

use crate::model::{
    queue::Queue,
    registry::{AdminState, ConnInfo},
    stats::StatsSnapshot,
    vhost::{ExchangeMeta, VHost},
};

/// One consumer of a queue, as the queue knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerView {
    pub tag: Arc<str>,
    /// basic.qos prefetch count of the consumer (0: unlimited).
    pub prefetch: u32,
    /// Manual acknowledgement (not `no_ack`).
    pub ack_required: bool,
    pub exclusive: bool,
    /// Deliveries to it not yet settled.
    pub unacked: u32,
    /// Id of the consumer's connection.
    pub conn: u64,
    /// Number of the consumer's channel on that connection.
    pub channel: u16,
}

/// A queue's depth and consumers at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueView {
    /// Messages ready for delivery.
    pub ready: u64,
    /// Messages delivered and not yet settled.
    pub unacked: u64,
    /// Body bytes of the ready messages.
    pub ready_bytes: u64,
    /// How many consumers the queue has.
    pub consumer_count: usize,
    /// The consumers themselves, in the queue's order; empty unless asked for
    /// ([`Queue::view_with_consumers`]).
    pub consumers: Vec<ConsumerView>,
}

/// An exchange of a vhost: its name, declared properties and message counters.
#[derive(Debug, Clone, PartialEq)]
pub struct ExchangeView {
    pub name: Arc<str>,
    pub meta: ExchangeMeta,
    /// `publish_in` / `publish_out` with their rates.
    pub stats: StatsSnapshot,
}

/// One binding of a vhost.
#[derive(Debug, Clone, PartialEq)]
pub struct BindingView {
    /// The source exchange; `""` for the default exchange's implicit bindings.
    pub source: Arc<str>,
    pub destination: Destination,
    pub routing_key: Arc<str>,
    pub arguments: FieldTable,
}

impl BindingView {
    /// Whether the destination is a queue (else an exchange).
    pub fn to_queue(&self) -> bool {
        self.destination.is_queue()
    }

    /// The destination queue's or exchange's name.
    pub fn destination_name(&self) -> &str {
        self.destination.name()
    }
}

/// How many objects a vhost holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VHostCounts {
    pub queues: usize,
    /// Declared exchanges, the `amq.*` ones included, the default exchange not.
    pub exchanges: usize,
    /// Consumers over all its queues.
    pub consumers: usize,
}

impl Queue {
    /// Depth and consumer count, without the consumers' details. Holds the queue's state
    /// lock while copying.
    pub fn view(&self) -> QueueView {
        self.view_of(false)
    }

    /// [`Queue::view`] with every consumer's details, copied under the same lock.
    pub fn view_with_consumers(&self) -> QueueView {
        self.view_of(true)
    }

    fn view_of(&self, with_consumers: bool) -> QueueView {
        let state = self.state.lock();
        let consumers = if with_consumers {
            state
                .consumers()
                .map(|c| ConsumerView {
                    tag: c.tag.clone(),
                    prefetch: c.prefetch,
                    ack_required: !c.no_ack,
                    exclusive: c.exclusive,
                    unacked: c.unacked,
                    conn: c.handle.conn.id,
                    channel: c.handle.channel,
                })
                .collect()
        } else {
            Vec::new()
        };
        QueueView {
            ready: match self.stream() {
                Some(stream) => stream.message_count(),
                None => state.ready_len() as u64,
            },
            unacked: state.unacked_len() as u64,
            ready_bytes: state.ready_bytes() as u64,
            consumer_count: state.consumer_count(),
            consumers,
        }
    }
}

impl VHost {
    /// The vhost's queues, sorted by name. Holds the topology's read lock while copying
    /// the handles; read each queue's state afterwards ([`Queue::view`]).
    pub fn queues(&self) -> Vec<Arc<Queue>> {
        let mut queues: Vec<Arc<Queue>> = self.topology.read().queues.values().cloned().collect();
        queues.sort_by(|a, b| a.name.cmp(&b.name));
        queues
    }

    /// The declared exchanges (not the default one), sorted by name, with their counters.
    /// Holds the topology's read lock while copying them and reading their counters.
    pub fn exchanges(&self) -> Vec<ExchangeView> {
        let mut all: Vec<ExchangeView> = {
            let topo = self.topology.read();
            topo.exchanges
                .iter()
                .map(|(name, x)| ExchangeView {
                    name: name.clone(),
                    meta: x.meta.clone(),
                    stats: x.stats.snapshot(),
                })
                .collect()
        };
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// One declared exchange with its counters; `None` if there is none of that name
    /// (the default exchange included). Holds the topology's read lock while copying.
    pub fn exchange(&self, name: &str) -> Option<ExchangeView> {
        let topo = self.topology.read();
        let (name, x) = topo.exchanges.get_key_value(name)?;
        Some(ExchangeView {
            name: name.clone(),
            meta: x.meta.clone(),
            stats: x.stats.snapshot(),
        })
    }

    /// Every binding of the vhost: first the default exchange's implicit binding of each
    /// queue (by queue name), then the declared ones sorted by source, queues before
    /// exchanges, destination and routing key. Holds the topology's read lock while
    /// copying.
    pub fn bindings(&self) -> Vec<BindingView> {
        let (mut implicit, mut explicit) = {
            let topo = self.topology.read();
            let implicit: Vec<BindingView> = topo
                .queues
                .keys()
                .map(|q| BindingView {
                    source: Arc::from(""),
                    destination: Destination::Queue(q.clone()),
                    routing_key: q.clone(),
                    arguments: FieldTable::default(),
                })
                .collect();
            let mut explicit = Vec::new();
            for (name, x) in topo.exchanges.iter() {
                explicit.extend(x.router.table.bindings().into_iter().map(|b| BindingView {
                    source: name.clone(),
                    destination: b.destination,
                    routing_key: b.routing_key,
                    arguments: b.arguments,
                }));
            }
            (implicit, explicit)
        };
        implicit.sort_by(|a, b| a.routing_key.cmp(&b.routing_key));
        explicit.sort_by(|a, b| {
            (
                &a.source,
                !a.to_queue(),
                a.destination.name(),
                &a.routing_key,
            )
                .cmp(&(
                    &b.source,
                    !b.to_queue(),
                    b.destination.name(),
                    &b.routing_key,
                ))
        });
        implicit.extend(explicit);
        implicit
    }

    /// How many queues, exchanges and consumers the vhost has. Holds the topology's read
    /// lock while counting queues and exchanges, then each queue's state lock in turn.
    pub fn counts(&self) -> VHostCounts {
        let (queues, exchanges) = {
            let topo = self.topology.read();
            let queues: Vec<Arc<Queue>> = topo.queues.values().cloned().collect();
            (queues, topo.exchanges.len())
        };
        VHostCounts {
            queues: queues.len(),
            exchanges,
            consumers: queues.iter().map(|q| q.view().consumer_count).sum(),
        }
    }
}

impl ConnInfo {
    /// Numbers of the connection's open channels, ascending. Holds its channel set's lock
    /// while copying.
    pub fn channel_numbers(&self) -> Vec<u16> {
        self.channels.lock().keys().copied().collect()
    }

    /// The open channels with their shared state (counters, flags), by number.
    pub fn channel_states(&self) -> Vec<(u16, Arc<crate::model::handles::ChannelShared>)> {
        self.channels
            .lock()
            .iter()
            .map(|(n, s)| (*n, s.clone()))
            .collect()
    }

    /// How many channels the connection has open.
    pub fn channel_count(&self) -> usize {
        self.channels.lock().len()
    }
}

impl AdminState {
    /// The open connection with this id.
    pub fn connection(&self, id: u64) -> Option<Arc<ConnInfo>> {
        self.connections.get(&id).map(|c| c.value().clone())
    }

    /// How many connections are open.
    pub fn connection_count(&self) -> usize {
        self.connections.len()
    }

    /// Channels open over all connections. Each connection's channel set is locked in
    /// turn, only to count it.
    pub fn channel_count(&self) -> usize {
        let conns: Vec<Arc<ConnInfo>> =
            self.connections.iter().map(|c| c.value().clone()).collect();
        conns.iter().map(|c| c.channel_count()).sum()
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use amq_protocol::types::AMQPValue;
    use warren_router::ExchangeKind;
    use warren_store::ConsumerSlot;

    use super::*;
    use crate::model::{
        broker::Broker,
        config::ServerConfig,
        handles::{ChannelShared, ConnHandle, ConsumerHandle},
        ops::{
            exchanges::declare_exchange,
            queues::{declare_queue, QueueSpec},
        },
    };

    fn broker() -> (Arc<Broker>, Arc<VHost>) {
        let b = Broker::new(ServerConfig::default());
        let vh = b.vhost("/").expect("default vhost");
        (b, vh)
    }

    fn declare(b: &Broker, vh: &Arc<VHost>, name: &str) -> Arc<Queue> {
        let args = FieldTable::default();
        let spec = QueueSpec {
            name,
            server_named: false,
            durable: false,
            auto_delete: false,
            exclusive_owner: None,
            arguments: &args,
        };
        declare_queue(b, vh, spec)
            .expect("declared")
            .queue()
            .clone()
    }

    fn consumer(q: &Queue, conn: u64, channel: u16, tag: &str, no_ack: bool) {
        let (tx, _rx) = crate::util::mailbox::mailbox();
        q.state.lock().add_consumer(ConsumerSlot {
            id: conn * 100 + u64::from(channel),
            tag: Arc::from(tag),
            prefetch: 10,
            unacked: 0,
            no_ack,
            exclusive: false,
            priority: 0,
            handle: ConsumerHandle {
                conn: Arc::new(ConnHandle::new(conn, tx)),
                channel,
                shared: Arc::new(ChannelShared::new()),
                no_ack,
            },
        });
    }

    fn bind(vh: &VHost, source: &str, dest: Destination, key: &str, args: &FieldTable) {
        let mut topo = vh.topology.write();
        let x = topo.exchanges.get_mut(source).expect("source exchange");
        assert!(x.router.table.bind(dest, key, args));
    }

    #[test]
    fn queue_views_copy_depth_and_consumers() {
        let (b, vh) = broker();
        let q = declare(&b, &vh, "q");
        assert_eq!(q.view(), QueueView::default());
        consumer(&q, 7, 2, "ctag-a", false);
        consumer(&q, 8, 1, "ctag-b", true);
        let plain = q.view();
        assert_eq!(plain.consumer_count, 2);
        assert!(plain.consumers.is_empty(), "details only when asked for");
        let full = q.view_with_consumers();
        assert_eq!(full.consumer_count, 2);
        assert_eq!(
            full.consumers[0],
            ConsumerView {
                tag: Arc::from("ctag-a"),
                prefetch: 10,
                ack_required: true,
                exclusive: false,
                unacked: 0,
                conn: 7,
                channel: 2,
            }
        );
        assert!(!full.consumers[1].ack_required);
        assert_eq!(full.consumers[1].conn, 8);
    }

    #[test]
    fn queues_come_sorted_with_counts() {
        let (b, vh) = broker();
        for name in ["zeta", "alpha", "mid"] {
            declare(&b, &vh, name);
        }
        let names: Vec<String> = vh.queues().iter().map(|q| q.name.to_string()).collect();
        assert_eq!(names, ["alpha", "mid", "zeta"]);
        if let Some(q) = vh.queue("mid") {
            consumer(&q, 1, 1, "c", false);
        }
        assert_eq!(
            vh.counts(),
            VHostCounts {
                queues: 3,
                exchanges: 6,
                consumers: 1,
            }
        );
    }

    #[test]
    fn exchange_views_carry_metadata() {
        let (b, vh) = broker();
        let mut args = FieldTable::default();
        args.insert(
            "alternate-exchange".into(),
            AMQPValue::LongString("ae".into()),
        );
        let meta = ExchangeMeta {
            kind: ExchangeKind::Topic,
            durable: false,
            auto_delete: true,
            internal: false,
            arguments: args,
        };
        assert!(declare_exchange(&b, &vh, "logs", meta.clone()).is_ok_and(|created| created));
        let names: Vec<String> = vh.exchanges().iter().map(|x| x.name.to_string()).collect();
        assert_eq!(
            names,
            [
                "amq.direct",
                "amq.fanout",
                "amq.headers",
                "amq.match",
                "amq.rabbitmq.trace",
                "amq.topic",
                "logs"
            ]
        );
        let logs = vh.exchange("logs").expect("declared");
        assert_eq!(logs.meta, meta);
        assert_eq!(logs.stats, StatsSnapshot::default());
        assert!(
            vh.exchange("").is_none(),
            "the default exchange is not declared"
        );
        assert!(vh.exchange("nope").is_none());
    }

    #[test]
    fn bindings_list_implicit_ones_first_then_sorted() {
        let (b, vh) = broker();
        declare(&b, &vh, "qb");
        declare(&b, &vh, "qa");
        let none = FieldTable::default();
        let mut args = FieldTable::default();
        args.insert("x-match".into(), AMQPValue::LongString("any".into()));
        bind(
            &vh,
            "amq.topic",
            Destination::Queue("qa".into()),
            "k2",
            &none,
        );
        bind(
            &vh,
            "amq.topic",
            Destination::Exchange("amq.fanout".into()),
            "k0",
            &none,
        );
        bind(
            &vh,
            "amq.topic",
            Destination::Queue("qa".into()),
            "k1",
            &none,
        );
        bind(
            &vh,
            "amq.direct",
            Destination::Queue("qb".into()),
            "",
            &args,
        );
        let got: Vec<(String, bool, String, String)> = vh
            .bindings()
            .iter()
            .map(|b| {
                (
                    b.source.to_string(),
                    b.to_queue(),
                    b.destination_name().to_string(),
                    b.routing_key.to_string(),
                )
            })
            .collect();
        let want = [
            ("", true, "qa", "qa"),
            ("", true, "qb", "qb"),
            ("amq.direct", true, "qb", ""),
            ("amq.topic", true, "qa", "k1"),
            ("amq.topic", true, "qa", "k2"),
            ("amq.topic", false, "amq.fanout", "k0"),
        ]
        .map(|(s, q, d, k)| (s.to_string(), q, d.to_string(), k.to_string()));
        assert_eq!(got, want);
        assert_eq!(vh.bindings()[2].arguments, args);
        assert!(vh.bindings()[0].arguments.inner().is_empty());
    }

    #[test]
    fn connection_views_count_channels() {
        let (b, _vh) = broker();
        let addr: SocketAddr = ([127, 0, 0, 1], 5672).into();
        let (tx, _rx) = crate::util::mailbox::mailbox();
        b.admin.connection_opened(ConnInfo {
            id: 42,
            name: "c".into(),
            peer: addr,
            local: addr,
            user: "guest".into(),
            vhost: "/".into(),
            client_properties: FieldTable::default(),
            auth_mechanism: "PLAIN".into(),
            frame_max: 0,
            channel_max: 0,
            heartbeat: 0,
            connected_at: 0,
            handle: Arc::new(ConnHandle::new(42, tx)),
            channels: Default::default(),
            io: Default::default(),
            tls: None,
        });
        for ch in [3, 1, 2] {
            b.admin
                .channel_opened(42, ch, Arc::new(ChannelShared::new()));
        }
        let c = b.admin.connection(42).expect("open");
        assert_eq!(c.channel_numbers(), [1, 2, 3]);
        assert_eq!(c.channel_count(), 3);
        assert_eq!(b.admin.connection_count(), 1);
        assert_eq!(b.admin.channel_count(), 3);
        assert!(b.admin.connection(43).is_none());
        b.admin.connection_closed(42);
        assert_eq!(b.admin.channel_count(), 0);
    }
}
