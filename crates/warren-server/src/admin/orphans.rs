//! Persistent messages whose queue the metadata does not know (see
//! `recovery::messages`): listed, attached to a durable queue, or dropped, by an
//! operator's decision only. The store never deletes them on its own.

use crate::{
    admin::{AdminError, AdminResult},
    model::broker::Broker,
};

/// One orphan queue: its message-store id and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrphanQueue {
    pub store_id: u64,
    pub messages: usize,
    /// Record bytes on disk (headers included).
    pub bytes: u64,
}

impl Broker {
    /// `GET /api/warren/orphans`.
    pub fn orphan_queues(&self) -> Vec<OrphanQueue> {
        self.persistence
            .orphans
            .lock()
            .iter()
            .map(|(id, refs)| OrphanQueue {
                store_id: *id,
                messages: refs.len(),
                bytes: refs.iter().map(|r| u64::from(r.len)).sum(),
            })
            .collect()
    }

    /// `POST /api/warren/orphans/{id}/attach`: publishes each orphan message, in order and
    /// persistent as it was, into the durable queue `queue` of `vhost` (through the default
    /// exchange, as `POST .../publish` would), waits until the copies are on disk, and only
    /// then releases the originals. Returns how many were moved.
    pub fn attach_orphans(&self, store_id: u64, vhost: &str, queue: &str) -> AdminResult<usize> {
        let storage = self
            .persistence
            .storage()
            .ok_or_else(|| AdminError::BadRequest("this broker has no message store".into()))?;
        let vh = self.vhost(vhost).ok_or(AdminError::NotFound)?;
        let target = vh
            .topology
            .read()
            .queues
            .get(queue)
            .cloned()
            .ok_or(AdminError::NotFound)?;
        if !target.is_recoverable() {
            return Err(AdminError::BadRequest(format!(
                "queue '{queue}' in vhost '{vhost}' is not durable: orphans go to a durable queue"
            )));
        }
        let refs = self
            .persistence
            .orphans
            .lock()
            .get(&store_id)
            .cloned()
            .ok_or(AdminError::NotFound)?;
        let mut moved = 0;
        for r in refs {
            let stored = storage.read_message(r).map_err(|e| {
                AdminError::Internal(format!("reading an orphan message failed: {e}"))
            })?;
            self.admin_publish(vhost, "", queue, stored.properties, stored.body)?;
            moved += 1;
        }
        storage
            .flush()
            .map_err(|e| AdminError::Internal(format!("syncing the moved messages failed: {e}")))?;
        storage.forget_queue(store_id);
        self.persistence.orphans.lock().remove(&store_id);
        Ok(moved)
    }

    /// `DELETE /api/warren/orphans/{id}`: releases the orphan messages for good.
    pub fn drop_orphans(&self, store_id: u64) -> AdminResult<usize> {
        let refs = self
            .persistence
            .orphans
            .lock()
            .remove(&store_id)
            .ok_or(AdminError::NotFound)?;
        if let Some(storage) = self.persistence.storage() {
            storage.forget_queue(store_id);
        }
        Ok(refs.len())
    }
}
