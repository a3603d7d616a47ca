//! Request metrics: how long the broker spends on each request, by API (Kafka's
//! `RequestMetrics` total time, without the response's trip back): from the whole frame read to
//! the response encoded. A connection serves its requests in order, so one slow request delays
//! every request queued behind it; this histogram shows such stalls apart from the client's own
//! queueing.
//!
//! A Produce's time is also split as Kafka's `LocalTimeMs` and `RemoteTimeMs` split it: the
//! broker's own work (decoding and appending) and, after it, the wait for other brokers (the
//! followers' acknowledgement under acks=all; about 0 for acks=1 and acks=0, which are counted
//! too). A replicated produce tail shows up in one or the other: a slow disk or lock in the
//! first, slow followers in the second. The remote time ends when the connection next looks at
//! its acknowledgements, so a connection busy appending its next pipelined Produce or writing
//! to a slow client adds to it.

use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels naming a Kafka API: `Produce`, `Fetch`, ...
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    /// The API's name.
    pub api: String,
}

type HistogramFamily = Family<ApiLabels, Histogram, fn() -> Histogram>;

/// Request durations by API. Cloning shares the histograms.
#[derive(Debug, Clone)]
pub struct RequestMetrics {
    duration: HistogramFamily,
    local: HistogramFamily,
    remote: HistogramFamily,
}

/// Buckets from 50 µs doubling up to ~1.6 s (16 buckets), then +Inf.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

impl Default for RequestMetrics {
    fn default() -> Self {
        RequestMetrics {
            duration: Family::new_with_constructor(duration_histogram),
            local: Family::new_with_constructor(duration_histogram),
            remote: Family::new_with_constructor(duration_histogram),
        }
    }
}

impl RequestMetrics {
    /// Records one request of `api` that took `elapsed`.
    pub fn observe(&self, api: ApiKey, elapsed: Duration) {
        record(&self.duration, api, elapsed);
    }

    /// Records the two parts of a request that waited for other brokers: `local`, from the
    /// whole request read to this broker's own work done, and `remote`, the wait after it.
    pub fn observe_phases(&self, api: ApiKey, local: Duration, remote: Duration) {
        record(&self.local, api, local);
        record(&self.remote, api, remote);
    }

    /// Registers the histograms under `registry` (the broker adds the `strata_` prefix).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "request_duration_seconds",
            "Time from a whole request read to its response encoded, by API",
            self.duration.clone(),
        );
        registry.register(
            "request_local_seconds",
            "Time from a whole request read to this broker's own work done (Kafka's LocalTimeMs), \
             for requests that then wait for other brokers: Produce",
            self.local.clone(),
        );
        registry.register(
            "request_remote_seconds",
            "Time waiting for other brokers after the local work (Kafka's RemoteTimeMs): for \
             Produce, the followers' acknowledgement under acks=all",
            self.remote.clone(),
        );
    }
}

fn record(family: &HistogramFamily, api: ApiKey, elapsed: Duration) {
    family
        .get_or_create(&ApiLabels {
            api: format!("{api:?}"),
        })
        .observe(elapsed.as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;

    #[test]
    fn durations_land_in_their_api_and_bucket() {
        let metrics = RequestMetrics::default();
        metrics.observe(ApiKey::Produce, Duration::from_micros(70));
        metrics.observe(ApiKey::Produce, Duration::from_millis(30));
        metrics.observe(ApiKey::Fetch, Duration::from_millis(500));
        let mut registry = Registry::with_prefix("strata");
        metrics.register(&mut registry);
        let mut text = String::new();
        encode(&mut text, &registry).expect("encode");
        assert!(
            text.contains(r#"strata_request_duration_seconds_count{api="Produce"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"strata_request_duration_seconds_count{api="Fetch"} 1"#),
            "{text}"
        );
        // 70 µs is above the first bound (50 µs) and below the second (100 µs).
        assert!(
            text.contains(r#"strata_request_duration_seconds_bucket{le="0.0001",api="Produce"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"strata_request_duration_seconds_bucket{le="0.0256",api="Produce"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"strata_request_duration_seconds_bucket{le="0.0512",api="Produce"} 2"#),
            "{text}"
        );
    }

    #[test]
    fn produce_phases_land_in_their_own_histograms() {
        let metrics = RequestMetrics::default();
        metrics.observe_phases(
            ApiKey::Produce,
            Duration::from_micros(70),
            Duration::from_millis(30),
        );
        let mut registry = Registry::with_prefix("strata");
        metrics.register(&mut registry);
        let mut text = String::new();
        encode(&mut text, &registry).expect("encode");
        for line in [
            r#"strata_request_local_seconds_bucket{le="0.0001",api="Produce"} 1"#,
            r#"strata_request_remote_seconds_bucket{le="0.0256",api="Produce"} 0"#,
            r#"strata_request_remote_seconds_bucket{le="0.0512",api="Produce"} 1"#,
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }
}
