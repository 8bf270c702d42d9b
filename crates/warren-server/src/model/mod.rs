//! The broker model: vhosts, exchanges, queues, users, permissions, policies, alarms and
//! the handles through which queues reach connections. It knows nothing of sockets or
//! of the sessions (AMQP connections and channels) and the admin surface that drive it.

pub mod alarm;
pub mod args;
pub mod auth;
pub mod broker;
pub mod config;
pub mod deadletter;
pub mod delayed;
pub mod equivalence;
pub mod events;
pub mod handles;
pub mod limits;
pub mod ops;
pub mod params;
pub mod plugins;
pub mod policy;
pub mod queue;
pub mod registry;
pub mod stats;
pub mod stream;
pub mod timers;
pub mod trace;
pub mod vhost;
pub mod views;
