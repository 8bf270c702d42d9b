//! Giving freed memory back to the operating system. glibc's allocator keeps what the
//! broker frees in its arenas: after a flood of large bodies is consumed, purged or
//! deleted, the process would stay at its peak resident size for good. A watcher thread
//! compares, once a second, the process's resident memory with the bytes of message
//! bodies the broker holds; when the part not explained by bodies has grown by a clear
//! amount since the last look, it asks glibc to return its free pages (`malloc_trim`).
//! In steady state that part does not grow, so it never runs and costs nothing.
//!
//! While the broker is busy the freed memory is what the next bodies are allocated from:
//! trimming it then only makes the kernel fault and zero the same pages in again (every
//! second during a stream of 1 MiB bodies, 60-70 MB each time, a third of the broker's
//! page faults). So a busy broker is trimmed at most every [`BUSY_TRIM_INTERVAL`]; once
//! it goes quiet, at the next look, and then the idle buffers of the body pool
//! (`warren_server::util::body_pool`) are freed first.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use warren_server::util::body_pool::BODIES;

/// Growth of the memory not held by bodies that makes a trim worth its arena walk.
const GROWTH_WORTH_TRIMMING: u64 = 32 << 20;
const POLL: Duration = Duration::from_secs(1);
/// The broker is quiet when it used less CPU than this share of one core since the last
/// look.
const QUIET_CPU_SHARE: f64 = 0.1;
/// How often a busy broker's freed memory is returned all the same.
const BUSY_TRIM_INTERVAL: Duration = Duration::from_secs(30);
/// Clock ticks per second of /proc's CPU times (USER_HZ, fixed by the kernel ABI).
const USER_HZ: f64 = 100.0;

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

/// CPU time the process has used, user and system, from `/proc/self/stat`.
fn cpu_time() -> Option<Duration> {
    parse_cpu_time(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

/// utime and stime are the 14th and 15th fields; the 2nd (the command name, in
/// parentheses) may itself hold spaces, so fields are counted after its closing one.
fn parse_cpu_time(stat: &str) -> Option<Duration> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_secs_f64((utime + stime) as f64 / USER_HZ))
}

/// Whether to trim now: the memory not in bodies grew by `grown` bytes since the last
/// trim (or its lowest point), the broker was `busy` since the last look, and the last
/// trim was `since_trim` ago.
fn should_trim(grown: u64, busy: bool, since_trim: Duration) -> bool {
    grown >= GROWTH_WORTH_TRIMMING && (!busy || since_trim >= BUSY_TRIM_INTERVAL)
}

/// Sizes the body pool from the memory budget, then starts the watcher over `resident`
/// (the broker's body bytes in memory).
pub(crate) fn watch(resident: Arc<AtomicUsize>, memory_budget_mb: u64) {
    // Idle body buffers kept for reuse: a quarter of the memory budget, at most 64 MiB.
    let budget = usize::try_from(memory_budget_mb.saturating_mul(1 << 20));
    BODIES.set_limit(
        budget
            .map_or(usize::MAX, |b| b / 4)
            .min(warren_server::util::body_pool::DEFAULT_POOL_BYTES),
    );
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
            let mut last_trim = Instant::now();
            let mut cpu_before = cpu_time();
            loop {
                std::thread::sleep(POLL);
                let cpu_now = cpu_time();
                // Without /proc/self/stat the broker counts as quiet, as it did before.
                let busy = match (cpu_before, cpu_now) {
                    (Some(before), Some(now)) => {
                        now.saturating_sub(before).as_secs_f64()
                            >= QUIET_CPU_SHARE * POLL.as_secs_f64()
                    }
                    _ => false,
                };
                cpu_before = cpu_now;
                // Pooled body buffers nobody needed for a whole look go back to glibc
                // (which reuses them for anything, or returns them at the next trim).
                BODIES.release_surplus();
                let Some(now) = unexplained() else { continue };
                floor = floor.min(now);
                // Idle body buffers are kept for a busy broker only.
                let pooled = if busy { 0 } else { BODIES.idle_bytes() };
                if pooled > 0 || should_trim(now - floor, busy, last_trim.elapsed()) {
                    let pool_freed = if busy { 0 } else { BODIES.release_idle() };
                    let released = release_free_memory();
                    let after = unexplained().unwrap_or(now);
                    tracing::debug!(
                        before = now,
                        after,
                        released,
                        busy,
                        pool_freed,
                        "returned freed memory"
                    );
                    floor = after;
                    last_trim = Instant::now();
                    // The trim's own CPU time is not traffic.
                    cpu_before = cpu_time();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_read_after_the_command_name() {
        // A command name with spaces and parentheses; utime 250 and stime 130 ticks.
        let stat = "4242 (warren (x) y) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 130 0 0 20 0 5 0";
        assert_eq!(parse_cpu_time(stat), Some(Duration::from_millis(3_800)));
        assert_eq!(parse_cpu_time("4242 (warren) S 1 2"), None);
        assert_eq!(parse_cpu_time("no parenthesis"), None);
    }

    #[test]
    fn this_process_has_a_cpu_time() {
        let spin = Instant::now();
        while spin.elapsed() < Duration::from_millis(30) {
            std::hint::black_box(spin.elapsed());
        }
        assert!(cpu_time().is_some_and(|t| t > Duration::ZERO));
    }

    #[test]
    fn a_busy_broker_is_trimmed_only_now_and_then() {
        let grown = GROWTH_WORTH_TRIMMING;
        let recently = Duration::from_secs(1);
        // Quiet: trimmed as soon as it grew.
        assert!(should_trim(grown, false, recently));
        assert!(!should_trim(grown - 1, false, recently));
        // Busy: the freed memory is about to be reused; trimmed only after the interval.
        assert!(!should_trim(grown, true, recently));
        assert!(!should_trim(
            grown * 10,
            true,
            BUSY_TRIM_INTERVAL - recently
        ));
        assert!(should_trim(grown, true, BUSY_TRIM_INTERVAL));
        assert!(!should_trim(grown - 1, true, BUSY_TRIM_INTERVAL));
    }
}
