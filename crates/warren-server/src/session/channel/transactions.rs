//! Transactions: publishes, acks and rejections buffered until tx.commit.

use super::*;

impl Channel {
    pub(super) fn on_tx_method(
        &mut self,
        ctx: &mut ConnCtx,
        method: tx::AMQPMethod,
    ) -> AmqpResult<()> {
        let id = self.id;
        match method {
            tx::AMQPMethod::Select(_) => {
                if self.confirms.is_some() {
                    return Err(AmqpError::precondition(
                        "cannot switch from confirm to tx mode",
                    ));
                }
                if self.tx.is_none() {
                    self.tx = Some(Vec::new());
                }
                self.shared.transactional.store(true, Ordering::Relaxed);
                ok(
                    ctx,
                    id,
                    AMQPClass::Tx(tx::AMQPMethod::SelectOk(tx::SelectOk {})),
                );
                Ok(())
            }
            tx::AMQPMethod::Commit(_) => {
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
            tx::AMQPMethod::Rollback(_) => {
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
            other => Err(unexpected(&AMQPClass::Tx(other))),
        }
    }

    pub(super) fn tag_known(&self, tag: u64, multiple: bool) -> bool {
        if multiple {
            tag == 0 || self.unacked.contains_key(&tag)
        } else {
            self.unacked.contains_key(&tag)
        }
    }

    pub(super) fn commit(&mut self, ctx: &mut ConnCtx, ops: Vec<TxOp>) -> AmqpResult<()> {
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
}
