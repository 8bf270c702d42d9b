//! Exchange routing for warren: routing key + headers in, destinations out.
//!
//! Pure and synchronous: no I/O, no locks. Each exchange owns a [`RoutingTable`]
//! indexed for its kind (hash map for direct, word trie for topic, list for
//! headers), and [`route`] resolves a publish across exchange-to-exchange
//! bindings and alternate exchanges the way RabbitMQ 3.x `rabbit_exchange:route/2`
//! does.

#![forbid(unsafe_code)]

mod graph;
mod headers;
mod table;
mod topic;

use std::sync::Arc;

pub use amq_protocol::types::FieldTable;
pub use graph::{route, Exchange};
pub use headers::{
    erl_binary as erlang_binary, loose_eq as values_equal, type_atom as field_type_name,
    validate_headers_binding,
};
pub use table::RoutingTable;

/// The four exchange types of AMQP 0-9-1 that RabbitMQ ships.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExchangeKind {
    Direct,
    Fanout,
    Topic,
    Headers,
}

impl ExchangeKind {
    /// Parses the `type` of `exchange.declare`; case-sensitive, as RabbitMQ's registry is.
    pub fn parse(s: &str) -> Option<ExchangeKind> {
        match s {
            "direct" => Some(ExchangeKind::Direct),
            "fanout" => Some(ExchangeKind::Fanout),
            "topic" => Some(ExchangeKind::Topic),
            "headers" => Some(ExchangeKind::Headers),
            _ => None,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            ExchangeKind::Direct => "direct",
            ExchangeKind::Fanout => "fanout",
            ExchangeKind::Topic => "topic",
            ExchangeKind::Headers => "headers",
        }
    }
}

/// Where a binding leads.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Destination {
    Queue(Arc<str>),
    Exchange(Arc<str>),
}

impl Destination {
    /// The queue or exchange name.
    pub fn name(&self) -> &Arc<str> {
        match self {
            Destination::Queue(n) | Destination::Exchange(n) => n,
        }
    }

    pub fn is_queue(&self) -> bool {
        matches!(self, Destination::Queue(_))
    }
}

/// One binding as stored (for listing, equality of bindings, unbinding).
#[derive(Clone, Debug, PartialEq)]
pub struct Binding {
    pub destination: Destination,
    pub routing_key: Arc<str>,
    pub arguments: FieldTable,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_round_trips() {
        for k in [
            ExchangeKind::Direct,
            ExchangeKind::Fanout,
            ExchangeKind::Topic,
            ExchangeKind::Headers,
        ] {
            assert_eq!(ExchangeKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(ExchangeKind::parse("Direct"), None);
        assert_eq!(ExchangeKind::parse("x-consistent-hash"), None);
        assert_eq!(ExchangeKind::parse(""), None);
    }

    #[test]
    fn destination_accessors() {
        let q = Destination::Queue("q".into());
        let x = Destination::Exchange("x".into());
        assert_eq!(&**q.name(), "q");
        assert_eq!(&**x.name(), "x");
        assert!(q.is_queue());
        assert!(!x.is_queue());
        assert_ne!(q, Destination::Exchange("q".into()));
    }
}
