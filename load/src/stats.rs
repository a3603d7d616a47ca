//! Latency histograms (HDR, microseconds) and the summary printed at the end.

use hdrhistogram::Histogram;
use serde::Serialize;

/// A latency histogram in microseconds, from 1 µs to 10 minutes at 3 significant digits.
pub(crate) fn histogram() -> Histogram<u64> {
    // Constant bounds that the crate accepts: 1 <= low, high >= 2 * low, sigfig <= 5.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// Percentiles of one histogram, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Latency {
    /// Samples.
    pub(crate) count: u64,
    /// Median.
    pub(crate) p50: f64,
    /// 99th percentile.
    pub(crate) p99: f64,
    /// 99.9th percentile.
    pub(crate) p999: f64,
    /// Largest.
    pub(crate) max: f64,
}

impl Latency {
    /// The percentiles of `h`, or `None` when it is empty.
    pub(crate) fn of(h: &Histogram<u64>) -> Option<Latency> {
        if h.is_empty() {
            return None;
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Some(Latency {
            count: h.len(),
            p50: ms(h.value_at_quantile(0.50)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        })
    }
}

/// Messages and bytes over a time.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Rate {
    /// Messages.
    pub(crate) messages: u64,
    /// Bytes of keys and values.
    pub(crate) bytes: u64,
    /// Seconds from the first to the last.
    pub(crate) seconds: f64,
    /// Messages per second.
    pub(crate) msgs_per_s: f64,
    /// Megabytes (10^6 bytes) per second.
    pub(crate) mb_per_s: f64,
}

impl Rate {
    /// The rate of `messages` and `bytes` over `seconds`.
    pub(crate) fn new(messages: u64, bytes: u64, seconds: f64) -> Rate {
        let per = |x: u64| {
            if seconds > 0.0 {
                x as f64 / seconds
            } else {
                0.0
            }
        };
        Rate {
            messages,
            bytes,
            seconds,
            msgs_per_s: per(messages),
            mb_per_s: per(bytes) / 1e6,
        }
    }
}

/// The machine-readable summary, printed as the last line on stdout.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Summary {
    /// `produce`, `consume` or `e2e`.
    pub(crate) workload: String,
    /// What the producers' streams achieved (acknowledged messages after each producer's first).
    pub(crate) produced: Option<Rate>,
    /// What the consumers achieved.
    pub(crate) consumed: Option<Rate>,
    /// Send to acknowledgement, of every message but each producer's first.
    pub(crate) produce_ack_ms: Option<Latency>,
    /// Send to acknowledgement of each producer's first message, sent alone: the client's start.
    pub(crate) produce_connect_ms: Option<Latency>,
    /// Send to consumption (timestamp carried in the message).
    pub(crate) end_to_end_ms: Option<Latency>,
    /// Messages that failed to be produced, or consumer errors.
    pub(crate) errors: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_rates() {
        let mut h = histogram();
        for us in 1..=1000u64 {
            h.record(us * 10).expect("record");
        }
        let l = Latency::of(&h).expect("samples");
        assert_eq!(l.count, 1000);
        assert!((l.p50 - 5.0).abs() < 0.01, "{l:?}");
        assert!((l.p99 - 9.9).abs() < 0.01, "{l:?}");
        assert!((l.max - 10.0).abs() < 0.01, "{l:?}");
        assert!(Latency::of(&histogram()).is_none());
        let r = Rate::new(2_000, 4_000_000, 2.0);
        assert_eq!((r.msgs_per_s, r.mb_per_s), (1_000.0, 2.0));
    }
}
