use std::sync::Arc;

use bytes::Bytes;

/// A published message as it sits in queues. Shared (`Arc`) between every queue it was
/// routed to; the body and the raw property block are never copied per queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Shared with the publishing channel's cache: a run of publishes to one exchange with
    /// one key allocates neither per message.
    pub exchange: Arc<str>,
    pub routing_key: Arc<str>,
    /// The raw content-header property block, forwarded to consumers as received.
    pub properties: Bytes,
    pub body: Bytes,
    /// delivery_mode == 2.
    pub persistent: bool,
    /// The priority property (0 when absent).
    pub priority: u8,
    /// The expiration property, in milliseconds, when present and valid.
    pub expiration: Option<u64>,
    /// BCC routing keys, which were stripped from the headers but still route the
    /// message when it is dead-lettered without a dead-letter routing key.
    pub bcc: Option<Arc<[String]>>,
    /// Where the message is stored on disk, when it is persistent and went to a durable
    /// queue: acks and deliveries are recorded against it.
    pub stored: Option<StoredRef>,
    /// `Some(len)` when the body lives only on disk (`body` is then empty): paged out to
    /// keep the broker within its memory budget. Read back from `stored` on delivery.
    pub paged_len: Option<usize>,
}

/// A stored record's place on disk (segment, offset, length), opaque to the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StoredRef {
    pub segment: u64,
    pub offset: u32,
    pub len: u32,
}

impl Message {
    /// The body's size, whether it is in memory or paged out.
    pub fn body_size(&self) -> usize {
        self.paged_len.unwrap_or(self.body.len())
    }

    pub fn is_paged(&self) -> bool {
        self.paged_len.is_some()
    }
}
