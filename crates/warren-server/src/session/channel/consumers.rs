//! Consumers and deliveries: basic.consume/cancel/get/qos/recover, delivery tags,
//! unacknowledged messages and their settlement (ack, reject, nack, requeue).

use super::*;

impl Channel {
    pub(super) fn on_basic_method(
        &mut self,
        ctx: &mut ConnCtx,
        method: basic::AMQPMethod,
    ) -> AmqpResult<()> {
        let id = self.id;
        match method {
            basic::AMQPMethod::Qos(m) => {
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
            basic::AMQPMethod::Consume(m) => self.basic_consume(ctx, m),
            basic::AMQPMethod::Cancel(m) => {
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
            basic::AMQPMethod::Publish(m) => {
                if m.immediate {
                    return Err(AmqpError::not_implemented("immediate=true"));
                }
                self.content = Some(PendingContent {
                    publish: m,
                    header: None,
                    body: Vec::new(),
                    single: None,
                });
                Ok(())
            }
            basic::AMQPMethod::Get(m) => self.basic_get(ctx, m),
            basic::AMQPMethod::Ack(m) => {
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
            basic::AMQPMethod::Reject(m) => {
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
            basic::AMQPMethod::Nack(m) => {
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
            basic::AMQPMethod::Recover(m) => {
                self.recover(m.requeue)?;
                ok(
                    ctx,
                    id,
                    AMQPClass::Basic(basic::AMQPMethod::RecoverOk(basic::RecoverOk {})),
                );
                Ok(())
            }
            basic::AMQPMethod::RecoverAsync(m) => self.recover(m.requeue),
            other => Err(unexpected(&AMQPClass::Basic(other))),
        }
    }

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
        // management stats, bumped here by the connection task that owns the channel so
        // that no other thread writes its counters
        self.shared.stats.inc(if d.no_ack {
            crate::model::stats::Stat::DeliverNoAck
        } else {
            crate::model::stats::Stat::Deliver
        });
        if d.entry.redelivered {
            self.shared.stats.inc(crate::model::stats::Stat::Redeliver);
        }
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
        ctx.put_content(self.id, &properties, &body);
        if let (Some(q), true) = (&d.queue, ctx.vhost.as_ref().is_some_and(|v| v.tracing())) {
            self.trace_deliver(ctx, q, &d.entry, &properties, &body);
        }
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
                    delivered_at: ctx.broker.timers.now_ms(),
                },
            );
            self.arm_tick(ctx);
        }
        Ok(())
    }

    /// Removes the deliveries an ack/nack/reject names; 406 for unknown tags.
    pub(super) fn take_unacked(&mut self, tag: u64, multiple: bool) -> AmqpResult<Vec<Unacked>> {
        if multiple && tag == 0 {
            // Tag 0 with multiple set means everything outstanding (AMQP 0-9-1 1.8.3.13).
            return Ok(std::mem::take(&mut self.unacked).into_values().collect());
        }
        if multiple {
            // RabbitMQ (rabbit_channel:collect_acks) walks the outstanding tags up to this
            // one; a tag that is not outstanding itself (above all of them, or already
            // settled) settles nothing and closes the channel, even with lower tags open.
            if !self.unacked.contains_key(&tag) {
                return Err(AmqpError::precondition(format_args!(
                    "unknown delivery tag {tag}"
                )));
            }
            let keep = self.unacked.split_off(&(tag.saturating_add(1)));
            let taken = std::mem::replace(&mut self.unacked, keep);
            return Ok(taken.into_values().collect());
        }
        match self.unacked.remove(&tag) {
            Some(u) => Ok(vec![u]),
            None => Err(AmqpError::precondition(format_args!(
                "unknown delivery tag {tag}"
            ))),
        }
    }

    pub(super) fn settle(&mut self, entries: Vec<Unacked>, how: Settle) {
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

    pub(super) fn ack(&mut self, tag: u64, multiple: bool) -> AmqpResult<()> {
        let entries = self.take_unacked(tag, multiple)?;
        // management stats
        self.shared
            .stats
            .add(crate::model::stats::Stat::Ack, entries.len() as u64);
        for u in &entries {
            if let Some(q) = &u.queue {
                q.stats.inc(crate::model::stats::Stat::Ack);
            }
        }
        self.settle(entries, Settle::Ack);
        Ok(())
    }

    pub(super) fn reject(&mut self, tag: u64, multiple: bool, requeue: bool) -> AmqpResult<()> {
        let entries = self.take_unacked(tag, multiple)?;
        if let Some(q) = entries
            .iter()
            .find_map(|u| u.queue.as_ref().filter(|q| q.is_stream))
        {
            return Err(AmqpError::not_implemented(format_args!(
                "basic.nack and basic.reject not supported by stream queues queue '{}' in vhost '{}'",
                q.name, q.vhost
            )));
        }
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

    pub(super) fn remove_consumer(&mut self, ctx: &mut ConnCtx, tag: &str) -> bool {
        let Some(c) = self.consumers.remove(tag) else {
            return false;
        };
        if let Some(q) = c.queue {
            consumer_deleted(ctx, self.id, &q, tag);
            let (now_empty, was_active) = {
                let mut st = q.state.lock();
                let was_active = st.active_consumer() == Some(c.id);
                st.remove_consumer(c.id);
                (st.consumer_count() == 0, was_active)
            };
            if let Some(stream) = q.stream() {
                stream.remove_consumer(c.id);
            }
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
        let removed = self.consumers.remove(tag);
        if let Some(q) = removed.as_ref().and_then(|c| c.queue.as_ref()) {
            consumer_deleted(ctx, self.id, q, tag);
        }
        if removed.is_some() && ctx.cancel_notify && !self.closing {
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

    pub(super) fn recover(&mut self, requeue: bool) -> AmqpResult<()> {
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

    /// basic.consume on `amq.rabbitmq.reply-to`: this channel's direct reply-to consumer.
    fn consume_replies(
        &mut self,
        ctx: &mut ConnCtx,
        m: &basic::Consume,
        tag: Arc<str>,
    ) -> AmqpResult<()> {
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
        Ok(())
    }

    pub(super) fn basic_consume(&mut self, ctx: &mut ConnCtx, m: basic::Consume) -> AmqpResult<()> {
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
            return self.consume_replies(ctx, &m, tag);
        }
        let qname = self.expand_queue_name(m.queue.as_str())?;
        ctx.check(Access::Read, Resource::Queue, &qname)?;
        let q = self.find_queue(ctx, &vhost, m.queue.as_str())?;
        let what = format!("queue '{}' in vhost '{}'", q.name, vhost.name);
        let priority = args::consumer_priority(&m.arguments, &what)?;
        let stream_start = match q.stream() {
            Some(stream) => Some(self.stream_start(stream, &m, &what)?),
            None => None,
        };
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
        if let (Some(stream), Some(start)) = (q.stream(), stream_start) {
            stream.add_consumer(
                consumer_id,
                tag.clone(),
                ConsumerHandle {
                    conn: ctx.handle.clone(),
                    channel: self.id,
                    shared: self.shared.clone(),
                    no_ack: false,
                },
                start,
                u32::from(self.consumer_prefetch),
            );
        }
        q.had_consumer.store(true, Ordering::Release);
        q.touch();
        ctx.broker.admin.events.emit("consumer.created", |h| {
            h.str("user_who_performed_action", &ctx.user)
                .erl_table("arguments", &m.arguments)
                .long("prefetch_count", i64::from(self.consumer_prefetch))
                .str("queue", &*q.name)
                .str("vhost", &*vhost.name)
                .str(
                    "channel",
                    ctx.broker.admin.events.pid(ctx.handle.id, self.id),
                )
                .bool("ack_required", !m.no_ack)
                .bool("exclusive", m.exclusive)
                .str("consumer_tag", &*tag);
        });
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

    /// What rabbit_stream_queue:consume refuses, and where the consumer starts.
    fn stream_start(
        &self,
        stream: &crate::model::stream::StreamQueue,
        m: &basic::Consume,
        what: &str,
    ) -> AmqpResult<u64> {
        // Consumer arguments are checked before the queue type's own rules.
        if m.arguments.contains_key("x-priority") {
            return Err(AmqpError::precondition(format_args!(
                "invalid arg 'x-priority' for {what} of queue type rabbit_stream_queue"
            )));
        }
        if m.no_ack {
            return Err(AmqpError::not_implemented(format_args!(
                "automatic acknowledgement not supported by stream queues {what}"
            )));
        }
        if self.consumer_prefetch == 0 {
            return Err(AmqpError::precondition(format_args!(
                "consumer prefetch count is not set for '{what}'"
            )));
        }
        let offset = args::stream_offset(&m.arguments, crate::util::clock::now_ms())?;
        Ok(stream.start_offset(offset))
    }

    pub(super) fn basic_get(&mut self, ctx: &mut ConnCtx, m: basic::Get) -> AmqpResult<()> {
        let vhost = ctx.vhost()?;
        let qname = self.expand_queue_name(m.queue.as_str())?;
        ctx.check(Access::Read, Resource::Queue, &qname)?;
        let q = self.find_queue(ctx, &vhost, m.queue.as_str())?;
        if q.is_stream {
            return Err(AmqpError::not_implemented(format_args!(
                "basic.get not supported by stream queues queue '{}' in vhost '{}'",
                q.name, vhost.name
            )));
        }
        let got = q.get(!m.no_ack);
        // management stats, the queue's and the channel's
        let stat = match (&got, m.no_ack) {
            (None, _) => crate::model::stats::Stat::GetEmpty,
            (Some(_), true) => crate::model::stats::Stat::GetNoAck,
            (Some(_), false) => crate::model::stats::Stat::Get,
        };
        q.stats.inc(stat);
        self.shared.stats.inc(stat);
        if got.as_ref().is_some_and(|(entry, _)| entry.redelivered) {
            q.stats.inc(crate::model::stats::Stat::Redeliver);
            self.shared.stats.inc(crate::model::stats::Stat::Redeliver);
        }
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
        let properties = delivery_properties(Some(&q), &entry, true);
        let body = q.load_body(msg).unwrap_or_default();
        ctx.put_content(self.id, &properties, &body);
        if vhost.tracing() {
            self.trace_deliver(ctx, &q, &entry, &properties, &body);
        }
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
                    delivered_at: ctx.broker.timers.now_ms(),
                },
            );
            self.arm_tick(ctx);
        }
        Ok(())
    }
}

/// The property block a delivery carries: as published, plus `x-delivery-count` for a
/// message a quorum queue delivers again.
/// `consumer.deleted` for the event exchange.
fn consumer_deleted(ctx: &ConnCtx, channel: u16, q: &Queue, tag: &str) {
    let events = &ctx.broker.admin.events;
    events.emit("consumer.deleted", |h| {
        h.str("user_who_performed_action", &ctx.user)
            .str("queue", &*q.name)
            .str(
                "vhost",
                q.home().map(|v| v.name.to_string()).unwrap_or_default(),
            )
            .str("channel", events.pid(ctx.handle.id, channel))
            .str("consumer_tag", tag);
    });
}

pub(super) fn delivery_properties(queue: Option<&Queue>, entry: &Entry, get: bool) -> Bytes {
    let raw = &entry.message.properties;
    if queue.is_some_and(|q| q.is_stream) {
        return with_header(raw, "x-stream-offset", entry.seq as i64);
    }
    // Quorum queues add it to every basic.get, and to deliveries from the first return.
    if (entry.delivery_count == 0 && !get) || !queue.is_some_and(Queue::is_quorum) {
        return raw.clone();
    }
    with_header(raw, "x-delivery-count", i64::from(entry.delivery_count))
}

/// The property block with `name` set in its headers (as a long), the headers sorted by
/// key as rabbit_basic:add_header leaves them.
fn with_header(raw: &Bytes, name: &str, value: i64) -> Bytes {
    let mut headers = PropertiesView::scan(raw)
        .ok()
        .and_then(|v| v.headers)
        .and_then(|r| warren_codec::Table::parse(raw.get(r)?).ok())
        .unwrap_or_default();
    headers.set(name, warren_codec::Value::I64(value));
    headers.sort();
    let edit = PropertiesEdit {
        headers: Some(Some(headers.to_bytes())),
        ..PropertiesEdit::default()
    };
    warren_codec::rewrite_properties(raw, &edit).unwrap_or_else(|_| raw.clone())
}
