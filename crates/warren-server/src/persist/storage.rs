//! Persistent messages of durable queues on disk, through [`warren_journal`].
//!
//! A persistent message routed to durable queues is appended once (its body shared by
//! every such queue); the publisher's confirm, or tx.commit-ok, waits for the journal's
//! group commit. Acks, rejections, expiry, length-limit drops and purges release the
//! queue's reference; deliveries are marked so that a restart redelivers with
//! `redelivered` set. At start the journal's recovery (`crate::recovery::messages`)
//! refills each durable queue in its original order.

use tracing::warn;
use warren_journal::{Callback, Journal, JournalError, Location, NewRecord, QueueId};
use warren_store::{Message, StoredRef};

use crate::util::clock::now_ms;

fn to_location(r: StoredRef) -> Location {
    Location {
        segment: r.segment,
        offset: r.offset,
        len: r.len,
    }
}

pub(crate) fn to_ref(l: Location) -> StoredRef {
    StoredRef {
        segment: l.segment,
        offset: l.offset,
        len: l.len,
    }
}

/// The broker's message store.
pub struct Storage {
    journal: Journal,
}

impl Storage {
    /// The store over an opened journal (see `crate::recovery::messages::open`).
    pub fn new(journal: Journal) -> Self {
        Storage { journal }
    }

    /// Appends a message for `queues` (every queue it was routed to: each releases its
    /// reference when the message leaves it); `on_durable` runs once it is synced. Only a
    /// `persistent` record is recovered after a restart; the others are written to keep
    /// bodies out of memory. The record keeps the publish time (as `expires_at_ms`, which
    /// the journal does not interpret) so that TTLs keep counting across a restart.
    pub fn append(
        &self,
        message: &Message,
        persistent: bool,
        queues: Vec<u64>,
        on_durable: Callback,
    ) -> Result<StoredRef, JournalError> {
        let record = NewRecord {
            msg_id: 0,
            persistent,
            expires_at_ms: Some(now_ms()),
            queues: queues.into_iter().map(QueueId).collect(),
            exchange: message.exchange.to_string(),
            routing_key: message.routing_key.to_string(),
            properties: message.properties.clone(),
            body: message.body.clone(),
        };
        self.journal.append(record, on_durable).map(to_ref)
    }

    /// Appends a message held by a delayed exchange under the store id `holder`; the
    /// record keeps its due time (in `expires_at_ms`) and, in `exchange`, the field
    /// `crate::model::delayed::record_exchange` makes.
    pub fn append_delayed(
        &self,
        message: &Message,
        exchange: String,
        holder: u64,
        due_ms: u64,
        on_durable: Callback,
    ) -> Result<StoredRef, JournalError> {
        let record = NewRecord {
            msg_id: 0,
            persistent: true,
            expires_at_ms: Some(due_ms),
            queues: vec![QueueId(holder)],
            exchange,
            routing_key: message.routing_key.to_string(),
            properties: message.properties.clone(),
            body: message.body.clone(),
        };
        self.journal.append(record, on_durable).map(to_ref)
    }

    /// A whole stored record (checksums verified).
    pub fn read_message(
        &self,
        r: StoredRef,
    ) -> Result<warren_journal::StoredMessage, JournalError> {
        self.journal.read(to_location(r))
    }

    /// The body of a stored message (checksum verified).
    pub fn read_body(&self, r: StoredRef) -> Result<bytes::Bytes, JournalError> {
        self.journal.read(to_location(r)).map(|m| m.body)
    }

    pub fn ack(&self, queue: u64, r: StoredRef) {
        self.journal.ack(QueueId(queue), to_location(r));
    }

    pub fn mark_delivered(&self, queue: u64, r: StoredRef) {
        self.journal.mark_delivered(QueueId(queue), to_location(r));
    }

    pub fn forget_queue(&self, queue: u64) {
        self.journal.forget_queue(QueueId(queue));
    }

    /// Waits until every append, ack and delivery mark made before this call is written
    /// and synced: the message store has caught up with what the broker accepted.
    pub fn flush(&self) -> Result<(), JournalError> {
        self.journal.flush()
    }

    /// Syncs everything and stops the writer (clean shutdown).
    pub fn close(&self) {
        if let Err(e) = self.journal.close() {
            warn!(error = %e, "closing the message store");
        }
    }
}
