//! Firehose tracing on a channel (model/trace.rs): the copies of this channel's
//! publishes and deliveries, made only once the vhost's flag said tracing is on.

use super::*;
use crate::model::trace;

impl Channel {
    fn origin<'a>(&self, ctx: &'a ConnCtx, vhost: &'a VHost) -> trace::Origin<'a> {
        trace::Origin {
            vhost: &vhost.name,
            connection: &ctx.name,
            channel: self.id,
            user: &ctx.user,
        }
    }

    /// `publish.<exchange>`: `message` as routed (BCC gone from its headers), and the
    /// queues routing found.
    pub(super) fn trace_publish(
        &self,
        ctx: &ConnCtx,
        vhost: &VHost,
        message: &Message,
        queues: &[Arc<Queue>],
    ) {
        let routed: Vec<&str> = queues.iter().map(|q| &*q.name).collect();
        let headers = trace::publish_headers(message, &self.origin(ctx, vhost), &routed);
        trace::emit(
            vhost,
            "publish",
            &message.exchange,
            &headers,
            message.body.clone(),
        );
    }

    /// `deliver.<queue>`: a basic.deliver or basic.get-ok as the client got it.
    pub(super) fn trace_deliver(
        &self,
        ctx: &ConnCtx,
        queue: &Queue,
        entry: &Entry,
        properties: &[u8],
        body: &Bytes,
    ) {
        let Some(vhost) = ctx.vhost.as_deref() else {
            return;
        };
        if trace::is_trace_copy(&entry.message) {
            return;
        }
        let headers = trace::deliver_headers(
            &entry.message,
            properties,
            &self.origin(ctx, vhost),
            entry.redelivered,
        );
        trace::emit(vhost, "deliver", &queue.name, &headers, body.clone());
    }
}
