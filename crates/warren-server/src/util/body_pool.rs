//! Buffers for large message bodies, reused rather than freed.
//!
//! A body that spans several frames is read into a buffer of its declared size. Freed
//! back to glibc after delivery, buffers of a megabyte make its per-thread arenas grow,
//! shrink and unmap whole heaps again and again, and every reuse of such memory is a
//! page fault that zeroes the page first: at 1 MiB bodies the broker took 50,000-110,000
//! faults in 3 seconds. Buffers come from this pool instead and go back to it when the
//! last copy of the body is dropped (wherever that happens: a consumer's writer, the
//! queue, the spill to disk), within a bound on the bytes it keeps.

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Mutex,
};

use bytes::Bytes;

/// Buffers smaller than this are left to the allocator (cheap there, and many).
pub const POOLED_MIN: usize = 64 * 1024;

/// The most bytes of idle buffers a pool keeps unless told otherwise: with 1 MiB bodies
/// a smaller pool still missed often enough to leave a third of the faults (32 MiB:
/// 15,800 in 3 s; 64 MiB: 10,300).
pub const DEFAULT_POOL_BYTES: usize = 64 << 20;

/// A buffer is handed out for a request only when it is at most this much bigger
/// (in quarters of the request), so a small body does not hold a large buffer.
const SLACK_QUARTERS: usize = 1;

struct Idle {
    buffers: Vec<Vec<u8>>,
    bytes: usize,
    /// The fewest idle bytes since the last [`BodyPool::release_surplus`]: buffers that
    /// many bytes' worth were not needed all that time.
    low_water: usize,
}

/// A pool of body buffers (the broker uses [`BODIES`]).
pub struct BodyPool {
    idle: Mutex<Idle>,
    /// The most bytes of idle buffers kept.
    limit: AtomicUsize,
}

/// The broker's pool.
pub static BODIES: BodyPool = BodyPool::new();

impl BodyPool {
    pub const fn new() -> Self {
        BodyPool {
            idle: Mutex::new(Idle {
                buffers: Vec::new(),
                bytes: 0,
                low_water: 0,
            }),
            limit: AtomicUsize::new(DEFAULT_POOL_BYTES),
        }
    }

    /// Keeps at most `bytes` of idle buffers from now on (the broker sizes its pool from
    /// its memory budget).
    pub fn set_limit(&self, bytes: usize) {
        self.limit.store(bytes, Ordering::Relaxed);
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Idle> {
        // A panic while holding the lock leaves a consistent pool (every change is one
        // push or one removal with its count): carry on with it.
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// An empty buffer with room for at least `capacity` bytes: an idle one of about
    /// that size when the pool has one, else a new one.
    pub fn take(&self, capacity: usize) -> Vec<u8> {
        if capacity >= POOLED_MIN {
            let most = capacity.saturating_add(capacity / 4 * SLACK_QUARTERS);
            let mut idle = self.idle();
            if let Some(at) = idle
                .buffers
                .iter()
                .position(|b| (capacity..=most).contains(&b.capacity()))
            {
                let buf = idle.buffers.swap_remove(at);
                idle.bytes -= buf.capacity();
                idle.low_water = idle.low_water.min(idle.bytes);
                return buf;
            }
        }
        Vec::with_capacity(capacity)
    }

    /// The finished body as `Bytes`, without copying it; a pool-sized buffer returns to
    /// the pool when the last `Bytes` sharing it is dropped.
    pub fn freeze(&'static self, body: Vec<u8>) -> Bytes {
        if body.capacity() >= POOLED_MIN {
            Bytes::from_owner(Pooled {
                buf: body,
                pool: self,
            })
        } else {
            Bytes::from(body)
        }
    }

    fn give_back(&self, mut buf: Vec<u8>) {
        let size = buf.capacity();
        if size < POOLED_MIN {
            return;
        }
        buf.clear();
        let limit = self.limit.load(Ordering::Relaxed);
        let mut idle = self.idle();
        if idle.bytes + size <= limit {
            idle.bytes += size;
            idle.buffers.push(buf);
        }
    }

    /// Frees idle buffers that were not needed since the last call (the pool never went
    /// below that many bytes), so buffers of a size no longer published do not stay for
    /// as long as the broker is busy. Called once a second. Returns the bytes freed.
    pub fn release_surplus(&self) -> usize {
        let surplus = {
            let mut idle = self.idle();
            let mut surplus = Vec::new();
            let mut freed = 0;
            while freed < idle.low_water {
                let Some(buf) = idle.buffers.pop() else { break };
                freed += buf.capacity();
                surplus.push(buf);
            }
            idle.bytes -= freed;
            idle.low_water = idle.bytes;
            surplus
        };
        surplus.iter().map(Vec::capacity).sum()
    }

    /// Frees every idle buffer (the broker went quiet; the memory goes back to the
    /// system). Returns the bytes freed.
    pub fn release_idle(&self) -> usize {
        let buffers = {
            let mut idle = self.idle();
            idle.bytes = 0;
            idle.low_water = 0;
            std::mem::take(&mut idle.buffers)
        };
        buffers.iter().map(Vec::capacity).sum()
    }

    /// Bytes of idle buffers the pool holds.
    pub fn idle_bytes(&self) -> usize {
        self.idle().bytes
    }
}

impl Default for BodyPool {
    fn default() -> Self {
        Self::new()
    }
}

/// A body buffer on loan from a pool.
struct Pooled {
    buf: Vec<u8>,
    pool: &'static BodyPool,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.pool.give_back(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_go_back_to_the_pool_and_are_lent_again() {
        let pool: &'static BodyPool = Box::leak(Box::new(BodyPool::new()));
        let size = 3 * POOLED_MIN + 5;
        let mut buf = pool.take(size);
        assert!(buf.capacity() >= size);
        buf.extend_from_slice(&vec![7u8; size]);
        let first = buf.as_ptr();
        let body = pool.freeze(buf);
        let slice = body.slice(10..20);
        assert_eq!(&body[..3], &[7, 7, 7]);
        drop(body);
        // A slice still shares the buffer: it is not idle yet.
        assert_eq!(pool.idle_bytes(), 0);
        drop(slice);
        assert!(pool.idle_bytes() >= size);

        // Too small a request, or one the idle buffer is far too big for: a new buffer.
        let idle = pool.idle_bytes();
        let small = pool.take(POOLED_MIN - 1);
        let far_smaller = pool.take(POOLED_MIN);
        assert_ne!(small.as_ptr(), first);
        assert_ne!(far_smaller.as_ptr(), first);
        assert_eq!(pool.idle_bytes(), idle);
        // A request of about its size gets it, empty.
        let again = pool.take(size - 100);
        assert_eq!(again.as_ptr(), first);
        assert!(again.is_empty());
        assert_eq!(pool.idle_bytes(), 0);

        // Small bodies are plain Bytes and never pooled.
        drop(pool.freeze(vec![1u8; 100]));
        assert_eq!(pool.idle_bytes(), 0);

        // The pool keeps at most its limit.
        let limit = 20 * size;
        pool.set_limit(limit);
        let many: Vec<Bytes> = (0..(limit / size + 3))
            .map(|_| {
                let mut b = pool.take(size);
                b.push(1);
                pool.freeze(b)
            })
            .collect();
        drop(many);
        assert!(pool.idle_bytes() <= limit);
        assert!(pool.idle_bytes() > limit - 2 * size);
        assert!(pool.release_idle() > 0);
        assert_eq!(pool.idle_bytes(), 0);
    }

    #[test]
    fn buffers_not_needed_for_a_while_are_freed() {
        let pool: &'static BodyPool = Box::leak(Box::new(BodyPool::new()));
        let size = 2 * POOLED_MIN;
        let lend = |n: usize| -> Vec<Bytes> {
            (0..n)
                .map(|_| {
                    let mut b = pool.take(size);
                    b.push(0);
                    pool.freeze(b)
                })
                .collect()
        };
        drop(lend(6));
        assert_eq!(pool.idle_bytes(), 6 * size);
        // The first look only starts the count.
        pool.release_surplus();
        // Then two are in use at a time: four were never needed.
        for _ in 0..3 {
            drop(lend(2));
        }
        assert_eq!(pool.release_surplus(), 4 * size);
        assert_eq!(pool.idle_bytes(), 2 * size);
        // Those two are needed in the next interval: nothing is freed.
        drop(lend(2));
        assert_eq!(pool.release_surplus(), 0);
        // Nobody needs them any more.
        assert_eq!(pool.release_surplus(), 2 * size);
        assert_eq!(pool.idle_bytes(), 0);
    }
}
