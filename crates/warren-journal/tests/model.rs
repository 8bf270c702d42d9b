//! Random append / deliver / ack / forget / reopen sequences checked against an in-memory
//! model of what each queue must hold.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeSet, HashMap};

use common::*;
use proptest::prelude::*;
use warren_journal::{Journal, JournalOptions, Location, QueueId, Recovery};

const QUEUES: u64 = 4;

#[derive(Debug, Clone)]
enum Op {
    Append {
        mask: u8,
        persistent: bool,
        big: bool,
    },
    Deliver {
        queue: u64,
        pick: usize,
    },
    Ack {
        queue: u64,
        pick: usize,
    },
    Forget {
        queue: u64,
    },
    /// Clean close, or flush then abandon the handle (a crash after everything synced).
    Reopen {
        clean: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1u8..16, any::<bool>(), prop::bool::weighted(0.1))
            .prop_map(|(mask, persistent, big)| Op::Append { mask, persistent, big }),
        2 => (1..=QUEUES, any::<usize>()).prop_map(|(queue, pick)| Op::Deliver { queue, pick }),
        4 => (1..=QUEUES, any::<usize>()).prop_map(|(queue, pick)| Op::Ack { queue, pick }),
        1 => (1..=QUEUES).prop_map(|queue| Op::Forget { queue }),
        1 => any::<bool>().prop_map(|clean| Op::Reopen { clean }),
    ]
}

#[derive(Debug, Clone)]
struct Entry {
    msg_id: u64,
    loc: Location,
    delivered: bool,
    persistent: bool,
}

struct Harness {
    dir: TempDir,
    opts: JournalOptions,
    live: BTreeSet<u64>,
    model: HashMap<u64, Vec<Entry>>,
    bodies: HashMap<u64, bytes::Bytes>,
    next_id: u64,
}

impl Harness {
    fn open(&self) -> (Journal, Recovery) {
        let live: Vec<u64> = self.live.iter().copied().collect();
        open(&self.dir, self.opts.clone(), &live)
    }

    /// After a reopen: the recovered lists equal the model's persistent entries.
    fn check_recovery(&mut self, j: &Journal, rec: &Recovery) -> Result<(), TestCaseError> {
        let mut segs = BTreeSet::new();
        for q in self.live.clone() {
            let want: Vec<(u64, bool)> = self.model[&q]
                .iter()
                .filter(|e| e.persistent)
                .map(|e| (e.msg_id, e.delivered))
                .collect();
            let got_msgs = rec.queues.get(&QueueId(q)).cloned().unwrap_or_default();
            let got: Vec<(u64, bool)> =
                got_msgs.iter().map(|m| (m.msg_id, m.redelivered)).collect();
            prop_assert_eq!(&got, &want, "queue {}", q);
            let mut entries = Vec::new();
            for m in got_msgs {
                let s = j.read(m.location).unwrap();
                prop_assert_eq!(s.msg_id, m.msg_id);
                prop_assert_eq!(&s.body, &self.bodies[&m.msg_id]);
                segs.insert(m.location.segment);
                entries.push(Entry {
                    msg_id: m.msg_id,
                    loc: m.location,
                    delivered: m.redelivered,
                    persistent: true,
                });
            }
            self.model.insert(q, entries);
        }
        prop_assert!(rec.queues.keys().all(|q| self.live.contains(&q.0)));
        // Every segment left on disk holds something live; nothing else is kept.
        let on_disk: BTreeSet<u64> = files_with_ext(&self.dir.msgs(), "seg")
            .iter()
            .map(|p| u64::from_str_radix(p.file_stem().unwrap().to_str().unwrap(), 16).unwrap())
            .collect();
        prop_assert_eq!(on_disk, segs);
        Ok(())
    }
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut h = Harness {
        dir: TempDir::new("model"),
        opts: small_opts(600),
        live: (1..=QUEUES).collect(),
        model: (1..=QUEUES).map(|q| (q, Vec::new())).collect(),
        bodies: HashMap::new(),
        next_id: 1,
    };
    let (mut j, rec) = h.open();
    h.check_recovery(&j, &rec)?;
    for op in ops {
        match op {
            Op::Append {
                mask,
                persistent,
                big,
            } => {
                let qs: Vec<u64> = (1..=QUEUES)
                    .filter(|q| mask & (1 << (q - 1)) != 0 && h.live.contains(q))
                    .collect();
                if qs.is_empty() {
                    continue;
                }
                let id = h.next_id;
                h.next_id += 1;
                let mut r = record(id, &qs, persistent);
                if big {
                    r.body = bytes::Bytes::from(vec![id as u8; 1500]);
                }
                let body = r.body.clone();
                h.bodies.insert(id, body.clone());
                let (loc, res) = append_wait(&j, r);
                prop_assert!(res.is_ok());
                prop_assert_eq!(j.read(loc).unwrap().body, body);
                for q in qs {
                    h.model.get_mut(&q).unwrap().push(Entry {
                        msg_id: id,
                        loc,
                        delivered: false,
                        persistent,
                    });
                }
            }
            Op::Deliver { queue, pick } => {
                if let Some(list) = h.model.get_mut(&queue).filter(|l| !l.is_empty()) {
                    let n = list.len();
                    let e = &mut list[pick % n];
                    e.delivered = true;
                    j.mark_delivered(QueueId(queue), e.loc);
                }
            }
            Op::Ack { queue, pick } => {
                if let Some(list) = h.model.get_mut(&queue).filter(|l| !l.is_empty()) {
                    let n = list.len();
                    let e = list.remove(pick % n);
                    j.ack(QueueId(queue), e.loc);
                }
            }
            Op::Forget { queue } => {
                if h.live.remove(&queue) {
                    h.model.remove(&queue);
                    j.forget_queue(QueueId(queue));
                }
            }
            Op::Reopen { clean } => {
                if clean {
                    j.close().unwrap();
                    drop(j);
                } else {
                    j.flush().unwrap();
                    std::mem::forget(j);
                }
                let (j2, rec) = h.open();
                j = j2;
                h.check_recovery(&j, &rec)?;
            }
        }
    }
    j.close().unwrap();
    drop(j);
    let (j, rec) = h.open();
    h.check_recovery(&j, &rec)?;
    j.close().unwrap();
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn journal_matches_model(ops in prop::collection::vec(op(), 1..120)) {
        run(ops)?;
    }
}
