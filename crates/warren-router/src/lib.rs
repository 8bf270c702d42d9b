//! Exchange routing for warren: routing key + headers in, destinations out.
//!
//! Pure and synchronous: no I/O, no locks. Each exchange owns a [`RoutingTable`]
//! indexed for its kind (hash map for direct, word trie for topic, list for
//! headers), and [`route`] resolves a publish across exchange-to-exchange
//! bindings and alternate exchanges the way RabbitMQ 3.x `rabbit_exchange:route/2`
//! does.

#![forbid(unsafe_code)]

mod chash;
mod graph;
mod headers;
mod table;
mod topic;

use std::sync::Arc;

pub use amq_protocol::types::FieldTable;
pub use chash::{binding_weight, HashOn, HashProperty, MessageRef};
pub use graph::{route, route_message, Exchange};
pub use headers::{
    erl_binary as erlang_binary, loose_eq as values_equal, type_atom as field_type_name,
    validate_headers_binding,
};
pub use table::RoutingTable;

/// The four exchange types of AMQP 0-9-1 that RabbitMQ ships, and the plugin types
/// warren implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExchangeKind {
    Direct,
    Fanout,
    Topic,
    Headers,
    /// `x-consistent-hash` (rabbitmq_consistent_hash_exchange).
    ConsistentHash,
    /// `x-delayed-message` (rabbitmq_delayed_message_exchange): holds messages with an
    /// `x-delay` header, then routes as the exchange type its `x-delayed-type` argument
    /// names ([`delayed_base`]).
    Delayed,
}

/// The `x-delayed-type` argument of a delayed exchange: the plugin takes any string
/// (short or long), and refuses the declaration without one.
pub fn delayed_type_name(arguments: &FieldTable) -> Option<String> {
    match arguments.inner().get("x-delayed-type") {
        Some(amq_protocol::types::AMQPValue::LongString(s)) => {
            Some(String::from_utf8_lossy(s.as_bytes()).into_owned())
        }
        Some(amq_protocol::types::AMQPValue::ShortString(s)) => Some(s.as_str().to_string()),
        _ => None,
    }
}

/// The kind a delayed exchange routes as (its `x-delayed-type`); `kind` itself for
/// every other kind. An argument that names no routing kind (refused at declaration,
/// so only a hand-edited data directory has one) routes as direct.
pub fn delayed_base(kind: ExchangeKind, arguments: &FieldTable) -> ExchangeKind {
    if kind != ExchangeKind::Delayed {
        return kind;
    }
    delayed_type_name(arguments)
        .and_then(|t| ExchangeKind::parse(&t))
        .filter(|k| *k != ExchangeKind::Delayed)
        .unwrap_or(ExchangeKind::Direct)
}

impl ExchangeKind {
    /// Parses the `type` of `exchange.declare`; case-sensitive, as RabbitMQ's registry is.
    pub fn parse(s: &str) -> Option<ExchangeKind> {
        match s {
            "direct" => Some(ExchangeKind::Direct),
            "fanout" => Some(ExchangeKind::Fanout),
            "topic" => Some(ExchangeKind::Topic),
            "headers" => Some(ExchangeKind::Headers),
            "x-consistent-hash" => Some(ExchangeKind::ConsistentHash),
            "x-delayed-message" => Some(ExchangeKind::Delayed),
            _ => None,
        }
    }

    /// RabbitMQ's refusal of a type it does not know. `rabbit_exchange:check_type` says
    /// `unknown exchange type` when the name is not an Erlang atom of the node and
    /// `invalid exchange type` when it is one (such as `foo` or `queue`) that names no
    /// exchange type. The node's atom table (46,000 atoms) is not mirrored: names that
    /// are atoms there among the words people try as types are listed in
    /// [`ERLANG_ATOM_TYPES`] (measured on RabbitMQ 3.10.8); every other name, and every
    /// `x-` plugin type that is not enabled, is `unknown`.
    pub fn type_error_text(s: &str) -> String {
        if s.is_empty() || ERLANG_ATOM_TYPES.binary_search(&s).is_ok() {
            format!("invalid exchange type '{s}'")
        } else {
            format!("unknown exchange type '{s}'")
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            ExchangeKind::Direct => "direct",
            ExchangeKind::Fanout => "fanout",
            ExchangeKind::Topic => "topic",
            ExchangeKind::Headers => "headers",
            ExchangeKind::ConsistentHash => "x-consistent-hash",
            ExchangeKind::Delayed => "x-delayed-message",
        }
    }

    /// The plugin that must be enabled for this type (None: always available).
    pub fn plugin(&self) -> Option<&'static str> {
        match self {
            ExchangeKind::ConsistentHash => Some("rabbitmq_consistent_hash_exchange"),
            ExchangeKind::Delayed => Some("rabbitmq_delayed_message_exchange"),
            _ => None,
        }
    }
}

/// Type names that are atoms of a RabbitMQ 3.10.8 node (sorted, for binary search);
/// checked with `list_to_existing_atom` on a node with the management, consistent-hash
/// and event-exchange plugins (tests/fixtures/protocol/rabbitmq_3.10.8.json).
pub const ERLANG_ATOM_TYPES: &[&str] = &[
    "Direct",
    "a",
    "all",
    "amqp",
    "any",
    "auto",
    "b",
    "bar",
    "basic",
    "binary",
    "broadcast",
    "c",
    "classic",
    "consistent",
    "data",
    "dead",
    "debug",
    "default",
    "delay",
    "dev",
    "direct",
    "dlx",
    "dummy",
    "durable",
    "email",
    "error",
    "event",
    "events",
    "exchange",
    "exchanges",
    "exclusive",
    "external",
    "false",
    "fanout",
    "federation",
    "fifo",
    "first",
    "foo",
    "global",
    "hash",
    "header",
    "headers",
    "http",
    "info",
    "int",
    "integer",
    "internal",
    "invalid",
    "job",
    "json",
    "key",
    "keys",
    "kind",
    "last",
    "lazy",
    "local",
    "log",
    "long",
    "match",
    "message",
    "messages",
    "multicast",
    "name",
    "new",
    "nil",
    "none",
    "noop",
    "normal",
    "null",
    "ok",
    "old",
    "order",
    "orders",
    "persistent",
    "plain",
    "priority",
    "prod",
    "queue",
    "queues",
    "quorum",
    "random",
    "reply",
    "request",
    "response",
    "route",
    "rpc",
    "sample",
    "simple",
    "stream",
    "string",
    "system",
    "temp",
    "temporary",
    "test",
    "text",
    "topic",
    "trace",
    "transient",
    "true",
    "type",
    "undefined",
    "unknown",
    "user",
    "warning",
    "web",
    "work",
    "worker",
    "x",
    "xml",
    "y",
    "z",
];

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
            ExchangeKind::ConsistentHash,
            ExchangeKind::Delayed,
        ] {
            assert_eq!(ExchangeKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(ExchangeKind::parse("Direct"), None);
        assert_eq!(
            ExchangeKind::parse("x-consistent-hash"),
            Some(ExchangeKind::ConsistentHash)
        );
        assert_eq!(
            ExchangeKind::ConsistentHash.plugin(),
            Some("rabbitmq_consistent_hash_exchange")
        );
        assert_eq!(ExchangeKind::parse(""), None);
    }

    #[test]
    fn delayed_exchanges_route_as_their_delayed_type() {
        use amq_protocol::types::{AMQPValue, LongString, ShortString};
        let mut args = FieldTable::default();
        assert_eq!(delayed_type_name(&args), None);
        assert_eq!(
            delayed_base(ExchangeKind::Delayed, &args),
            ExchangeKind::Direct
        );
        args.insert(
            ShortString::from("x-delayed-type"),
            AMQPValue::LongString(LongString::from("topic")),
        );
        assert_eq!(delayed_type_name(&args).as_deref(), Some("topic"));
        assert_eq!(
            delayed_base(ExchangeKind::Delayed, &args),
            ExchangeKind::Topic
        );
        // Other kinds ignore the argument.
        assert_eq!(
            delayed_base(ExchangeKind::Fanout, &args),
            ExchangeKind::Fanout
        );
        args.insert(
            ShortString::from("x-delayed-type"),
            AMQPValue::ShortString(ShortString::from("x-delayed-message")),
        );
        assert_eq!(
            delayed_base(ExchangeKind::Delayed, &args),
            ExchangeKind::Direct
        );
        args.insert(ShortString::from("x-delayed-type"), AMQPValue::LongInt(1));
        assert_eq!(delayed_type_name(&args), None);
        assert_eq!(
            ExchangeKind::Delayed.plugin(),
            Some("rabbitmq_delayed_message_exchange")
        );
    }

    #[test]
    fn atom_list_is_sorted_for_binary_search() {
        assert!(ERLANG_ATOM_TYPES.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn type_errors_follow_rabbitmq_forms() {
        // Measured on RabbitMQ 3.10.8 (tests/fixtures/protocol/exchange_type_errors.txt).
        for (t, form) in [
            ("x-foo", "unknown"),
            ("x-", "unknown"),
            ("x-delayed-message", "unknown"),
            ("direct2", "unknown"),
            ("DIRECT", "unknown"),
            ("amq.direct", "unknown"),
            ("my-type", "unknown"),
            ("fanout ", "unknown"),
            ("foo", "invalid"),
            ("queue", "invalid"),
            ("", "invalid"),
            ("string", "invalid"),
            ("nope", "unknown"),
            ("baz", "unknown"),
            ("Direct", "invalid"),
        ] {
            assert_eq!(
                ExchangeKind::type_error_text(t),
                format!("{form} exchange type '{t}'"),
                "{t:?}"
            );
        }
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
