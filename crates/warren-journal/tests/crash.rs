//! SIGKILL while appending: every message whose callback reported success before the kill
//! is recovered. The test binary re-runs itself as the child process.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;

use common::*;
use warren_journal::{Journal, JournalOptions, QueueId};

const CHILD_ENV: &str = "WARREN_JOURNAL_CRASH_CHILD_DIR";
const TEST_NAME: &str = "sigkill_after_confirm_loses_nothing";

/// Child: publish from 4 threads forever, printing each confirmed id, acking every third.
fn child(dir: &str) -> ! {
    let (j, _) = Journal::open(dir, JournalOptions::default(), &live(&[1, 2])).unwrap();
    let j = Arc::new(j);
    let out = Arc::new(parking_lot::Mutex::new(std::io::stdout()));
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let j = Arc::clone(&j);
            let out = Arc::clone(&out);
            std::thread::spawn(move || {
                let mut id = t + 1;
                loop {
                    let out = Arc::clone(&out);
                    let j2 = Arc::clone(&j);
                    let (tx, rx) = std::sync::mpsc::channel();
                    let loc = j
                        .append(
                            record(id, &[1, 2], true),
                            Box::new(move |r| {
                                if r.is_ok() {
                                    let mut o = out.lock();
                                    let _ = writeln!(o, "ok {id}");
                                    let _ = o.flush();
                                }
                                let _ = tx.send(());
                            }),
                        )
                        .unwrap();
                    if id % 3 == 0 {
                        rx.recv().unwrap();
                        j2.ack(QueueId(2), loc);
                    }
                    id += 4;
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    std::process::exit(0);
}

#[test]
fn sigkill_after_confirm_loses_nothing() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child(&dir);
    }
    let d = TempDir::new("sigkill");
    for round in 0..3 {
        let mut c = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, d.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = c.stdout.take().unwrap();
        let mut confirmed = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if let Some(id) = line.strip_prefix("ok ") {
                confirmed.push(id.parse::<u64>().unwrap());
                if confirmed.len() >= 3000 {
                    break;
                }
            }
        }
        c.kill().unwrap(); // SIGKILL
        c.wait().unwrap();
        let (j, rec) = open(&d, JournalOptions::default(), &[1, 2]);
        let got: std::collections::HashSet<u64> = ids(&rec, 1).into_iter().collect();
        let missing: Vec<u64> = confirmed
            .iter()
            .filter(|i| !got.contains(i))
            .copied()
            .collect();
        assert!(
            missing.is_empty(),
            "round {round}: confirmed but lost: {missing:?}"
        );
        assert_eq!(rec.report.corrupt_records, 0);
        for m in &rec.queues[&QueueId(1)] {
            assert_eq!(j.read(m.location).unwrap().msg_id, m.msg_id);
        }
        // Clear queue 1 so the next round starts small; queue 2 keeps its history.
        for m in &rec.queues[&QueueId(1)] {
            j.ack(QueueId(1), m.location);
        }
        j.close().unwrap();
    }
}
