//! Publish resolution across exchange-to-exchange bindings and alternate
//! exchanges, as RabbitMQ's `rabbit_exchange:route/2`.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use amq_protocol::types::FieldTable;

use crate::chash::MessageRef;
use crate::table::RoutingTable;
use crate::Destination;

/// Everything the router needs to know about one exchange.
#[derive(Debug)]
pub struct Exchange {
    pub name: Arc<str>,
    pub table: RoutingTable,
    pub alternate_exchange: Option<Arc<str>>,
    /// Not used for routing (internal exchanges still route what reaches
    /// them through bindings); the server refuses direct publishes to them.
    pub internal: bool,
}

/// Resolves a publish through exchange-to-exchange bindings and alternate
/// exchanges; returns the queue names, deduplicated, in order of discovery.
///
/// `routing_keys` is the publish routing key followed by any CC/BCC keys; the
/// same list is used at every hop. Each exchange is visited at most once,
/// which breaks cycles. An exchange's alternate exchange is consulted only
/// when its own bindings gave nothing. Missing exchanges (as destinations or
/// alternates) are ignored.
pub fn route<'a, F>(
    start: &'a Exchange,
    routing_keys: &[&str],
    headers: Option<&FieldTable>,
    lookup: F,
) -> Vec<Arc<str>>
where
    F: Fn(&str) -> Option<&'a Exchange>,
{
    let msg = MessageRef {
        headers,
        properties: &[],
    };
    route_message(start, routing_keys, &msg, lookup)
}

/// [`route`] with the message's raw properties too (a consistent-hash exchange may hash
/// one of them).
pub fn route_message<'a, F>(
    start: &'a Exchange,
    routing_keys: &[&str],
    msg: &MessageRef<'_>,
    lookup: F,
) -> Vec<Arc<str>>
where
    F: Fn(&str) -> Option<&'a Exchange>,
{
    let mut seen_x: HashSet<Arc<str>> = HashSet::new();
    seen_x.insert(start.name.clone());
    let mut work: VecDeque<&'a Exchange> = VecDeque::new();
    work.push_back(start);
    let mut queues: Vec<Arc<str>> = Vec::new();
    let mut seen_q: HashSet<Arc<str>> = HashSet::new();
    let mut dests: Vec<Destination> = Vec::new();

    // Marks an exchange seen when first met (as RabbitMQ does), whether or
    // not it exists, and queues it when it does.
    let mut enqueue = |name: &Arc<str>, work: &mut VecDeque<&'a Exchange>| {
        if seen_x.contains(name) {
            return;
        }
        seen_x.insert(name.clone());
        if let Some(x) = lookup(name) {
            work.push_back(x);
        }
    };

    while let Some(x) = work.pop_front() {
        dests.clear();
        x.table
            .route_message_keys_into(routing_keys, msg, &mut dests);
        if dests.is_empty() {
            if let Some(ae) = &x.alternate_exchange {
                enqueue(ae, &mut work);
            }
        }
        for d in dests.drain(..) {
            match d {
                Destination::Queue(q) => {
                    if !seen_q.contains(&q) {
                        seen_q.insert(q.clone());
                        queues.push(q);
                    }
                }
                Destination::Exchange(e) => enqueue(&e, &mut work),
            }
        }
    }
    queues
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ExchangeKind;
    use amq_protocol::types::{AMQPValue, LongString};
    use std::collections::{BTreeSet, HashMap};

    fn q(name: &str) -> Destination {
        Destination::Queue(name.into())
    }

    fn x(name: &str) -> Destination {
        Destination::Exchange(name.into())
    }

    struct World(HashMap<String, Exchange>);

    impl World {
        fn new() -> Self {
            World(HashMap::new())
        }

        fn exchange(&mut self, name: &str, kind: ExchangeKind, ae: Option<&str>) -> &mut Self {
            self.0.insert(
                name.to_owned(),
                Exchange {
                    name: name.into(),
                    table: RoutingTable::new(kind),
                    alternate_exchange: ae.map(Arc::from),
                    internal: false,
                },
            );
            self
        }

        fn bind(&mut self, source: &str, dest: Destination, key: &str) -> &mut Self {
            if let Some(e) = self.0.get_mut(source) {
                e.table.bind(dest, key, &FieldTable::default());
            }
            self
        }

        fn publish(&self, start: &str, keys: &[&str]) -> Vec<String> {
            self.publish_with(start, keys, None)
        }

        fn publish_with(
            &self,
            start: &str,
            keys: &[&str],
            headers: Option<&FieldTable>,
        ) -> Vec<String> {
            let Some(s) = self.0.get(start) else {
                return Vec::new();
            };
            let got = route(s, keys, headers, |n| self.0.get(n));
            let names: Vec<String> = got.iter().map(|n| n.to_string()).collect();
            let unique: BTreeSet<&String> = names.iter().collect();
            assert_eq!(unique.len(), names.len(), "duplicates in {names:?}");
            names
        }
    }

    fn sorted(v: Vec<String>) -> Vec<String> {
        let mut v = v;
        v.sort();
        v
    }

    fn names(v: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
        v.sort();
        v
    }

    #[test]
    fn single_exchange() {
        let mut w = World::new();
        w.exchange("d", ExchangeKind::Direct, None)
            .bind("d", q("q1"), "k")
            .bind("d", q("q2"), "k")
            .bind("d", q("q3"), "other");
        assert_eq!(w.publish("d", &["k"]), vec!["q1", "q2"]);
        assert!(w.publish("d", &["none"]).is_empty());
    }

    #[test]
    fn cc_keys_route_at_every_hop() {
        let mut w = World::new();
        w.exchange("a", ExchangeKind::Direct, None)
            .exchange("b", ExchangeKind::Direct, None)
            .bind("a", q("qa"), "k1")
            .bind("a", x("b"), "k2")
            .bind("b", q("qb1"), "k1")
            .bind("b", q("qb2"), "k2")
            .bind("b", q("qb3"), "k3");
        assert_eq!(
            sorted(w.publish("a", &["k1", "k2"])),
            names(&["qa", "qb1", "qb2"])
        );
        assert_eq!(sorted(w.publish("a", &["k2"])), names(&["qb2"]));
        // Same queue reached via two keys appears once.
        w.bind("a", q("qa"), "k2");
        assert_eq!(
            sorted(w.publish("a", &["k1", "k2"])),
            names(&["qa", "qb1", "qb2"])
        );
    }

    #[test]
    fn e2e_chain() {
        let mut w = World::new();
        w.exchange("a", ExchangeKind::Topic, None)
            .exchange("b", ExchangeKind::Fanout, None)
            .exchange("c", ExchangeKind::Direct, None)
            .bind("a", x("b"), "logs.#")
            .bind("b", x("c"), "")
            .bind("b", q("all-logs"), "")
            .bind("c", q("errors"), "logs.error")
            .bind("c", q("infos"), "logs.info");
        assert_eq!(w.publish("a", &["logs.error"]), vec!["all-logs", "errors"]);
        assert_eq!(w.publish("a", &["logs.info"]), vec!["all-logs", "infos"]);
        assert!(w.publish("a", &["metrics.cpu"]).is_empty());
    }

    #[test]
    fn cycles_terminate() {
        let mut w = World::new();
        w.exchange("a", ExchangeKind::Fanout, None)
            .exchange("b", ExchangeKind::Fanout, None)
            .bind("a", x("b"), "")
            .bind("b", x("a"), "")
            .bind("a", q("qa"), "")
            .bind("b", q("qb"), "");
        assert_eq!(sorted(w.publish("a", &["k"])), names(&["qa", "qb"]));
        assert_eq!(sorted(w.publish("b", &["k"])), names(&["qa", "qb"]));
        // Self-loop.
        w.bind("a", x("a"), "");
        assert_eq!(sorted(w.publish("a", &["k"])), names(&["qa", "qb"]));
        // A cycle without queues gives nothing and still terminates.
        let mut w = World::new();
        w.exchange("a", ExchangeKind::Fanout, None)
            .exchange("b", ExchangeKind::Fanout, None)
            .bind("a", x("b"), "")
            .bind("b", x("a"), "");
        assert!(w.publish("a", &["k"]).is_empty());
    }

    #[test]
    fn diamond_dedups() {
        let mut w = World::new();
        w.exchange("top", ExchangeKind::Fanout, None)
            .exchange("left", ExchangeKind::Fanout, None)
            .exchange("right", ExchangeKind::Fanout, None)
            .exchange("bottom", ExchangeKind::Fanout, None)
            .bind("top", x("left"), "")
            .bind("top", x("right"), "")
            .bind("left", x("bottom"), "")
            .bind("right", x("bottom"), "")
            .bind("left", q("shared"), "")
            .bind("right", q("shared"), "")
            .bind("bottom", q("end"), "");
        assert_eq!(sorted(w.publish("top", &["k"])), names(&["end", "shared"]));
    }

    #[test]
    fn alternate_exchange_when_unrouted() {
        let mut w = World::new();
        w.exchange("main", ExchangeKind::Direct, Some("ae"))
            .exchange("ae", ExchangeKind::Fanout, None)
            .bind("main", q("routed"), "k")
            .bind("ae", q("unrouted"), "");
        assert_eq!(w.publish("main", &["other"]), vec!["unrouted"]);
        // Not used when the exchange's own bindings routed.
        assert_eq!(w.publish("main", &["k"]), vec!["routed"]);
        // Own bindings leading only to an exchange that gives nothing still
        // count as routed at this hop: no AE.
        w.exchange("sink", ExchangeKind::Direct, None)
            .bind("main", x("sink"), "to-sink");
        assert!(w.publish("main", &["to-sink"]).is_empty());
    }

    #[test]
    fn alternate_exchange_missing_or_chained() {
        let mut w = World::new();
        w.exchange("main", ExchangeKind::Direct, Some("gone"))
            .bind("main", q("routed"), "k");
        assert!(w.publish("main", &["other"]).is_empty());
        assert_eq!(w.publish("main", &["k"]), vec!["routed"]);

        // AE of an AE; and an AE pointing back at the start stops.
        let mut w = World::new();
        w.exchange("main", ExchangeKind::Direct, Some("ae1"))
            .exchange("ae1", ExchangeKind::Direct, Some("ae2"))
            .exchange("ae2", ExchangeKind::Direct, Some("main"))
            .bind("ae2", q("last"), "k");
        assert_eq!(w.publish("main", &["k"]), vec!["last"]);
        assert!(w.publish("main", &["z"]).is_empty());
    }

    #[test]
    fn alternate_of_downstream_exchange() {
        let mut w = World::new();
        w.exchange("a", ExchangeKind::Fanout, None)
            .exchange("b", ExchangeKind::Direct, Some("b-ae"))
            .exchange("b-ae", ExchangeKind::Fanout, None)
            .bind("a", x("b"), "")
            .bind("a", q("qa"), "")
            .bind("b", q("qb"), "k")
            .bind("b-ae", q("qae"), "");
        assert_eq!(w.publish("a", &["k"]), vec!["qa", "qb"]);
        assert_eq!(w.publish("a", &["j"]), vec!["qa", "qae"]);
    }

    #[test]
    fn missing_bound_exchange_is_ignored() {
        let mut w = World::new();
        w.exchange("a", ExchangeKind::Fanout, Some("ae"))
            .exchange("ae", ExchangeKind::Fanout, None)
            .bind("a", x("deleted"), "")
            .bind("ae", q("qae"), "");
        // The binding did produce a destination, so the AE is not consulted.
        assert!(w.publish("a", &["k"]).is_empty());
        w.bind("a", q("q"), "");
        assert_eq!(w.publish("a", &["k"]), vec!["q"]);
    }

    #[test]
    fn headers_through_the_graph() {
        let mut w = World::new();
        w.exchange("h", ExchangeKind::Headers, Some("ae"))
            .exchange("ae", ExchangeKind::Fanout, None)
            .bind("ae", q("fallback"), "");
        let mut a = FieldTable::default();
        a.insert(
            "x-match".into(),
            AMQPValue::LongString(LongString::from("any")),
        );
        a.insert(
            "kind".into(),
            AMQPValue::LongString(LongString::from("pdf")),
        );
        if let Some(h) = w.0.get_mut("h") {
            h.table.bind(q("pdfs"), "", &a);
        }
        let mut hdrs = FieldTable::default();
        hdrs.insert(
            "kind".into(),
            AMQPValue::LongString(LongString::from("pdf")),
        );
        assert_eq!(
            w.publish_with("h", &["k1", "k2"], Some(&hdrs)),
            vec!["pdfs"]
        );
        assert_eq!(w.publish_with("h", &["k1"], None), vec!["fallback"]);
    }
}
