//! Publisher confirms: the acks and nacks a channel owes its publisher, written in runs.

use super::*;

impl Channel {
    pub(super) fn on_confirm_method(
        &mut self,
        ctx: &mut ConnCtx,
        method: confirm::AMQPMethod,
    ) -> AmqpResult<()> {
        let id = self.id;
        match method {
            confirm::AMQPMethod::Select(m) => {
                if self.tx.is_some() {
                    return Err(AmqpError::precondition(
                        "cannot switch from tx to confirm mode",
                    ));
                }
                self.shared.confirm.store(true, Ordering::Relaxed);
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
            other => Err(unexpected(&AMQPClass::Confirm(other))),
        }
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
        self.shared
            .unconfirmed
            .store((c.next - 1).saturating_sub(upto), Ordering::Relaxed);
    }

    /// Publish number `seq` was refused (by a queue, or by the disk): it is nacked, in
    /// order with the acks around it.
    pub(super) fn nack_publish(&mut self, ctx: &mut ConnCtx, seq: u64) {
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
}
