//! Crash and corruption scenarios: torn tails, flipped bytes, foreign files, full disks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use warren_journal::{JournalError, JournalOptions, Location, QueueId};

fn seg_file(dir: &Path, seq: u64) -> std::path::PathBuf {
    dir.join(format!("{seq:016x}.seg"))
}

/// Writes msgs 1..=n to queue 1 (msg 3 also to queue 2) and returns their locations.
fn base(d: &TempDir, n: u64) -> Vec<Location> {
    let (j, _) = open(d, JournalOptions::default(), &[1, 2]);
    let locs = (1..=n)
        .map(|i| put(&j, i, if i == 3 { &[1, 2] } else { &[1] }, true))
        .collect();
    j.close().unwrap();
    locs
}

#[test]
fn torn_tail_at_every_byte_is_truncated_and_appends_continue() {
    init_tracing();
    let src = TempDir::new("torn-src");
    let locs = base(&src, 3);
    let last = locs[2];
    let bytes = std::fs::read(seg_file(&src.msgs(), last.segment)).unwrap();
    assert_eq!(bytes.len() as u64, u64::from(last.offset + last.len));
    for cut in last.offset..last.offset + last.len {
        let d = TempDir::new("torn");
        std::fs::create_dir_all(d.msgs()).unwrap();
        let path = seg_file(&d.msgs(), last.segment);
        std::fs::write(&path, &bytes[..cut as usize]).unwrap();
        let (j, rec) = open(&d, JournalOptions::default(), &[1, 2]);
        assert_eq!(ids(&rec, 1), vec![1, 2], "cut at {cut}");
        assert_eq!(
            rec.report.torn_bytes_truncated,
            u64::from(cut - last.offset)
        );
        assert_eq!(rec.report.corrupt_records, 0);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            u64::from(last.offset)
        );
        let l4 = put(&j, 4, &[1], true);
        j.close().unwrap();
        let (j, rec) = open(&d, JournalOptions::default(), &[1, 2]);
        assert_eq!(ids(&rec, 1), vec![1, 2, 4], "cut at {cut}");
        assert_eq!(j.read(l4).unwrap().body, body_for(4));
        assert_eq!(rec.report.torn_bytes_truncated, 0);
        j.close().unwrap();
    }
}

#[test]
fn zero_filled_tail_after_power_loss_is_truncated() {
    let d = TempDir::new("zeros");
    let locs = base(&d, 3);
    let path = seg_file(&d.msgs(), locs[0].segment);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(&[0u8; 4096]);
    std::fs::write(&path, &bytes).unwrap();
    let (j, rec) = open(&d, JournalOptions::default(), &[1, 2]);
    assert_eq!(ids(&rec, 1), vec![1, 2, 3]);
    assert_eq!(rec.report.torn_bytes_truncated, 4096);
    j.close().unwrap();
}

#[test]
fn any_flipped_byte_in_a_middle_record_loses_only_that_record() {
    init_tracing();
    let src = TempDir::new("flip-src");
    let locs = base(&src, 5);
    let mid = locs[2]; // msg 3, routed to queues 1 and 2
    let bytes = std::fs::read(seg_file(&src.msgs(), mid.segment)).unwrap();
    let mut body_hits = 0;
    let mut header_hits = 0;
    for i in mid.offset..mid.offset + mid.len {
        let d = TempDir::new("flip");
        std::fs::create_dir_all(d.msgs()).unwrap();
        let mut b = bytes.clone();
        b[i as usize] ^= 0x04;
        std::fs::write(seg_file(&d.msgs(), mid.segment), &b).unwrap();
        let (j, rec) = open(&d, JournalOptions::default(), &[1, 2]);
        assert_eq!(ids(&rec, 1), vec![1, 2, 4, 5], "flip at {i}");
        assert_eq!(ids(&rec, 2), Vec::<u64>::new(), "flip at {i}");
        assert_eq!(rec.report.corrupt_records, 1, "flip at {i}");
        assert_eq!(rec.report.torn_bytes_truncated, 0, "flip at {i}");
        if rec.report.lost.is_empty() {
            // Header damaged: queues unknown.
            assert_eq!(rec.report.unattributed_corrupt_regions, 1);
            header_hits += 1;
        } else {
            // Body damaged: the intact header names both queues.
            assert_eq!(
                rec.report.lost.clone().into_iter().collect::<Vec<_>>(),
                vec![(QueueId(1), 1), (QueueId(2), 1)]
            );
            body_hits += 1;
        }
        for m in &rec.queues[&QueueId(1)] {
            assert_eq!(j.read(m.location).unwrap().msg_id, m.msg_id);
        }
        assert!(matches!(j.read(mid), Err(JournalError::Corrupt { .. })));
        j.close().unwrap();
    }
    assert!(body_hits > 0 && header_hits > 0);
}

#[test]
fn foreign_empty_and_unreadable_files_are_reported_not_fatal() {
    init_tracing();
    let d = TempDir::new("garbage");
    base(&d, 3); // segment 0
    let m = d.msgs();
    std::fs::write(m.join("junk.txt"), b"hello").unwrap();
    std::fs::write(m.join("0000000000000001.seg.tmp"), b"x").unwrap();
    // Pseudo-random garbage under a segment name.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let garbage: Vec<u8> = (0..50_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(seg_file(&m, 1), &garbage).unwrap();
    std::fs::write(seg_file(&m, 2), b"").unwrap();
    std::fs::create_dir(seg_file(&m, 3)).unwrap();
    std::fs::write(m.join("0000000000000004.acks"), b"orphan ack bytes").unwrap();
    std::os::unix::fs::symlink("/dev/zero", seg_file(&m, 5)).unwrap();
    std::fs::create_dir(m.join("0000000000000006.acks")).unwrap();
    std::fs::write(seg_file(&m, 6), b"").unwrap();

    let (j, rec) = open(&d, JournalOptions::default(), &[1, 2]);
    assert_eq!(ids(&rec, 1), vec![1, 2, 3]);
    let skipped: Vec<String> = rec
        .report
        .skipped_files
        .iter()
        .map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for name in [
        "junk.txt",
        "0000000000000001.seg.tmp",
        "0000000000000003.seg",
        "0000000000000005.seg",
        "0000000000000006.acks",
    ] {
        assert!(skipped.iter().any(|s| s == name), "{name} in {skipped:?}");
    }
    assert!(
        !m.join("0000000000000004.acks").exists(),
        "orphan ack file removed"
    );
    // New appends go past every name in use.
    let l = put(&j, 10, &[1], true);
    assert!(l.segment >= 7);
    j.close().unwrap();
    let (j, rec) = open(&d, JournalOptions::default(), &[1, 2]);
    assert_eq!(ids(&rec, 1), vec![1, 2, 3, 10]);
    j.close().unwrap();
}

#[test]
fn torn_and_damaged_ack_entries_cost_at_most_a_redelivery() {
    let d = TempDir::new("acktorn");
    let (j, _) = open(&d, JournalOptions::default(), &[1]);
    let locs: Vec<Location> = (1..=4).map(|i| put(&j, i, &[1], true)).collect();
    j.ack(QueueId(1), locs[0]);
    j.ack(QueueId(1), locs[1]);
    j.close().unwrap();
    let acks = d.msgs().join(format!("{:016x}.acks", locs[0].segment));
    let mut b = std::fs::read(&acks).unwrap();
    assert_eq!(b.len(), 48);
    b[30] ^= 0xff; // damage the second entry (msg 2's ack)
    b.extend_from_slice(&[1, 2, 3, 4, 5]); // torn partial entry
    std::fs::write(&acks, &b).unwrap();
    let (j, rec) = open(&d, JournalOptions::default(), &[1]);
    assert_eq!(ids(&rec, 1), vec![2, 3, 4]);
    assert_eq!(rec.report.torn_bytes_truncated, 5);
    // Further acks land on an entry boundary and are honoured.
    j.ack(QueueId(1), locs[2]);
    j.close().unwrap();
    let (j, rec) = open(&d, JournalOptions::default(), &[1]);
    assert_eq!(ids(&rec, 1), vec![2, 4]);
    j.close().unwrap();
}

#[test]
fn write_error_fails_the_batch_and_later_appends_use_a_new_segment() {
    // The segment the writer will create next is a link to /dev/full: every write fails
    // with ENOSPC, without needing root or a small file system.
    let d = TempDir::new("devfull");
    let (j, _) = open(&d, JournalOptions::default(), &[1]);
    drop(j);
    let (j, rec) = open(&d, JournalOptions::default(), &[1]);
    assert!(rec.queues.is_empty());
    // Nothing on disk yet, so the next segment number is 0.
    std::os::unix::fs::symlink("/dev/full", seg_file(&d.msgs(), 0)).unwrap();
    let (bad, r) = append_wait(&j, record(1, &[1], true));
    assert!(matches!(r, Err(JournalError::DiskFull { .. })), "{r:?}");
    assert_eq!(bad.segment, 0);
    let good = put(&j, 2, &[1], true);
    assert_ne!(good.segment, bad.segment);
    assert!(j.read(bad).is_err());
    assert_eq!(j.read(good).unwrap().msg_id, 2);
    j.close().unwrap();
    let (j, rec) = open(&d, JournalOptions::default(), &[1]);
    assert_eq!(ids(&rec, 1), vec![2]);
    j.close().unwrap();
}

struct Tmpfs(TempDir);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

#[test]
fn disk_full_on_a_tiny_tmpfs_keeps_every_confirmed_message() {
    init_tracing();
    let mnt = TempDir::new("tmpfs");
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(mnt.path())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("cannot mount a tmpfs here (not root?); /dev/full test covers the error path");
        return;
    }
    let fs = Tmpfs(mnt);
    let opts = small_opts(64 * 1024);
    let (j, _) = open(&fs.0, opts.clone(), &[1]);
    let mut confirmed = Vec::new();
    let mut first_err = None;
    for i in 1..=4000u64 {
        let mut r = record(i, &[1], true);
        r.body = vec![(i % 256) as u8; 1024].into();
        let (loc, res) = append_wait(&j, r);
        match res {
            Ok(()) => confirmed.push((i, loc)),
            Err(e) => {
                first_err = Some(e);
                break;
            }
        }
    }
    let err = first_err.expect("a 1 MiB file system fills up");
    assert!(matches!(err, JournalError::DiskFull { .. }), "{err:?}");
    assert!(confirmed.len() > 100);
    // Everything confirmed before the failure is still readable.
    for (i, loc) in &confirmed {
        assert_eq!(j.read(*loc).unwrap().msg_id, *i);
    }
    let _ = j.close();
    drop(j);
    let (j, rec) = open(&fs.0, opts, &[1]);
    let got = ids(&rec, 1);
    let want: Vec<u64> = confirmed.iter().map(|(i, _)| *i).collect();
    assert_eq!(got[..want.len()], want[..]);
    assert!(got.len() <= want.len() + 1);
    assert_eq!(rec.report.corrupt_records, 0);
    // Acking frees whole segments, after which appends succeed again.
    for m in &rec.queues[&QueueId(1)] {
        j.ack(QueueId(1), m.location);
    }
    j.flush().unwrap();
    put(&j, 9999, &[1], true);
    j.close().unwrap();
}

#[test]
fn large_bodies_are_skipped_by_recovery_and_checked_on_read() {
    let d = TempDir::new("bigbody");
    let (j, _) = open(&d, JournalOptions::default(), &[1]);
    let mut locs = Vec::new();
    for i in 1..=3u64 {
        let mut r = record(i, &[1], true);
        r.body = vec![i as u8; 100_000].into();
        let (loc, res) = append_wait(&j, r);
        res.unwrap();
        locs.push(loc);
    }
    put(&j, 4, &[1], true);
    j.close().unwrap();
    let path = seg_file(&d.msgs(), locs[0].segment);
    let mut bytes = std::fs::read(&path).unwrap();
    // Damage the middle of the second large body.
    let mid = (locs[1].offset + locs[1].len / 2) as usize;
    bytes[mid] ^= 0xff;
    // And tear the segment in the middle of a fifth large record.
    let mut torn = Vec::new();
    {
        let tmp = TempDir::new("bigbody-src");
        let (j, _) = open(&tmp, JournalOptions::default(), &[1]);
        let mut r = record(5, &[1], true);
        r.body = vec![5u8; 100_000].into();
        let (loc, res) = append_wait(&j, r);
        res.unwrap();
        j.close().unwrap();
        let src = std::fs::read(seg_file(&tmp.msgs(), loc.segment)).unwrap();
        torn.extend_from_slice(&src[..50_000]);
    }
    let intact_len = bytes.len() as u64;
    bytes.extend_from_slice(&torn);
    std::fs::write(&path, &bytes).unwrap();

    let (j, rec) = open(&d, JournalOptions::default(), &[1]);
    // The damaged large body is not read at recovery: the message is listed ...
    assert_eq!(ids(&rec, 1), vec![1, 2, 3, 4]);
    assert_eq!(rec.report.torn_bytes_truncated, 50_000);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), intact_len);
    // ... and its damage is caught when the body is fetched.
    assert!(matches!(j.read(locs[1]), Err(JournalError::Corrupt { .. })));
    assert_eq!(j.read(locs[2]).unwrap().body.len(), 100_000);
    j.close().unwrap();
}
