//! warren's AMQP 0-9-1 server: the broker model (vhosts, users, exchanges, queues), the
//! per-connection state machine with its channels, and the accept loop.
//!
//! Data flows one way: socket → codec → channel handler → router → queue → consumer's
//! connection task → codec → socket. Queue and channel rules live in pure crates
//! (warren-router, warren-store); this crate owns tasks, locks and sockets.
#![forbid(unsafe_code)]

pub mod admin;
pub mod alarm;
pub mod args;
pub mod auth;
pub mod broker;
mod channel;
mod clock;
pub mod config;
mod connection;
mod deadletter;
pub mod definitions;
pub mod error;
pub mod json;
pub mod mailbox;
mod names;
pub mod persist;
pub mod policy;
pub mod queue;
mod server;
pub mod spill;
pub mod stats;
pub mod storage;
pub mod timers;
pub mod vhost;

pub use broker::Broker;
pub use config::ServerConfig;
pub use error::{AmqpError, ReplyCode, Scope};
pub use server::{serve, Shutdown};
