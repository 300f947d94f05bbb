//! The simulator's time. The farm, the fault schedules and the answers all
//! read "now" from a [`Clock`], so a test can move a day in a millisecond
//! and share that clock with whatever it runs against the simulator.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, UTC: the precision of the API's
/// timestamps.
pub type UnixMillis = i64;

pub trait Clock: Send + Sync + 'static {
    fn now_millis(&self) -> UnixMillis;
}

pub type SharedClock = Arc<dyn Clock>;

/// The machine's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_millis(&self) -> UnixMillis {
        // A clock set before 1970 reads as the epoch rather than panicking.
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
    }
}

/// A clock that stands still until the test sets or advances it.
#[derive(Debug, Default)]
pub struct ManualClock {
    now: AtomicI64,
}

impl ManualClock {
    pub fn new(start: UnixMillis) -> Arc<Self> {
        Arc::new(Self {
            now: AtomicI64::new(start),
        })
    }

    pub fn set(&self, t: UnixMillis) {
        self.now.store(t, Ordering::SeqCst);
    }

    pub fn advance(&self, by: Duration) {
        let by = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.now.fetch_add(by, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_millis(&self) -> UnixMillis {
        self.now.load(Ordering::SeqCst)
    }
}

/// Another clock, off by a fixed amount: the API's clock when it is ahead
/// of (positive) or behind (negative) the clock it is given, as real
/// servers' clocks are.
pub struct OffsetClock {
    pub inner: SharedClock,
    pub offset_ms: i64,
}

impl Clock for OffsetClock {
    fn now_millis(&self) -> UnixMillis {
        self.inner.now_millis().saturating_add(self.offset_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let c = ManualClock::new(1_000);
        assert_eq!(c.now_millis(), 1_000);
        c.advance(Duration::from_millis(1_500));
        assert_eq!(c.now_millis(), 2_500);
        c.set(10);
        assert_eq!(c.now_millis(), 10);
    }

    #[test]
    fn the_system_clock_reads_a_time_after_2025() {
        assert!(SystemClock.now_millis() > 1_735_689_600_000);
    }
}
