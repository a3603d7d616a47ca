//! How fast segments are uploaded: an optional fixed cap, and pacing to the rate data arrives.
//!
//! An upload copies a whole sealed segment (a GiB by default) as fast as the store takes it.
//! On a busy broker that burst competes with the produce and replication path for CPU and
//! memory, and every acknowledgement stalls while it lasts. Paced, uploads run at most at a
//! multiple of the broker's produce rate (the bytes its producers appended, measured each
//! second or more and smoothed), never below [`PACED_FLOOR_BYTES_PER_SECOND`]: fast enough to
//! keep up, since data is sealed at the produce rate, and spread over about the time a segment
//! took to fill. The floor also paces a backlog left when the load drops, instead of letting it
//! burst into the quieter traffic that follows.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

/// The slowest a paced upload is held to, bytes per second (64 MiB/s: a GiB in 16 s).
pub const PACED_FLOOR_BYTES_PER_SECOND: f64 = 64.0 * 1024.0 * 1024.0;

/// How long the ingest rate is measured over, at least.
const SAMPLE_PERIOD: Duration = Duration::from_secs(1);

/// Spreads uploads so they stay under a fixed byte rate (if any) and, when paced, under
/// `multiple` times the measured ingest rate.
#[derive(Debug)]
pub struct RateLimiter {
    cap_bytes_per_second: u64,
    /// The multiple of the ingest rate uploads are paced to; `None` when not paced.
    multiple: Option<f64>,
    /// Bytes appended by this broker's producers ([`RateLimiter::record_ingest`]).
    ingested: AtomicU64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    next_free: Instant,
    /// When the ingest counter was last read, and what it said.
    sampled_at: Instant,
    sampled_total: u64,
    /// Smoothed ingest rate, bytes per second.
    ingest: f64,
}

impl RateLimiter {
    /// A limiter of `cap_bytes_per_second` (0 for none), not paced to ingest.
    pub fn new(cap_bytes_per_second: u64) -> Self {
        Self::build(cap_bytes_per_second, None)
    }

    /// A limiter of `cap_bytes_per_second` (0 for none) that also keeps uploads under
    /// `multiple` times the ingest rate [`RateLimiter::record_ingest`] counts (a multiple of 0
    /// turns pacing off).
    pub fn paced(cap_bytes_per_second: u64, multiple: f64) -> Self {
        Self::build(cap_bytes_per_second, (multiple > 0.0).then_some(multiple))
    }

    fn build(cap: u64, multiple: Option<f64>) -> Self {
        let now = Instant::now();
        RateLimiter {
            cap_bytes_per_second: cap,
            multiple,
            ingested: AtomicU64::new(0),
            state: Mutex::new(State {
                next_free: now,
                sampled_at: now,
                sampled_total: 0,
                ingest: 0.0,
            }),
        }
    }

    /// Counts `bytes` appended by producers: what uploads are paced to.
    pub fn record_ingest(&self, bytes: u64) {
        self.ingested.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Waits until `bytes` more may be sent.
    pub async fn acquire(&self, bytes: usize) {
        let wait_until = {
            let mut state = self.state.lock().await;
            let now = Instant::now();
            let Some(rate) = self.rate(&mut state, now) else {
                return;
            };
            let start = state.next_free.max(now);
            state.next_free = start + Duration::from_secs_f64(bytes as f64 / rate);
            start
        };
        tokio::time::sleep_until(wait_until).await;
    }

    /// The rate allowed now, bytes per second; `None` for unlimited.
    fn rate(&self, state: &mut State, now: Instant) -> Option<f64> {
        let cap = (self.cap_bytes_per_second > 0).then_some(self.cap_bytes_per_second as f64);
        let paced = self.multiple.map(|multiple| {
            let elapsed = now - state.sampled_at;
            if elapsed >= SAMPLE_PERIOD {
                let total = self.ingested.load(Ordering::Relaxed);
                let measured = (total - state.sampled_total) as f64 / elapsed.as_secs_f64();
                // Half the last measurement, half the history; the first one, or one after a
                // long gap, is all new.
                state.ingest = if state.ingest == 0.0 || elapsed > 10 * SAMPLE_PERIOD {
                    measured
                } else {
                    (state.ingest + measured) / 2.0
                };
                state.sampled_at = now;
                state.sampled_total = total;
            }
            (multiple * state.ingest).max(PACED_FLOOR_BYTES_PER_SECOND)
        });
        match (cap, paced) {
            (Some(cap), Some(paced)) => Some(cap.min(paced)),
            (cap, paced) => cap.or(paced),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    /// How long `limiter` makes `parts` acquisitions of `bytes` take.
    async fn time_to_send(limiter: &RateLimiter, parts: usize, bytes: usize) -> Duration {
        let started = Instant::now();
        for _ in 0..parts {
            limiter.acquire(bytes).await;
        }
        started.elapsed()
    }

    #[tokio::test(start_paused = true)]
    async fn a_fixed_cap_spreads_uploads() {
        let limiter = RateLimiter::new(10 * MIB);
        let took = time_to_send(&limiter, 5, 10 * MIB as usize).await;
        assert_eq!(
            took.as_secs(),
            4,
            "the first part goes at once, each next one a second on"
        );
        let unlimited = RateLimiter::new(0);
        assert_eq!(
            time_to_send(&unlimited, 5, 10 * MIB as usize).await,
            Duration::ZERO
        );
    }

    #[tokio::test(start_paused = true)]
    async fn uploads_follow_the_ingest_rate() {
        let limiter = std::sync::Arc::new(RateLimiter::paced(0, 1.25));
        // Producers append 80 MiB every second, before and while the upload runs.
        let producing = {
            let limiter = std::sync::Arc::clone(&limiter);
            tokio::spawn(async move {
                loop {
                    limiter.record_ingest(80 * MIB);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            })
        };
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        // Measured at 80–107 MiB/s (whole seconds of produce over one and a half), paced at
        // 1.25 times that: the three parts after the first take 2.25–3 s.
        let took = time_to_send(&limiter, 4, 100 * MIB as usize).await;
        assert!(
            (Duration::from_millis(2_200)..=Duration::from_millis(3_100)).contains(&took),
            "took {took:?}"
        );
        producing.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn without_produce_uploads_run_at_the_floor_and_a_cap_still_holds() {
        let limiter = RateLimiter::paced(0, 1.25);
        limiter.record_ingest(MIB);
        tokio::time::advance(Duration::from_secs(2)).await;
        // 0.5 MiB/s of produce: the floor of 64 MiB/s, a second per 64 MiB after the first.
        let took = time_to_send(&limiter, 5, 64 * MIB as usize).await;
        assert_eq!(took.as_secs(), 4);
        let capped = RateLimiter::paced(20 * MIB, 1.25);
        capped.record_ingest(100 * MIB);
        tokio::time::advance(Duration::from_secs(1)).await;
        // Produce at 100 MiB/s would allow 125; the cap of 20 wins.
        let took = time_to_send(&capped, 3, 20 * MIB as usize).await;
        assert_eq!(took.as_secs(), 2);
        let unpaced = RateLimiter::paced(0, 0.0);
        unpaced.record_ingest(100 * MIB);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(
            time_to_send(&unpaced, 10, 100 * MIB as usize).await,
            Duration::ZERO
        );
    }
}
