//! The bottom layer: small pieces every other layer uses (clock, generated names, JSON
//! helpers, mailboxes, the AMQP error type, RabbitMQ's configuration formats). Imports
//! nothing from the rest of the crate.

pub mod body_pool;
pub mod clock;
pub mod error;
pub mod json;
pub mod mailbox;
pub mod names;
pub mod rabbitmq_conf;
pub mod units;
