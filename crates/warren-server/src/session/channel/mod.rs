//! One AMQP channel: content assembly, the exchange/queue/basic/confirm/tx methods, and
//! the bookkeeping of unacknowledged deliveries.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{atomic::Ordering, Arc},
};

use amq_protocol::{
    protocol::{access, basic, channel, confirm, exchange, queue, tx, AMQPClass},
    types::{FieldTable, ShortString},
};
use bytes::{Bytes, BytesMut};
use warren_codec::{encode_content, encode_deliver, PropertiesEdit, PropertiesView};
use warren_router::Destination;
use warren_store::{ConsumerId, ConsumerSlot, Entry, Message};

mod confirms;
mod consumers;
mod firehose;
mod publishing;
mod topology;
mod transactions;

pub(crate) use publishing::BODY_READ_AHEAD;
pub(crate) use topology::delete_queue_logged;

use crate::{
    model::args,
    model::auth::{Access, Resource},
    model::broker::ReplyTarget,
    model::handles::{ChannelShared, ConsumerHandle, Delivery, DurableToken},
    model::ops::{
        bindings, exchanges,
        publish::{self, Publication},
        queues::{self, locked, Declared, QueueSpec},
    },
    model::queue::Queue,
    model::vhost::{ExchangeMeta, VHost, DEFAULT_EXCHANGE},
    session::connection::ConnCtx,
    util::body_pool::BODIES,
    util::error::{AmqpError, AmqpResult},
    util::names,
};

pub(crate) const REPLY_TO_QUEUE: &str = "amq.rabbitmq.reply-to";
const REPLY_TO_PREFIX: &str = "amq.rabbitmq.reply-to.";

/// A publish whose content is still arriving.
struct PendingContent {
    publish: basic::Publish,
    header: Option<(u64, Bytes)>,
    /// The body assembled from several frames, in a buffer of the body pool.
    body: Vec<u8>,
    /// The whole body when it came in one frame: kept as a slice of the read buffer.
    single: Option<Bytes>,
}

/// A delivery awaiting ack/nack/reject.
struct Unacked {
    queue: Option<Arc<Queue>>,
    consumer_id: Option<ConsumerId>,
    entry: Entry,
    /// Wall-clock milliseconds of the delivery (RabbitMQ's `delivered_at`), for
    /// consumer_timeout.
    delivered_at: u64,
}

/// What an ack, nack or reject does with the deliveries it names.
#[derive(Clone, Copy)]
enum Settle {
    Ack,
    Requeue,
    /// Without requeue: dead-lettered where the queue has a dead-letter exchange.
    Reject,
}

/// A consumer of this channel; `queue` is `None` for the direct reply-to consumer.
struct ChannelConsumer {
    id: ConsumerId,
    queue: Option<Arc<Queue>>,
}

/// Publisher-confirm state. Publish `n` is confirmable once it is routed and, when it
/// went to disk, synced: everything below the first publish still waiting for the disk
/// is acked (one `multiple` ack per flush); refused publishes are nacked one by one.
struct Confirms {
    /// Sequence number of the next publish.
    next: u64,
    /// Highest number already answered on the wire.
    written: u64,
    /// Publishes waiting for the message store.
    waiting: BTreeSet<u64>,
    /// Publishes nacked but above `written` (to be skipped by the next ack).
    nacked: BTreeSet<u64>,
}

/// What a transaction has buffered until tx.commit.
enum TxOp {
    Publish(Publication),
    Ack {
        tag: u64,
        multiple: bool,
    },
    Reject {
        tag: u64,
        multiple: bool,
        requeue: bool,
    },
}

/// What became of a publish.
struct Routed {
    /// False when a queue refused it (`x-overflow` reject-publish) or the disk did.
    accepted: bool,
    /// It went to the message store; its confirm waits for the sync.
    on_disk: bool,
}

pub(crate) struct Channel {
    pub id: u16,
    /// We sent channel.close and wait for close-ok; everything else is dropped.
    pub closing: bool,
    pub shared: Arc<ChannelShared>,
    content: Option<PendingContent>,
    next_delivery_tag: u64,
    unacked: BTreeMap<u64, Unacked>,
    consumers: HashMap<Arc<str>, ChannelConsumer>,
    /// basic.qos global=false: prefetch of consumers created from now on.
    consumer_prefetch: u16,
    confirms: Option<Confirms>,
    tx: Option<Vec<TxOp>>,
    /// Appends of the tx.commit in progress still waiting for the disk; commit-ok is sent
    /// when they are done.
    tx_waiting: usize,
    /// Most recently declared queue, for the empty-name shortcuts.
    last_queue: Option<Arc<str>>,
    /// Token of this channel's direct reply-to consumer.
    reply_token: Option<String>,
    /// The last exchange name and routing key published with, reused while they repeat.
    last_exchange: Option<Arc<str>>,
    last_routing_key: Option<Arc<str>>,
    /// consumer_timeout in milliseconds, fixed when the channel opens (as RabbitMQ reads
    /// it into the channel's configuration).
    consumer_timeout: Option<u64>,
    /// When this channel next checks its unacknowledged deliveries against
    /// `consumer_timeout`; armed by a delivery, kept while deliveries are outstanding.
    pub tick_at: Option<std::time::Instant>,
}

/// `name` as a shared string, reusing `cache` when it holds the same text.
fn intern(cache: &mut Option<Arc<str>>, name: &str) -> Arc<str> {
    match cache {
        Some(c) if c.as_ref() == name => c.clone(),
        _ => {
            let fresh: Arc<str> = Arc::from(name);
            *cache = Some(fresh.clone());
            fresh
        }
    }
}

/// COMMAND_INVALID for a method a client may not send on a channel (a server method,
/// or one of another class).
fn unexpected(method: &AMQPClass) -> AmqpError {
    AmqpError::command_invalid(format_args!(
        "unexpected method in channel: {}.{}",
        method.get_amqp_class_id(),
        method.get_amqp_method_id()
    ))
}

fn ok(ctx: &mut ConnCtx, channel: u16, method: AMQPClass) {
    ctx.send_method(channel, &method);
}

impl Channel {
    pub fn new(id: u16, consumer_timeout: Option<u64>) -> Self {
        Channel {
            id,
            closing: false,
            shared: Arc::new(ChannelShared::new()),
            content: None,
            next_delivery_tag: 1,
            unacked: BTreeMap::new(),
            consumers: HashMap::new(),
            consumer_prefetch: 0,
            confirms: None,
            tx: None,
            tx_waiting: 0,
            last_queue: None,
            reply_token: None,
            last_exchange: None,
            last_routing_key: None,
            consumer_timeout,
            tick_at: None,
        }
    }

    pub fn has_unacked(&self) -> bool {
        !self.unacked.is_empty()
    }

    /// The 406 RabbitMQ 3.10 closes the channel with when its oldest unacknowledged
    /// delivery (only the oldest is looked at, as rabbit_channel does) has waited longer
    /// than consumer_timeout.
    pub fn consumer_timed_out(&self, now_ms: u64) -> Option<AmqpError> {
        let timeout = self.consumer_timeout?;
        let (_, oldest) = self.unacked.first_key_value()?;
        (oldest.delivered_at < now_ms.saturating_sub(timeout)).then(|| {
            AmqpError::precondition(format_args!(
                "delivery acknowledgement on channel {} timed out. Timeout value used: {timeout} ms. \
                 This timeout value can be configured, see consumers doc guide to learn more",
                self.id
            ))
        })
    }

    /// A delivery now awaits an ack: make sure a consumer-timeout check is coming.
    fn arm_tick(&mut self, ctx: &mut ConnCtx) {
        if self.tick_at.is_some() || self.consumer_timeout.is_none() {
            return;
        }
        let at = std::time::Instant::now()
            + std::time::Duration::from_millis(ctx.broker.config.channel_tick_interval_ms);
        self.tick_at = Some(at);
        if ctx.channel_tick.is_none_or(|t| at < t) {
            ctx.channel_tick = Some(at);
        }
    }

    pub fn expecting_content(&self) -> bool {
        self.content.is_some()
    }

    pub fn handle_method(&mut self, ctx: &mut ConnCtx, method: AMQPClass) -> AmqpResult<()> {
        let ids = (method.get_amqp_class_id(), method.get_amqp_method_id());
        self.dispatch(ctx, method)
            .map_err(|e| e.with_method(ids.0, ids.1))
    }

    /// Hands a method to its family: channel and access here, the others in topology.rs
    /// (exchange, queue), consumers.rs (basic), confirms.rs and transactions.rs.
    fn dispatch(&mut self, ctx: &mut ConnCtx, method: AMQPClass) -> AmqpResult<()> {
        match method {
            AMQPClass::Basic(m) => self.on_basic_method(ctx, m),
            AMQPClass::Queue(m) => self.on_queue_method(ctx, m),
            AMQPClass::Exchange(m) => self.on_exchange_method(ctx, m),
            AMQPClass::Confirm(m) => self.on_confirm_method(ctx, m),
            AMQPClass::Tx(m) => self.on_tx_method(ctx, m),
            AMQPClass::Channel(channel::AMQPMethod::Flow(f)) => {
                // RabbitMQ 3.x refuses client-initiated flow control.
                if !f.active {
                    return Err(AmqpError::not_implemented("active=false"));
                }
                let flow_ok = channel::FlowOk { active: true };
                ok(
                    ctx,
                    self.id,
                    AMQPClass::Channel(channel::AMQPMethod::FlowOk(flow_ok)),
                );
                Ok(())
            }
            AMQPClass::Channel(channel::AMQPMethod::FlowOk(_)) => Ok(()),
            AMQPClass::Access(access::AMQPMethod::Request(_)) => {
                let request_ok = access::AMQPMethod::RequestOk(access::RequestOk {});
                ok(ctx, self.id, AMQPClass::Access(request_ok));
                Ok(())
            }
            other => Err(unexpected(&other)),
        }
    }

    /// Sends channel.close for `err` and drops everything until close-ok.
    pub fn start_close(&mut self, ctx: &mut ConnCtx, err: &AmqpError) {
        ctx.send_method(
            self.id,
            &AMQPClass::Channel(channel::AMQPMethod::Close(channel::Close {
                reply_code: err.code.code(),
                reply_text: crate::util::error::short_text(&err.text),
                class_id: err.class_id,
                method_id: err.method_id,
            })),
        );
        self.closing = true;
        self.teardown(ctx);
    }
}

/// A name or routing key as a shortstr. Only a dead-letter routing key (a longstr queue
/// argument) can be longer than 255 bytes; it is cut at a character boundary, as
/// basic.deliver's encoder cuts it, instead of tripping amq-protocol's length assertion.
fn short_str(s: &str) -> ShortString {
    let mut end = s.len().min(255);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    ShortString::from(&s[..end])
}
