/// What a queue does when a length limit is reached (`x-overflow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    /// Drop (and dead-letter) the oldest messages.
    #[default]
    DropHead,
    /// Refuse new messages: publishers with confirms get basic.nack.
    RejectPublish,
    /// Refuse new messages and dead-letter them.
    RejectPublishDlx,
}

impl Overflow {
    pub fn parse(s: &[u8]) -> Option<Overflow> {
        match s {
            b"drop-head" => Some(Overflow::DropHead),
            b"reject-publish" => Some(Overflow::RejectPublish),
            b"reject-publish-dlx" => Some(Overflow::RejectPublishDlx),
            _ => None,
        }
    }
}

/// The rules a queue applies, from its `x-` arguments (validated by the server).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueConfig {
    /// `x-max-priority`: priorities 0..=max are distinct; `None` ignores priorities.
    pub max_priority: Option<u8>,
    /// `x-message-ttl` in milliseconds.
    pub message_ttl: Option<u64>,
    /// `x-max-length`: ready messages.
    pub max_length: Option<u64>,
    /// `x-max-length-bytes`: body bytes of ready messages.
    pub max_length_bytes: Option<u64>,
    pub overflow: Overflow,
    /// `x-delivery-limit` (quorum queues): returns after which a message is dead-lettered.
    pub delivery_limit: Option<u64>,
    /// Quorum queues put returned messages at the back instead of at their original
    /// position.
    pub returns_to_back: bool,
    /// Quorum queues check length limits before enqueueing: a publish is refused only
    /// when the queue is already over the limit.
    pub limit_before_enqueue: bool,
    /// `x-single-active-consumer`.
    pub single_active_consumer: bool,
}

/// Why a message left a queue without being consumed (the `reason` of `x-death`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeathReason {
    Rejected,
    Expired,
    MaxLen,
    DeliveryLimit,
}

impl DeathReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DeathReason::Rejected => "rejected",
            DeathReason::Expired => "expired",
            DeathReason::MaxLen => "maxlen",
            DeathReason::DeliveryLimit => "delivery_limit",
        }
    }
}
