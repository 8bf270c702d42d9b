//! Queue state for warren, free of I/O.
//!
//! [`QueueState`] holds a queue's ready messages in publish order, the count of messages
//! delivered but not yet settled, and its consumers with their credit. The server wraps one
//! in a mutex per queue and asks it, after every change, which consumer gets the next
//! message ([`QueueState::dispatch`]). Everything here is plain data so each rule is a unit
//! test.
#![forbid(unsafe_code)]

mod message;
mod queue;

pub use message::Message;
pub use queue::{ConsumerId, ConsumerSlot, Dispatched, Entry, QueueState};
