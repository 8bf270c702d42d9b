//! The registry of open connections (one entry each, with the handle queues and the
//! broker use to reach it and the details the management API shows) and the broker-wide
//! counters that outlive the objects they count.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU16, AtomicU64, Ordering},
        Arc,
    },
    time::Instant,
};

use amq_protocol::types::FieldTable;
use dashmap::DashMap;
use parking_lot::Mutex;

use crate::model::{
    broker::Broker,
    events,
    handles::{ChannelShared, ConnHandle},
    policy::PolicyStore,
    queue::Queue,
    stats::{StatsSnapshot, STAT_COUNT},
};

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The `connection_name` a client gave in its properties.
fn user_provided_name(props: &FieldTable) -> Option<String> {
    match props.inner().get("connection_name")? {
        amq_protocol::types::AMQPValue::LongString(s) => {
            Some(String::from_utf8_lossy(s.as_bytes()).into_owned())
        }
        amq_protocol::types::AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
        _ => None,
    }
}

/// Bytes and frames-ish counts of one connection's socket (its own atomics: only its task
/// writes them), with a rate window like [`Stats`]'.
#[derive(Debug)]
pub struct IoCounters {
    recv_oct: AtomicU64,
    recv_cnt: AtomicU64,
    send_oct: AtomicU64,
    send_cnt: AtomicU64,
    samples: Mutex<std::collections::VecDeque<(Instant, [u64; 2])>>,
}

impl Default for IoCounters {
    fn default() -> Self {
        let mut samples = std::collections::VecDeque::new();
        samples.push_back((Instant::now(), [0, 0]));
        IoCounters {
            recv_oct: AtomicU64::new(0),
            recv_cnt: AtomicU64::new(0),
            send_oct: AtomicU64::new(0),
            send_cnt: AtomicU64::new(0),
            samples: Mutex::new(samples),
        }
    }
}

/// Octet and read/write counts with octet rates (per second).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct IoSnapshot {
    pub recv_oct: u64,
    pub recv_cnt: u64,
    pub send_oct: u64,
    pub send_cnt: u64,
    pub recv_rate: f64,
    pub send_rate: f64,
}

impl IoCounters {
    /// A socket read of `n` bytes.
    #[inline]
    pub fn received(&self, n: usize) {
        self.recv_oct.fetch_add(n as u64, Ordering::Relaxed);
        self.recv_cnt.fetch_add(1, Ordering::Relaxed);
    }

    /// A buffer of `n` bytes handed to the socket writer.
    #[inline]
    pub fn sent(&self, n: usize) {
        self.send_oct.fetch_add(n as u64, Ordering::Relaxed);
        self.send_cnt.fetch_add(1, Ordering::Relaxed);
    }

    /// Keeps a sample a second inside the rate window (the management ticker calls this).
    pub fn sample(&self) {
        let now = Instant::now();
        let cur = [
            self.recv_oct.load(Ordering::Relaxed),
            self.send_oct.load(Ordering::Relaxed),
        ];
        let mut samples = self.samples.lock();
        if samples
            .back()
            .is_none_or(|(t, _)| now.saturating_duration_since(*t).as_secs() >= 1)
        {
            samples.push_back((now, cur));
        }
        while samples.len() > 2
            && samples.get(1).is_some_and(|(t, _)| {
                now.saturating_duration_since(*t) >= crate::model::stats::RATE_WINDOW
            })
        {
            samples.pop_front();
        }
    }

    pub fn snapshot(&self) -> IoSnapshot {
        let now = Instant::now();
        let recv_oct = self.recv_oct.load(Ordering::Relaxed);
        let send_oct = self.send_oct.load(Ordering::Relaxed);
        let (mut recv_rate, mut send_rate) = (0.0, 0.0);
        if let Some((t0, [r0, s0])) = self.samples.lock().front() {
            let dt = now.saturating_duration_since(*t0).as_secs_f64();
            if dt >= 0.5 {
                recv_rate = recv_oct.saturating_sub(*r0) as f64 / dt;
                send_rate = send_oct.saturating_sub(*s0) as f64 / dt;
            }
        }
        IoSnapshot {
            recv_oct,
            recv_cnt: self.recv_cnt.load(Ordering::Relaxed),
            send_oct,
            send_cnt: self.send_cnt.load(Ordering::Relaxed),
            recv_rate,
            send_rate,
        }
    }
}

/// What an open AMQP connection looks like to the management API.
#[derive(Debug)]
pub struct ConnInfo {
    pub id: u64,
    /// RabbitMQ's connection name: `peer -> local`.
    pub name: String,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub user: String,
    pub vhost: String,
    pub client_properties: FieldTable,
    pub auth_mechanism: String,
    pub frame_max: u32,
    pub channel_max: u16,
    pub heartbeat: u16,
    /// Milliseconds since the Unix epoch.
    pub connected_at: u64,
    pub handle: Arc<ConnHandle>,
    /// The open channels by number, with the state they share (counters, flags).
    pub channels: Mutex<BTreeMap<u16, Arc<ChannelShared>>>,
    /// Socket counters, shared with the connection task.
    pub io: Arc<IoCounters>,
    /// The TLS session, for connections on a TLS listener.
    pub tls: Option<warren_tls::SessionInfo>,
}

/// A TLS listener: protocol, address, configuration.
type TlsListener = (String, SocketAddr, Arc<warren_tls::TlsServer>);

/// Management state held by the broker.
#[derive(Debug)]
pub struct AdminState {
    pub connections: DashMap<u64, Arc<ConnInfo>>,
    pub connections_opened: AtomicU64,
    pub connections_closed: AtomicU64,
    pub channels_opened: AtomicU64,
    pub channels_closed: AtomicU64,
    pub queues_declared: AtomicU64,
    pub queues_deleted: AtomicU64,
    pub policies: PolicyStore,
    pub started: Instant,
    /// The HTTP and Prometheus listeners, for the port-listener health check
    /// ([`AdminState::add_listener`], [`AdminState::listeners`]).
    listeners: Mutex<Vec<(String, SocketAddr)>>,
    /// The TLS ones among them, with their configurations.
    tls_listeners: Mutex<Vec<TlsListener>>,
    /// The AMQP port actually bound (set by the binary).
    pub amqp_port: AtomicU16,
    /// Counters of deleted queues, so broker-wide totals never go down.
    retired: Mutex<[u64; STAT_COUNT]>,
    /// Publish-side counters of deleted vhosts, for the same reason.
    pub(crate) retired_vhosts: Mutex<[u64; STAT_COUNT]>,
    /// The event exchange's sink (`model::events`).
    pub events: Arc<crate::model::events::Events>,
}

impl Default for AdminState {
    fn default() -> Self {
        AdminState {
            connections: DashMap::new(),
            connections_opened: AtomicU64::new(0),
            connections_closed: AtomicU64::new(0),
            channels_opened: AtomicU64::new(0),
            channels_closed: AtomicU64::new(0),
            queues_declared: AtomicU64::new(0),
            queues_deleted: AtomicU64::new(0),
            policies: PolicyStore::default(),
            started: Instant::now(),
            listeners: Mutex::new(Vec::new()),
            tls_listeners: Mutex::new(Vec::new()),
            amqp_port: AtomicU16::new(0),
            retired: Mutex::new([0; STAT_COUNT]),
            retired_vhosts: Mutex::new([0; STAT_COUNT]),
            events: Default::default(),
        }
    }
}

impl AdminState {
    pub fn connection_opened(&self, info: ConnInfo) {
        self.connections_opened.fetch_add(1, Ordering::Relaxed);
        self.events.emit("connection.created", |h| {
            h.str("user_who_performed_action", &info.user)
                .str("node", events::node_name())
                .long("connected_at", to_i64(info.connected_at))
                .erl_table("client_properties", &info.client_properties)
                .long("channel_max", i64::from(info.channel_max))
                .long("frame_max", i64::from(info.frame_max))
                .long("timeout", i64::from(info.heartbeat))
                .str("vhost", &info.vhost)
                .str("user", &info.user)
                .str("protocol", "{0,9,1}");
            for k in ["ssl_hash", "ssl_cipher", "ssl_key_exchange", "ssl_protocol"] {
                h.str(k, "");
            }
            h.str("auth_mechanism", &info.auth_mechanism);
            for k in [
                "peer_cert_validity",
                "peer_cert_issuer",
                "peer_cert_subject",
            ] {
                h.str(k, "");
            }
            h.bool("ssl", info.tls.is_some())
                .str("peer_host", events::erl_ip(info.peer.ip()))
                .str("host", events::erl_ip(info.local.ip()))
                .long("peer_port", i64::from(info.peer.port()))
                .long("port", i64::from(info.local.port()))
                .str("name", &info.name)
                .str("pid", self.events.pid(info.id, 0))
                .str("type", "network");
            if let Some(name) = user_provided_name(&info.client_properties) {
                h.str("user_provided_name", name);
            }
        });
        self.connections.insert(info.id, Arc::new(info));
    }

    pub fn connection_closed(&self, id: u64) {
        if let Some((_, info)) = self.connections.remove(&id) {
            self.connections_closed.fetch_add(1, Ordering::Relaxed);
            let open: Vec<u16> = info.channels.lock().keys().copied().collect();
            self.channels_closed
                .fetch_add(open.len() as u64, Ordering::Relaxed);
            for ch in open {
                self.emit_channel_closed(&info, ch);
            }
            self.events.emit("connection.closed", |h| {
                h.erl_table("client_properties", &info.client_properties)
                    .str("node", events::node_name())
                    .str("pid", self.events.pid(info.id, 0))
                    .str("name", &info.name);
                if let Some(name) = user_provided_name(&info.client_properties) {
                    h.str("user_provided_name", name);
                }
            });
        }
    }

    pub fn channel_opened(&self, conn: u64, channel: u16, shared: Arc<ChannelShared>) {
        if let Some(info) = self.connections.get(&conn) {
            info.channels.lock().insert(channel, shared);
            self.channels_opened.fetch_add(1, Ordering::Relaxed);
            self.events.emit("channel.created", |h| {
                h.str("user_who_performed_action", &info.user)
                    .str("vhost", &info.vhost)
                    .str("user", &info.user)
                    .long("number", i64::from(channel))
                    .str("connection", self.events.pid(info.id, 0))
                    .str("name", format!("{} ({channel})", info.name))
                    .str("pid", self.events.pid(info.id, channel));
            });
        }
    }

    pub fn channel_closed(&self, conn: u64, channel: u16) {
        if let Some(info) = self.connections.get(&conn) {
            if info.channels.lock().remove(&channel).is_some() {
                self.channels_closed.fetch_add(1, Ordering::Relaxed);
                self.emit_channel_closed(&info, channel);
            }
        }
    }

    fn emit_channel_closed(&self, info: &ConnInfo, channel: u16) {
        self.events.emit("channel.closed", |h| {
            h.str("user_who_performed_action", &info.user)
                .str("pid", self.events.pid(info.id, channel));
        });
    }

    /// A queue is gone: its counters stay in the broker-wide totals.
    pub fn retire_queue(&self, queue: &Queue) {
        let snap = queue.stats.snapshot();
        let mut retired = self.retired.lock();
        for (r, c) in retired.iter_mut().zip(snap.counts) {
            *r += c;
        }
        self.queues_deleted.fetch_add(1, Ordering::Relaxed);
    }

    /// Queue-side counters summed over every queue, deleted ones included (rates over the
    /// live queues only).
    pub fn queue_totals(&self, broker: &Broker) -> StatsSnapshot {
        let mut total = StatsSnapshot {
            counts: *self.retired.lock(),
            rates: [0.0; STAT_COUNT],
        };
        for vh in broker.vhosts() {
            let queues: Vec<Arc<Queue>> = vh.topology.read().queues.values().cloned().collect();
            for q in queues {
                let s = q.stats.snapshot();
                for i in 0..STAT_COUNT {
                    total.counts[i] += s.counts[i];
                    total.rates[i] += s.rates[i];
                }
            }
        }
        total
    }

    /// Publish-side counters (publish, confirm, unroutable) of the whole broker: every
    /// vhost's, deleted ones included (rates over the live vhosts only).
    pub fn publish_totals(&self, broker: &Broker) -> StatsSnapshot {
        let mut total = StatsSnapshot {
            counts: *self.retired_vhosts.lock(),
            rates: [0.0; STAT_COUNT],
        };
        for vh in broker.vhosts() {
            let s = vh.stats.snapshot();
            for i in 0..STAT_COUNT {
                total.counts[i] += s.counts[i];
                total.rates[i] += s.rates[i];
            }
        }
        total
    }

    /// A listener of `protocol` (`http`, `http/prometheus`) is bound to `addr`.
    pub fn add_listener(&self, protocol: &str, addr: SocketAddr) {
        self.listeners.lock().push((protocol.to_string(), addr));
    }

    /// A TLS listener (`amqp/ssl`, `https`, `https/prometheus`) with its configuration,
    /// for the overview's socket options and certificate expiry checks.
    pub fn add_tls_listener(
        &self,
        protocol: &str,
        addr: SocketAddr,
        server: Arc<warren_tls::TlsServer>,
    ) {
        self.add_listener(protocol, addr);
        self.tls_listeners
            .lock()
            .push((protocol.to_string(), addr, server));
    }

    /// The TLS listeners added, in order.
    pub fn tls_listeners(&self) -> Vec<(String, SocketAddr, Arc<warren_tls::TlsServer>)> {
        self.tls_listeners.lock().clone()
    }

    /// The (protocol, address) of each listener added, in the order they were added.
    /// Holds the list's lock while copying.
    pub fn listeners(&self) -> Vec<(String, SocketAddr)> {
        self.listeners.lock().clone()
    }

    /// Connections sorted by name.
    pub fn connection_list(&self) -> Vec<Arc<ConnInfo>> {
        let mut all: Vec<_> = self.connections.iter().map(|c| c.value().clone()).collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }
}
