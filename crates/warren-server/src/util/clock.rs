//! Wall-clock milliseconds, the time base of message and queue TTLs, and the test clock.
//!
//! TTLs are deadlines on the wall clock (not a monotonic clock) so that, once messages
//! are stored on disk, they keep counting across a restart as RabbitMQ's do.
//!
//! A broker started with `test_clock` reads TTL time through a [`Clock`] that a test can
//! move forward or stop (`/api/warren/clock`); everything else (heartbeats, socket and
//! handshake timeouts, statistics, ids) keeps reading the real clock.

use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Seconds since the Unix epoch (the `time` of `x-death`).
pub fn now_secs() -> u64 {
    now_ms() / 1000
}

/// The clock TTLs, `x-expires` and `x-death` times read: the wall clock, or (for test
/// suites) the wall clock shifted by what tests advanced it, possibly frozen.
#[derive(Debug, Default)]
pub struct Clock {
    test: Option<Mutex<TestTime>>,
}

#[derive(Debug, Clone, Copy)]
struct TestTime {
    /// Added to the wall clock while running.
    offset_ms: i64,
    /// The time it stands at while frozen.
    frozen_at: Option<u64>,
}

/// What `GET /api/warren/clock` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockState {
    pub now_ms: u64,
    /// How far ahead of the wall clock it is (negative after a long freeze).
    pub offset_ms: i64,
    pub frozen: bool,
}

/// A clock operation on a broker that runs on the real clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the test clock is not enabled on this broker (start it with --test-clock)")]
pub struct NotTestClock;

impl TestTime {
    fn now(&self, wall: u64) -> u64 {
        match self.frozen_at {
            Some(at) => at,
            None => shift(wall, self.offset_ms),
        }
    }
}

fn shift(wall: u64, offset: i64) -> u64 {
    if offset >= 0 {
        wall.saturating_add(offset.unsigned_abs())
    } else {
        wall.saturating_sub(offset.unsigned_abs())
    }
}

impl Clock {
    /// The wall clock, as production brokers use.
    pub fn real() -> Self {
        Clock { test: None }
    }

    /// A clock tests can move: starts at the wall clock's time, running.
    pub fn test() -> Self {
        Clock {
            test: Some(Mutex::new(TestTime {
                offset_ms: 0,
                frozen_at: None,
            })),
        }
    }

    pub fn is_test(&self) -> bool {
        self.test.is_some()
    }

    /// Milliseconds since the Unix epoch, as this clock tells them.
    pub fn now_ms(&self) -> u64 {
        match &self.test {
            None => now_ms(),
            Some(t) => t.lock().now(now_ms()),
        }
    }

    pub fn now_secs(&self) -> u64 {
        self.now_ms() / 1000
    }

    pub fn state(&self) -> Result<ClockState, NotTestClock> {
        let t = self.test.as_ref().ok_or(NotTestClock)?;
        let t = *t.lock();
        Ok(ClockState {
            now_ms: t.now(now_ms()),
            offset_ms: match t.frozen_at {
                Some(at) => i64::try_from(at).unwrap_or(i64::MAX) - now_ms() as i64,
                None => t.offset_ms,
            },
            frozen: t.frozen_at.is_some(),
        })
    }

    /// Moves the clock `ms` forward (frozen or not).
    pub fn advance(&self, ms: u64) -> Result<ClockState, NotTestClock> {
        let t = self.test.as_ref().ok_or(NotTestClock)?;
        {
            let mut t = t.lock();
            match &mut t.frozen_at {
                Some(at) => *at = at.saturating_add(ms),
                None => {
                    t.offset_ms = t
                        .offset_ms
                        .saturating_add(i64::try_from(ms).unwrap_or(i64::MAX))
                }
            }
        }
        self.state()
    }

    /// Stops the clock at its current time, or lets it run on from where it stands.
    pub fn freeze(&self, frozen: bool) -> Result<ClockState, NotTestClock> {
        let t = self.test.as_ref().ok_or(NotTestClock)?;
        {
            let wall = now_ms();
            let mut t = t.lock();
            match (frozen, t.frozen_at) {
                (true, None) => t.frozen_at = Some(t.now(wall)),
                (false, Some(at)) => {
                    // Runs on from the frozen time, not from where the wall clock went.
                    t.offset_ms = (i128::from(at) - i128::from(wall))
                        .clamp(i128::from(i64::MIN), i128::from(i64::MAX))
                        as i64;
                    t.frozen_at = None;
                }
                _ => {}
            }
        }
        self.state()
    }

    pub fn is_frozen(&self) -> bool {
        self.test
            .as_ref()
            .is_some_and(|t| t.lock().frozen_at.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_real_clock_refuses_to_move() {
        let c = Clock::real();
        assert!(!c.is_test());
        assert_eq!(c.advance(1000), Err(NotTestClock));
        assert_eq!(c.freeze(true), Err(NotTestClock));
        assert_eq!(c.state(), Err(NotTestClock));
        let before = now_ms();
        let read = c.now_ms();
        assert!(read >= before && read <= now_ms());
    }

    #[test]
    fn an_advance_moves_a_running_clock_ahead_of_the_wall() {
        let c = Clock::test();
        let before = now_ms();
        let s = c.advance(30_000).expect("test clock");
        assert!(!s.frozen);
        assert_eq!(s.offset_ms, 30_000);
        assert!(c.now_ms() >= before + 30_000);
        assert!(c.now_ms() <= now_ms() + 30_000);
    }

    #[test]
    fn a_frozen_clock_stands_still_until_advanced_and_runs_on_from_there() {
        let c = Clock::test();
        let at = c.freeze(true).expect("test clock").now_ms;
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert_eq!(c.now_ms(), at);
        assert!(c.is_frozen());
        assert_eq!(c.advance(1500).expect("test clock").now_ms, at + 1500);
        assert_eq!(c.now_ms(), at + 1500);
        let s = c.freeze(false).expect("test clock");
        assert!(!s.frozen);
        let now = c.now_ms();
        assert!(
            now >= at + 1500 && now < at + 1500 + 1000,
            "runs on from {at}+1500: {now}"
        );
    }
}
