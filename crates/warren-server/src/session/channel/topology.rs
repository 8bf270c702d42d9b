//! Exchange and queue methods: declare, delete, bind, unbind, purge (the checks that are
//! the channel's own, then the broker's operations in `model::ops`).

use super::*;

impl Channel {
    pub(super) fn on_queue_method(
        &mut self,
        ctx: &mut ConnCtx,
        method: queue::AMQPMethod,
    ) -> AmqpResult<()> {
        let id = self.id;
        match method {
            queue::AMQPMethod::Declare(m) => self.queue_declare(ctx, m),
            queue::AMQPMethod::Bind(m) => {
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
            queue::AMQPMethod::Unbind(m) => {
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
            queue::AMQPMethod::Purge(m) => {
                let vhost = ctx.vhost()?;
                let qname = self.expand_queue_name(m.queue.as_str())?;
                ctx.check(Access::Read, Resource::Queue, &qname)?;
                let q = self.find_queue(ctx, &vhost, m.queue.as_str())?;
                if q.is_stream {
                    return Err(AmqpError::not_implemented(format_args!(
                        "queue.purge not supported by stream queues queue '{}' in vhost '{}'",
                        q.name, vhost.name
                    )));
                }
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
            queue::AMQPMethod::Delete(m) => self.queue_delete(ctx, m),
            other => Err(unexpected(&AMQPClass::Queue(other))),
        }
    }

    pub(super) fn on_exchange_method(
        &mut self,
        ctx: &mut ConnCtx,
        method: exchange::AMQPMethod,
    ) -> AmqpResult<()> {
        let id = self.id;
        match method {
            exchange::AMQPMethod::Declare(m) => self.exchange_declare(ctx, m),
            exchange::AMQPMethod::Delete(m) => self.exchange_delete(ctx, m),
            exchange::AMQPMethod::Bind(m) => {
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
            exchange::AMQPMethod::Unbind(m) => {
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
            other => Err(unexpected(&AMQPClass::Exchange(other))),
        }
    }

    pub(super) fn exchange_declare(
        &mut self,
        ctx: &mut ConnCtx,
        m: exchange::Declare,
    ) -> AmqpResult<()> {
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
            let kind = ctx
                .broker
                .exchange_kind(m.kind.as_str())
                .map_err(AmqpError::command_invalid)?;
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

    pub(super) fn exchange_delete(
        &mut self,
        ctx: &mut ConnCtx,
        m: exchange::Delete,
    ) -> AmqpResult<()> {
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
        // Deleting an exchange that does not exist is a no-op in RabbitMQ 3.x.
        bindings::delete_exchange(&vhost, name, m.if_unused)?;
        if !m.nowait {
            ok(
                ctx,
                self.id,
                AMQPClass::Exchange(exchange::AMQPMethod::DeleteOk(exchange::DeleteOk {})),
            );
        }
        Ok(())
    }

    pub(super) fn exchange_bind(
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
        ctx.check_topic(Access::Read, src, key.as_str())?;
        let dest = Destination::Exchange(Arc::from(dst));
        if bind {
            bindings::bind(&vhost, src, &dest, key.as_str(), args)
        } else {
            // Unbinding something that does not exist is a no-op in RabbitMQ 3.x.
            bindings::unbind(&vhost, src, &dest, key.as_str(), args).map(drop)
        }
    }

    /// Looks a queue up for an operation on it: 404 if missing, 405 if another
    /// connection owns it exclusively. The empty name means the last declared queue.
    pub(super) fn find_queue(
        &self,
        ctx: &ConnCtx,
        vhost: &VHost,
        name: &str,
    ) -> AmqpResult<Arc<Queue>> {
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

    pub(super) fn expand_queue_name(&self, name: &str) -> AmqpResult<String> {
        if !name.is_empty() {
            return Ok(name.to_string());
        }
        match &self.last_queue {
            Some(q) => Ok(q.to_string()),
            None => Err(AmqpError::not_found("no previously declared queue")),
        }
    }

    pub(super) fn queue_declare(&mut self, ctx: &mut ConnCtx, m: queue::Declare) -> AmqpResult<()> {
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

    pub(super) fn queue_bind(
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
        // Topic read authorisation on the routing key, as RabbitMQ 3.10 does for bind and
        // unbind alike.
        ctx.check_topic(Access::Read, xname, &key)?;
        let q = match self.find_queue(ctx, &vhost, &qname) {
            Ok(q) => q,
            Err(e) if !bind && e.code == crate::util::error::ReplyCode::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let dest = Destination::Queue(q.name.clone());
        if bind {
            bindings::bind(&vhost, xname, &dest, &key, args)
        } else {
            bindings::unbind(&vhost, xname, &dest, &key, args).map(drop)
        }
    }

    pub(super) fn queue_delete(&mut self, ctx: &mut ConnCtx, m: queue::Delete) -> AmqpResult<()> {
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
