#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use common::*;
use warren_journal::{JournalError, JournalOptions, Location, QueueId, SyncPolicy};

#[test]
fn round_trip_reads_back_every_field() {
    let d = TempDir::new("rt");
    let (j, rec) = open(&d, JournalOptions::default(), &[1]);
    assert!(rec.queues.is_empty());
    let r = record(42, &[1, 2], true);
    let (loc, res) = append_wait(&j, r.clone());
    res.unwrap();
    let m = j.read(loc).unwrap();
    assert_eq!(m.msg_id, 42);
    assert!(m.persistent);
    assert_eq!(m.expires_at_ms, r.expires_at_ms);
    assert_eq!(m.queues, vec![QueueId(1), QueueId(2)]);
    assert_eq!(m.exchange, "amq.direct");
    assert_eq!(m.routing_key, "key.42");
    assert_eq!(m.properties, r.properties);
    assert_eq!(m.body, r.body);
    let h = j.read_header(loc).unwrap();
    assert_eq!(
        (
            h.msg_id,
            h.persistent,
            h.expires_at_ms,
            &h.queues,
            &h.routing_key,
            &h.properties
        ),
        (
            42,
            true,
            r.expires_at_ms,
            &m.queues,
            &m.routing_key,
            &m.properties
        )
    );
    assert_eq!(
        (h.exchange.as_str(), h.body_len),
        ("amq.direct", r.body.len())
    );
    // A header longer than the first read, and a large body that is never read.
    let mut long = record(43, &[1], true);
    long.properties = vec![0x55u8; 10_000].into();
    long.body = vec![1u8; 300_000].into();
    let (lloc, res) = append_wait(&j, long.clone());
    res.unwrap();
    let lh = j.read_header(lloc).unwrap();
    assert_eq!((lh.properties, lh.body_len), (long.properties, 300_000));
    // A location that is not a record is reported, not trusted.
    assert!(j
        .read_header(Location {
            offset: loc.offset + 1,
            ..loc
        })
        .is_err());
    let bogus = Location {
        offset: loc.offset + 1,
        ..loc
    };
    assert!(j.read(bogus).is_err());
    let gone = Location {
        segment: loc.segment + 7,
        ..loc
    };
    assert!(matches!(
        j.read(gone),
        Err(JournalError::NoSuchSegment { .. })
    ));
    j.close().unwrap();
}

#[test]
fn append_rejects_no_queues_and_after_close() {
    let d = TempDir::new("rej");
    let (j, _) = open(&d, JournalOptions::default(), &[]);
    let err = j
        .append(record(1, &[], true), Box::new(|_| {}))
        .unwrap_err();
    assert!(matches!(err, JournalError::NoQueues));
    j.close().unwrap();
    let err = j
        .append(record(2, &[1], true), Box::new(|_| {}))
        .unwrap_err();
    assert!(matches!(err, JournalError::Closed));
    assert!(matches!(j.flush(), Err(JournalError::Closed)));
}

#[test]
fn recovery_keeps_publish_order_per_queue_across_segments() {
    let d = TempDir::new("order");
    let (j, _) = open(&d, small_opts(400), &[1, 2]);
    let mut want1 = Vec::new();
    let mut want2 = Vec::new();
    for id in 1..=60u64 {
        let qs: &[u64] = match id % 3 {
            0 => &[1],
            1 => &[2],
            _ => &[1, 2],
        };
        put(&j, id, qs, true);
        if qs.contains(&1) {
            want1.push(id);
        }
        if qs.contains(&2) {
            want2.push(id);
        }
    }
    assert!(j.stats().segments > 5, "{:?}", j.stats());
    j.close().unwrap();
    let (j, rec) = open(&d, small_opts(400), &[1, 2]);
    assert_eq!(ids(&rec, 1), want1);
    assert_eq!(ids(&rec, 2), want2);
    assert_eq!(rec.report.max_msg_id, 60);
    assert_eq!(rec.report.messages, (want1.len() + want2.len()) as u64);
    for m in &rec.queues[&QueueId(1)] {
        let s = j.read(m.location).unwrap();
        assert_eq!(s.msg_id, m.msg_id);
        assert_eq!(s.body, body_for(m.msg_id));
        assert_eq!(s.expires_at_ms, m.expires_at_ms);
        assert!(!m.redelivered);
    }
    j.close().unwrap();
}

#[test]
fn acked_messages_are_gone_after_reopen() {
    let d = TempDir::new("ack");
    let (j, _) = open(&d, JournalOptions::default(), &[1]);
    let locs: Vec<Location> = (1..=10).map(|i| put(&j, i, &[1], true)).collect();
    for (i, loc) in locs.iter().enumerate() {
        if i % 2 == 0 {
            j.ack(QueueId(1), *loc);
        }
    }
    j.close().unwrap();
    let (j, rec) = open(&d, JournalOptions::default(), &[1]);
    assert_eq!(ids(&rec, 1), vec![2, 4, 6, 8, 10]);
    j.close().unwrap();
}

#[test]
fn acks_survive_without_clean_close_once_flushed() {
    let d = TempDir::new("ackflush");
    let (j, _) = open(&d, JournalOptions::default(), &[1]);
    let a = put(&j, 1, &[1], true);
    put(&j, 2, &[1], true);
    j.ack(QueueId(1), a);
    j.flush().unwrap();
    // Simulate a crash: forget the handle without closing it.
    std::mem::forget(j);
    let (j2, rec) = open(&d, JournalOptions::default(), &[1]);
    assert_eq!(ids(&rec, 1), vec![2]);
    j2.close().unwrap();
}

#[test]
fn delivered_unacked_messages_come_back_redelivered_in_order() {
    let d = TempDir::new("redeliver");
    let (j, _) = open(&d, small_opts(300), &[1, 2]);
    let locs: Vec<Location> = (1..=12).map(|i| put(&j, i, &[1, 2], true)).collect();
    for (i, loc) in locs.iter().enumerate() {
        if i < 6 {
            j.mark_delivered(QueueId(1), *loc);
        }
        if i == 2 {
            j.ack(QueueId(1), *loc);
        }
    }
    j.close().unwrap();
    let (j, rec) = open(&d, small_opts(300), &[1, 2]);
    let q1 = &rec.queues[&QueueId(1)];
    let got: Vec<(u64, bool)> = q1.iter().map(|m| (m.msg_id, m.redelivered)).collect();
    let want: Vec<(u64, bool)> = (1..=12u64)
        .filter(|i| *i != 3)
        .map(|i| (i, i <= 6))
        .collect();
    assert_eq!(got, want);
    // Marks are per queue: queue 2 saw no deliveries.
    assert!(rec.queues[&QueueId(2)].iter().all(|m| !m.redelivered));
    assert_eq!(ids(&rec, 2), (1..=12).collect::<Vec<_>>());
    j.close().unwrap();
}

#[test]
fn shared_body_is_stored_once_and_needs_every_queues_ack() {
    let d = TempDir::new("shared");
    let (j, _) = open(&d, small_opts(1000), &[1, 2, 3]);
    let one = put(&j, 1, &[1, 2, 3], true);
    let size_shared = j.stats().bytes_on_disk;
    let single = record(1, &[1], true);
    // Stored once: the three-queue record is only 16 bytes (two more queue ids) longer.
    let d2 = TempDir::new("shared-single");
    let (j2, _) = open(&d2, small_opts(1000), &[1]);
    put(
        &j2,
        1,
        &single.queues.iter().map(|q| q.0).collect::<Vec<_>>(),
        true,
    );
    assert_eq!(size_shared, j2.stats().bytes_on_disk + 16);
    j2.close().unwrap();

    j.ack(QueueId(1), one);
    j.ack(QueueId(2), one);
    // A record bigger than the segment size rolls to a new segment, sealing the first one.
    let mut big = record(3, &[1], true);
    big.body = vec![7u8; 2000].into();
    let (big_loc, r) = append_wait(&j, big);
    r.unwrap();
    assert_ne!(big_loc.segment, one.segment);
    j.flush().unwrap();
    let first_seg = d.msgs().join(format!("{:016x}.seg", one.segment));
    assert!(first_seg.exists(), "queue 3 still holds the message");
    j.close().unwrap();
    let (j, rec) = open(&d, small_opts(1000), &[1, 2, 3]);
    assert_eq!(ids(&rec, 1), vec![3]);
    assert_eq!(ids(&rec, 2), Vec::<u64>::new());
    assert_eq!(ids(&rec, 3), vec![1]);
    j.ack(QueueId(3), one);
    j.flush().unwrap();
    assert!(!first_seg.exists(), "acked by every queue: reclaimed");
    j.close().unwrap();
}

#[test]
fn fully_acked_segments_are_deleted_with_their_ack_files() {
    let d = TempDir::new("reclaim");
    let (j, _) = open(&d, small_opts(500), &[1]);
    let locs: Vec<Location> = (1..=50).map(|i| put(&j, i, &[1], true)).collect();
    let before = files_with_ext(&d.msgs(), "seg").len();
    assert!(before > 5);
    for loc in &locs {
        j.mark_delivered(QueueId(1), *loc);
        j.ack(QueueId(1), *loc);
    }
    j.flush().unwrap();
    // Only the segment still open for appends remains.
    assert_eq!(files_with_ext(&d.msgs(), "seg").len(), 1);
    assert!(files_with_ext(&d.msgs(), "acks").len() <= 1);
    assert_eq!(j.stats().segments, 1);
    j.close().unwrap();
    // At the next open nothing is live: everything goes.
    let (j, rec) = open(&d, small_opts(500), &[1]);
    assert!(rec.queues.is_empty());
    assert_eq!(rec.report.segments_reclaimed, 1);
    assert!(files_with_ext(&d.msgs(), "seg").is_empty());
    assert!(files_with_ext(&d.msgs(), "acks").is_empty());
    assert_eq!(j.stats().bytes_on_disk, 0);
    j.close().unwrap();
}

#[test]
fn forgotten_and_dead_queues_release_segments() {
    let d = TempDir::new("forget");
    let (j, _) = open(&d, small_opts(300), &[1, 2]);
    // Queue 2's messages fill the first segments on their own, queue 1's the later ones.
    for i in 1..=20 {
        put(&j, i, &[if i <= 10 { 2 } else { 1 }], true);
    }
    let segs = files_with_ext(&d.msgs(), "seg").len();
    j.forget_queue(QueueId(2));
    j.flush().unwrap();
    let after = files_with_ext(&d.msgs(), "seg").len();
    assert!(after < segs, "{after} segments left of {segs}");
    // Acks for a forgotten queue are ignored.
    j.ack(
        QueueId(2),
        Location {
            segment: 0,
            offset: 0,
            len: 1,
        },
    );
    j.close().unwrap();
    let (j, rec) = open(&d, small_opts(300), &[1]);
    assert_eq!(ids(&rec, 1), (11..=20).collect::<Vec<_>>());
    j.close().unwrap();
    // Queue 1 unknown at the next open (its metadata lost, never forgotten): its messages
    // are kept as orphans, on disk, and not handed to any live queue.
    let (j, rec) = open(&d, small_opts(300), &[3]);
    assert!(rec.queues.is_empty());
    let orphans: Vec<u64> = rec.orphans[&QueueId(1)].iter().map(|m| m.msg_id).collect();
    assert_eq!(orphans, (11..=20).collect::<Vec<_>>());
    assert_eq!(rec.report.orphaned, 10);
    assert!(!files_with_ext(&d.msgs(), "seg").is_empty());
    // The owner gives them up: forgetting the queue releases the segments, for good.
    j.forget_queue(QueueId(1));
    j.flush().unwrap();
    j.close().unwrap();
    let (j, rec) = open(&d, small_opts(300), &[3]);
    assert!(rec.orphans.is_empty(), "{:?}", rec.orphans.keys());
    assert!(files_with_ext(&d.msgs(), "seg").is_empty());
    j.close().unwrap();
}

#[test]
fn a_deleted_queue_sharing_segments_is_not_an_orphan_after_restart() {
    let d = TempDir::new("forget-shared");
    let (j, _) = open(&d, small_opts(300), &[1, 2]);
    // Every record goes to both queues: deleting queue 2 leaves the segments in use.
    for i in 1..=10 {
        put(&j, i, &[1, 2], true);
    }
    j.forget_queue(QueueId(2));
    j.flush().unwrap();
    j.close().unwrap();
    let (j, rec) = open(&d, small_opts(300), &[1]);
    assert_eq!(ids(&rec, 1), (1..=10).collect::<Vec<_>>());
    assert!(rec.orphans.is_empty(), "{:?}", rec.orphans.keys());
    assert_eq!(rec.report.orphaned, 0);
    // A transient queue's references (marked id) never become orphans either.
    let transient = QueueId::TRANSIENT_BIT | 9;
    for i in 11..=15 {
        put(&j, i, &[1, transient], true);
    }
    j.close().unwrap();
    let (j, rec) = open(&d, small_opts(300), &[1]);
    assert_eq!(ids(&rec, 1), (1..=15).collect::<Vec<_>>());
    assert!(rec.orphans.is_empty(), "{:?}", rec.orphans.keys());
    j.close().unwrap();
}

#[test]
fn transient_records_are_readable_but_not_recovered() {
    let d = TempDir::new("transient");
    let opts = JournalOptions::default();
    let (j, _) = open(&d, opts.clone(), &[1]);
    let fsyncs0 = j.stats().fsyncs;
    let locs: Vec<Location> = (1..=20).map(|i| put(&j, i, &[1], false)).collect();
    assert_eq!(j.stats().fsyncs, fsyncs0, "transient appends never sync");
    for (i, loc) in locs.iter().enumerate() {
        assert_eq!(j.read(*loc).unwrap().msg_id, i as u64 + 1);
    }
    put(&j, 21, &[1], true);
    j.close().unwrap();
    let (j, rec) = open(&d, opts, &[1]);
    assert_eq!(ids(&rec, 1), vec![21]);
    assert_eq!(rec.report.records, 21);
    j.close().unwrap();
}

#[test]
fn group_commit_shares_fsyncs_between_concurrent_appends() {
    let d = TempDir::new("group");
    let (j, _) = open(&d, JournalOptions::default(), &[1]);
    let j = Arc::new(j);
    let threads = 8u64;
    let per = 250u64;
    let ok = Arc::new(AtomicU64::new(0));
    let (tx, rx) = mpsc::channel();
    let fs0 = j.stats().fsyncs;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let j = Arc::clone(&j);
            let ok = Arc::clone(&ok);
            let tx = tx.clone();
            std::thread::spawn(move || {
                for i in 0..per {
                    let ok = Arc::clone(&ok);
                    let tx = tx.clone();
                    // Each publisher waits for its confirm before the next publish, as a
                    // client with one message in flight would.
                    let (dtx, drx) = mpsc::channel();
                    j.append(
                        record(t * per + i + 1, &[1], true),
                        Box::new(move |r| {
                            if r.is_ok() {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            let _ = tx.send(());
                            let _ = dtx.send(());
                        }),
                    )
                    .unwrap();
                    drx.recv_timeout(Duration::from_secs(20)).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    drop(tx);
    assert_eq!(rx.iter().count() as u64, threads * per);
    let n = threads * per;
    assert_eq!(ok.load(Ordering::Relaxed), n);
    let fsyncs = j.stats().fsyncs - fs0;
    eprintln!("{n} confirmed appends from {threads} threads used {fsyncs} fsyncs");
    assert!(fsyncs * 3 < n, "{fsyncs} fsyncs for {n} appends");
    j.close().unwrap();
    let (j, rec) = open(&d, JournalOptions::default(), &[1]);
    let mut got = ids(&rec, 1);
    got.sort_unstable();
    assert_eq!(got, (1..=n).collect::<Vec<_>>());
    j.close().unwrap();
}

#[test]
fn interval_and_never_policies_confirm_and_persist_on_close() {
    for sync in [
        SyncPolicy::Interval(Duration::from_millis(20)),
        SyncPolicy::Never,
    ] {
        let d = TempDir::new("policy");
        let opts = JournalOptions {
            sync,
            ..JournalOptions::default()
        };
        let (j, _) = open(&d, opts.clone(), &[1]);
        for i in 1..=30 {
            put(&j, i, &[1], true);
        }
        if sync == SyncPolicy::Never {
            assert_eq!(j.stats().fsyncs, 0);
        } else {
            std::thread::sleep(Duration::from_millis(60));
            assert!(j.stats().fsyncs >= 1, "interval sync happened");
        }
        j.close().unwrap();
        let (j, rec) = open(&d, opts, &[1]);
        assert_eq!(ids(&rec, 1), (1..=30).collect::<Vec<_>>());
        j.close().unwrap();
    }
}

#[test]
fn large_record_gets_its_own_segment() {
    let d = TempDir::new("large");
    let (j, _) = open(&d, small_opts(1024), &[1]);
    let a = put(&j, 1, &[1], true);
    let mut big = record(2, &[1], true);
    big.body = vec![9u8; 10_000].into();
    let (b, r) = append_wait(&j, big.clone());
    r.unwrap();
    let c = put(&j, 3, &[1], true);
    assert_ne!(a.segment, b.segment);
    assert_eq!(b.offset, 0);
    assert_ne!(b.segment, c.segment);
    assert_eq!(j.read(b).unwrap().body, big.body);
    j.close().unwrap();
    let (j, rec) = open(&d, small_opts(1024), &[1]);
    assert_eq!(ids(&rec, 1), vec![1, 2, 3]);
    j.close().unwrap();
}

#[test]
fn callbacks_may_append_and_panicking_callbacks_do_not_stop_the_writer() {
    let d = TempDir::new("cb");
    let (j, _) = open(&d, JournalOptions::default(), &[1]);
    let j = Arc::new(j);
    let (tx, rx) = mpsc::channel();
    let j2 = Arc::clone(&j);
    j.append(
        record(1, &[1], true),
        Box::new(move |_| {
            let tx2 = tx.clone();
            j2.append(
                record(2, &[1], true),
                Box::new(move |r| tx2.send(r).unwrap()),
            )
            .unwrap();
        }),
    )
    .unwrap();
    rx.recv_timeout(Duration::from_secs(10)).unwrap().unwrap();
    j.append(record(3, &[1], true), Box::new(|_| panic!("callback bug")))
        .unwrap();
    put(&j, 4, &[1], true);
    j.close().unwrap();
    let (_j, rec) = open(&d, JournalOptions::default(), &[1]);
    assert_eq!(ids(&rec, 1), vec![1, 2, 3, 4]);
}

#[test]
fn flood_of_unawaited_appends_is_written_in_bounded_turns_and_flushed() {
    let d = TempDir::new("flood");
    let opts = JournalOptions {
        segment_size: 4 * 1024 * 1024,
        max_pending_bytes: 4 * 1024 * 1024,
        ..JournalOptions::default()
    };
    let (j, _) = open(&d, opts.clone(), &[1]);
    let j = Arc::new(j);
    let ok = Arc::new(AtomicU64::new(0));
    let per = 10_000u64;
    let handles: Vec<_> = (0..2u64)
        .map(|t| {
            let j = Arc::clone(&j);
            let ok = Arc::clone(&ok);
            std::thread::spawn(move || {
                for i in 0..per {
                    let mut r = record(t * per + i + 1, &[1], true);
                    r.body = vec![1u8; 1024].into();
                    let ok = Arc::clone(&ok);
                    j.append(
                        r,
                        Box::new(move |res| {
                            if res.is_ok() {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                        }),
                    )
                    .unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    j.flush().unwrap();
    // flush returns after every earlier append's callback ran.
    assert_eq!(ok.load(Ordering::Relaxed), 2 * per);
    let st = j.stats();
    assert!(st.write_batches > 2, "{st:?}");
    assert!(st.segments >= 5, "{st:?}");
    j.close().unwrap();
    let (j, rec) = open(&d, opts, &[1]);
    assert_eq!(rec.queues[&QueueId(1)].len() as u64, 2 * per);
    j.close().unwrap();
}
