//! Start-up: the durable metadata replayed into the broker model, then the message store
//! opened and its persistent messages put back into their queues. Runs before any
//! connection is accepted.

pub mod messages;
pub mod metadata;
