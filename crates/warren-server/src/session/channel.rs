//! One AMQP channel: content assembly, the exchange/queue/basic/confirm/tx methods, and
//! the bookkeeping of unacknowledged deliveries.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{atomic::Ordering, Arc},
};

use amq_protocol::{
    protocol::{basic, channel, confirm, exchange, queue, tx, AMQPClass},
    types::{FieldTable, ShortString},
};
use bytes::{Bytes, BytesMut};
use warren_codec::{encode_content, encode_deliver, PropertiesEdit, PropertiesView};
use warren_router::{Destination, ExchangeKind};
use warren_store::{ConsumerId, ConsumerSlot, Entry, Message};

use crate::{
    model::args,
    model::auth::{Access, Resource},
    model::broker::ReplyTarget,
    model::handles::{ChannelShared, ConsumerHandle, Delivery, DurableToken},
    model::ops::{
        exchanges,
        publish::{self, Publication},
        queues::{self, locked, Declared, QueueSpec},
    },
    model::queue::Queue,
    model::vhost::{ExchangeMeta, VHost, DEFAULT_EXCHANGE},
    session::connection::ConnCtx,
    util::error::{AmqpError, AmqpResult},
    util::names,
};

pub(crate) const REPLY_TO_QUEUE: &str = "amq.rabbitmq.reply-to";
const REPLY_TO_PREFIX: &str = "amq.rabbitmq.reply-to.";

/// A publish whose content is still arriving.
struct PendingContent {
    publish: basic::Publish,
    header: Option<(u64, Bytes)>,
    body: BytesMut,
    /// The whole body when it came in one frame: kept as a slice of the read buffer.
    single: Option<Bytes>,
}

/// A delivery awaiting ack/nack/reject.
struct Unacked {
    queue: Option<Arc<Queue>>,
    consumer_id: Option<ConsumerId>,
    entry: Entry,
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

/// The message-store callback that brings `token` back to this channel's connection.
fn durable_callback(
    ctx: &ConnCtx,
    channel: u16,
    token: Option<DurableToken>,
) -> warren_journal::Callback {
    let inbox = ctx.handle.inbox.clone();
    Box::new(move |result| {
        if let Some(token) = token {
            let _ = inbox.send(crate::model::handles::ConnEvent::Durable {
                channel,
                token,
                stored: result.is_ok(),
            });
        }
    })
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

fn ok(ctx: &mut ConnCtx, channel: u16, method: AMQPClass) {
    ctx.send_method(channel, &method);
}

impl Channel {
    pub fn new(id: u16) -> Self {
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
        }
    }

    pub fn expecting_content(&self) -> bool {
        self.content.is_some()
    }

    // ---- content assembly -------------------------------------------------------

    pub fn on_header(
        &mut self,
        ctx: &mut ConnCtx,
        class_id: u16,
        body_size: u64,
        properties: Bytes,
    ) -> AmqpResult<()> {
        let Some(content) = self.content.as_mut() else {
            return Err(AmqpError::unexpected_frame(
                "expected method frame, got non method frame instead",
            ));
        };
        if content.header.is_some() {
            return Err(AmqpError::unexpected_frame(
                "expected content body, got non content body frame instead",
            )
            .with_method(60, 40));
        }
        if class_id != warren_codec::CLASS_BASIC {
            return Err(AmqpError::unexpected_frame(format_args!(
                "expected content header for class 60, got one for class {class_id} instead"
            ))
            .with_method(60, 40));
        }
        if body_size > ctx.broker.config.max_message_size {
            return Err(AmqpError::precondition(format_args!(
                "message size {body_size} is larger than configured max size {}",
                ctx.broker.config.max_message_size
            ))
            .with_method(60, 40));
        }
        content.header = Some((body_size, properties));
        if body_size == 0 {
            return self.finish_content(ctx);
        }
        Ok(())
    }

    pub fn on_body(&mut self, ctx: &mut ConnCtx, payload: Bytes) -> AmqpResult<()> {
        let Some(content) = self.content.as_mut() else {
            return Err(AmqpError::unexpected_frame(
                "expected method frame, got non method frame instead",
            ));
        };
        let Some((size, _)) = content.header.as_ref() else {
            return Err(AmqpError::unexpected_frame(
                "expected content header for class 60, got non content header frame instead",
            ));
        };
        let size = *size;
        let have = content.single.as_ref().map_or(0, |b| b.len()) + content.body.len();
        if (have + payload.len()) as u64 > size {
            return Err(AmqpError::frame_error(format_args!(
                "content body exceeds the declared body size {size}"
            )));
        }
        if have == 0 && payload.len() as u64 == size {
            content.single = Some(payload);
        } else {
            if let Some(first) = content.single.take() {
                content.body.reserve(size as usize);
                content.body.extend_from_slice(&first);
            }
            if content.body.is_empty() {
                content.body.reserve(size as usize);
            }
            content.body.extend_from_slice(&payload);
        }
        let have = content.single.as_ref().map_or(0, |b| b.len()) + content.body.len();
        if have as u64 == size {
            return self.finish_content(ctx);
        }
        Ok(())
    }

    fn finish_content(&mut self, ctx: &mut ConnCtx) -> AmqpResult<()> {
        let Some(content) = self.content.take() else {
            return Ok(());
        };
        let (_, properties) = content.header.unwrap_or_default();
        let body = match content.single {
            Some(b) => b,
            None => content.body.freeze(),
        };
        let publish = Publication {
            exchange: intern(&mut self.last_exchange, content.publish.exchange.as_str()),
            routing_key: intern(
                &mut self.last_routing_key,
                content.publish.routing_key.as_str(),
            ),
            mandatory: content.publish.mandatory,
            properties,
            body,
        };
        self.publish(ctx, publish)
            .map_err(|e| e.with_method(60, 40))
    }

    // ---- publishing -------------------------------------------------------------

    fn publish(&mut self, ctx: &mut ConnCtx, publish: Publication) -> AmqpResult<()> {
        let vhost = ctx.vhost()?;
        let mut view = PropertiesView::scan(&publish.properties)
            .map_err(|_| AmqpError::frame_error("invalid content properties"))?;
        // Permission first, then the exchange, as RabbitMQ does.
        let target = if publish.exchange.is_empty() {
            "amq.default"
        } else {
            publish.exchange.as_ref()
        };
        ctx.check(Access::Write, Resource::Exchange, target)?;
        if &*publish.exchange != DEFAULT_EXCHANGE && !vhost.has_exchange(&publish.exchange) {
            return Err(AmqpError::no_exchange(&publish.exchange, &vhost.name));
        }
        if let Some(range) = view.user_id.clone() {
            let user_id = &publish.properties[range];
            if user_id != ctx.user.as_bytes() {
                return Err(AmqpError::precondition(format_args!(
                    "user_id property set to '{}' but authenticated user was '{}'",
                    String::from_utf8_lossy(user_id),
                    ctx.user
                )));
            }
        }
        if let Some(range) = view.expiration.clone() {
            publish::validate_expiration(&publish.properties[range])?;
        }
        let mut properties = publish.properties.clone();
        // Direct reply-to: the publisher asks for replies on its own channel.
        if let Some(range) = view.reply_to.clone() {
            if &publish.properties[range] == REPLY_TO_QUEUE.as_bytes() {
                let Some(token) = self.reply_token.as_ref() else {
                    return Err(AmqpError::precondition(
                        "fast reply consumer does not exist",
                    ));
                };
                let edit = PropertiesEdit {
                    reply_to: Some(Bytes::from(format!("{REPLY_TO_PREFIX}{token}"))),
                    ..PropertiesEdit::default()
                };
                properties = warren_codec::rewrite_properties(&properties, &edit)
                    .map_err(|_| AmqpError::frame_error("invalid content properties"))?;
                view = PropertiesView::scan(&properties)
                    .map_err(|_| AmqpError::internal("re-encoded properties do not scan"))?;
            }
        }
        let publish = Publication {
            properties,
            ..publish
        };
        if let Some(ops) = self.tx.as_mut() {
            ops.push(TxOp::Publish(publish));
            return Ok(());
        }
        let seq = self.confirms.as_mut().map(|c| {
            let s = c.next;
            c.next += 1;
            s
        });
        let token = seq.map(DurableToken::Confirm);
        let routed = self.route_and_deliver(ctx, &vhost, publish, &view, token)?;
        if seq.is_some() {
            // management stats
            vhost
                .stats
                .inc_at(ctx.handle.id, crate::model::stats::Stat::Confirm);
        }
        if let Some(s) = seq {
            if !routed.accepted {
                self.nack_publish(ctx, s);
            } else if routed.on_disk {
                if let Some(c) = self.confirms.as_mut() {
                    c.waiting.insert(s);
                }
            }
        }
        Ok(())
    }

    /// Routes a complete publish and enqueues it (the broker's publish operation);
    /// answers direct reply-to, sends basic.return when mandatory and unroutable, and
    /// holds the connection back (credit flow) when a queue is pressured. A persistent
    /// message for durable queues goes to the message store, and `token` comes back to
    /// this channel once it is synced.
    fn route_and_deliver(
        &mut self,
        ctx: &mut ConnCtx,
        vhost: &Arc<VHost>,
        publish: Publication,
        view: &PropertiesView,
        token: Option<DurableToken>,
    ) -> AmqpResult<Routed> {
        let mandatory = publish.mandatory;
        let prepared = publish::prepare(publish, view)?;
        // Replies to a direct reply-to requester go straight to its channel.
        if &*prepared.message.exchange == DEFAULT_EXCHANGE {
            if let Some(token) = prepared.message.routing_key.strip_prefix(REPLY_TO_PREFIX) {
                let target = ctx.broker.reply_to.get(token).map(|t| t.clone());
                match target {
                    Some(target) => deliver_reply(target, Arc::new(prepared.message)),
                    None if mandatory => self.send_return(ctx, &prepared.message),
                    None => {}
                }
                return Ok(Routed {
                    accepted: true,
                    on_disk: false,
                });
            }
        }
        let mut queues = std::mem::take(&mut ctx.route_buf);
        let channel = self.id;
        let published = publish::route_and_enqueue(
            vhost,
            prepared,
            mandatory,
            ctx.handle.id,
            &mut queues,
            |durable| durable_callback(ctx, channel, token.filter(|_| durable)),
        );
        // Credit flow: the connection stops reading until pressured queues catch up.
        for q in queues.drain(..) {
            if q.flow_pressured() && !ctx.flow_queues.iter().any(|f| Arc::ptr_eq(f, &q)) {
                ctx.flow_queues.push(q);
            }
        }
        ctx.route_buf = queues;
        let published = published?;
        if let (true, Some(message)) = (mandatory, &published.unroutable) {
            self.send_return(ctx, message);
        }
        Ok(Routed {
            accepted: published.accepted,
            on_disk: published.on_disk,
        })
    }

    fn send_return(&mut self, ctx: &mut ConnCtx, publish: &Message) {
        ctx.send_method(
            self.id,
            &AMQPClass::Basic(basic::AMQPMethod::Return(basic::Return {
                reply_code: 312,
                reply_text: "NO_ROUTE".into(),
                exchange: short_str(&publish.exchange),
                routing_key: short_str(&publish.routing_key),
            })),
        );
        let frame_max = ctx.frame_max;
        encode_content(
            &mut ctx.out,
            self.id,
            &publish.properties,
            &publish.body,
            frame_max,
        );
    }

    /// Writes pending publisher confirms: a `multiple` ack for each run of confirmed
    /// publishes, and the nacks between runs.
    pub fn flush_confirms(&mut self, out: &mut BytesMut) {
        let Some(c) = self.confirms.as_mut() else {
            return;
        };
        let upto = match c.waiting.first() {
            Some(first) => first - 1,
            None => c.next - 1,
        };
        if upto <= c.written {
            return;
        }
        let mut answered = c.written;
        let nacks: Vec<u64> = c.nacked.range(c.written + 1..=upto).copied().collect();
        for n in nacks {
            if n - 1 > answered {
                warren_codec::encode_ack(out, self.id, n - 1, n - 1 - answered > 1);
            }
            warren_codec::encode_nack(out, self.id, n, false);
            answered = n;
        }
        if upto > answered {
            warren_codec::encode_ack(out, self.id, upto, upto - answered > 1);
        }
        c.written = upto;
        c.nacked = c.nacked.split_off(&(upto + 1));
    }

    /// Publish number `seq` was refused (by a queue, or by the disk): it is nacked, in
    /// order with the acks around it.
    fn nack_publish(&mut self, ctx: &mut ConnCtx, seq: u64) {
        if let Some(c) = self.confirms.as_mut() {
            c.waiting.remove(&seq);
            if seq > c.written {
                c.nacked.insert(seq);
            }
        }
        self.flush_confirms(&mut ctx.out);
    }

    /// The message store synced (or failed to store) something of this channel.
    pub fn on_durable(&mut self, ctx: &mut ConnCtx, token: DurableToken, stored: bool) {
        match token {
            DurableToken::Confirm(seq) => {
                if stored {
                    if let Some(c) = self.confirms.as_mut() {
                        c.waiting.remove(&seq);
                    }
                } else {
                    self.nack_publish(ctx, seq);
                }
            }
            DurableToken::TxCommit => {
                self.tx_waiting = self.tx_waiting.saturating_sub(1);
                if self.tx_waiting == 0 && !self.closing {
                    ok(
                        ctx,
                        self.id,
                        AMQPClass::Tx(tx::AMQPMethod::CommitOk(tx::CommitOk {})),
                    );
                }
            }
        }
    }

    // ---- deliveries ---------------------------------------------------------------

    /// Writes a delivery from a queue (or direct reply-to) to the client and records it.
    /// Returns the delivery back when this channel cannot take it anymore.
    pub fn deliver(&mut self, ctx: &mut ConnCtx, d: Delivery) -> Result<(), Delivery> {
        let live = !self.closing
            && self
                .consumers
                .get(&d.consumer_tag)
                .is_some_and(|c| c.id == d.consumer_id);
        if !live {
            return Err(d);
        }
        let m = &d.entry.message;
        let body = match &d.queue {
            Some(q) => q.load_body(m),
            None => Some(m.body.clone()),
        };
        let Some(body) = body else {
            // Unreadable on disk: it is gone; settle it so the queue moves on.
            if let Some(q) = &d.queue {
                if d.no_ack {
                    q.release(m);
                } else {
                    q.ack(Some(d.consumer_id), vec![d.entry.clone()]);
                    self.shared.release(1);
                }
            }
            return Ok(());
        };
        let tag = self.next_delivery_tag;
        self.next_delivery_tag += 1;
        encode_deliver(
            &mut ctx.out,
            self.id,
            &d.consumer_tag,
            tag,
            d.entry.redelivered,
            &m.exchange,
            &m.routing_key,
        );
        let properties = delivery_properties(d.queue.as_deref(), &d.entry, false);
        encode_content(&mut ctx.out, self.id, &properties, &body, ctx.frame_max);
        if let Some(q) = &d.queue {
            if d.no_ack {
                q.release(m);
            } else {
                q.mark_delivered(m);
            }
        }
        if !d.no_ack {
            self.unacked.insert(
                tag,
                Unacked {
                    queue: d.queue,
                    consumer_id: Some(d.consumer_id),
                    entry: d.entry,
                },
            );
        }
        Ok(())
    }

    /// Removes the deliveries an ack/nack/reject names; 406 for unknown tags.
    fn take_unacked(&mut self, tag: u64, multiple: bool) -> AmqpResult<Vec<Unacked>> {
        if multiple && tag == 0 {
            // Tag 0 with multiple set means everything outstanding (AMQP 0-9-1 1.8.3.13).
            return Ok(std::mem::take(&mut self.unacked).into_values().collect());
        }
        if multiple {
            let keep = self.unacked.split_off(&(tag.saturating_add(1)));
            let taken = std::mem::replace(&mut self.unacked, keep);
            if taken.is_empty() && tag != 0 {
                return Err(AmqpError::precondition(format_args!(
                    "unknown delivery tag {tag}"
                )));
            }
            return Ok(taken.into_values().collect());
        }
        match self.unacked.remove(&tag) {
            Some(u) => Ok(vec![u]),
            None => Err(AmqpError::precondition(format_args!(
                "unknown delivery tag {tag}"
            ))),
        }
    }

    fn settle(&mut self, entries: Vec<Unacked>, how: Settle) {
        // Group consecutive deliveries of the same queue and consumer: one lock per run.
        let mut run: Option<(Arc<Queue>, Option<ConsumerId>, Vec<Entry>)> = None;
        let mut released = 0u32;
        let finish = |run: Option<(Arc<Queue>, Option<ConsumerId>, Vec<Entry>)>| {
            if let Some((q, c, entries)) = run {
                match how {
                    Settle::Ack => q.ack(c, entries),
                    Settle::Requeue => q.requeue(c, entries),
                    Settle::Reject => q.reject(c, entries),
                }
            }
        };
        for u in entries {
            if u.consumer_id.is_some() {
                released += 1;
            }
            let Some(q) = u.queue else { continue };
            match run.as_mut() {
                Some((rq, rc, list)) if Arc::ptr_eq(rq, &q) && *rc == u.consumer_id => {
                    list.push(u.entry)
                }
                _ => {
                    finish(run.take());
                    run = Some((q, u.consumer_id, vec![u.entry]));
                }
            }
        }
        finish(run);
        // Deliveries from basic.get do not count against the channel's prefetch.
        self.shared.release(released);
    }

    fn ack(&mut self, tag: u64, multiple: bool) -> AmqpResult<()> {
        let entries = self.take_unacked(tag, multiple)?;
        // management stats
        for u in &entries {
            if let Some(q) = &u.queue {
                q.stats.inc(crate::model::stats::Stat::Ack);
            }
        }
        self.settle(entries, Settle::Ack);
        Ok(())
    }

    fn reject(&mut self, tag: u64, multiple: bool, requeue: bool) -> AmqpResult<()> {
        let entries = self.take_unacked(tag, multiple)?;
        self.settle(
            entries,
            if requeue {
                Settle::Requeue
            } else {
                Settle::Reject
            },
        );
        Ok(())
    }

    /// Channel closed or connection gone: unacked deliveries go back to their queues,
    /// consumers are removed (auto-delete queues may go with them).
    pub fn teardown(&mut self, ctx: &mut ConnCtx) {
        self.shared.closed.store(true, Ordering::Release);
        self.content = None;
        let unacked = std::mem::take(&mut self.unacked);
        self.settle(unacked.into_values().collect(), Settle::Requeue);
        let tags: Vec<Arc<str>> = self.consumers.keys().cloned().collect();
        for tag in tags {
            self.remove_consumer(ctx, &tag);
        }
        if let Some(token) = self.reply_token.take() {
            ctx.broker.reply_to.remove(&token);
        }
    }

    fn remove_consumer(&mut self, ctx: &mut ConnCtx, tag: &str) -> bool {
        let Some(c) = self.consumers.remove(tag) else {
            return false;
        };
        if let Some(q) = c.queue {
            let (now_empty, was_active) = {
                let mut st = q.state.lock();
                let was_active = st.active_consumer() == Some(c.id);
                st.remove_consumer(c.id);
                (st.consumer_count() == 0, was_active)
            };
            if was_active {
                // Single active consumer: what the leaving consumer held goes back to the
                // queue for the next one, as RabbitMQ does.
                let tags: Vec<u64> = self
                    .unacked
                    .iter()
                    .filter(|(_, u)| u.consumer_id == Some(c.id))
                    .map(|(t, _)| *t)
                    .collect();
                let held: Vec<Unacked> =
                    tags.iter().filter_map(|t| self.unacked.remove(t)).collect();
                self.settle(held, Settle::Requeue);
            }
            // Other consumers may now get what this one could not take.
            q.dispatch();
            if now_empty {
                // x-expires counts from the moment the last consumer left.
                q.touch();
            }
            if now_empty && q.auto_delete && q.had_consumer.load(Ordering::Acquire) {
                if let Ok(vhost) = ctx.vhost() {
                    delete_queue_logged(ctx, &vhost, &q.name);
                }
            }
        }
        true
    }

    /// A queue this channel consumed from was deleted: forget the consumer and tell the
    /// client if it understands basic.cancel.
    pub fn on_consumer_cancelled(&mut self, ctx: &mut ConnCtx, tag: &Arc<str>) {
        if self.consumers.remove(tag).is_some() && ctx.cancel_notify && !self.closing {
            ok(
                ctx,
                self.id,
                AMQPClass::Basic(basic::AMQPMethod::Cancel(basic::Cancel {
                    consumer_tag: tag.as_ref().into(),
                    nowait: true,
                })),
            );
        }
    }

    // ---- method dispatch ------------------------------------------------------------

    pub fn handle_method(&mut self, ctx: &mut ConnCtx, method: AMQPClass) -> AmqpResult<()> {
        let ids = (method.get_amqp_class_id(), method.get_amqp_method_id());
        self.dispatch(ctx, method)
            .map_err(|e| e.with_method(ids.0, ids.1))
    }

    fn dispatch(&mut self, ctx: &mut ConnCtx, method: AMQPClass) -> AmqpResult<()> {
        let id = self.id;
        match method {
            AMQPClass::Channel(channel::AMQPMethod::Flow(f)) => {
                // RabbitMQ 3.x refuses client-initiated flow control.
                if !f.active {
                    return Err(AmqpError::not_implemented("active=false"));
                }
                ok(
                    ctx,
                    id,
                    AMQPClass::Channel(channel::AMQPMethod::FlowOk(channel::FlowOk {
                        active: true,
                    })),
                );
                Ok(())
            }
            AMQPClass::Channel(channel::AMQPMethod::FlowOk(_)) => Ok(()),
            AMQPClass::Access(amq_protocol::protocol::access::AMQPMethod::Request(_)) => {
                ok(
                    ctx,
                    id,
                    AMQPClass::Access(amq_protocol::protocol::access::AMQPMethod::RequestOk(
                        amq_protocol::protocol::access::RequestOk {},
                    )),
                );
                Ok(())
            }
            AMQPClass::Exchange(exchange::AMQPMethod::Declare(m)) => self.exchange_declare(ctx, m),
            AMQPClass::Exchange(exchange::AMQPMethod::Delete(m)) => self.exchange_delete(ctx, m),
            AMQPClass::Exchange(exchange::AMQPMethod::Bind(m)) => {
                self.exchange_bind(
                    ctx,
                    &m.source,
                    &m.destination,
                    &m.routing_key,
                    &m.arguments,
                    true,
                )?;
                if !m.nowait {
                    ok(
                        ctx,
                        id,
                        AMQPClass::Exchange(exchange::AMQPMethod::BindOk(exchange::BindOk {})),
                    );
                }
                Ok(())
            }
            AMQPClass::Exchange(exchange::AMQPMethod::Unbind(m)) => {
                self.exchange_bind(
                    ctx,
                    &m.source,
                    &m.destination,
                    &m.routing_key,
                    &m.arguments,
                    false,
                )?;
                if !m.nowait {
                    ok(
                        ctx,
                        id,
                        AMQPClass::Exchange(exchange::AMQPMethod::UnbindOk(exchange::UnbindOk {})),
                    );
                }
                Ok(())
            }
            AMQPClass::Queue(queue::AMQPMethod::Declare(m)) => self.queue_declare(ctx, m),
            AMQPClass::Queue(queue::AMQPMethod::Bind(m)) => {
                self.queue_bind(
                    ctx,
                    &m.queue,
                    &m.exchange,
                    &m.routing_key,
                    &m.arguments,
                    true,
                )?;
                if !m.nowait {
                    ok(
                        ctx,
                        id,
                        AMQPClass::Queue(queue::AMQPMethod::BindOk(queue::BindOk {})),
                    );
                }
                Ok(())
            }
            AMQPClass::Queue(queue::AMQPMethod::Unbind(m)) => {
                self.queue_bind(
                    ctx,
                    &m.queue,
                    &m.exchange,
                    &m.routing_key,
                    &m.arguments,
                    false,
                )?;
                ok(
                    ctx,
                    id,
                    AMQPClass::Queue(queue::AMQPMethod::UnbindOk(queue::UnbindOk {})),
                );
                Ok(())
            }
            AMQPClass::Queue(queue::AMQPMethod::Purge(m)) => {
                let vhost = ctx.vhost()?;
                let qname = self.expand_queue_name(m.queue.as_str())?;
                ctx.check(Access::Read, Resource::Queue, &qname)?;
                let q = self.find_queue(ctx, &vhost, m.queue.as_str())?;
                let n = q.purge();
                if !m.nowait {
                    ok(
                        ctx,
                        id,
                        AMQPClass::Queue(queue::AMQPMethod::PurgeOk(queue::PurgeOk {
                            message_count: n,
                        })),
                    );
                }
                Ok(())
            }
            AMQPClass::Queue(queue::AMQPMethod::Delete(m)) => self.queue_delete(ctx, m),
            AMQPClass::Basic(basic::AMQPMethod::Qos(m)) => {
                if m.global {
                    self.shared
                        .global_prefetch
                        .store(u32::from(m.prefetch_count), Ordering::Release);
                    self.redispatch_consumers();
                } else {
                    self.consumer_prefetch = m.prefetch_count;
                }
                ok(
                    ctx,
                    id,
                    AMQPClass::Basic(basic::AMQPMethod::QosOk(basic::QosOk {})),
                );
                Ok(())
            }
            AMQPClass::Basic(basic::AMQPMethod::Consume(m)) => self.basic_consume(ctx, m),
            AMQPClass::Basic(basic::AMQPMethod::Cancel(m)) => {
                let tag = m.consumer_tag.as_str();
                if self.reply_token.is_some()
                    && self.consumers.get(tag).is_some_and(|c| c.queue.is_none())
                {
                    self.consumers.remove(tag);
                    if let Some(token) = self.reply_token.take() {
                        ctx.broker.reply_to.remove(&token);
                    }
                } else {
                    self.remove_consumer(ctx, tag);
                }
                if !m.nowait {
                    ok(
                        ctx,
                        id,
                        AMQPClass::Basic(basic::AMQPMethod::CancelOk(basic::CancelOk {
                            consumer_tag: m.consumer_tag,
                        })),
                    );
                }
                Ok(())
            }
            AMQPClass::Basic(basic::AMQPMethod::Publish(m)) => {
                if m.immediate {
                    return Err(AmqpError::not_implemented("immediate=true"));
                }
                self.content = Some(PendingContent {
                    publish: m,
                    header: None,
                    body: BytesMut::new(),
                    single: None,
                });
                Ok(())
            }
            AMQPClass::Basic(basic::AMQPMethod::Get(m)) => self.basic_get(ctx, m),
            AMQPClass::Basic(basic::AMQPMethod::Ack(m)) => {
                if self.tx.is_some() && !self.tag_known(m.delivery_tag, m.multiple) {
                    // Validate now (RabbitMQ reports unknown tags at once), apply at commit.
                    return Err(AmqpError::precondition(format_args!(
                        "unknown delivery tag {}",
                        m.delivery_tag
                    )));
                }
                if let Some(ops) = self.tx.as_mut() {
                    ops.push(TxOp::Ack {
                        tag: m.delivery_tag,
                        multiple: m.multiple,
                    });
                    return Ok(());
                }
                self.ack(m.delivery_tag, m.multiple)
            }
            AMQPClass::Basic(basic::AMQPMethod::Reject(m)) => {
                if let Some(ops) = self.tx.as_mut() {
                    ops.push(TxOp::Reject {
                        tag: m.delivery_tag,
                        multiple: false,
                        requeue: m.requeue,
                    });
                    return Ok(());
                }
                self.reject(m.delivery_tag, false, m.requeue)
            }
            AMQPClass::Basic(basic::AMQPMethod::Nack(m)) => {
                if let Some(ops) = self.tx.as_mut() {
                    ops.push(TxOp::Reject {
                        tag: m.delivery_tag,
                        multiple: m.multiple,
                        requeue: m.requeue,
                    });
                    return Ok(());
                }
                self.reject(m.delivery_tag, m.multiple, m.requeue)
            }
            AMQPClass::Basic(basic::AMQPMethod::Recover(m)) => {
                self.recover(m.requeue)?;
                ok(
                    ctx,
                    id,
                    AMQPClass::Basic(basic::AMQPMethod::RecoverOk(basic::RecoverOk {})),
                );
                Ok(())
            }
            AMQPClass::Basic(basic::AMQPMethod::RecoverAsync(m)) => self.recover(m.requeue),
            AMQPClass::Confirm(confirm::AMQPMethod::Select(m)) => {
                if self.tx.is_some() {
                    return Err(AmqpError::precondition(
                        "cannot switch from tx to confirm mode",
                    ));
                }
                if self.confirms.is_none() {
                    self.confirms = Some(Confirms {
                        next: 1,
                        written: 0,
                        waiting: BTreeSet::new(),
                        nacked: BTreeSet::new(),
                    });
                }
                if !m.nowait {
                    ok(
                        ctx,
                        id,
                        AMQPClass::Confirm(confirm::AMQPMethod::SelectOk(confirm::SelectOk {})),
                    );
                }
                Ok(())
            }
            AMQPClass::Tx(tx::AMQPMethod::Select(_)) => {
                if self.confirms.is_some() {
                    return Err(AmqpError::precondition(
                        "cannot switch from confirm to tx mode",
                    ));
                }
                if self.tx.is_none() {
                    self.tx = Some(Vec::new());
                }
                ok(
                    ctx,
                    id,
                    AMQPClass::Tx(tx::AMQPMethod::SelectOk(tx::SelectOk {})),
                );
                Ok(())
            }
            AMQPClass::Tx(tx::AMQPMethod::Commit(_)) => {
                let Some(ops) = self.tx.replace(Vec::new()) else {
                    return Err(AmqpError::precondition("channel is not transactional"));
                };
                self.commit(ctx, ops)?;
                // Persistent publishes to durable queues: commit-ok once they are synced.
                if self.tx_waiting == 0 {
                    ok(
                        ctx,
                        id,
                        AMQPClass::Tx(tx::AMQPMethod::CommitOk(tx::CommitOk {})),
                    );
                }
                Ok(())
            }
            AMQPClass::Tx(tx::AMQPMethod::Rollback(_)) => {
                if self.tx.replace(Vec::new()).is_none() {
                    return Err(AmqpError::precondition("channel is not transactional"));
                }
                ok(
                    ctx,
                    id,
                    AMQPClass::Tx(tx::AMQPMethod::RollbackOk(tx::RollbackOk {})),
                );
                Ok(())
            }
            other => Err(AmqpError::command_invalid(format_args!(
                "unexpected method in channel: {}.{}",
                other.get_amqp_class_id(),
                other.get_amqp_method_id()
            ))),
        }
    }

    fn tag_known(&self, tag: u64, multiple: bool) -> bool {
        if multiple {
            tag == 0 || self.unacked.range(..=tag).next().is_some()
        } else {
            self.unacked.contains_key(&tag)
        }
    }

    fn commit(&mut self, ctx: &mut ConnCtx, ops: Vec<TxOp>) -> AmqpResult<()> {
        let vhost = ctx.vhost()?;
        for op in ops {
            match op {
                TxOp::Publish(p) => {
                    let view = PropertiesView::scan(&p.properties)
                        .map_err(|_| AmqpError::frame_error("invalid content properties"))?;
                    // A refused publish in a transaction is simply dropped, as in RabbitMQ.
                    let routed = self.route_and_deliver(
                        ctx,
                        &vhost,
                        p,
                        &view,
                        Some(DurableToken::TxCommit),
                    )?;
                    if routed.on_disk {
                        self.tx_waiting += 1;
                    }
                }
                TxOp::Ack { tag, multiple } => self.ack(tag, multiple)?,
                TxOp::Reject {
                    tag,
                    multiple,
                    requeue,
                } => self.reject(tag, multiple, requeue)?,
            }
        }
        Ok(())
    }

    fn recover(&mut self, requeue: bool) -> AmqpResult<()> {
        if !requeue {
            return Err(AmqpError::not_implemented("requeue=false"));
        }
        let unacked = std::mem::take(&mut self.unacked);
        self.settle(unacked.into_values().collect(), Settle::Requeue);
        Ok(())
    }

    pub fn redispatch_consumers(&self) {
        for c in self.consumers.values() {
            if let Some(q) = &c.queue {
                q.dispatch();
            }
        }
    }

    // ---- exchanges --------------------------------------------------------------------

    fn exchange_declare(&mut self, ctx: &mut ConnCtx, m: exchange::Declare) -> AmqpResult<()> {
        let vhost = ctx.vhost()?;
        let name = m.exchange.as_str();
        if m.passive {
            if name == DEFAULT_EXCHANGE {
                return Err(AmqpError::access_refused(
                    "operation not permitted on the default exchange",
                ));
            }
            if !vhost.has_exchange(name) {
                return Err(AmqpError::no_exchange(name, &vhost.name));
            }
        } else {
            let Some(kind) = ExchangeKind::parse(m.kind.as_str()) else {
                return Err(AmqpError::command_invalid(format_args!(
                    "invalid exchange type '{}'",
                    m.kind
                )));
            };
            if name == DEFAULT_EXCHANGE {
                return Err(AmqpError::access_refused(
                    "operation not permitted on the default exchange",
                ));
            }
            ctx.check(Access::Configure, Resource::Exchange, name)?;
            if !vhost.has_exchange(name) {
                // A new exchange with an alternate exchange: read on it, write on the AE.
                if let Some(ae) =
                    crate::session::connection::table_str(&m.arguments, "alternate-exchange")
                {
                    ctx.check(Access::Read, Resource::Exchange, name)?;
                    ctx.check(Access::Write, Resource::Exchange, &ae)?;
                }
            }
            let meta = ExchangeMeta {
                kind,
                durable: m.durable,
                auto_delete: m.auto_delete,
                internal: m.internal,
                arguments: m.arguments.clone(),
            };
            exchanges::declare_exchange(&ctx.broker, &vhost, name, meta)?;
        }
        if !m.nowait {
            ok(
                ctx,
                self.id,
                AMQPClass::Exchange(exchange::AMQPMethod::DeclareOk(exchange::DeclareOk {})),
            );
        }
        Ok(())
    }

    fn exchange_delete(&mut self, ctx: &mut ConnCtx, m: exchange::Delete) -> AmqpResult<()> {
        let vhost = ctx.vhost()?;
        let name = m.exchange.as_str();
        if name == DEFAULT_EXCHANGE {
            return Err(AmqpError::access_refused(
                "operation not permitted on the default exchange",
            ));
        }
        if name.starts_with("amq.") {
            return Err(AmqpError::access_refused(format_args!(
                "deletion of system exchange '{name}' in vhost '{}' not allowed",
                vhost.name
            )));
        }
        ctx.check(Access::Configure, Resource::Exchange, name)?;
        {
            let mut topo = vhost.topology.write();
            if topo.exchanges.contains_key(name) {
                if m.if_unused && topo.exchange_in_use(name) {
                    return Err(AmqpError::precondition(format_args!(
                        "exchange '{name}' in vhost '{}' in use",
                        vhost.name
                    )));
                }
                topo.remove_exchange(name);
            }
        }
        vhost.record(Vec::new())?;
        if !m.nowait {
            ok(
                ctx,
                self.id,
                AMQPClass::Exchange(exchange::AMQPMethod::DeleteOk(exchange::DeleteOk {})),
            );
        }
        Ok(())
    }

    fn exchange_bind(
        &mut self,
        ctx: &mut ConnCtx,
        source: &ShortString,
        destination: &ShortString,
        key: &ShortString,
        args: &FieldTable,
        bind: bool,
    ) -> AmqpResult<()> {
        let vhost = ctx.vhost()?;
        let (src, dst) = (source.as_str(), destination.as_str());
        ctx.check(Access::Write, Resource::Exchange, dst)?;
        if src == DEFAULT_EXCHANGE || dst == DEFAULT_EXCHANGE {
            return Err(AmqpError::access_refused(
                "operation not permitted on the default exchange",
            ));
        }
        ctx.check(Access::Read, Resource::Exchange, src)?;
        let mut topo = vhost.topology.write();
        if !topo.exchanges.contains_key(dst) {
            // Unbinding something that does not exist is a no-op in RabbitMQ 3.x.
            if !bind {
                return Ok(());
            }
            return Err(AmqpError::no_exchange(dst, &vhost.name));
        }
        let Some(entry) = topo.exchanges.get_mut(src) else {
            if !bind {
                return Ok(());
            }
            return Err(AmqpError::no_exchange(src, &vhost.name));
        };
        let dest = Destination::Exchange(Arc::from(dst));
        if bind {
            if entry.meta.kind == ExchangeKind::Headers {
                warren_router::validate_headers_binding(args).map_err(AmqpError::precondition)?;
            }
            entry.router.table.bind(dest.clone(), key.as_str(), args);
        } else {
            entry.router.table.unbind(&dest, key.as_str(), args);
        }
        drop(topo);
        let op = crate::model::vhost::binding_op(&vhost, bind, src, &dest, key.as_str(), args);
        if !bind {
            vhost.topology.write().maybe_auto_delete(src);
        }
        vhost.record(op.into_iter().collect())
    }

    // ---- queues -----------------------------------------------------------------------

    /// Looks a queue up for an operation on it: 404 if missing, 405 if another
    /// connection owns it exclusively. The empty name means the last declared queue.
    fn find_queue(&self, ctx: &ConnCtx, vhost: &VHost, name: &str) -> AmqpResult<Arc<Queue>> {
        let name = self.expand_queue_name(name)?;
        let Some(q) = vhost.queue(&name) else {
            return Err(AmqpError::no_queue(&name, &vhost.name));
        };
        if q.exclusive_owner
            .is_some_and(|owner| owner != ctx.handle.id)
        {
            return Err(locked(&name, &vhost.name));
        }
        Ok(q)
    }

    fn expand_queue_name(&self, name: &str) -> AmqpResult<String> {
        if !name.is_empty() {
            return Ok(name.to_string());
        }
        match &self.last_queue {
            Some(q) => Ok(q.to_string()),
            None => Err(AmqpError::not_found("no previously declared queue")),
        }
    }

    fn queue_declare(&mut self, ctx: &mut ConnCtx, m: queue::Declare) -> AmqpResult<()> {
        let vhost = ctx.vhost()?;
        let requested = m.queue.as_str();
        let (queue, message_count, consumer_count) = if m.passive && requested == REPLY_TO_QUEUE {
            // The direct reply-to pseudo queue always "exists" with one consumer.
            (Arc::from(REPLY_TO_QUEUE), 0, 1)
        } else if m.passive {
            let q = self.find_queue(ctx, &vhost, requested)?;
            // A passive declare counts as a use for x-expires, as in RabbitMQ.
            q.touch();
            let (messages, consumers) = q.counts();
            (q.name.clone(), messages, consumers)
        } else {
            queues::check_queue_name(requested)?;
            let name: Arc<str> = if requested.is_empty() {
                Arc::from(names::queue_name())
            } else {
                Arc::from(requested)
            };
            ctx.check(Access::Configure, Resource::Queue, &name)?;
            if vhost.queue(&name).is_none() {
                // A dead-letter exchange: read on the queue, write on the exchange.
                if let Some(dlx) =
                    crate::session::connection::table_str(&m.arguments, "x-dead-letter-exchange")
                {
                    ctx.check(Access::Read, Resource::Queue, &name)?;
                    ctx.check(Access::Write, Resource::Exchange, &dlx)?;
                }
            }
            let spec = QueueSpec {
                name: &name,
                server_named: requested.is_empty(),
                durable: m.durable,
                auto_delete: m.auto_delete,
                exclusive_owner: m.exclusive.then_some(ctx.handle.id),
                arguments: &m.arguments,
            };
            match queues::declare_queue(&ctx.broker, &vhost, spec)? {
                Declared::Created(q) => {
                    if m.exclusive {
                        ctx.exclusive_queues.push(q.name.clone());
                    }
                    (q.name.clone(), 0, 0)
                }
                Declared::Existing(q) => {
                    let (messages, consumers) = q.counts();
                    (q.name.clone(), messages, consumers)
                }
            }
        };
        self.last_queue = Some(queue.clone());
        if !m.nowait {
            ok(
                ctx,
                self.id,
                AMQPClass::Queue(queue::AMQPMethod::DeclareOk(queue::DeclareOk {
                    queue: queue.as_ref().into(),
                    message_count,
                    consumer_count,
                })),
            );
        }
        Ok(())
    }

    fn queue_bind(
        &mut self,
        ctx: &mut ConnCtx,
        queue: &ShortString,
        exchange: &ShortString,
        key: &ShortString,
        args: &FieldTable,
        bind: bool,
    ) -> AmqpResult<()> {
        let vhost = ctx.vhost()?;
        let qname = self.expand_queue_name(queue.as_str())?;
        // An empty key with the empty queue shortcut means "the queue's name".
        let key = if key.as_str().is_empty() && queue.as_str().is_empty() {
            qname.clone()
        } else {
            key.as_str().to_string()
        };
        let xname = exchange.as_str();
        ctx.check(Access::Write, Resource::Queue, &qname)?;
        if xname == DEFAULT_EXCHANGE {
            return Err(AmqpError::access_refused(
                "operation not permitted on the default exchange",
            ));
        }
        ctx.check(Access::Read, Resource::Exchange, xname)?;
        if !vhost.has_exchange(xname) {
            if !bind {
                return Ok(());
            }
            return Err(AmqpError::no_exchange(xname, &vhost.name));
        }
        let q = match self.find_queue(ctx, &vhost, &qname) {
            Ok(q) => q,
            Err(e) if !bind && e.code == crate::util::error::ReplyCode::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut topo = vhost.topology.write();
        let Some(entry) = topo.exchanges.get_mut(xname) else {
            return Err(AmqpError::no_exchange(xname, &vhost.name));
        };
        let dest = Destination::Queue(q.name.clone());
        if bind {
            if entry.meta.kind == ExchangeKind::Headers {
                warren_router::validate_headers_binding(args).map_err(AmqpError::precondition)?;
            }
            entry.router.table.bind(dest.clone(), &key, args);
        } else {
            entry.router.table.unbind(&dest, &key, args);
        }
        drop(topo);
        let op = crate::model::vhost::binding_op(&vhost, bind, xname, &dest, &key, args);
        if !bind {
            vhost.topology.write().maybe_auto_delete(xname);
        }
        vhost.record(op.into_iter().collect())
    }

    fn queue_delete(&mut self, ctx: &mut ConnCtx, m: queue::Delete) -> AmqpResult<()> {
        let vhost = ctx.vhost()?;
        let name = self.expand_queue_name(m.queue.as_str())?;
        ctx.check(Access::Configure, Resource::Queue, &name)?;
        let message_count = match vhost.queue(&name) {
            None => 0,
            Some(q) => {
                if q.exclusive_owner
                    .is_some_and(|owner| owner != ctx.handle.id)
                {
                    return Err(locked(&name, &vhost.name));
                }
                {
                    let st = q.state.lock();
                    if m.if_unused && st.consumer_count() > 0 {
                        return Err(AmqpError::precondition(format_args!(
                            "queue '{name}' in vhost '{}' in use",
                            vhost.name
                        )));
                    }
                    if m.if_empty && st.ready_len() > 0 {
                        return Err(AmqpError::precondition(format_args!(
                            "queue '{name}' in vhost '{}' not empty",
                            vhost.name
                        )));
                    }
                }
                delete_queue(ctx, &vhost, &name)?.unwrap_or(0)
            }
        };
        if !m.nowait {
            ok(
                ctx,
                self.id,
                AMQPClass::Queue(queue::AMQPMethod::DeleteOk(queue::DeleteOk {
                    message_count,
                })),
            );
        }
        Ok(())
    }

    // ---- consumers ----------------------------------------------------------------------

    fn basic_consume(&mut self, ctx: &mut ConnCtx, m: basic::Consume) -> AmqpResult<()> {
        let vhost = ctx.vhost()?;
        let tag: Arc<str> = if m.consumer_tag.as_str().is_empty() {
            Arc::from(names::consumer_tag())
        } else {
            Arc::from(m.consumer_tag.as_str())
        };
        if self.consumers.contains_key(&tag) {
            return Err(AmqpError::not_allowed(format_args!(
                "attempt to reuse consumer tag '{tag}'"
            )));
        }
        let consumer_id = ctx.broker.next_id();
        if m.queue.as_str() == REPLY_TO_QUEUE {
            if !m.no_ack {
                return Err(AmqpError::precondition("reply consumer cannot acknowledge"));
            }
            if self.consumers.values().any(|c| c.queue.is_none()) {
                return Err(AmqpError::precondition("reply consumer already set"));
            }
            let token = self
                .reply_token
                .get_or_insert_with(names::random_suffix)
                .clone();
            ctx.broker.reply_to.insert(
                token,
                ReplyTarget {
                    conn: ctx.handle.clone(),
                    channel: self.id,
                    consumer_tag: tag.clone(),
                    shared: self.shared.clone(),
                },
            );
            self.consumers
                .insert(tag.clone(), ChannelConsumer { id: 0, queue: None });
            if !m.nowait {
                ok(
                    ctx,
                    self.id,
                    AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(basic::ConsumeOk {
                        consumer_tag: tag.as_ref().into(),
                    })),
                );
            }
            return Ok(());
        }
        let qname = self.expand_queue_name(m.queue.as_str())?;
        ctx.check(Access::Read, Resource::Queue, &qname)?;
        let q = self.find_queue(ctx, &vhost, m.queue.as_str())?;
        let priority = args::consumer_priority(
            &m.arguments,
            &format!("queue '{}' in vhost '{}'", q.name, vhost.name),
        )?;
        {
            let mut st = q.state.lock();
            // Quorum queues do not enforce exclusive consumers.
            if !q.is_quorum()
                && (st.has_exclusive_consumer() || (m.exclusive && st.consumer_count() > 0))
            {
                return Err(AmqpError::access_refused(format_args!(
                    "queue '{}' in vhost '{}' in exclusive use",
                    q.name, vhost.name
                )));
            }
            // consume-ok must precede the first delivery: write it before the consumer
            // becomes visible to dispatch (deliveries go through our inbox, after this).
            if !m.nowait {
                ok(
                    ctx,
                    self.id,
                    AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(basic::ConsumeOk {
                        consumer_tag: tag.as_ref().into(),
                    })),
                );
            }
            st.add_consumer(ConsumerSlot {
                id: consumer_id,
                tag: tag.clone(),
                prefetch: u32::from(self.consumer_prefetch),
                unacked: 0,
                no_ack: m.no_ack,
                exclusive: m.exclusive,
                priority,
                handle: ConsumerHandle {
                    conn: ctx.handle.clone(),
                    channel: self.id,
                    shared: self.shared.clone(),
                    no_ack: m.no_ack,
                },
            });
        }
        q.had_consumer.store(true, Ordering::Release);
        q.touch();
        self.consumers.insert(
            tag,
            ChannelConsumer {
                id: consumer_id,
                queue: Some(q.clone()),
            },
        );
        q.dispatch();
        Ok(())
    }

    fn basic_get(&mut self, ctx: &mut ConnCtx, m: basic::Get) -> AmqpResult<()> {
        let vhost = ctx.vhost()?;
        let qname = self.expand_queue_name(m.queue.as_str())?;
        ctx.check(Access::Read, Resource::Queue, &qname)?;
        let q = self.find_queue(ctx, &vhost, m.queue.as_str())?;
        let got = q.get(!m.no_ack);
        // management stats
        q.stats.inc(match (&got, m.no_ack) {
            (None, _) => crate::model::stats::Stat::GetEmpty,
            (Some(_), true) => crate::model::stats::Stat::GetNoAck,
            (Some(_), false) => crate::model::stats::Stat::Get,
        });
        let Some((entry, remaining)) = got else {
            ok(
                ctx,
                self.id,
                AMQPClass::Basic(basic::AMQPMethod::GetEmpty(basic::GetEmpty {})),
            );
            return Ok(());
        };
        let tag = self.next_delivery_tag;
        self.next_delivery_tag += 1;
        let msg = &entry.message;
        ctx.send_method(
            self.id,
            &AMQPClass::Basic(basic::AMQPMethod::GetOk(basic::GetOk {
                delivery_tag: tag,
                redelivered: entry.redelivered,
                exchange: short_str(&msg.exchange),
                routing_key: short_str(&msg.routing_key),
                message_count: remaining,
            })),
        );
        let frame_max = ctx.frame_max;
        let properties = delivery_properties(Some(&q), &entry, true);
        let body = q.load_body(msg).unwrap_or_default();
        encode_content(&mut ctx.out, self.id, &properties, &body, frame_max);
        if m.no_ack {
            q.release(msg);
        } else {
            q.mark_delivered(msg);
        }
        if !m.no_ack {
            self.unacked.insert(
                tag,
                Unacked {
                    queue: Some(q),
                    consumer_id: None,
                    entry,
                },
            );
        }
        Ok(())
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

/// The property block a delivery carries: as published, plus `x-delivery-count` for a
/// message a quorum queue delivers again.
fn delivery_properties(queue: Option<&Queue>, entry: &Entry, get: bool) -> Bytes {
    let raw = &entry.message.properties;
    // Quorum queues add it to every basic.get, and to deliveries from the first return.
    if (entry.delivery_count == 0 && !get) || !queue.is_some_and(Queue::is_quorum) {
        return raw.clone();
    }
    let mut headers = PropertiesView::scan(raw)
        .ok()
        .and_then(|v| v.headers)
        .and_then(|r| warren_codec::Table::parse(raw.get(r)?).ok())
        .unwrap_or_default();
    headers.set(
        "x-delivery-count",
        warren_codec::Value::I64(i64::from(entry.delivery_count)),
    );
    headers.sort();
    let edit = PropertiesEdit {
        headers: Some(Some(headers.to_bytes())),
        ..PropertiesEdit::default()
    };
    warren_codec::rewrite_properties(raw, &edit).unwrap_or_else(|_| raw.clone())
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

fn deliver_reply(target: ReplyTarget, message: Arc<Message>) {
    let _ = target.conn.send_delivery(Delivery {
        channel: target.channel,
        queue: None,
        consumer_id: 0,
        consumer_tag: target.consumer_tag,
        no_ack: true,
        entry: Entry {
            message,
            seq: 0,
            redelivered: false,
            expires_at: None,
            delivery_count: 0,
        },
    });
}

/// Deletes a queue: bindings go, consumers are told, messages are dropped. Returns how
/// many ready messages it held, or `None` if there was no such queue; an error when its
/// deletion could not be recorded (then it still exists).
pub(crate) fn delete_queue(
    ctx: &mut ConnCtx,
    vhost: &VHost,
    name: &str,
) -> AmqpResult<Option<u32>> {
    let Some(deleted) = queues::delete_queue(vhost, name, Some(ctx.handle.id))? else {
        return Ok(None);
    };
    ctx.broker.admin.retire_queue(&deleted.queue); // management stats
    ctx.cancelled_here.extend(deleted.local_consumers);
    ctx.exclusive_queues.retain(|q| q.as_ref() != name);
    Ok(Some(deleted.message_count))
}

/// [`delete_queue`] where nobody waits for the answer (auto-delete, exclusive queues of a
/// closing connection): a failure is logged with its cause.
pub(crate) fn delete_queue_logged(ctx: &mut ConnCtx, vhost: &VHost, name: &str) {
    if let Err(e) = delete_queue(ctx, vhost, name) {
        tracing::warn!(queue = %name, error = %e.text, cause = e.cause.as_deref().unwrap_or(""), "queue deletion failed");
    }
}
