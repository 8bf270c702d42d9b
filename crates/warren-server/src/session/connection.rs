//! One client connection: handshake, frame loop, heartbeats, channel table, close.
//!
//! The connection task owns its channels outright (no locks): frames from the socket and
//! deliveries from queues (through the inbox) are both handled here, and all output of
//! one round is written with one send to the writer task.

use std::{
    collections::{HashMap, HashSet},
    future::Future,
    net::SocketAddr,
    panic::{catch_unwind, AssertUnwindSafe},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use amq_protocol::{
    protocol::{channel, connection, AMQPClass},
    types::{AMQPValue, FieldTable, LongString},
};
use bytes::{Bytes, BytesMut};
use tokio::{
    io::{AsyncRead, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
};
use tracing::{debug, error, info, warn};
use warren_codec::{
    check_protocol_header, decode_frame, encode_heartbeat, CodecError, Frame, ProtocolHeaderCheck,
    PROTOCOL_HEADER,
};

use crate::{
    model::alarm::{AlarmSet, Notice, Throttle},
    model::broker::{AuthError, Broker},
    model::handles::{ConnEvent, ConnHandle, Delivery},
    model::queue::Queue,
    model::vhost::VHost,
    session::channel::{Channel, BODY_READ_AHEAD},
    session::stream::{read_some, ConnRead, StreamReader},
    util::error::{erlang_binary, AmqpError, AmqpResult, ReplyCode, Scope},
};

/// The SASL mechanisms warren implements.
const KNOWN_MECHANISMS: [&str; 3] = ["PLAIN", "AMQPLAIN", "EXTERNAL"];

/// The user name EXTERNAL takes from a client certificate (RabbitMQ's
/// ssl_cert_login_from): the subject DN, or its common name(s).
fn external_user(cert: &warren_tls::PeerCert, login_from: &str) -> Option<String> {
    match login_from {
        "common_name" => cert.common_name.clone(),
        _ => Some(cert.subject.clone()),
    }
}

/// Read buffer growth step: large enough for many small frames per read syscall.
const READ_CHUNK: usize = 16 * 1024;

/// Bodies from this size on are written from the message's buffer instead of being
/// copied into the connection's output (below it a copy is cheaper than another iovec).
const SHARED_BODY_MIN: usize = 16 * 1024;

/// Connection-wide state that channel handlers need.
pub(crate) struct ConnCtx {
    pub broker: Arc<Broker>,
    pub handle: Arc<ConnHandle>,
    pub vhost: Option<Arc<VHost>>,
    pub user: String,
    /// The connection's name (`peer -> local`), for firehose trace headers.
    pub name: Arc<str>,
    /// Output of the current round, flushed to the writer task at its end...
    pub out: BytesMut,
    /// ...after these buffers, which come before it: large bodies, not copied (see
    /// `put_content`), and the output around them.
    pub out_chunks: Vec<Bytes>,
    /// Bytes in `out_chunks`.
    pub out_chunk_bytes: usize,
    pub frame_max: u32,
    /// The client handles server-sent basic.cancel.
    pub cancel_notify: bool,
    pub exclusive_queues: Vec<Arc<str>>,
    /// Reused routing result buffer (one allocation per connection, not per publish).
    pub route_buf: Vec<Arc<Queue>>,
    /// Consumers of this connection whose queue this connection just deleted.
    pub cancelled_here: Vec<(u16, Arc<str>)>,
    /// The user's permission in this vhost, refreshed when permissions change (auth.rs).
    pub perm_cache: PermCache,
    /// Queues this connection published to whose deliveries back up: it reads no more
    /// until they are relieved (credit flow; connection state `flow`).
    pub flow_queues: Vec<Arc<Queue>>,
    /// The earliest consumer-timeout check a channel has armed (`Channel::tick_at`).
    pub channel_tick: Option<Instant>,
}

impl ConnCtx {
    pub fn vhost(&self) -> AmqpResult<Arc<VHost>> {
        self.vhost
            .clone()
            .ok_or_else(|| AmqpError::internal("connection is not open"))
    }

    /// Appends a content header and body frames. A large body is not copied into the
    /// output: its frames' payloads are slices of the message's own buffer.
    pub fn put_content(&mut self, channel: u16, properties: &[u8], body: &Bytes) {
        if body.len() < SHARED_BODY_MIN {
            warren_codec::encode_content(&mut self.out, channel, properties, body, self.frame_max);
            return;
        }
        let before = self.out_chunks.len();
        warren_codec::encode_content_shared(
            &mut self.out,
            &mut self.out_chunks,
            channel,
            properties,
            body,
            self.frame_max,
        );
        self.out_chunk_bytes += self.out_chunks[before..]
            .iter()
            .map(Bytes::len)
            .sum::<usize>();
    }

    /// Bytes of output in this round so far.
    pub fn out_len(&self) -> usize {
        self.out.len() + self.out_chunk_bytes
    }

    pub fn send_method(&mut self, channel: u16, method: &AMQPClass) {
        if let Err(e) = warren_codec::encode_method(&mut self.out, channel, method) {
            warn!(error = %e, "failed to encode a method frame");
        }
    }
}

/// A connection's copy of its user's permission in its vhost, refreshed when the broker's
/// permission generation changes (so the hot publish path takes no lock).
#[derive(Debug, Default)]
pub(crate) struct PermCache {
    generation: u64,
    loaded: bool,
    permission: Option<Arc<crate::model::auth::Permission>>,
    /// The user's topic permissions in this vhost; `None` (the usual case) lets every
    /// routing key through without a lookup.
    topics: Option<Arc<crate::model::auth::TopicPermissions>>,
}

impl ConnCtx {
    /// Checks an AMQP operation against the connection's user permissions in its vhost.
    pub(crate) fn check(
        &mut self,
        access: crate::model::auth::Access,
        resource: crate::model::auth::Resource,
        name: &str,
    ) -> AmqpResult<()> {
        // Disjoint field borrows: no clone of the vhost name on the publish path.
        let Some(vhost) = self.vhost.as_ref() else {
            return Err(AmqpError::internal("connection is not open"));
        };
        let cache = refreshed(&mut self.perm_cache, &self.broker, &self.user, &vhost.name);
        match &cache.permission {
            Some(p) if p.allows(access, name) => Ok(()),
            _ => Err(crate::model::auth::refused(
                resource,
                name,
                &vhost.name,
                &self.user,
            )),
        }
    }
}

impl ConnCtx {
    /// Checks a routing key against the user's topic permission for `exchange`, as
    /// RabbitMQ does for publishes (write) and bindings (read): only on topic exchanges,
    /// and only when the user has a topic permission for that exchange.
    pub(crate) fn check_topic(
        &mut self,
        access: crate::model::auth::Access,
        exchange: &str,
        routing_key: &str,
    ) -> AmqpResult<()> {
        let Some(vhost) = self.vhost.as_ref() else {
            return Err(AmqpError::internal("connection is not open"));
        };
        let cache = refreshed(&mut self.perm_cache, &self.broker, &self.user, &vhost.name);
        let Some(permission) = cache.topics.as_ref().and_then(|t| t.get(exchange)) else {
            return Ok(());
        };
        let is_topic = vhost
            .exchange_meta(exchange)
            .is_some_and(|m| m.kind == warren_router::ExchangeKind::Topic);
        if !is_topic || permission.allows(access, routing_key) {
            return Ok(());
        }
        Err(crate::model::auth::topic_refused(
            routing_key,
            exchange,
            &vhost.name,
            &self.user,
        ))
    }
}

/// `cache`, re-read from the broker when permissions changed since it was filled.
fn refreshed<'a>(
    cache: &'a mut PermCache,
    broker: &Broker,
    user: &str,
    vhost: &str,
) -> &'a PermCache {
    let generation = broker.permission_generation();
    if !cache.loaded || cache.generation != generation {
        cache.permission = broker.permission(user, vhost);
        cache.topics = broker.topic_permissions_of(user, vhost);
        cache.generation = generation;
        cache.loaded = true;
    }
    cache
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitStartOk,
    AwaitTuneOk,
    AwaitOpen,
    Open,
    /// We sent connection.close; waiting for close-ok.
    Closing,
    /// The client closed and we answered close-ok: like RabbitMQ, leave the socket for
    /// the client to close (a client may read close-ok after its own close completes).
    PeerClosing,
    Done,
}

/// How often a connection held back by credit flow looks at its queues again.
const FLOW_POLL: Duration = Duration::from_millis(1);

/// How long a client that failed the handshake waits before its socket closes.
const SILENT_CLOSE_DELAY: Duration = Duration::from_secs(3);

struct Connection {
    ctx: ConnCtx,
    channels: HashMap<u16, Channel>,
    /// Channels the client closed: frames still in flight for them are dropped.
    closed_by_client: HashSet<u16>,
    phase: Phase,
    next_tick: Instant,
    peer: SocketAddr,
    name: String,
    channel_max: u16,
    heartbeat: u16,
    auth_failure_close: bool,
    /// A handshake error closes the socket without a word, after a delay.
    silent_close: bool,
    /// The close followed a fatal frame error: RabbitMQ ignores whatever comes next
    /// (close-ok included) and closes the socket about 3 s later.
    fatal_close: bool,
    /// That delay: [`SILENT_CLOSE_DELAY`] for sockets, none for in-process streams.
    silent_close_delay: Duration,
    /// Capacity for the next round's output buffer (the last round's size).
    out_hint: usize,
    /// Reading paused (credit flow, alarm) with bytes still in the read buffer.
    input_held: bool,
    started: Instant,
    last_recv: Instant,
    last_send: Instant,
    closing_since: Option<Instant>,
    writer: crate::util::mailbox::Sender<Bytes>,
    /// For the management API (admin.rs): local address, client properties, mechanism.
    local: SocketAddr,
    client_properties: FieldTable,
    auth_mechanism: String,
    io: Arc<crate::model::registry::IoCounters>,
    /// Resource-alarm blocking (alarm.rs); `blocked_notify` is the client's
    /// `connection.blocked` capability.
    throttle: Throttle,
    blocked_notify: bool,
    /// The TLS session when the connection came in on a TLS listener.
    tls: Option<warren_tls::SessionInfo>,
    /// A body frame being read straight into its message's body buffer.
    direct_body: Option<DirectBody>,
    /// Normal reads still kept short after a body frame was read straight into its body
    /// buffer (see `read_available`).
    short_reads_left: u8,
}

/// A large body frame of a body that spans several frames: its payload goes from the
/// socket into the message's body buffer, not into a frame buffer that would then be
/// copied there (one copy fewer per body byte).
struct DirectBody {
    channel: u16,
    /// Payload bytes still to come from the socket; then the frame end marker.
    left: usize,
    /// The frame's payload size.
    payload: usize,
    /// The channel went away meanwhile: the rest of the payload is read and dropped.
    discard: bool,
}

/// Serves one accepted TCP connection. Plain functions returning the connection's future (here and in `run_on`), not `async
/// fn` wrappers: each such layer would keep its own copy of the inner future's state, and
/// every idle connection pays for the task's size (4.3 KiB before, see docs/benchmarks.md).
pub(crate) fn run(
    stream: TcpStream,
    peer: SocketAddr,
    broker: Arc<Broker>,
) -> impl Future<Output = ()> + Send {
    let local = stream.local_addr().unwrap_or(peer);
    let (rd, wr) = stream.into_split();
    let ends = Ends {
        peer,
        local,
        silent_close_delay: SILENT_CLOSE_DELAY,
        tls: None,
    };
    run_on(rd, wr, ends, broker)
}

/// A connection on a TLS listener: the TLS handshake (within the handshake timeout),
/// then AMQP over the encrypted stream. A failed handshake (a plaintext client, an
/// unknown CA, an expired certificate) ends with rustls' alert and the socket closed.
pub(crate) async fn run_tls(
    stream: TcpStream,
    peer: SocketAddr,
    broker: Arc<Broker>,
    tls: Arc<warren_tls::TlsServer>,
) {
    let local = stream.local_addr().unwrap_or(peer);
    let timeout = Duration::from_millis(broker.config.ssl_handshake_timeout_ms);
    let (stream, info) = match tls.accept(stream, timeout).await {
        Ok(accepted) => accepted,
        Err(e) => {
            // RabbitMQ logs failed TLS handshakes at error level, without a stack.
            warn!(%peer, error = %e, "TLS handshake failed");
            return;
        }
    };
    debug!(%peer, protocol = %info.protocol, "TLS handshake complete");
    let (rd, wr) = tokio::io::split(stream);
    let ends = Ends {
        peer,
        local,
        silent_close_delay: SILENT_CLOSE_DELAY,
        tls: Some(info),
    };
    run_on(StreamReader::new(rd), wr, ends, broker).await;
}

/// Serves one AMQP connection over an in-process byte stream (a `tokio::io::duplex` end,
/// say) exactly as over a TCP socket, for tests and fuzzing: the connection is
/// registered, handled frame by frame and cleaned up when the stream ends. `peer` is the
/// address the connection reports (a loopback one lets `guest` log in). Unlike a socket,
/// a failed handshake closes the stream at once: the delay that slows down password
/// guessing over the network would only slow the caller down.
pub async fn serve_stream<S>(stream: S, peer: SocketAddr, broker: Arc<Broker>)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (rd, wr) = tokio::io::split(stream);
    let ends = Ends {
        peer,
        local: SocketAddr::from(([127, 0, 0, 1], 5672)),
        silent_close_delay: Duration::ZERO,
        tls: None,
    };
    run_on(StreamReader::new(rd), wr, ends, broker).await;
}

/// Where a connection runs: its addresses and how a failed handshake ends.
struct Ends {
    peer: SocketAddr,
    local: SocketAddr,
    silent_close_delay: Duration,
    tls: Option<warren_tls::SessionInfo>,
}

fn run_on<R, W>(rd: R, wr: W, ends: Ends, broker: Arc<Broker>) -> impl Future<Output = ()> + Send
where
    R: ConnRead,
    W: AsyncWrite + Unpin + Send + 'static,
{
    // The connection's user performs what it does (events' user_who_performed_action).
    crate::model::events::acting_as(String::new(), run_connection(rd, wr, ends, broker))
}

async fn run_connection<R, W>(rd: R, wr: W, ends: Ends, broker: Arc<Broker>)
where
    R: ConnRead,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let Ends {
        peer,
        local,
        silent_close_delay,
        tls,
    } = ends;
    let id = broker.next_id();
    let (out_tx, out_rx) = crate::util::mailbox::mailbox();
    let (inbox_tx, inbox_rx) = crate::util::mailbox::mailbox();
    let handle = Arc::new(ConnHandle::new(id, inbox_tx));
    let writer = tokio::spawn(write_loop(wr, out_rx, handle.clone()));
    let frame_max = broker.config.frame_max;
    let now = Instant::now();
    let mut conn = Connection {
        ctx: ConnCtx {
            broker: broker.clone(),
            handle,
            vhost: None,
            user: String::new(),
            name: Arc::from(""),
            // Allocated for each round of output (see `flush`): idle connections hold none.
            out: BytesMut::new(),
            out_chunks: Vec::new(),
            out_chunk_bytes: 0,
            frame_max,
            cancel_notify: false,
            exclusive_queues: Vec::new(),
            route_buf: Vec::new(),
            cancelled_here: Vec::new(),
            perm_cache: PermCache::default(),
            flow_queues: Vec::new(),
            channel_tick: None,
        },
        channels: HashMap::new(),
        closed_by_client: HashSet::new(),
        phase: Phase::AwaitStartOk,
        next_tick: now + Duration::from_millis(500),
        peer,
        name: peer.to_string(),
        channel_max: broker.config.channel_max,
        heartbeat: 0,
        auth_failure_close: false,
        silent_close: false,
        fatal_close: false,
        silent_close_delay,
        out_hint: 4096,
        direct_body: None,
        short_reads_left: 0,
        input_held: false,
        started: now,
        last_recv: now,
        last_send: now,
        closing_since: None,
        writer: out_tx,
        local,
        client_properties: FieldTable::default(),
        auth_mechanism: String::new(),
        io: Arc::default(),
        throttle: Throttle::default(),
        blocked_notify: false,
        tls,
    };
    debug!(%peer, "accepting AMQP connection");
    let served = {
        let serve = std::pin::pin!(conn.serve(rd, inbox_rx));
        CatchPanic(serve).await
    };
    if let Err(panic) = served {
        conn.close_after_panic(&panic);
    }
    // Channels hand unacked messages back here; a second panic must not skip the
    // deregistration below.
    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| conn.cleanup())) {
        error!(%peer, panic = %panic_text(&*panic), "connection cleanup panicked");
    }
    broker.admin.connection_closed(id);
    drop(conn);
    let _ = writer.await;
}

/// Polls a connection's future and turns a panic inside it into `Err(text)`, so that one
/// client's connection is closed with 541 and every other connection carries on.
struct CatchPanic<F>(F);

impl<F: Future + Unpin> Future for CatchPanic<F> {
    type Output = Result<F::Output, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match catch_unwind(AssertUnwindSafe(|| Pin::new(&mut self.0).poll(cx))) {
            Ok(Poll::Ready(out)) => Poll::Ready(Ok(out)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(panic) => Poll::Ready(Err(panic_text(&*panic))),
        }
    }
}

/// The message a panic carried (`panic!("...")` gives a `&str` or a `String`).
fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    match (panic.downcast_ref::<&str>(), panic.downcast_ref::<String>()) {
        (Some(s), _) => (*s).to_string(),
        (_, Some(s)) => s.clone(),
        _ => "a panic without a message".to_string(),
    }
}

/// Most buffers handed to one `writev` (Linux allows 1,024).
const WRITE_IOVECS: usize = 64;

/// Frames from this size on are read into a buffer of their own (see the read loop).
const LARGE_FRAME: usize = 32 * 1024;

/// The most a normal read takes in just after a body frame went straight to its body
/// buffer: room for a publish and a content header with its properties.
const SHORT_READ: usize = 4 * 1024;

/// How many normal reads after such a body frame are kept to [`SHORT_READ`].
const SHORT_READS_AFTER_BODY: u8 = 4;

/// The whole size of the frame at the front of `buf` when it is large and not all here
/// yet. Only called after the buffer was decoded, so the size passed the frame_max check.
fn large_frame_pending(buf: &BytesMut) -> Option<usize> {
    let head = buf.get(..7)?;
    let total = u32::from_be_bytes([head[3], head[4], head[5], head[6]]) as usize + 8;
    (total >= LARGE_FRAME && buf.len() < total).then_some(total)
}

/// Writes whatever the connection task hands over. Buffers queued while the socket was
/// busy go out together in one vectored write, without copying them into one: a large
/// body is a buffer of its own, shared with the queue that holds the message.
async fn write_loop(
    mut wr: impl AsyncWrite + Unpin,
    mut rx: crate::util::mailbox::Receiver<Bytes>,
    handle: Arc<ConnHandle>,
) {
    let mut pending: std::collections::VecDeque<Bytes> = std::collections::VecDeque::new();
    'outer: loop {
        if pending.is_empty() {
            match rx.recv().await {
                Some(first) => pending.push_back(first),
                None => break,
            }
        }
        while pending.len() < WRITE_IOVECS {
            match rx.try_recv() {
                Some(more) => pending.push_back(more),
                None => break,
            }
        }
        // An empty buffer would make the write below look like a closed socket.
        pending.retain(|b| !b.is_empty());
        if pending.is_empty() {
            continue;
        }
        let written = {
            let slices: Vec<std::io::IoSlice<'_>> = pending
                .iter()
                .take(WRITE_IOVECS)
                .map(|b| std::io::IoSlice::new(b))
                .collect();
            match wr.write_vectored(&slices).await {
                Ok(0) | Err(_) => break 'outer,
                Ok(n) => n,
            }
        };
        let mut left = written;
        while left > 0 {
            let Some(front) = pending.front_mut() else {
                break;
            };
            if front.len() <= left {
                left -= front.len();
                pending.pop_front();
            } else {
                bytes::Buf::advance(front, left);
                left = 0;
            }
        }
        // Streams that buffer (TLS) must push out what they hold once the queue is empty;
        // for a plain socket this does nothing.
        if pending.is_empty() && wr.flush().await.is_err() {
            break;
        }
        if handle.written(written) {
            let _ = handle.inbox.send(ConnEvent::Writable);
        }
    }
    let _ = wr.flush().await;
    let _ = wr.shutdown().await;
}

fn table_bool(table: &FieldTable, key: &str) -> bool {
    matches!(table.inner().get(key), Some(AMQPValue::Boolean(true)))
}

pub(crate) fn table_str(table: &FieldTable, key: &str) -> Option<String> {
    match table.inner().get(key) {
        Some(AMQPValue::LongString(s)) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        Some(AMQPValue::ShortString(s)) => Some(s.as_str().to_string()),
        _ => None,
    }
}

fn long_str(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()))
}

/// Decodes a SASL response: PLAIN is `authzid\0user\0password`, AMQPLAIN a field table
/// without its length prefix.
fn sasl_credentials(mechanism: &str, response: &[u8]) -> Option<(String, String)> {
    match mechanism {
        "PLAIN" => {
            let mut parts = response.split(|b| *b == 0);
            let _authzid = parts.next()?;
            let user = parts.next()?;
            let pass = parts.next()?;
            if parts.next().is_some() {
                return None;
            }
            Some((
                String::from_utf8(user.to_vec()).ok()?,
                String::from_utf8(pass.to_vec()).ok()?,
            ))
        }
        "AMQPLAIN" => {
            let mut framed = Vec::with_capacity(response.len() + 4);
            framed.extend_from_slice(&(response.len() as u32).to_be_bytes());
            framed.extend_from_slice(response);
            let table = warren_codec::parse_table_bounded(&framed).ok()?;
            Some((table_str(&table, "LOGIN")?, table_str(&table, "PASSWORD")?))
        }
        _ => None,
    }
}

impl Connection {
    fn server_properties(&self) -> FieldTable {
        let cfg = &self.ctx.broker.config;
        let mut caps = FieldTable::default();
        for cap in [
            "publisher_confirms",
            "exchange_exchange_bindings",
            "basic.nack",
            "consumer_cancel_notify",
            "connection.blocked",
            "consumer_priorities",
            "authentication_failure_close",
            "per_consumer_qos",
            "direct_reply_to",
        ] {
            caps.insert(cap.into(), AMQPValue::Boolean(true));
        }
        let mut props = FieldTable::default();
        props.insert("capabilities".into(), AMQPValue::FieldTable(caps));
        props.insert("cluster_name".into(), long_str(&cfg.cluster_name));
        props.insert(
            "copyright".into(),
            long_str("Copyright (c) the warren authors"),
        );
        props.insert(
            "information".into(),
            long_str("warren: an AMQP 0-9-1 broker compatible with RabbitMQ clients"),
        );
        props.insert(
            "platform".into(),
            long_str(&format!("Rust / tokio ({})", std::env::consts::OS)),
        );
        props.insert("product".into(), long_str("warren"));
        props.insert("version".into(), long_str(&cfg.rabbitmq_version));
        props.insert("warren_version".into(), long_str(env!("CARGO_PKG_VERSION")));
        props
    }

    async fn serve(
        &mut self,
        mut rd: impl ConnRead,
        mut inbox: crate::util::mailbox::Receiver<ConnEvent>,
    ) {
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        let handshake = Duration::from_secs(self.ctx.broker.config.handshake_timeout_secs);
        // Protocol header.
        loop {
            match check_protocol_header(&buf) {
                ProtocolHeaderCheck::Accepted => break,
                ProtocolHeaderCheck::Refused => {
                    debug!(peer = %self.peer, "refusing unsupported protocol header");
                    self.ctx.out.extend_from_slice(PROTOCOL_HEADER);
                    self.flush();
                    return;
                }
                ProtocolHeaderCheck::Incomplete => {
                    // One deadline for the whole header: bytes dribbled in one at a time
                    // must not extend it.
                    let deadline = tokio::time::Instant::from_std(self.started + handshake);
                    match tokio::time::timeout_at(deadline, read_some(&mut rd, &mut buf)).await {
                        Ok(Ok(n)) if n > 0 => {}
                        _ => return,
                    }
                }
            }
        }
        let _ = buf.split_to(PROTOCOL_HEADER.len());
        let start = connection::Start {
            version_major: 0,
            version_minor: 9,
            server_properties: self.server_properties(),
            mechanisms: LongString::from(self.mechanisms().join(" ").into_bytes()),
            locales: LongString::from(b"en_US".to_vec()),
        };
        self.ctx.send_method(
            0,
            &AMQPClass::Connection(connection::AMQPMethod::Start(start)),
        );
        self.flush();

        loop {
            // Process everything already buffered before waiting again.
            self.process_buffer(&mut buf);
            self.drain_inbox(&mut inbox);
            self.flush();
            if self.phase == Phase::Done {
                if self.silent_close && !self.silent_close_delay.is_zero() {
                    // RabbitMQ makes a client that failed the handshake wait before the
                    // socket closes (SILENT_CLOSE_DELAY, 3 s), so failed logins cannot
                    // be retried at full speed.
                    tokio::time::sleep(self.silent_close_delay).await;
                }
                return;
            }
            // Idle connections hold no read buffer (kilobytes each, times thousands);
            // a busy one allocates a fresh chunk when the last one is used up.
            if buf.is_empty() {
                buf = BytesMut::new();
            }
            // A channel's consumer-timeout check may come before the connection's own.
            // Only while open: a closing connection's channels are gone, and a past
            // deadline left behind would wake this loop at once, again and again.
            let tick = match self.ctx.channel_tick {
                Some(at) if at < self.next_tick && self.phase == Phase::Open => at,
                _ => self.next_tick,
            };
            let in_flow = self.update_flow();
            let paused = self.reading_paused();
            if !paused && std::mem::take(&mut self.input_held) {
                // Frames already read waited while reading was paused: work them off
                // now, not only when more bytes arrive (a publisher that sent its last
                // messages before the pause would wait forever).
                continue;
            }
            tokio::select! {
                // Credit flow: look again at the queues that hold this publisher back.
                _ = tokio::time::sleep(FLOW_POLL), if in_flow => {}
                // A connection blocked by a resource alarm is not read at all (RabbitMQ
                // stops its reader); what is already buffered waits too.
                ready = rd.readable(), if !paused => {
                    if ready.is_err() {
                        return;
                    }
                    if !self.read_available(&mut rd, &mut buf) {
                        return;
                    }
                },
                event = inbox.recv() => match event {
                    Some(ev) => {
                        self.reserve_out();
                        self.on_event(ev);
                    }
                    None => return,
                },
                _ = tokio::time::sleep_until(tick.into()) => {
                    if self.on_tick() {
                        return;
                    }
                    self.next_tick = self.tick_after();
                }
            }
        }
    }

    /// Reads what the socket has into `buf`; false when the connection is over (the
    /// client closed the socket, or reading failed).
    fn read_available(&mut self, rd: &mut impl ConnRead, buf: &mut BytesMut) -> bool {
        if self.direct_body.is_none() {
            self.start_direct_body(buf);
        }
        if let Some(direct) = self.direct_body.as_mut().filter(|d| d.left > 0) {
            let sink = self
                .channels
                .get_mut(&direct.channel)
                .filter(|ch| !ch.closing && !direct.discard)
                .and_then(|ch| ch.body_sink(direct.left));
            let mut scratch = Vec::new();
            let target = match sink {
                Some(body) => body,
                None => {
                    direct.discard = true;
                    scratch.reserve(direct.left.min(READ_CHUNK));
                    &mut scratch
                }
            };
            // The frame end and the next frame's header come along with the payload when
            // the buffer has room for them: one receive call per large frame, not two.
            let payload_end = target.len() + direct.left;
            let limit = if target.capacity() >= payload_end + BODY_READ_AHEAD {
                direct.left + BODY_READ_AHEAD
            } else {
                direct.left
            };
            let read = rd.try_read_buf(target, limit);
            if target.len() > payload_end {
                if buf.capacity() - buf.len() < BODY_READ_AHEAD {
                    buf.reserve(READ_CHUNK);
                }
                buf.extend_from_slice(&target[payload_end..]);
                target.truncate(payload_end);
            }
            return self.after_read(read);
        }
        // After a payload read into its body buffer: its frame end and the next frame's
        // header only, so that a next body frame's payload goes straight to the body
        // buffer too rather than through `buf` (one small read per large frame).
        if self.direct_body.is_some() {
            if buf.capacity() - buf.len() < 8 {
                buf.reserve(READ_CHUNK);
            }
            let read = rd.try_read_buf(buf, 8 - buf.len().min(7));
            return self.after_read(read);
        }
        // Memory for the read is taken only once there is something to read.
        let limit = match large_frame_pending(buf) {
            // A large frame is read into an allocation of its own size and no further:
            // its body is kept as a slice of that buffer, and bytes of the next frames
            // sharing it would keep it alive (and count nowhere) after the message has
            // gone to disk.
            Some(total) => {
                if buf.capacity() < total {
                    let mut own = BytesMut::with_capacity(total);
                    own.extend_from_slice(buf);
                    *buf = own;
                }
                total - buf.len()
            }
            None => {
                if buf.capacity() - buf.len() < READ_CHUNK / 4 {
                    buf.reserve(READ_CHUNK);
                }
                // A publisher of multi-frame bodies: what follows a body is the next
                // message's method and header frames and then likely another large body
                // frame, whose payload should go to its body buffer, not into `buf` (it
                // would be copied from there, and a buffer grown large earlier would take
                // in whole frames). A few short reads pick up those small frames; then
                // reads are unbounded again, for a publisher that went on to small ones.
                if self.short_reads_left > 0 {
                    self.short_reads_left -= 1;
                    SHORT_READ
                } else {
                    usize::MAX
                }
            }
        };
        let read = rd.try_read_buf(buf, limit);
        self.after_read(read)
    }

    /// Accounts for a read; false when the connection is over.
    fn after_read(&mut self, read: std::io::Result<usize>) -> bool {
        match read {
            Ok(0) => {
                debug!(peer = %self.peer, name = %self.name, "client closed the socket");
                false
            }
            Ok(n) => {
                if let Some(direct) = self.direct_body.as_mut().filter(|d| d.left > 0) {
                    direct.left -= n.min(direct.left);
                }
                self.last_recv = Instant::now();
                self.io.received(n); // management stats
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => true,
            Err(_) => false,
        }
    }

    /// Switches to reading the body frame at the front of `buf` straight into its
    /// message's body buffer, when it is a large frame of a body that spans several
    /// frames on an open channel (see [`DirectBody`]). Anything else (and every error)
    /// stays with the normal path.
    fn start_direct_body(&mut self, buf: &mut BytesMut) {
        let Some(total) = large_frame_pending(buf) else {
            return;
        };
        if self.phase != Phase::Open || buf.len() < 7 || buf[0] != warren_codec::FRAME_BODY {
            return;
        }
        let channel = u16::from_be_bytes([buf[1], buf[2]]);
        if channel == 0 || self.closed_by_client.contains(&channel) {
            return;
        }
        let payload = total - 8;
        let Some(sink) = self
            .channels
            .get_mut(&channel)
            .filter(|ch| !ch.closing)
            .and_then(|ch| ch.body_sink(payload))
        else {
            return;
        };
        // The payload bytes that came with the frame header move over once.
        let arrived = (buf.len() - 7).min(payload);
        sink.extend_from_slice(&buf[7..7 + arrived]);
        buf.clear();
        self.short_reads_left = SHORT_READS_AFTER_BODY;
        self.direct_body = Some(DirectBody {
            channel,
            left: payload - arrived,
            payload,
            discard: false,
        });
    }

    /// The end marker of a body frame read straight into its body buffer: checked, then
    /// the body is handed on as the normal path would. False when the connection stops
    /// reading (a wrong marker closes it, as a frame error).
    fn finish_direct_body(&mut self, buf: &mut BytesMut) -> bool {
        if self.reading_paused() && !buf.is_empty() {
            // Like a buffered frame, the finished body waits until reading resumes.
            self.input_held = true;
            return true;
        }
        let Some(direct) = self.direct_body.take_if(|d| d.left == 0 && !buf.is_empty()) else {
            return true;
        };
        let end = buf[0];
        let _ = buf.split_to(1);
        if end != warren_codec::FRAME_END {
            let payload = self
                .channels
                .get_mut(&direct.channel)
                .and_then(|ch| ch.body_sink(0))
                .map(|body| {
                    let from = body.len().saturating_sub(direct.payload);
                    Bytes::copy_from_slice(&body[from..])
                })
                .unwrap_or_default();
            self.on_codec_error(
                &CodecError::BadFrameEnd {
                    frame_type: warren_codec::FRAME_BODY,
                    payload,
                    end,
                },
                buf,
            );
            return false;
        }
        if direct.discard || self.phase != Phase::Open {
            return true;
        }
        if let Err(err) = self.with_channel(direct.channel, |ch, ctx| ch.on_body_appended(ctx)) {
            self.close_with(&err);
        }
        if self.phase == Phase::Open {
            if let Some(notice) = self.throttle.on_content() {
                self.on_throttle(notice);
            }
        }
        true
    }

    fn tick_after(&self) -> Instant {
        let now = Instant::now();
        match self.phase {
            Phase::Open if self.heartbeat > 0 => {
                now + Duration::from_millis(u64::from(self.heartbeat) * 500)
            }
            Phase::Closing | Phase::PeerClosing => now + Duration::from_millis(200),
            Phase::Open => now + Duration::from_secs(3600),
            _ => now + Duration::from_millis(500),
        }
    }

    /// How long the socket stays open after a connection.close this side sent (for the
    /// peer's close-ok) or after the close-ok it sent (for the peer to close): RabbitMQ's
    /// `close_connection` timer, the negotiated heartbeat when between 1 and 29 seconds,
    /// else 30 s. A close-ok from the peer closes the socket at once.
    fn close_wait(&self) -> Duration {
        if self.fatal_close {
            return Duration::from_secs(3);
        }
        match self.heartbeat {
            hb @ 1..=29 => Duration::from_secs(u64::from(hb)),
            _ => Duration::from_secs(30),
        }
    }

    /// Timers: handshake timeout, heartbeats, close-ok wait. True means drop the socket.
    fn on_tick(&mut self) -> bool {
        let now = Instant::now();
        if self.phase == Phase::Open && self.ctx.channel_tick.is_some_and(|at| at <= now) {
            self.channel_ticks(now);
        }
        match self.phase {
            Phase::Open if self.heartbeat > 0 => {
                let interval = Duration::from_secs(u64::from(self.heartbeat));
                // While blocked we do not read, so silence proves nothing (RabbitMQ
                // pauses its heartbeat receiver too); heartbeats still go out.
                if self.reading_paused() {
                    if now.duration_since(self.last_send) >= interval / 2 {
                        encode_heartbeat(&mut self.ctx.out);
                    }
                    return false;
                }
                // RabbitMQ drops a silent peer after about three intervals (measured: ~3 s for 1 s).
                if now.duration_since(self.last_recv) > interval * 5 / 2 {
                    warn!(peer = %self.peer, name = %self.name, "missed heartbeats from client, timeout: {}s", self.heartbeat);
                    return true;
                }
                if now.duration_since(self.last_send) >= interval / 2 {
                    encode_heartbeat(&mut self.ctx.out);
                }
                false
            }
            Phase::Open => false,
            Phase::Closing | Phase::PeerClosing => {
                // RabbitMQ's heartbeat sender keeps going until the socket closes.
                let interval = Duration::from_secs(u64::from(self.heartbeat));
                if self.heartbeat > 0 && now.duration_since(self.last_send) >= interval / 2 {
                    encode_heartbeat(&mut self.ctx.out);
                }
                self.closing_since
                    .is_some_and(|t| now.duration_since(t) >= self.close_wait())
            }
            _ => {
                let limit = Duration::from_secs(self.ctx.broker.config.handshake_timeout_secs);
                if now.duration_since(self.started) > limit {
                    warn!(peer = %self.peer, "closing connection: handshake timeout");
                    return true;
                }
                false
            }
        }
    }

    /// RabbitMQ's channel tick: a channel whose oldest unacknowledged delivery is older
    /// than consumer_timeout is closed with 406; the others check again an interval
    /// later while they hold deliveries.
    fn channel_ticks(&mut self, now: Instant) {
        let interval = Duration::from_millis(self.ctx.broker.config.channel_tick_interval_ms);
        // Delivery ages are on the broker's TTL clock, so a test clock's advance counts;
        // the ticks themselves keep real time.
        let now_ms = self.ctx.broker.timers.now_ms();
        let mut next: Option<Instant> = None;
        for ch in self.channels.values_mut() {
            let Some(at) = ch.tick_at else { continue };
            if at <= now {
                ch.tick_at = None;
                if ch.closing {
                    continue;
                }
                if let Some(err) = ch.consumer_timed_out(now_ms) {
                    warn!(peer = %self.peer, name = %self.name, channel = ch.id, "consumer timed out waiting for delivery acknowledgement");
                    ch.start_close(&mut self.ctx, &err);
                    continue;
                }
                if ch.has_unacked() {
                    ch.tick_at = Some(now + interval);
                }
            }
            if let Some(at) = ch.tick_at {
                next = Some(next.map_or(at, |n: Instant| n.min(at)));
            }
        }
        self.ctx.channel_tick = next;
    }

    fn flush(&mut self) {
        if self.ctx.out_len() == 0 {
            return;
        }
        // Take the whole buffer: a split would keep its spare capacity alive (kilobytes
        // per idle connection). The next round allocates what this one needed.
        self.out_hint = self.ctx.out.len().clamp(256, 64 << 10);
        let total = self.ctx.out_len();
        let chunk = std::mem::take(&mut self.ctx.out).freeze();
        self.last_send = Instant::now();
        self.io.sent(total); // management stats
        self.ctx.handle.queued(total);
        for shared in self.ctx.out_chunks.drain(..) {
            let _ = self.writer.send(shared);
        }
        self.ctx.out_chunk_bytes = 0;
        if !chunk.is_empty() {
            let _ = self.writer.send(chunk);
        }
    }

    /// One allocation for the round's output instead of growing from nothing.
    fn reserve_out(&mut self) {
        if self.ctx.out.capacity() == 0 {
            self.ctx.out.reserve(self.out_hint);
        }
    }

    fn drain_inbox(&mut self, inbox: &mut crate::util::mailbox::Receiver<ConnEvent>) {
        // Bounded so a flood of deliveries cannot starve reads (acks) forever.
        for _ in 0..1024 {
            match inbox.try_recv() {
                Some(ev) => {
                    self.reserve_out();
                    self.on_event(ev);
                }
                None => break,
            }
            if self.ctx.out_len() > 1 << 20 {
                self.flush();
            }
        }
        self.process_local_cancels();
        // Message-store syncs arrive here: answer the publishers they release.
        for ch in self.channels.values_mut() {
            ch.flush_confirms(&mut self.ctx.out);
        }
    }

    fn on_event(&mut self, ev: ConnEvent) {
        match ev {
            ConnEvent::Deliver(d) => {
                let bytes = d.body_size();
                self.on_delivery(d);
                if self.ctx.handle.delivery_handled(bytes) {
                    // Queues held messages back while the inbox was full: ask again.
                    for ch in self.channels.values() {
                        ch.redispatch_consumers();
                    }
                }
            }
            ConnEvent::Cancelled {
                channel,
                consumer_tag,
            } => {
                if let Some(ch) = self.channels.get_mut(&channel) {
                    ch.on_consumer_cancelled(&mut self.ctx, &consumer_tag);
                }
            }
            ConnEvent::Durable {
                channel,
                token,
                stored,
            } => {
                if let Some(ch) = self.channels.get_mut(&channel) {
                    ch.on_durable(&mut self.ctx, token, stored);
                }
            }
            ConnEvent::AlarmsChanged => {
                let alarms = self.ctx.broker.alarms.current();
                self.apply_alarms(alarms);
            }
            ConnEvent::Writable => {
                for ch in self.channels.values() {
                    ch.redispatch_consumers();
                }
            }
            ConnEvent::ForceClose { code, text } => {
                if matches!(
                    self.phase,
                    Phase::Open | Phase::AwaitOpen | Phase::AwaitTuneOk
                ) {
                    let code = match code {
                        320 => ReplyCode::ConnectionForced,
                        _ => ReplyCode::InternalError,
                    };
                    let err = AmqpError {
                        code,
                        text,
                        class_id: 0,
                        method_id: 0,
                        scope: Scope::Connection,
                        cause: None,
                    };
                    self.close_with(&err);
                } else {
                    self.phase = Phase::Done;
                }
            }
        }
    }

    fn on_delivery(&mut self, d: Delivery) {
        let result = match self.channels.get_mut(&d.channel) {
            Some(ch) => ch.deliver(&mut self.ctx, d),
            None => Err(d),
        };
        if let Err(d) = result {
            return_delivery(d);
        }
    }

    fn process_local_cancels(&mut self) {
        for (channel, tag) in std::mem::take(&mut self.ctx.cancelled_here) {
            if let Some(ch) = self.channels.get_mut(&channel) {
                ch.on_consumer_cancelled(&mut self.ctx, &tag);
            }
        }
    }

    fn process_buffer(&mut self, buf: &mut BytesMut) {
        if !buf.is_empty() {
            self.reserve_out();
        }
        if !self.finish_direct_body(buf) {
            return;
        }
        loop {
            if self.phase == Phase::Done {
                return;
            }
            if self.phase == Phase::PeerClosing
                || (self.phase == Phase::Closing && self.fatal_close)
            {
                buf.clear();
                return;
            }
            if self.reading_paused() {
                self.input_held = !buf.is_empty();
                break;
            }
            let frame_max = if matches!(self.phase, Phase::Open) {
                self.ctx.frame_max
            } else {
                self.ctx.broker.config.frame_max
            };
            match decode_frame(buf, frame_max) {
                Ok(Some(frame)) => {
                    if self.phase == Phase::Closing {
                        self.on_frame_while_closing(frame);
                        continue;
                    }
                    let content = matches!(
                        frame,
                        Frame::Header { channel, .. } | Frame::Body { channel, .. } if channel != 0
                    );
                    if let Err(err) = self.on_frame(frame) {
                        self.close_with(&err);
                    }
                    if content && self.phase == Phase::Open {
                        // RabbitMQ's maybe_block: a publish during an alarm blocks here.
                        if let Some(notice) = self.throttle.on_content() {
                            self.on_throttle(notice);
                        }
                    }
                    if self.ctx.out_len() > 1 << 20 {
                        self.flush();
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    self.on_codec_error(&e, buf);
                    return;
                }
            }
        }
        self.process_local_cancels();
        for ch in self.channels.values_mut() {
            ch.flush_confirms(&mut self.ctx.out);
        }
    }

    /// A frame that cannot be decoded: the connection closes (or drops), and what is
    /// buffered is discarded, since the stream cannot be resynchronised.
    fn on_codec_error(&mut self, e: &CodecError, buf: &mut BytesMut) {
        buf.clear();
        if self.phase == Phase::Closing {
            // Out of sync with a peer we are closing on: stop reading.
            self.phase = Phase::Done;
            return;
        }
        match codec_error(e) {
            CodecVerdict::Close(err) => {
                self.close_with(&err);
                // Errors in the framing itself (not in a method's arguments).
                self.fatal_close = matches!(
                    e,
                    CodecError::FrameTooLarge { .. }
                        | CodecError::BadFrameEnd { .. }
                        | CodecError::UnknownFrame { .. }
                );
            }
            CodecVerdict::Drop => {
                debug!(peer = %self.peer, error = %e, "dropping connection");
                self.phase = Phase::Done;
            }
        }
    }

    fn on_frame_while_closing(&mut self, frame: Frame) {
        if let Frame::Method { channel: 0, method } = frame {
            match *method {
                AMQPClass::Connection(connection::AMQPMethod::CloseOk(_)) => {
                    self.phase = Phase::Done
                }
                // RabbitMQ answers a close that crosses its own and keeps waiting (the
                // socket closes when the close-wait ends, not at once).
                AMQPClass::Connection(connection::AMQPMethod::Close(_)) => self.send_close_ok(),
                _ => {}
            }
        }
    }

    fn send_close_ok(&mut self) {
        // Confirms for publishes that came before the close go out before close-ok.
        for ch in self.channels.values_mut() {
            ch.flush_confirms(&mut self.ctx.out);
        }
        self.ctx.send_method(
            0,
            &AMQPClass::Connection(connection::AMQPMethod::CloseOk(connection::CloseOk {})),
        );
    }

    /// Sends connection.close for a connection-level error (or refuses a channel-level
    /// one on its channel).
    fn close_with(&mut self, err: &AmqpError) {
        let handshake = matches!(self.phase, Phase::AwaitStartOk | Phase::AwaitTuneOk);
        let refused_login =
            err.code == ReplyCode::AccessRefused && self.phase == Phase::AwaitStartOk;
        if handshake && !(refused_login && self.auth_failure_close) {
            // Before tune-ok RabbitMQ answers errors by closing the socket; a refused
            // login gets connection.close only if the client asked for it
            // (authentication_failure_close).
            info!(peer = %self.peer, text = %err.text, "closing connection during handshake");
            self.phase = Phase::Done;
            self.silent_close = true;
            return;
        }
        match &err.cause {
            Some(cause) => {
                warn!(peer = %self.peer, name = %self.name, code = err.code.code(), text = %err.text, %cause, "closing AMQP connection");
            }
            None => {
                info!(peer = %self.peer, name = %self.name, code = err.code.code(), text = %err.text, "closing AMQP connection");
            }
        }
        self.ctx.send_method(
            0,
            &AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close {
                reply_code: err.code.code(),
                reply_text: crate::util::error::short_text(&err.text),
                class_id: err.class_id,
                method_id: err.method_id,
            })),
        );
        let open = self.phase == Phase::Open;
        self.phase = Phase::Closing;
        self.closing_since = Some(Instant::now());
        self.next_tick = self.tick_after();
        if open {
            // Stop deliveries at once; unacked messages go back to their queues.
            let mut channels = std::mem::take(&mut self.channels);
            for ch in channels.values_mut() {
                ch.teardown(&mut self.ctx);
            }
        }
    }

    fn on_frame(&mut self, frame: Frame) -> AmqpResult<()> {
        match frame {
            Frame::Heartbeat { channel: 0 } => Ok(()),
            Frame::Heartbeat { .. } => {
                Err(AmqpError::unexpected_frame("type 8, all octets = <<>>"))
            }
            Frame::Method { channel: 0, method } => self.on_connection_method(*method),
            Frame::Method { channel, method } => {
                if self.phase != Phase::Open {
                    return Err(AmqpError::channel_error(format_args!(
                        "unexpected method on channel {channel} before the connection is open"
                    )));
                }
                self.on_channel_method(channel, *method)
            }
            Frame::Header {
                channel: 0,
                class_id,
                body_size,
                properties,
            } => {
                let mut payload = Vec::with_capacity(12 + properties.len());
                payload.extend_from_slice(&class_id.to_be_bytes());
                payload.extend_from_slice(&[0, 0]);
                payload.extend_from_slice(&body_size.to_be_bytes());
                payload.extend_from_slice(&properties);
                Err(AmqpError::unexpected_frame(format_args!(
                    "type 2, all octets = {}",
                    erlang_binary(&payload)
                )))
            }
            Frame::Body {
                channel: 0,
                payload,
            } => Err(AmqpError::unexpected_frame(format_args!(
                "type 3, all octets = {}",
                erlang_binary(&payload)
            ))),
            Frame::Header {
                channel,
                class_id,
                body_size,
                properties,
            } => self.with_channel(channel, |ch, ctx| {
                ch.on_header(ctx, class_id, body_size, properties)
            }),
            Frame::Body { channel, payload } => {
                self.with_channel(channel, |ch, ctx| ch.on_body(ctx, payload))
            }
        }
    }

    /// Runs a content-frame handler on an open channel, turning soft errors into a
    /// channel close.
    fn with_channel(
        &mut self,
        id: u16,
        f: impl FnOnce(&mut Channel, &mut ConnCtx) -> AmqpResult<()>,
    ) -> AmqpResult<()> {
        if self.closed_by_client.contains(&id) {
            return Ok(());
        }
        let Some(ch) = self.channels.get_mut(&id) else {
            return Err(AmqpError::channel_error("expected 'channel.open'"));
        };
        if ch.closing {
            return Ok(());
        }
        match f(ch, &mut self.ctx) {
            Ok(()) => Ok(()),
            Err(e) if e.scope == Scope::Channel => {
                ch.start_close(&mut self.ctx, &e);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn on_channel_method(&mut self, id: u16, method: AMQPClass) -> AmqpResult<()> {
        let class_id = method.get_amqp_class_id();
        let method_id = method.get_amqp_method_id();
        match method {
            AMQPClass::Channel(channel::AMQPMethod::Open(_)) => {
                if self.channels.contains_key(&id) {
                    return Err(AmqpError::channel_error("second 'channel.open' seen")
                        .with_method(class_id, method_id));
                }
                let open = self.channels.len();
                if self.channel_max != 0 && open >= usize::from(self.channel_max) {
                    return Err(AmqpError::not_allowed(format_args!(
                        "number of channels opened ({open}) has reached the negotiated channel_max ({})",
                        self.channel_max
                    )));
                }
                // The user's max-channels, over all its connections (class and method
                // 0 in RabbitMQ's connection.close).
                let broker = self.ctx.broker.clone();
                let gate = broker.admit_channel(&self.ctx.user)?;
                self.closed_by_client.remove(&id);
                let channel = Channel::new(id, self.ctx.broker.config.consumer_timeout_ms);
                let shared = channel.shared.clone();
                self.channels.insert(id, channel);
                self.ctx
                    .broker
                    .admin
                    .channel_opened(self.ctx.handle.id, id, shared);
                drop(gate);
                self.ctx.send_method(
                    id,
                    &AMQPClass::Channel(channel::AMQPMethod::OpenOk(channel::OpenOk {})),
                );
                Ok(())
            }
            AMQPClass::Channel(channel::AMQPMethod::CloseOk(_)) => match self.channels.get(&id) {
                Some(ch) if ch.closing => {
                    self.channels.remove(&id);
                    self.ctx.broker.admin.channel_closed(self.ctx.handle.id, id);
                    Ok(())
                }
                Some(_) => Err(AmqpError::command_invalid("unimplemented method")
                    .with_method(class_id, method_id)),
                None if self.closed_by_client.contains(&id) => Ok(()),
                None => Err(AmqpError::channel_error("expected 'channel.open'")
                    .with_method(class_id, method_id)),
            },
            AMQPClass::Channel(channel::AMQPMethod::Close(_)) => {
                if let Some(mut ch) = self.channels.remove(&id) {
                    ch.flush_confirms(&mut self.ctx.out);
                    ch.teardown(&mut self.ctx);
                    self.ctx.broker.admin.channel_closed(self.ctx.handle.id, id);
                    self.closed_by_client.insert(id);
                    self.ctx.send_method(
                        id,
                        &AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {})),
                    );
                    Ok(())
                } else {
                    Err(AmqpError::channel_error("expected 'channel.open'")
                        .with_method(class_id, method_id))
                }
            }
            AMQPClass::Connection(_) => {
                Err(AmqpError::command_invalid("unimplemented method")
                    .with_method(class_id, method_id))
            }
            method => {
                if self.closed_by_client.contains(&id) {
                    // Frames racing the client's own channel.close are dropped.
                    return Ok(());
                }
                let Some(ch) = self.channels.get_mut(&id) else {
                    return Err(AmqpError::channel_error("expected 'channel.open'")
                        .with_method(class_id, method_id));
                };
                if ch.closing {
                    return Ok(());
                }
                if ch.expecting_content() {
                    return Err(AmqpError::unexpected_frame(
                        "expected content header for class 60, got non content header frame instead",
                    )
                    .with_method(60, 40));
                }
                match ch.handle_method(&mut self.ctx, method) {
                    Ok(()) => Ok(()),
                    Err(e) if e.scope == Scope::Channel => {
                        ch.start_close(&mut self.ctx, &e);
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
        }
    }

    fn on_connection_method(&mut self, method: AMQPClass) -> AmqpResult<()> {
        let ids = (method.get_amqp_class_id(), method.get_amqp_method_id());
        let unexpected = || {
            AmqpError::channel_error("unexpected method in connection state running")
                .with_method(ids.0, ids.1)
        };
        let AMQPClass::Connection(m) = method else {
            return Err(unexpected());
        };
        match (self.phase, m) {
            (Phase::AwaitStartOk, connection::AMQPMethod::StartOk(ok)) => self.on_start_ok(ok),
            (Phase::AwaitTuneOk, connection::AMQPMethod::TuneOk(ok)) => self.on_tune_ok(ok),
            (Phase::AwaitOpen, connection::AMQPMethod::Open(open)) => self.on_open(open),
            (_, connection::AMQPMethod::Close(_)) => {
                debug!(peer = %self.peer, name = %self.name, "client closed the connection");
                // Confirms for what came before the close go out first.
                for ch in self.channels.values_mut() {
                    ch.flush_confirms(&mut self.ctx.out);
                }
                self.cleanup();
                self.send_close_ok();
                self.phase = Phase::PeerClosing;
                self.closing_since = Some(Instant::now());
                self.next_tick = self.tick_after();
                Ok(())
            }
            (_, connection::AMQPMethod::CloseOk(_)) => {
                self.phase = Phase::Done;
                Ok(())
            }
            (Phase::Open, connection::AMQPMethod::UpdateSecret(_)) => {
                self.ctx.send_method(
                    0,
                    &AMQPClass::Connection(connection::AMQPMethod::UpdateSecretOk(
                        connection::UpdateSecretOk {},
                    )),
                );
                Ok(())
            }
            (Phase::Open, connection::AMQPMethod::Blocked(_))
            | (Phase::Open, connection::AMQPMethod::Unblocked(_)) => Ok(()),
            _ => Err(unexpected()),
        }
    }

    /// The mechanisms offered in connection.start: the configured ones, EXTERNAL only on
    /// TLS connections (offered there with or without a client certificate, as RabbitMQ
    /// 3.10 does, so that a missing certificate gets a clear refusal).
    fn mechanisms(&self) -> Vec<&str> {
        self.ctx
            .broker
            .config
            .auth_mechanisms
            .iter()
            .map(String::as_str)
            .filter(|m| KNOWN_MECHANISMS.contains(m))
            .filter(|m| *m != "EXTERNAL" || self.tls.is_some())
            .collect()
    }

    fn on_start_ok(&mut self, ok: connection::StartOk) -> AmqpResult<()> {
        let props = &ok.client_properties;
        if let Some(name) = table_str(props, "connection_name") {
            self.name = format!("{} ({})", self.peer, name);
        }
        if let Some(AMQPValue::FieldTable(caps)) = props.inner().get("capabilities") {
            self.ctx.cancel_notify = table_bool(caps, "consumer_cancel_notify");
            self.blocked_notify = table_bool(caps, "connection.blocked");
            self.auth_failure_close = table_bool(caps, "authentication_failure_close");
        }
        let mechanism = ok.mechanism.as_str();
        if !KNOWN_MECHANISMS.contains(&mechanism) {
            return Err(AmqpError::command_invalid(format_args!(
                "unknown authentication mechanism '{mechanism}'"
            ))
            .with_method(10, 11));
        }
        if !self.mechanisms().contains(&mechanism) {
            // rabbit_reader: a mechanism RabbitMQ knows but does not offer here.
            return Err(AmqpError::command_invalid(format_args!(
                "invalid authentication mechanism '{mechanism}'"
            ))
            .with_method(10, 11));
        }
        let refused = || {
            AmqpError::access_refused(format_args!(
                "Login was refused using authentication mechanism {mechanism}. For details see the broker logfile."
            ))
            .on_connection()
        };
        let checked = if mechanism == "EXTERNAL" {
            let login_from = self.ctx.broker.config.ssl_cert_login_from.as_str();
            let cert = self.tls.as_ref().and_then(|t| t.peer_cert.as_ref());
            let Some(user) = cert.and_then(|c| external_user(c, login_from)) else {
                // RabbitMQ's log text (rabbit_auth_mechanism_ssl).
                warn!(peer = %self.peer, "EXTERNAL login refused: connection peer presented no TLS (x.509) certificate");
                return Err(refused());
            };
            let result = self.ctx.broker.authenticate_external(&user, self.peer.ip());
            (user, result)
        } else {
            let Some((user, pass)) = sasl_credentials(mechanism, ok.response.as_bytes()) else {
                return Err(refused());
            };
            let result = self.ctx.broker.authenticate(&user, &pass, self.peer.ip());
            (user, result)
        };
        let (user, result) = checked;
        let events = &self.ctx.broker.admin.events;
        let facts = crate::model::events::AuthFacts {
            user: &user,
            mechanism,
            peer: self.peer,
            local: self.local,
            tls: self.tls.is_some(),
        };
        match &result {
            Ok(()) => events.emit("user.authentication.success", |h| {
                crate::model::events::auth_headers(h, &facts)
            }),
            Err(e) => {
                let reason = match e {
                    AuthError::BadCredentials => format!("user '{user}' - invalid credentials"),
                    AuthError::LoopbackOnly => {
                        format!("user '{user}' can only connect via localhost")
                    }
                };
                events.emit("user.authentication.failure", |h| {
                    h.value("error", crate::model::events::char_list(&reason));
                    crate::model::events::auth_headers(h, &facts);
                });
                events.emit("connection.closed", |h| {
                    h.erl_table("client_properties", &ok.client_properties)
                        .str("node", crate::model::events::node_name())
                        .str("pid", events.pid(self.ctx.handle.id, 0))
                        .str(
                            "name",
                            crate::model::events::connection_name(self.peer, self.local),
                        );
                });
            }
        }
        match result {
            Ok(()) => crate::model::events::set_actor(&user),
            Err(AuthError::BadCredentials) if mechanism == "EXTERNAL" => {
                warn!(peer = %self.peer, "EXTERNAL login refused: user '{user}' - invalid credentials");
                return Err(refused());
            }
            Err(AuthError::BadCredentials) => {
                warn!(peer = %self.peer, user = %user, "invalid credentials");
                return Err(refused());
            }
            Err(AuthError::LoopbackOnly) => {
                warn!(peer = %self.peer, user = %user, "user can only log in via localhost");
                return Err(refused());
            }
        }
        self.ctx.user = user;
        self.client_properties = ok.client_properties.clone();
        self.auth_mechanism = mechanism.to_string();
        let cfg = &self.ctx.broker.config;
        let tune = connection::Tune {
            channel_max: cfg.channel_max,
            frame_max: cfg.frame_max,
            heartbeat: cfg.heartbeat,
        };
        self.ctx.send_method(
            0,
            &AMQPClass::Connection(connection::AMQPMethod::Tune(tune)),
        );
        self.phase = Phase::AwaitTuneOk;
        Ok(())
    }

    fn on_tune_ok(&mut self, ok: connection::TuneOk) -> AmqpResult<()> {
        let cfg = &self.ctx.broker.config;
        negotiate(
            "frame_max",
            ok.frame_max,
            warren_codec::FRAME_MIN_SIZE,
            cfg.frame_max,
        )?;
        negotiate(
            "channel_max",
            u32::from(ok.channel_max),
            1,
            u32::from(cfg.channel_max),
        )?;
        self.ctx.frame_max = if ok.frame_max == 0 {
            cfg.frame_max
        } else {
            ok.frame_max
        };
        self.channel_max = if ok.channel_max == 0 {
            cfg.channel_max
        } else {
            ok.channel_max
        };
        self.heartbeat = ok.heartbeat;
        self.phase = Phase::AwaitOpen;
        self.next_tick = self.tick_after();
        Ok(())
    }

    fn on_open(&mut self, open: connection::Open) -> AmqpResult<()> {
        let vhost_name = open.virtual_host.as_str();
        let Some(vhost) = self.ctx.broker.vhost(vhost_name) else {
            return Err(
                AmqpError::not_allowed(format_args!("vhost {vhost_name} not found"))
                    .with_method(10, 40),
            );
        };
        // RabbitMQ checks the vhost's and the user's connection limits before access;
        // the gate is held until the connection is registered below.
        let broker = self.ctx.broker.clone();
        let gate = broker
            .admit_connection(vhost_name, &self.ctx.user)
            .map_err(|e| e.with_method(10, 40))?;
        if !self.ctx.broker.has_vhost_access(&self.ctx.user, vhost_name) {
            // RabbitMQ 3.10 answers 530 NOT_ALLOWED here (recorded in
            // tests/fixtures/management/amqp_permissions.json).
            return Err(AmqpError::not_allowed(format_args!(
                "access to vhost '{vhost_name}' refused for user '{}'",
                self.ctx.user
            ))
            .on_connection()
            .with_method(10, 40));
        }
        self.ctx.vhost = Some(vhost);
        self.ctx.name = Arc::from(format!("{} -> {}", self.peer, self.local));
        self.ctx.send_method(
            0,
            &AMQPClass::Connection(connection::AMQPMethod::OpenOk(connection::OpenOk {})),
        );
        self.phase = Phase::Open;
        self.next_tick = self.tick_after();
        self.ctx
            .broker
            .admin
            .connection_opened(crate::model::registry::ConnInfo {
                id: self.ctx.handle.id,
                name: self.ctx.name.to_string(),
                peer: self.peer,
                local: self.local,
                user: self.ctx.user.clone(),
                vhost: vhost_name.to_string(),
                client_properties: std::mem::take(&mut self.client_properties),
                auth_mechanism: std::mem::take(&mut self.auth_mechanism),
                frame_max: self.ctx.frame_max,
                channel_max: self.channel_max,
                heartbeat: self.heartbeat,
                connected_at: crate::util::clock::now_ms(),
                handle: self.ctx.handle.clone(),
                channels: Default::default(),
                io: self.io.clone(),
                tls: self.tls.clone(),
            });
        drop(gate);
        info!(peer = %self.peer, name = %self.name, user = %self.ctx.user, vhost = %vhost_name, "connection opened");
        // Like RabbitMQ's rabbit_alarm:register at open: an alarm in effect makes the
        // connection `blocking` at once (connection.blocked waits for a publish).
        let alarms = self.ctx.broker.alarms.current();
        self.apply_alarms(alarms);
        Ok(())
    }

    fn reading_paused(&self) -> bool {
        self.phase == Phase::Open && (self.throttle.paused() || !self.ctx.flow_queues.is_empty())
    }

    /// Drops the queues that no longer hold this publisher back; true while some do.
    fn update_flow(&mut self) -> bool {
        if self.ctx.flow_queues.is_empty() {
            return false;
        }
        self.ctx.flow_queues.retain(|q| !q.flow_relieved());
        if self.ctx.flow_queues.is_empty() {
            // The socket was not read while held back: silence then proved nothing.
            self.last_recv = Instant::now();
            self.publish_flow_state();
            return false;
        }
        if self.throttle.state() == crate::model::alarm::FlowState::Running {
            self.ctx.handle.flow_state.store(
                crate::model::alarm::FlowState::Flow as u8,
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        true
    }

    fn apply_alarms(&mut self, alarms: AlarmSet) {
        if self.phase != Phase::Open {
            return;
        }
        let notice = self.throttle.on_alarms(alarms);
        self.publish_flow_state();
        if let Some(notice) = notice {
            self.on_throttle(notice);
        }
    }

    /// Tells a client with the `connection.blocked` capability about a transition.
    fn on_throttle(&mut self, notice: Notice) {
        self.publish_flow_state();
        let method = match notice {
            Notice::Blocked(reason) => {
                info!(peer = %self.peer, name = %self.name, %reason, "connection blocked by a resource alarm");
                connection::AMQPMethod::Blocked(connection::Blocked {
                    reason: reason.into(),
                })
            }
            Notice::Unblocked => {
                info!(peer = %self.peer, name = %self.name, "connection unblocked");
                // Reading resumes now: the heartbeat clock starts afresh.
                self.last_recv = Instant::now();
                connection::AMQPMethod::Unblocked(connection::Unblocked {})
            }
        };
        if self.blocked_notify {
            self.ctx.send_method(0, &AMQPClass::Connection(method));
        }
    }

    fn publish_flow_state(&self) {
        self.ctx.handle.flow_state.store(
            self.throttle.state() as u8,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Connection gone: channels torn down (unacked messages requeued), exclusive queues
    /// deleted.
    /// After a panic in this connection's task: whatever the round had half-written is
    /// dropped (it may end in a torn frame) and the client gets 541 INTERNAL_ERROR, as
    /// RabbitMQ sends when a connection process crashes.
    fn close_after_panic(&mut self, panic: &str) {
        error!(peer = %self.peer, name = %self.name, panic = %panic, "connection task panicked; closing the connection with 541 INTERNAL_ERROR");
        self.ctx.out.clear();
        self.ctx.send_method(
            0,
            &AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close {
                reply_code: ReplyCode::InternalError.code(),
                reply_text: "INTERNAL_ERROR".into(),
                class_id: 0,
                method_id: 0,
            })),
        );
        self.flush();
        self.phase = Phase::Done;
    }

    fn cleanup(&mut self) {
        let mut channels = std::mem::take(&mut self.channels);
        for ch in channels.values_mut() {
            ch.teardown(&mut self.ctx);
        }
        if let Some(vhost) = self.ctx.vhost.clone() {
            for name in std::mem::take(&mut self.ctx.exclusive_queues) {
                crate::session::channel::delete_queue_logged(&mut self.ctx, &vhost, &name);
            }
        }
    }
}

/// Puts a delivery that could not be handed to its channel back into its queue.
fn return_delivery(d: Delivery) {
    let Some(queue) = d.queue else { return };
    queue.return_undelivered(d.consumer_id, d.entry, !d.no_ack);
}

/// RabbitMQ's tune validation (rabbit_reader:validate_negotiated_integer_value).
fn negotiate(field: &str, client: u32, min: u32, server: u32) -> AmqpResult<()> {
    let detail = if field == "channel_max" && client == 0 {
        " (no limit)"
    } else {
        ""
    };
    if client != 0 && client < min {
        return Err(AmqpError::not_allowed(format_args!(
            "negotiated {field} = {client}{detail} is lower than the minimum allowed value ({min})"
        ))
        .with_method(10, 31));
    }
    if server != 0 && (client == 0 || client > server) {
        return Err(AmqpError::not_allowed(format_args!(
            "negotiated {field} = {client}{detail} is higher than the maximum allowed value ({server})"
        ))
        .with_method(10, 31));
    }
    Ok(())
}

/// What a codec error does to the connection.
enum CodecVerdict {
    /// Send connection.close with this error.
    Close(AmqpError),
    /// Drop the socket without a word (RabbitMQ 3.10's reader crashes on these).
    Drop,
}

fn codec_error(e: &CodecError) -> CodecVerdict {
    CodecVerdict::Close(match e {
        CodecError::FrameTooLarge {
            frame_type,
            size,
            frame_max,
        } => AmqpError::frame_error(format_args!(
            "type {frame_type}, all octets = <<>>: {{frame_too_large,{size},{frame_max}}}"
        )),
        CodecError::BadFrameEnd {
            frame_type,
            payload,
            end,
        } => AmqpError::frame_error(format_args!(
            "type {frame_type}, all octets = {}: {{invalid_frame_end_marker,{end}}}",
            erlang_binary(payload)
        )),
        CodecError::UnknownFrame {
            frame_type,
            payload,
        } => AmqpError::frame_error(format_args!(
            "type {frame_type}, all octets = {}: unknown_frame",
            erlang_binary(payload)
        )),
        CodecError::UnknownMethod { .. } => return CodecVerdict::Drop,
        CodecError::MalformedMethod {
            class_id,
            method_id,
            arguments,
        } => AmqpError::frame_error(format_args!("cannot decode {}", erlang_binary(arguments)))
            .with_method(*class_id, *method_id),
        CodecError::TableTooDeep {
            class_id,
            method_id,
            depth,
        } => AmqpError::frame_error(format_args!(
            "cannot decode a field table nested {depth} levels deep (at most {})",
            warren_codec::MAX_PARSE_DEPTH
        ))
        .with_method(*class_id, *method_id),
        CodecError::PrefetchSize(size) => {
            AmqpError::not_implemented(format_args!("prefetch_size!=0 ({size})"))
                .with_method(60, 10)
        }
        CodecError::MalformedHeader | CodecError::MalformedProperties => {
            AmqpError::frame_error("malformed content header")
        }
        CodecError::Encode(s) => AmqpError::internal(s),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_connection_future_becomes_an_error() {
        let calm = CatchPanic(std::pin::pin!(async { 7 })).await;
        assert_eq!(calm, Ok(7));
        let panicking = CatchPanic(std::pin::pin!(async {
            tokio::task::yield_now().await;
            let at = std::hint::black_box(3u8);
            if at == 3 {
                panic!("boom at {at}");
            }
            at
        }))
        .await;
        assert_eq!(panicking, Err("boom at 3".to_string()));
        let static_text = CatchPanic(std::pin::pin!(async { panic!("static") })).await;
        assert_eq!(static_text, Err::<(), _>("static".to_string()));
    }

    /// Every idle connection pays for its task's size: the layers around the connection's
    /// own future (the actor scope, `run_on`, `run`) must not each keep a copy of it, as
    /// `async fn` wrappers did (4.3 KiB per connection instead of 1.9 in a release build).
    #[tokio::test]
    async fn the_layers_around_a_connection_future_add_no_copy_of_it() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _clients = (
            TcpStream::connect(addr).await.unwrap(),
            TcpStream::connect(addr).await.unwrap(),
        );
        let (first, peer) = listener.accept().await.unwrap();
        let (second, _) = listener.accept().await.unwrap();
        let broker = Broker::new(crate::model::config::ServerConfig::default());
        let (rd, wr) = second.into_split();
        let ends = Ends {
            peer,
            local: peer,
            silent_close_delay: SILENT_CLOSE_DELAY,
            tls: None,
        };
        let inner = std::mem::size_of_val(&run_connection(rd, wr, ends, broker.clone()));
        let whole = std::mem::size_of_val(&run(first, peer, broker));
        assert!(
            whole <= inner + 256,
            "the connection task is {whole} bytes for a {inner}-byte connection future"
        );
    }

    #[test]
    fn amqplain_login_survives_a_deeply_nested_response() {
        // LOGIN and PASSWORD, then a table nested 3,000 levels deep (without the outer
        // length prefix, as AMQPLAIN sends it).
        let mut response = Vec::new();
        response.extend_from_slice(b"\x05LOGINS\x00\x00\x00\x05guest");
        response.extend_from_slice(b"\x08PASSWORDS\x00\x00\x00\x05guest");
        let mut deep = vec![0u8, 0, 0, 0];
        for _ in 0..3_000 {
            let mut entry = vec![1, b'k', b'F'];
            entry.extend_from_slice(&deep);
            deep = (entry.len() as u32).to_be_bytes().to_vec();
            deep.extend_from_slice(&entry);
        }
        response.extend_from_slice(b"\x04deepF");
        response.extend_from_slice(&deep);
        assert_eq!(
            sasl_credentials("AMQPLAIN", &response),
            Some(("guest".to_string(), "guest".to_string()))
        );
    }

    #[test]
    fn sasl_plain_and_amqplain() {
        assert_eq!(
            sasl_credentials("PLAIN", b"\0guest\0secret"),
            Some(("guest".into(), "secret".into()))
        );
        // authzid is ignored; a missing separator or an extra part is refused.
        assert_eq!(
            sasl_credentials("PLAIN", b"admin\0bob\0pw"),
            Some(("bob".into(), "pw".into()))
        );
        assert_eq!(sasl_credentials("PLAIN", b"\0guest"), None);
        assert_eq!(sasl_credentials("PLAIN", b"\0a\0b\0c"), None);
        // AMQPLAIN: a field table without its length prefix, as RabbitMQ's clients send it.
        let mut table = FieldTable::default();
        table.insert("LOGIN".into(), long_str("guest"));
        table.insert("PASSWORD".into(), long_str("secret"));
        let encoded = cookie_factory::gen_simple(
            amq_protocol::types::generation::gen_field_table(&table),
            Vec::new(),
        )
        .unwrap_or_default();
        assert!(encoded.len() > 4, "table encodes");
        assert_eq!(
            sasl_credentials("AMQPLAIN", &encoded[4..]),
            Some(("guest".into(), "secret".into()))
        );
        assert_eq!(sasl_credentials("AMQPLAIN", b"\x05LOGIN"), None);
        assert_eq!(sasl_credentials("EXTERNAL", b""), None);
    }

    #[test]
    fn tune_validation_follows_rabbitmq() {
        assert!(negotiate("frame_max", 131_072, 4096, 131_072).is_ok());
        assert!(negotiate("frame_max", 4096, 4096, 131_072).is_ok());
        let e = negotiate("frame_max", 4095, 4096, 131_072).expect_err("below min");
        assert_eq!(
            e.text,
            "NOT_ALLOWED - negotiated frame_max = 4095 is lower than the minimum allowed value (4096)"
        );
        let e = negotiate("frame_max", 0, 4096, 131_072).expect_err("0 is unlimited");
        assert_eq!(
            e.text,
            "NOT_ALLOWED - negotiated frame_max = 0 is higher than the maximum allowed value (131072)"
        );
        let e = negotiate("channel_max", 0, 1, 2047).expect_err("0 is unlimited");
        assert_eq!(
            e.text,
            "NOT_ALLOWED - negotiated channel_max = 0 (no limit) is higher than the maximum allowed value (2047)"
        );
        assert!(negotiate("channel_max", 10, 1, 2047).is_ok());
    }

    #[test]
    fn codec_errors_map_to_rabbitmq_texts() {
        let CodecVerdict::Close(e) = codec_error(&CodecError::FrameTooLarge {
            frame_type: 3,
            size: 5000,
            frame_max: 4088,
        }) else {
            panic!("frame too large must close with an error");
        };
        assert_eq!(
            e.text,
            "FRAME_ERROR - type 3, all octets = <<>>: {frame_too_large,5000,4088}"
        );
        assert!(matches!(
            codec_error(&CodecError::UnknownMethod {
                class_id: 99,
                method_id: 1
            }),
            CodecVerdict::Drop
        ));
    }
}
