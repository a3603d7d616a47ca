//! Consumer threads: each assigns its share of the partitions at given offsets (no group), reads
//! until told to stop, and measures end-to-end latency from the send time in each message.
//!
//! librdkafka ≥ 2.4 stops fetching for `fetch.queue.backoff.ms` (1 s) once `queued.min.messages`
//! are buffered, which caps consumption of small messages far below a broker's rate; the consumer
//! here lowers the backoff and raises the thresholds so the figure is the broker's.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hdrhistogram::Histogram;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::produce::now_micros;
use crate::stats::histogram;
use crate::{Progress, Workload};

/// What one consumer thread measured.
#[derive(Debug)]
pub(crate) struct Consumed {
    /// Send-to-consume latencies, µs (end-to-end workloads only).
    pub(crate) latency: Histogram<u64>,
    /// When its first message arrived.
    pub(crate) first: Option<Instant>,
    /// When its last message arrived.
    pub(crate) last: Option<Instant>,
}

/// A consumer configured for throughput measurement, without a group.
pub(crate) fn consumer(w: &Workload) -> anyhow::Result<BaseConsumer> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &w.bootstrap)
        .set("group.id", "strata-load")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("fetch.queue.backoff.ms", "1")
        .set("queued.min.messages", "10000000")
        .set("queued.max.messages.kbytes", "2097151")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "8388608")
        .set("fetch.wait.max.ms", "100");
    for (k, v) in &w.consumer_config {
        config.set(k, v);
    }
    config.create().context("cannot create a consumer")
}

/// Runs consumer thread `index` over `starts` (partition, offset) until `progress.stop`.
pub(crate) fn consume(
    w: &Workload,
    starts: &[(i32, i64)],
    index: usize,
    end_to_end: bool,
    progress: Arc<Progress>,
) -> anyhow::Result<Consumed> {
    let consumer = consumer(w)?;
    let mut assignment = TopicPartitionList::new();
    for (p, offset) in starts
        .iter()
        .filter(|(p, _)| *p as usize % w.consumers == index)
    {
        assignment
            .add_partition_offset(&w.topic, *p, Offset::Offset(*offset))
            .context("assignment")?;
    }
    consumer.assign(&assignment).context("assign")?;
    let mut latency = histogram();
    let (mut first, mut last) = (None, None);
    while !progress.stop.load(Ordering::Relaxed) {
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        match message {
            Ok(m) => {
                let now = Instant::now();
                first.get_or_insert(now);
                last = Some(now);
                let payload = m.payload().unwrap_or_default();
                let bytes = payload.len() + m.key().map_or(0, <[u8]>::len);
                if end_to_end && payload.len() >= 8 {
                    let mut ts = [0u8; 8];
                    ts.copy_from_slice(&payload[..8]);
                    let sent = u64::from_be_bytes(ts);
                    let _ = latency.record(now_micros().saturating_sub(sent).max(1));
                }
                progress.consumed.fetch_add(1, Ordering::Relaxed);
                progress
                    .consumed_bytes
                    .fetch_add(bytes as u64, Ordering::Relaxed);
            }
            Err(e) => {
                progress.errors.fetch_add(1, Ordering::Relaxed);
                eprintln!("consume error: {e}");
            }
        }
    }
    Ok(Consumed {
        latency,
        first,
        last,
    })
}
