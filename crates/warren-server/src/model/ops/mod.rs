//! The broker's operations: declare, delete and bind queues and exchanges, publish. One
//! implementation serves every path that changes the model (AMQP channels, the management
//! API, definitions import), so each rule (argument validation, equivalence, quorum and
//! stream checks, policies, alternate exchanges, CC/BCC, paging, expiration) holds on all
//! of them. Callers keep what is theirs: permission checks, AMQP replies, HTTP bodies.
//!
//! Metadata follows the journal's discipline: a durable change is written and synced
//! before anyone is told it happened, and a change whose record fails is rolled back in
//! memory and returned as an error (`541 INTERNAL_ERROR`, HTTP 500).

pub mod bindings;
pub mod exchanges;
pub mod publish;
pub mod queues;
