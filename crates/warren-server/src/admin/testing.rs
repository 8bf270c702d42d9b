//! Conveniences for test suites (`/api/warren/...`): empty a vhost without deleting it,
//! look at a queue's messages without taking them, count what a queue holds.

use std::sync::Arc;

use warren_router::Destination;

use super::{remove_queue, AdminError, AdminResult, GotMessage};
use crate::model::{broker::Broker, ops::bindings, vhost::DEFAULT_EXCHANGE};

/// What a vhost reset removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ResetCounts {
    pub queues: usize,
    pub exchanges: usize,
    pub bindings: usize,
    pub policies: usize,
}

/// A queue's depth: ready and delivered-but-unacknowledged messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Depth {
    pub ready: usize,
    pub unacked: usize,
}

impl Broker {
    /// Empties `vhost`: its policies, queues (with their messages and consumers, who get
    /// basic.cancel), exchanges other than the default and `amq.*` ones, and the bindings
    /// left between those, and the messages delayed exchanges held. Users' permissions,
    /// limits and connections stay.
    pub fn admin_reset_vhost(&self, vhost: &str) -> AdminResult<ResetCounts> {
        let vh = self.vhost(vhost).ok_or(AdminError::NotFound)?;
        let mut counts = ResetCounts::default();
        // Policies first, so no queue or exchange is re-evaluated against them on the way.
        for p in self.admin.policies.list(Some(vhost)) {
            if self.admin.policies.remove(vhost, &p.name)? {
                counts.policies += 1;
            }
        }
        let queues: Vec<Arc<str>> = vh.topology.read().queues.keys().cloned().collect();
        for q in queues {
            if remove_queue(self, &vh, &q)?.is_some() {
                counts.queues += 1;
            }
        }
        let exchanges: Vec<Arc<str>> = vh
            .topology
            .read()
            .exchanges
            .keys()
            .filter(|n| &***n != DEFAULT_EXCHANGE && !n.starts_with("amq."))
            .cloned()
            .collect();
        for x in exchanges {
            if bindings::delete_exchange(&vh, &x, false)? {
                counts.exchanges += 1;
            }
        }
        // Messages the deleted delayed exchanges held would reach a redeclared one.
        vh.delayed.clear();
        // What remains are bindings among the amq.* exchanges.
        for b in vh.bindings() {
            if let Destination::Exchange(_) = &b.destination {
                if bindings::unbind(&vh, &b.source, &b.destination, &b.routing_key, &b.arguments)? {
                    counts.bindings += 1;
                }
            }
        }
        Ok(counts)
    }

    /// Up to `count` ready messages of a queue in delivery order, left where they are and
    /// as they are (`redelivered` unchanged, unlike a get with requeue). Expiries due are
    /// run first, so an expired message is not shown.
    pub fn admin_peek(
        &self,
        vhost: &str,
        name: &str,
        count: usize,
    ) -> AdminResult<Vec<GotMessage>> {
        let vh = self.vhost(vhost).ok_or(AdminError::NotFound)?;
        let q = vh.queue(name).ok_or(AdminError::NotFound)?;
        let entries = q.peek(count);
        let total = entries.len();
        Ok(entries
            .into_iter()
            .enumerate()
            .map(|(i, e)| GotMessage {
                message: match q.load_body(&e.message) {
                    Some(body) if e.message.is_paged() => Arc::new(warren_store::Message {
                        body,
                        paged_len: None,
                        ..(*e.message).clone()
                    }),
                    _ => e.message.clone(),
                },
                redelivered: e.redelivered,
                remaining: u32::try_from(total - i - 1).unwrap_or(u32::MAX),
            })
            .collect())
    }

    /// A queue's ready and unacknowledged message counts.
    pub fn admin_queue_depth(&self, vhost: &str, name: &str) -> AdminResult<Depth> {
        let vh = self.vhost(vhost).ok_or(AdminError::NotFound)?;
        let q = vh.queue(name).ok_or(AdminError::NotFound)?;
        let st = q.state.lock();
        Ok(Depth {
            ready: st.ready_len(),
            unacked: st.unacked_len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use amq_protocol::types::FieldTable;
    use bytes::Bytes;
    use serde_json::json;

    use super::*;
    use crate::model::{config::ServerConfig, policy::Policy, vhost::ExchangeMeta};
    use warren_router::ExchangeKind;

    fn publish(b: &Broker, queue: &str, body: &'static str) {
        let routed = b
            .admin_publish(
                "/",
                "",
                queue,
                Bytes::from_static(&[0, 0]),
                Bytes::from_static(body.as_bytes()),
            )
            .expect("publish");
        assert!(routed);
    }

    #[test]
    fn reset_leaves_only_the_default_exchanges() {
        let b = Broker::new(ServerConfig::default());
        for q in ["a", "b"] {
            assert_eq!(
                b.admin_declare_queue("/", q, false, false, FieldTable::default()),
                Ok(true)
            );
        }
        let meta = ExchangeMeta {
            kind: ExchangeKind::Topic,
            durable: false,
            auto_delete: false,
            internal: false,
            arguments: FieldTable::default(),
        };
        assert_eq!(b.admin_declare_exchange("/", "x", meta), Ok(true));
        let none = FieldTable::default();
        b.admin_bind("/", "x", Destination::Queue("a".into()), "k", &none, true)
            .expect("bind");
        b.admin_bind(
            "/",
            "amq.topic",
            Destination::Exchange("amq.fanout".into()),
            "k",
            &none,
            true,
        )
        .expect("bind");
        let policy = Policy::from_json(
            "/",
            "p",
            &json!({"pattern": ".*", "definition": {"max-length": 5}}),
        )
        .expect("policy");
        assert_eq!(b.admin.policies.put(policy), Ok(true));
        publish(&b, "a", "m");

        let counts = b.admin_reset_vhost("/").expect("reset");
        assert_eq!(
            counts,
            ResetCounts {
                queues: 2,
                exchanges: 1,
                bindings: 1,
                policies: 1
            }
        );
        let vh = b.vhost("/").expect("vhost stays");
        let topo = vh.topology.read();
        assert!(topo.queues.is_empty());
        let mut left: Vec<&str> = topo.exchanges.keys().map(|k| &**k).collect();
        left.sort_unstable();
        assert_eq!(
            left,
            [
                "amq.direct",
                "amq.fanout",
                "amq.headers",
                "amq.match",
                "amq.rabbitmq.trace",
                "amq.topic"
            ]
        );
        drop(topo);
        assert!(vh.bindings().is_empty());
        assert!(b.admin.policies.list(Some("/")).is_empty());
        assert_eq!(b.admin_reset_vhost("nope"), Err(AdminError::NotFound));
    }

    #[test]
    fn peek_leaves_messages_and_their_flags() {
        let b = Broker::new(ServerConfig::default());
        assert_eq!(
            b.admin_declare_queue("/", "q", false, false, FieldTable::default()),
            Ok(true)
        );
        publish(&b, "q", "one");
        publish(&b, "q", "two");
        let seen = b.admin_peek("/", "q", 10).expect("peek");
        let bodies: Vec<&[u8]> = seen.iter().map(|m| &m.message.body[..]).collect();
        assert_eq!(bodies, [b"one".as_slice(), b"two".as_slice()]);
        assert!(seen.iter().all(|m| !m.redelivered));
        assert_eq!(seen.iter().map(|m| m.remaining).collect::<Vec<_>>(), [1, 0]);
        let again = b.admin_peek("/", "q", 1).expect("peek");
        assert_eq!(&again[0].message.body[..], b"one");
        assert!(!again[0].redelivered);
        assert_eq!(
            b.admin_queue_depth("/", "q"),
            Ok(Depth {
                ready: 2,
                unacked: 0
            })
        );
        assert!(matches!(
            b.admin_peek("/", "none", 1),
            Err(AdminError::NotFound)
        ));
    }
}
