//! The bindings of one exchange, indexed for its kind.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use amq_protocol::types::FieldTable;

use crate::chash::{HashOn, MessageRef, Ring};
use crate::headers::{tables_identical, HeadersSpec};
use crate::topic::{dedup_from, Trie};
use crate::{Binding, Destination, ExchangeKind};

/// Destinations with the number of bindings leading to each: a destination
/// bound twice with different arguments routes once, and stays routable
/// until its last binding goes.
#[derive(Clone, Debug, Default)]
pub(crate) struct DestSet(BTreeMap<Destination, u32>);

impl DestSet {
    pub(crate) fn add(&mut self, d: &Destination) {
        match self.0.get_mut(d) {
            Some(n) => *n = n.saturating_add(1),
            None => {
                self.0.insert(d.clone(), 1);
            }
        }
    }

    pub(crate) fn remove(&mut self, d: &Destination) {
        if let Some(n) = self.0.get_mut(d) {
            if *n > 1 {
                *n -= 1;
            } else {
                self.0.remove(d);
            }
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Destination> {
        self.0.keys()
    }
}

#[derive(Debug)]
enum Index {
    Direct(HashMap<Arc<str>, DestSet>),
    Fanout(DestSet),
    Topic(Trie),
    /// Keyed by binding sequence number, so routing scans in binding order.
    Headers(BTreeMap<u64, (Destination, HeadersSpec)>),
    ConsistentHash {
        on: HashOn,
        ring: Ring,
    },
}

#[derive(Debug)]
struct Entry {
    destination: Destination,
    routing_key: Arc<str>,
    arguments: FieldTable,
}

/// The bindings of ONE exchange, indexed for its kind.
#[derive(Debug)]
pub struct RoutingTable {
    kind: ExchangeKind,
    next_seq: u64,
    /// Every binding by sequence number: binding order for listing.
    entries: BTreeMap<u64, Entry>,
    /// destination -> routing key -> sequence numbers (one per distinct
    /// arguments table): finds identical bindings and a destination's bindings
    /// without a scan.
    by_dest: HashMap<Destination, HashMap<Arc<str>, Vec<u64>>>,
    index: Index,
}

impl RoutingTable {
    pub fn new(kind: ExchangeKind) -> Self {
        let index = match kind {
            // A delayed exchange's table is built for its delayed type (`for_exchange`);
            // without arguments it routes as direct, as a missing type falls back to.
            ExchangeKind::Direct | ExchangeKind::Delayed => Index::Direct(HashMap::new()),
            ExchangeKind::Fanout => Index::Fanout(DestSet::default()),
            ExchangeKind::Topic => Index::Topic(Trie::default()),
            ExchangeKind::Headers => Index::Headers(BTreeMap::new()),
            ExchangeKind::ConsistentHash => Index::ConsistentHash {
                on: HashOn::RoutingKey,
                ring: Ring::default(),
            },
        };
        RoutingTable {
            kind,
            next_seq: 0,
            entries: BTreeMap::new(),
            by_dest: HashMap::new(),
            index,
        }
    }

    /// A table for an exchange with these arguments (a consistent-hash exchange reads
    /// `hash-header` / `hash-property`; invalid ones were refused at declaration and
    /// fall back to the routing key here).
    pub fn for_exchange(kind: ExchangeKind, arguments: &FieldTable) -> Self {
        let mut table = RoutingTable::new(crate::delayed_base(kind, arguments));
        if let Index::ConsistentHash { on, .. } = &mut table.index {
            *on = HashOn::from_arguments(arguments).unwrap_or(HashOn::RoutingKey);
        }
        table
    }

    pub fn kind(&self) -> ExchangeKind {
        self.kind
    }

    fn find(
        &self,
        destination: &Destination,
        routing_key: &str,
        arguments: &FieldTable,
    ) -> Option<u64> {
        self.by_dest
            .get(destination)?
            .get(routing_key)?
            .iter()
            .copied()
            .find(|seq| {
                self.entries
                    .get(seq)
                    .is_some_and(|e| tables_identical(&e.arguments, arguments))
            })
    }

    /// Adds a binding; returns false if an identical binding (same
    /// destination, key and arguments) already existed (RabbitMQ treats that
    /// as a no-op).
    pub fn bind(
        &mut self,
        destination: Destination,
        routing_key: &str,
        arguments: &FieldTable,
    ) -> bool {
        if self.find(&destination, routing_key, arguments).is_some() {
            return false;
        }
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        let per_key = self.by_dest.entry(destination.clone()).or_default();
        // Share one allocation of the key between the indexes.
        let key: Arc<str> = match per_key.get_key_value(routing_key) {
            Some((k, _)) => k.clone(),
            None => Arc::from(routing_key),
        };
        per_key.entry(key.clone()).or_default().push(seq);
        match &mut self.index {
            Index::Direct(map) => map.entry(key.clone()).or_default().add(&destination),
            Index::Fanout(set) => set.add(&destination),
            Index::Topic(trie) => trie.insert(&key, &destination),
            Index::Headers(list) => {
                list.insert(seq, (destination.clone(), HeadersSpec::new(arguments)));
            }
            Index::ConsistentHash { ring, .. } => {
                // Keys were validated at bind time; one that is not a weight adds nothing.
                if let Ok(weight) = crate::chash::binding_weight(&key) {
                    ring.add(&destination, weight);
                }
            }
        }
        self.entries.insert(
            seq,
            Entry {
                destination,
                routing_key: key,
                arguments: arguments.clone(),
            },
        );
        true
    }

    /// Takes a binding out of the kind index (its `by_dest` entry is the
    /// caller's business).
    fn unindex(&mut self, seq: u64, entry: &Entry) {
        match &mut self.index {
            Index::Direct(map) => {
                if let Some(set) = map.get_mut(&*entry.routing_key) {
                    set.remove(&entry.destination);
                    if set.is_empty() {
                        map.remove(&*entry.routing_key);
                    }
                }
            }
            Index::Fanout(set) => set.remove(&entry.destination),
            Index::Topic(trie) => trie.remove(&entry.routing_key, &entry.destination),
            Index::Headers(list) => {
                list.remove(&seq);
            }
            // RabbitMQ drops every bucket of the destination, whichever of its bindings
            // went.
            Index::ConsistentHash { ring, .. } => ring.remove(&entry.destination),
        }
    }

    /// Removes the identical binding; returns whether it existed.
    pub fn unbind(
        &mut self,
        destination: &Destination,
        routing_key: &str,
        arguments: &FieldTable,
    ) -> bool {
        let Some(seq) = self.find(destination, routing_key, arguments) else {
            return false;
        };
        if let Some(per_key) = self.by_dest.get_mut(destination) {
            if let Some(seqs) = per_key.get_mut(routing_key) {
                seqs.retain(|s| *s != seq);
                if seqs.is_empty() {
                    per_key.remove(routing_key);
                }
            }
            if per_key.is_empty() {
                self.by_dest.remove(destination);
            }
        }
        if let Some(entry) = self.entries.remove(&seq) {
            self.unindex(seq, &entry);
        }
        true
    }

    /// Removes every binding to `destination` (queue or exchange deleted);
    /// returns how many.
    pub fn remove_destination(&mut self, destination: &Destination) -> usize {
        let Some(per_key) = self.by_dest.remove(destination) else {
            return 0;
        };
        let mut removed = 0;
        for seq in per_key.into_values().flatten() {
            if let Some(entry) = self.entries.remove(&seq) {
                self.unindex(seq, &entry);
                removed += 1;
            }
        }
        removed
    }

    pub fn has_binding(
        &self,
        destination: &Destination,
        routing_key: &str,
        arguments: &FieldTable,
    ) -> bool {
        self.find(destination, routing_key, arguments).is_some()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every binding, in binding order.
    pub fn bindings(&self) -> Vec<Binding> {
        self.entries
            .values()
            .map(|e| Binding {
                destination: e.destination.clone(),
                routing_key: e.routing_key.clone(),
                arguments: e.arguments.clone(),
            })
            .collect()
    }

    /// Whether any binding leads to `destination` (e.g. for auto-delete checks).
    pub fn has_destination(&self, destination: &Destination) -> bool {
        self.by_dest.contains_key(destination)
    }

    /// Appends every destination matching (may contain duplicates across
    /// calls; the caller dedups). Within one call each destination appears
    /// once.
    pub fn route_into(
        &self,
        routing_key: &str,
        headers: Option<&FieldTable>,
        out: &mut Vec<Destination>,
    ) {
        let msg = MessageRef {
            headers,
            properties: &[],
        };
        self.route_message_into(routing_key, &msg, out)
    }

    /// [`RoutingTable::route_into`] with the whole message at hand (a consistent-hash
    /// exchange may hash one of its properties).
    pub fn route_message_into(
        &self,
        routing_key: &str,
        msg: &MessageRef<'_>,
        out: &mut Vec<Destination>,
    ) {
        let headers = msg.headers;
        match &self.index {
            Index::Direct(map) => {
                if let Some(set) = map.get(routing_key) {
                    out.extend(set.iter().cloned());
                }
            }
            Index::Fanout(set) => out.extend(set.iter().cloned()),
            Index::Topic(trie) => {
                trie.route(routing_key, out);
            }
            Index::Headers(list) => {
                let empty = FieldTable::default();
                let headers = headers.unwrap_or(&empty);
                let start = out.len();
                for (dest, spec) in list.values() {
                    if spec.matches(headers) {
                        out.push(dest.clone());
                    }
                }
                dedup_from(out, start);
            }
            Index::ConsistentHash { on, ring } => {
                if let Some(d) = ring.pick(msg.hash(on, routing_key)) {
                    out.push(d.clone());
                }
            }
        }
    }

    /// Routes a publish's routing key plus CC/BCC keys. Fanout and headers
    /// exchanges ignore keys, so they are consulted once however many keys
    /// there are (even none).
    pub fn route_keys_into(
        &self,
        routing_keys: &[&str],
        headers: Option<&FieldTable>,
        out: &mut Vec<Destination>,
    ) {
        let msg = MessageRef {
            headers,
            properties: &[],
        };
        self.route_message_keys_into(routing_keys, &msg, out)
    }

    /// [`RoutingTable::route_keys_into`] with the whole message at hand.
    pub fn route_message_keys_into(
        &self,
        routing_keys: &[&str],
        msg: &MessageRef<'_>,
        out: &mut Vec<Destination>,
    ) {
        match self.kind {
            ExchangeKind::Fanout | ExchangeKind::Headers => self.route_message_into("", msg, out),
            ExchangeKind::Direct | ExchangeKind::Topic | ExchangeKind::Delayed => {
                for key in routing_keys {
                    self.route_message_into(key, msg, out);
                }
            }
            // The plugin hashes the first routing key only (CC keys do not count).
            ExchangeKind::ConsistentHash => {
                self.route_message_into(routing_keys.first().copied().unwrap_or(""), msg, out)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::types::{AMQPValue, LongString, ShortString};
    use std::collections::BTreeSet;

    fn q(name: &str) -> Destination {
        Destination::Queue(name.into())
    }

    fn x(name: &str) -> Destination {
        Destination::Exchange(name.into())
    }

    fn none() -> FieldTable {
        FieldTable::default()
    }

    fn args(entries: &[(&str, &str)]) -> FieldTable {
        let mut t = FieldTable::default();
        for (k, v) in entries {
            t.insert(
                ShortString::from(*k),
                AMQPValue::LongString(LongString::from(*v)),
            );
        }
        t
    }

    fn route(t: &RoutingTable, key: &str, headers: Option<&FieldTable>) -> Vec<Destination> {
        let mut out = Vec::new();
        t.route_into(key, headers, &mut out);
        out
    }

    fn set(v: Vec<Destination>) -> BTreeSet<Destination> {
        v.into_iter().collect()
    }

    #[test]
    fn direct_is_exact() {
        let mut t = RoutingTable::new(ExchangeKind::Direct);
        assert_eq!(t.kind(), ExchangeKind::Direct);
        assert!(t.bind(q("a"), "k", &none()));
        assert!(t.bind(q("b"), "k", &none()));
        assert!(t.bind(q("c"), "other", &none()));
        assert!(t.bind(x("e"), "", &none()));
        assert_eq!(set(route(&t, "k", None)), set(vec![q("a"), q("b")]));
        assert_eq!(route(&t, "other", None), vec![q("c")]);
        assert_eq!(route(&t, "", None), vec![x("e")]);
        assert!(route(&t, "K", None).is_empty());
        assert!(route(&t, "k.", None).is_empty());
        assert!(route(&t, "*", None).is_empty());
    }

    #[test]
    fn a_delayed_table_routes_as_its_delayed_type() {
        let mut t = RoutingTable::for_exchange(
            ExchangeKind::Delayed,
            &args(&[("x-delayed-type", "topic")]),
        );
        assert_eq!(t.kind(), ExchangeKind::Topic);
        assert!(t.bind(q("a"), "a.*", &none()));
        assert_eq!(route(&t, "a.b", None), vec![q("a")]);
        let mut t = RoutingTable::for_exchange(
            ExchangeKind::Delayed,
            &args(&[("x-delayed-type", "fanout")]),
        );
        assert!(t.bind(q("f"), "ignored", &none()));
        assert_eq!(route(&t, "anything", None), vec![q("f")]);
        // Without a valid type (refused at declaration) it routes as direct.
        let mut t = RoutingTable::for_exchange(ExchangeKind::Delayed, &none());
        assert!(t.bind(q("d"), "k", &none()));
        assert_eq!(route(&t, "k", None), vec![q("d")]);
        assert!(route(&t, "j", None).is_empty());
    }

    #[test]
    fn direct_same_destination_different_arguments() {
        let mut t = RoutingTable::new(ExchangeKind::Direct);
        assert!(t.bind(q("a"), "k", &none()));
        assert!(t.bind(q("a"), "k", &args(&[("v", "1")])));
        assert_eq!(t.len(), 2);
        assert_eq!(route(&t, "k", None), vec![q("a")]);
        assert!(t.unbind(&q("a"), "k", &none()));
        assert_eq!(route(&t, "k", None), vec![q("a")], "one binding left");
        assert!(t.unbind(&q("a"), "k", &args(&[("v", "1")])));
        assert!(route(&t, "k", None).is_empty());
        assert!(t.is_empty());
    }

    #[test]
    fn fanout_ignores_key() {
        let mut t = RoutingTable::new(ExchangeKind::Fanout);
        assert!(route(&t, "any", None).is_empty());
        t.bind(q("a"), "x", &none());
        t.bind(q("b"), "", &none());
        t.bind(q("b"), "y", &none());
        assert_eq!(t.len(), 3);
        for key in ["", "x", "whatever.key"] {
            assert_eq!(route(&t, key, None), vec![q("a"), q("b")]);
        }
        assert!(t.unbind(&q("b"), "", &none()));
        assert_eq!(route(&t, "", None), vec![q("a"), q("b")]);
        assert!(t.unbind(&q("b"), "y", &none()));
        assert_eq!(route(&t, "", None), vec![q("a")]);
    }

    #[test]
    fn topic_table_routes_and_dedups() {
        let mut t = RoutingTable::new(ExchangeKind::Topic);
        t.bind(q("a"), "stock.#", &none());
        t.bind(q("a"), "*.usd", &none());
        t.bind(q("b"), "stock.*.nyse", &none());
        t.bind(x("audit"), "#", &none());
        let got = route(&t, "stock.usd", None);
        assert_eq!(got.len(), 2);
        assert_eq!(set(got), set(vec![q("a"), x("audit")]));
        assert_eq!(
            set(route(&t, "stock.ibm.nyse", None)),
            set(vec![q("a"), q("b"), x("audit")])
        );
        assert_eq!(route(&t, "", None), vec![x("audit")]);
        assert_eq!(t.remove_destination(&q("a")), 2);
        assert_eq!(set(route(&t, "stock.usd", None)), set(vec![x("audit")]));
    }

    #[test]
    fn bind_is_idempotent_and_unbind_exact() {
        let mut t = RoutingTable::new(ExchangeKind::Topic);
        assert!(t.bind(q("a"), "k", &none()));
        assert!(!t.bind(q("a"), "k", &none()));
        assert!(!t.bind(q("a"), "k", &FieldTable::default()));
        assert_eq!(t.len(), 1);
        assert!(t.bind(q("a"), "k", &args(&[("x", "1")])));
        assert!(!t.bind(q("a"), "k", &args(&[("x", "1")])));
        assert!(t.bind(q("a"), "k", &args(&[("x", "2")])));
        assert!(t.bind(q("a"), "j", &none()));
        assert!(t.bind(x("a"), "k", &none()), "exchange a is not queue a");
        assert_eq!(t.len(), 5);
        assert!(t.has_binding(&q("a"), "k", &args(&[("x", "2")])));
        assert!(!t.has_binding(&q("a"), "k", &args(&[("x", "3")])));
        assert!(!t.has_binding(&q("b"), "k", &none()));
        assert!(!t.unbind(&q("a"), "k", &args(&[("x", "3")])));
        assert!(!t.unbind(&q("a"), "nope", &none()));
        assert!(!t.unbind(&q("zzz"), "k", &none()));
        assert_eq!(t.len(), 5);
        assert!(t.unbind(&q("a"), "k", &args(&[("x", "1")])));
        assert!(!t.unbind(&q("a"), "k", &args(&[("x", "1")])));
        assert_eq!(t.len(), 4);
        assert!(!t.has_binding(&q("a"), "k", &args(&[("x", "1")])));
        assert!(t.has_binding(&q("a"), "k", &none()));
        // Rebinding after unbinding works again.
        assert!(t.bind(q("a"), "k", &args(&[("x", "1")])));
        assert_eq!(t.len(), 5);
    }

    #[test]
    fn arguments_are_compared_exactly() {
        let mut t = RoutingTable::new(ExchangeKind::Direct);
        let mut a = FieldTable::default();
        a.insert("n".into(), AMQPValue::LongInt(1));
        let mut b = FieldTable::default();
        b.insert("n".into(), AMQPValue::LongLongInt(1));
        assert!(t.bind(q("q"), "k", &a));
        assert!(
            t.bind(q("q"), "k", &b),
            "different types are different bindings"
        );
        let mut nan = FieldTable::default();
        nan.insert("f".into(), AMQPValue::Double(f64::NAN));
        assert!(t.bind(q("q"), "k", &nan));
        assert!(!t.bind(q("q"), "k", &nan));
        assert!(t.unbind(&q("q"), "k", &nan));
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn remove_destination_counts_and_cleans() {
        for kind in [
            ExchangeKind::Direct,
            ExchangeKind::Fanout,
            ExchangeKind::Topic,
            ExchangeKind::Headers,
        ] {
            let mut t = RoutingTable::new(kind);
            t.bind(q("a"), "k", &none());
            t.bind(q("a"), "k", &args(&[("h", "1")]));
            t.bind(q("a"), "j.#", &none());
            t.bind(q("b"), "k", &none());
            t.bind(x("a"), "k", &none());
            assert!(t.has_destination(&q("a")));
            assert_eq!(t.remove_destination(&q("a")), 3, "{kind:?}");
            assert_eq!(t.remove_destination(&q("a")), 0, "{kind:?}");
            assert!(!t.has_destination(&q("a")));
            assert_eq!(t.len(), 2);
            let got = route(&t, "k", Some(&args(&[("h", "1")])));
            assert!(!got.contains(&q("a")), "{kind:?}: {got:?}");
            assert!(got.contains(&q("b")), "{kind:?}: {got:?}");
            let listed: Vec<Destination> =
                t.bindings().into_iter().map(|b| b.destination).collect();
            assert_eq!(listed, vec![q("b"), x("a")]);
            assert_eq!(t.remove_destination(&q("b")), 1);
            assert_eq!(t.remove_destination(&x("a")), 1);
            assert!(t.is_empty());
            assert!(route(&t, "k", None).is_empty());
        }
    }

    #[test]
    fn bindings_listed_in_binding_order() {
        let mut t = RoutingTable::new(ExchangeKind::Topic);
        t.bind(q("z"), "z.*", &none());
        t.bind(q("a"), "a", &args(&[("k", "v")]));
        t.bind(x("m"), "#", &none());
        t.unbind(&q("a"), "a", &args(&[("k", "v")]));
        t.bind(q("a"), "a", &args(&[("k", "v")]));
        let listed = t.bindings();
        assert_eq!(
            listed,
            vec![
                Binding {
                    destination: q("z"),
                    routing_key: "z.*".into(),
                    arguments: none()
                },
                Binding {
                    destination: x("m"),
                    routing_key: "#".into(),
                    arguments: none()
                },
                Binding {
                    destination: q("a"),
                    routing_key: "a".into(),
                    arguments: args(&[("k", "v")])
                },
            ]
        );
    }

    #[test]
    fn headers_table() {
        let mut t = RoutingTable::new(ExchangeKind::Headers);
        t.bind(
            q("all"),
            "",
            &args(&[("format", "pdf"), ("type", "report")]),
        );
        t.bind(
            q("any"),
            "",
            &args(&[("x-match", "any"), ("format", "pdf"), ("type", "report")]),
        );
        t.bind(q("empty"), "", &none());
        // The same destination through two matching bindings appears once.
        t.bind(q("any"), "ignored", &args(&[("format", "pdf")]));
        let h = args(&[("format", "pdf"), ("type", "report")]);
        assert_eq!(
            route(&t, "any.key", Some(&h)),
            vec![q("all"), q("any"), q("empty")]
        );
        let h = args(&[("format", "pdf")]);
        assert_eq!(route(&t, "", Some(&h)), vec![q("any"), q("empty")]);
        let h = args(&[("format", "zip")]);
        assert_eq!(route(&t, "", Some(&h)), vec![q("empty")]);
        // No headers is an empty table: only the argument-less "all" binding.
        assert_eq!(route(&t, "", None), vec![q("empty")]);
    }

    #[test]
    fn route_keys_into_per_kind() {
        let mut d = RoutingTable::new(ExchangeKind::Direct);
        d.bind(q("a"), "a", &none());
        d.bind(q("b"), "b", &none());
        let mut out = Vec::new();
        d.route_keys_into(&["a", "b", "c"], None, &mut out);
        assert_eq!(out, vec![q("a"), q("b")]);

        let mut f = RoutingTable::new(ExchangeKind::Fanout);
        f.bind(q("a"), "", &none());
        let mut out = Vec::new();
        f.route_keys_into(&["x", "y"], None, &mut out);
        assert_eq!(out, vec![q("a")], "fanout consulted once");
        let mut out = Vec::new();
        f.route_keys_into(&[], None, &mut out);
        assert_eq!(out, vec![q("a")]);

        let mut tp = RoutingTable::new(ExchangeKind::Topic);
        tp.bind(q("a"), "a.*", &none());
        let mut out = Vec::new();
        tp.route_keys_into(&["a.1", "b.2", "a.3"], None, &mut out);
        assert_eq!(out, vec![q("a"), q("a")], "the caller dedups across keys");
    }
}
