//! AMQP sessions: one task per client connection, its channels, and the frames between
//! them and the broker model.

pub mod channel;
pub mod connection;
mod stream;
