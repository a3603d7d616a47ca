//! A rate limit shared by every compaction pass of a process, so compaction never starves
//! produce or replay of disk bandwidth or object-store requests. Passes check it before every
//! batch, which makes it also the place a shutdown stops them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::error::{CompactionError, Result};

/// Spreads work so it stays under a rate (units per second); unlimited when the rate is 0.
#[derive(Debug)]
pub struct Throttle {
    per_second: f64,
    next_free: Mutex<Instant>,
    stopped: AtomicBool,
}

impl Throttle {
    /// A limit of `per_second` units (bytes, requests); 0 for none.
    pub fn new(per_second: u64) -> Self {
        Throttle {
            per_second: per_second as f64,
            next_free: Mutex::new(Instant::now()),
            stopped: AtomicBool::new(false),
        }
    }

    /// How long to wait before `units` more may be used; reserves them.
    pub fn reserve(&self, units: u64) -> Duration {
        if self.per_second == 0.0 {
            return Duration::ZERO;
        }
        let cost = Duration::from_secs_f64(units as f64 / self.per_second);
        let mut next = self
            .next_free
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let start = (*next).max(now);
        *next = start + cost;
        start - now
    }

    /// Blocks the thread until `units` may be used (for passes running on blocking threads), or
    /// fails with [`CompactionError::Stopped`] once [`Throttle::stop`] was called.
    pub fn acquire_blocking(&self, units: u64) -> Result<()> {
        if self.stopped.load(Ordering::Relaxed) {
            return Err(CompactionError::Stopped);
        }
        let wait = self.reserve(units);
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
        Ok(())
    }

    /// Makes every later [`Throttle::acquire_blocking`] fail: running passes stop at their next
    /// batch, leaving nothing swapped in.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }

    /// Waits until `units` may be used.
    pub async fn acquire(&self, units: u64) {
        let wait = self.reserve(units);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_queue_behind_each_other() {
        let t = Throttle::new(1000);
        assert_eq!(t.reserve(500), Duration::ZERO);
        let second = t.reserve(500);
        assert!(
            second > Duration::from_millis(400) && second <= Duration::from_millis(500),
            "{second:?}"
        );
        assert_eq!(Throttle::new(0).reserve(u64::MAX), Duration::ZERO);
        t.stop();
        assert!(matches!(
            t.acquire_blocking(1),
            Err(CompactionError::Stopped)
        ));
    }
}
