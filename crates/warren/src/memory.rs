//! Giving freed memory back to the operating system. glibc's allocator keeps what the
//! broker frees in its arenas: after a flood of large bodies is consumed, purged or
//! deleted, the process would stay at its peak resident size for good. A watcher thread
//! compares, once a second, the process's resident memory with the bytes of message
//! bodies the broker holds; when the part not explained by bodies has grown by a clear
//! amount since the last look, it asks glibc to return its free pages (`malloc_trim`).
//! In steady state that part does not grow, so it never runs and costs nothing.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

/// Growth of the memory not held by bodies that makes a trim worth its arena walk.
const GROWTH_WORTH_TRIMMING: u64 = 32 << 20;
const POLL: Duration = Duration::from_secs(1);

/// The process's resident memory in bytes (Linux), from `/proc/self/status`.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Starts the watcher over `resident` (the broker's body bytes in memory).
pub(crate) fn watch(resident: Arc<AtomicUsize>) {
    let spawned = std::thread::Builder::new()
        .name("warren-trim".into())
        .spawn(move || {
            let unexplained = || {
                let rss = resident_bytes()?;
                Some(rss.saturating_sub(resident.load(Ordering::Relaxed) as u64))
            };
            // The lowest memory-not-in-bodies seen since the last trim.
            let Some(mut floor) = unexplained() else {
                return; // no /proc: nothing to watch
            };
            loop {
                std::thread::sleep(POLL);
                let Some(now) = unexplained() else { continue };
                if now < floor {
                    floor = now;
                } else if now - floor >= GROWTH_WORTH_TRIMMING {
                    let released = release_free_memory();
                    let after = unexplained().unwrap_or(now);
                    tracing::debug!(before = now, after, released, "returned freed memory");
                    floor = after;
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the memory trimmer; freed memory stays with the process");
    }
}

/// Asks glibc to return the free pages of all its arenas; true when it released any.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub(crate) fn release_free_memory() -> bool {
    // SAFETY: malloc_trim takes no pointers and touches only glibc's own free lists, which
    // it locks while it runs; any thread may call it at any time.
    unsafe { libc::malloc_trim(0) == 1 }
}

/// Other allocators (musl, macOS, Windows) return large freed blocks themselves.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) fn release_free_memory() -> bool {
    false
}
