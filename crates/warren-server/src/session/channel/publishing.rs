//! Publishing on a channel: content frames assembled into a message, the publish
//! checks (permission, exchange, user-id, expiration, direct reply-to), then the broker's
//! publish operation (`model::ops::publish`), basic.return and credit flow.

use super::*;

/// Bodies from this size on do not share the connection's read buffer (their frames are
/// read into buffers of their own size; see the connection's read loop).
const OWN_BUFFER_BODY: u64 = 32 * 1024;

impl Channel {
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
        // A large body comes in frames read into buffers of their own, so the properties
        // would be the only thing left in the shared read buffer they are a slice of, and
        // would keep all of it (16 KiB or more) alive with the message, unaccounted.
        let properties = if body_size >= OWN_BUFFER_BODY {
            Bytes::copy_from_slice(&properties)
        } else {
            properties
        };
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
                content.body = BODIES.take(size as usize + BODY_READ_AHEAD);
                content.body.extend_from_slice(&first);
            }
            if content.body.is_empty() {
                content.body = BODIES.take(size as usize + BODY_READ_AHEAD);
            }
            content.body.extend_from_slice(&payload);
        }
        let have = content.single.as_ref().map_or(0, |b| b.len()) + content.body.len();
        if have as u64 == size {
            return self.finish_content(ctx);
        }
        Ok(())
    }

    /// Where the payload of a body frame of `frame_payload` bytes can be read straight
    /// from the socket: the message's body buffer, when the body is assembled from several
    /// frames and this frame fits the declared size. `None` leaves the frame to the normal
    /// path ([`Self::on_body`]), which also reports every error.
    pub fn body_sink(&mut self, frame_payload: usize) -> Option<&mut Vec<u8>> {
        let content = self.content.as_mut()?;
        let (size, _) = content.header.as_ref()?;
        let size = usize::try_from(*size).ok()?;
        if content.single.is_some() {
            return None;
        }
        let have = content.body.len();
        // One frame holding the whole body stays a slice of its read buffer (no copy).
        if have == 0 && frame_payload == size {
            return None;
        }
        if have + frame_payload > size {
            return None;
        }
        // Room past the body for what follows its last frame's payload on the wire, so
        // that the read of that payload can take it along (see the connection's read loop).
        if content.body.capacity() < size + BODY_READ_AHEAD {
            if have == 0 {
                content.body = BODIES.take(size + BODY_READ_AHEAD);
            } else {
                content.body.reserve_exact(size + BODY_READ_AHEAD - have);
            }
        }
        Some(&mut content.body)
    }

    /// A body frame's payload was read into [`Self::body_sink`]'s buffer and its frame
    /// end checked: the message is published once the body is whole.
    pub fn on_body_appended(&mut self, ctx: &mut ConnCtx) -> AmqpResult<()> {
        let Some(content) = self.content.as_ref() else {
            return Ok(());
        };
        let Some((size, _)) = content.header.as_ref() else {
            return Ok(());
        };
        if content.body.len() as u64 == *size {
            return self.finish_content(ctx);
        }
        Ok(())
    }

    pub(super) fn finish_content(&mut self, ctx: &mut ConnCtx) -> AmqpResult<()> {
        let Some(content) = self.content.take() else {
            return Ok(());
        };
        let (_, properties) = content.header.unwrap_or_default();
        let body = match content.single {
            Some(b) => b,
            None => BODIES.freeze(content.body),
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

    pub(super) fn publish(&mut self, ctx: &mut ConnCtx, publish: Publication) -> AmqpResult<()> {
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
        ctx.check_topic(Access::Write, &publish.exchange, &publish.routing_key)?;
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
        if let Some(c) = &self.confirms {
            // management stats: publishes whose confirm is not written yet
            self.shared
                .unconfirmed
                .store((c.next - 1).saturating_sub(c.written), Ordering::Relaxed);
        }
        let token = seq.map(DurableToken::Confirm);
        let routed = self.route_and_deliver(ctx, &vhost, publish, &view, token)?;
        if seq.is_some() {
            // management stats
            vhost
                .stats
                .inc_at(ctx.handle.id, crate::model::stats::Stat::Confirm);
            self.shared.stats.inc(crate::model::stats::Stat::Confirm);
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
    pub(super) fn route_and_deliver(
        &mut self,
        ctx: &mut ConnCtx,
        vhost: &Arc<VHost>,
        publish: Publication,
        view: &PropertiesView,
        token: Option<DurableToken>,
    ) -> AmqpResult<Routed> {
        let mandatory = publish.mandatory;
        let prepared = publish::prepare(publish, view)?;
        // Firehose: one flag read per publish; the copy keeps what enqueueing consumes.
        let traced = (vhost.tracing() && !crate::model::trace::is_trace_copy(&prepared.message))
            .then(|| prepared.message.clone());
        // Replies to a direct reply-to requester go straight to its channel.
        if &*prepared.message.exchange == DEFAULT_EXCHANGE {
            if let Some(token) = prepared.message.routing_key.strip_prefix(REPLY_TO_PREFIX) {
                if let Some(m) = &traced {
                    self.trace_publish(ctx, vhost, m, &[]);
                }
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
        if let (Some(m), true) = (&traced, published.is_ok()) {
            self.trace_publish(ctx, vhost, m, &queues);
        }
        // Credit flow: the connection stops reading until pressured queues catch up.
        for q in queues.drain(..) {
            if q.flow_pressured() && !ctx.flow_queues.iter().any(|f| Arc::ptr_eq(f, &q)) {
                ctx.flow_queues.push(q);
            }
        }
        ctx.route_buf = queues;
        let published = published?;
        // management stats of the channel (the vhost's are counted while routing)
        self.shared.stats.inc(crate::model::stats::Stat::Publish);
        if published.unroutable.is_some() {
            self.shared.stats.inc(if mandatory {
                crate::model::stats::Stat::ReturnUnroutable
            } else {
                crate::model::stats::Stat::DropUnroutable
            });
        }
        if let (true, Some(message)) = (mandatory, &published.unroutable) {
            self.send_return(ctx, message);
        }
        Ok(Routed {
            accepted: published.accepted,
            on_disk: published.on_disk,
        })
    }

    pub(super) fn send_return(&mut self, ctx: &mut ConnCtx, publish: &Message) {
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
}

/// The message-store callback that brings `token` back to this channel's connection.
pub(super) fn durable_callback(
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

pub(super) fn deliver_reply(target: ReplyTarget, message: Arc<Message>) {
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

/// Bytes a body buffer has room for past the body: a frame end and the next frame's
/// header, read together with a body frame's payload.
pub(crate) const BODY_READ_AHEAD: usize = 8;
