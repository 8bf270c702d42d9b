//! Writes N persistent 1 KiB messages to one queue with group commit, reopens the journal
//! and prints append+fsync throughput and recovery time.
//!
//! `cargo run --release -p warren-journal --example recovery_bench -- 1000000 [dir]`
//!
//! With `KEEP=1` the directory is left in place; `-- --recover-only DIR` then times only
//! the recovery (for example after evicting the files from the page cache with
//! `dd if=FILE iflag=nocache count=0`).

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use warren_journal::{Journal, JournalError, JournalOptions, NewRecord, QueueId};

const PUBLISHERS: u64 = 4;

fn main() -> Result<(), JournalError> {
    let mut args = std::env::args().skip(1).peekable();
    let recover_only = args.peek().is_some_and(|a| a == "--recover-only");
    if recover_only {
        args.next();
    }
    let keep = recover_only || std::env::var_os("KEEP").is_some();
    let n: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let dir = args.next().map_or_else(
        || std::env::temp_dir().join(format!("warren-journal-bench-{}", std::process::id())),
        std::path::PathBuf::from,
    );
    if !recover_only {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let live: HashSet<QueueId> = [QueueId(1)].into_iter().collect();

    if !recover_only {
        write(&dir, n, &live)?;
    }
    recover(&dir, &live)?;
    if !keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

fn write(dir: &std::path::Path, n: u64, live: &HashSet<QueueId>) -> Result<(), JournalError> {
    let body = Bytes::from(vec![b'x'; 1024]);
    let props = Bytes::from_static(&[0x10, 0x00, 0x02]);
    let (journal, _) = Journal::open(dir, JournalOptions::default(), live)?;
    let journal = Arc::new(journal);
    let confirmed = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let threads: Vec<_> = (0..PUBLISHERS)
        .map(|t| {
            let journal = Arc::clone(&journal);
            let confirmed = Arc::clone(&confirmed);
            let failed = Arc::clone(&failed);
            let body = body.clone();
            let props = props.clone();
            std::thread::spawn(move || -> Result<(), JournalError> {
                let mut id = t + 1;
                while id <= n {
                    let confirmed = Arc::clone(&confirmed);
                    let failed = Arc::clone(&failed);
                    journal.append(
                        NewRecord {
                            msg_id: id,
                            persistent: true,
                            expires_at_ms: None,
                            queues: vec![QueueId(1)],
                            exchange: String::new(),
                            routing_key: "bench".into(),
                            properties: props.clone(),
                            body: body.clone(),
                        },
                        Box::new(move |r| {
                            let c = if r.is_ok() { &confirmed } else { &failed };
                            c.fetch_add(1, Ordering::Relaxed);
                        }),
                    )?;
                    id += PUBLISHERS;
                }
                Ok(())
            })
        })
        .collect();
    for t in threads {
        t.join().map_err(|_| JournalError::Closed)??;
    }
    while confirmed.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed) < n {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let write_time = start.elapsed();
    let stats = journal.stats();
    journal.close()?;
    drop(journal);
    let secs = write_time.as_secs_f64();
    println!(
        "append+fsync: {n} x 1 KiB from {PUBLISHERS} threads in {secs:.2} s = {:.0} msg/s, {:.0} MiB/s; {} fsyncs, {} write batches, {} failed",
        n as f64 / secs,
        (stats.bytes_on_disk as f64 / (1024.0 * 1024.0)) / secs,
        stats.fsyncs,
        stats.write_batches,
        failed.load(Ordering::Relaxed),
    );
    println!(
        "on disk: {} segments, {:.1} MiB",
        stats.segments,
        stats.bytes_on_disk as f64 / (1024.0 * 1024.0)
    );

    Ok(())
}

fn recover(dir: &std::path::Path, live: &HashSet<QueueId>) -> Result<(), JournalError> {
    let start = Instant::now();
    let (journal, rec) = Journal::open(dir, JournalOptions::default(), live)?;
    let recovery_time = start.elapsed();
    let msgs = rec.queues.get(&QueueId(1)).map_or(0, Vec::len);
    println!(
        "recovery: {msgs} messages from {} segments in {:.2} s ({:.0} msg/s); index {:.1} MiB",
        rec.report.segments_scanned,
        recovery_time.as_secs_f64(),
        msgs as f64 / recovery_time.as_secs_f64(),
        (msgs * std::mem::size_of::<warren_journal::RecoveredMessage>()) as f64 / (1024.0 * 1024.0),
    );
    // Spot-check a read back from disk.
    if let Some(m) = rec.queues.get(&QueueId(1)).and_then(|v| v.last()) {
        let s = journal.read(m.location)?;
        assert_eq!(s.body.len(), 1024);
    }
    journal.close()?;
    Ok(())
}
