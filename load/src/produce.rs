//! Producer threads: each its own librdkafka producer, paced to its share of the target rate;
//! every message carries its send time (µs since the Unix epoch) in its first 8 bytes, so
//! consumers can measure end-to-end latency, and its delivery report records send-to-ack latency.
//!
//! A producer's first message goes alone: the stream starts once it is acknowledged. Its latency
//! is the client's start (connecting to the bootstrap broker, metadata, connecting to the
//! leader: 3–50 ms with librdkafka on the test machine) and is reported apart, as `connect`.
//! Otherwise the messages queued meanwhile, up to 50 ms of the target rate, would all carry that
//! start in their acknowledgement times and set the run's tail percentiles (a 5,000 msgs/s run
//! showed a maximum of 50 ms for them, 5 ms without). The rate is timed from the start of the
//! stream too.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use hdrhistogram::Histogram;
use rand::Rng;
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};

use crate::stats::histogram;
use crate::{Keys, Progress, Workload};

/// Bytes of random data message values are cut from.
const POOL_BYTES: usize = 4 << 20;

/// Microseconds since the Unix epoch: the timestamp a message carries.
pub(crate) fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// What one producer thread measured.
#[derive(Debug)]
pub(crate) struct Produced {
    /// Send-to-acknowledgement latencies, µs, of every message after the first.
    pub(crate) latency: Histogram<u64>,
    /// The first message's send-to-acknowledgement latency, µs: the client's start.
    pub(crate) connect: Histogram<u64>,
    /// Bytes of the first message, if acknowledged: not part of the stream's rate.
    pub(crate) connect_bytes: u64,
    /// When its stream started: after the first message was acknowledged.
    pub(crate) first_send: Option<Instant>,
    /// When its last acknowledgement came.
    pub(crate) last_ack: Option<Instant>,
}

struct Deliveries {
    progress: Arc<Progress>,
    latency: Mutex<Histogram<u64>>,
    last_ack: Mutex<Option<Instant>>,
    bytes_per_message: u64,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = Box<Instant>;

    fn delivery(&self, result: &DeliveryResult<'_>, sent: Self::DeliveryOpaque) {
        match result {
            Ok(_) => {
                let now = Instant::now();
                let us = now.duration_since(*sent).as_micros() as u64;
                let mut h = self.latency.lock().unwrap_or_else(PoisonError::into_inner);
                let _ = h.record(us.max(1));
                *self.last_ack.lock().unwrap_or_else(PoisonError::into_inner) = Some(now);
                self.progress.acked.fetch_add(1, Ordering::Relaxed);
                self.progress
                    .acked_bytes
                    .fetch_add(self.bytes_per_message, Ordering::Relaxed);
            }
            Err(_) => {
                self.progress.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Runs producer thread `index` of `w.producers` until its share is sent and acknowledged.
pub(crate) fn produce(
    w: &Workload,
    index: usize,
    progress: Arc<Progress>,
) -> anyhow::Result<Produced> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &w.bootstrap)
        .set("acks", &w.acks)
        .set("compression.type", &w.compression)
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .set("message.timeout.ms", "120000");
    for (k, v) in &w.producer_config {
        config.set(k, v);
    }
    let key_bytes = if matches!(w.keys, Keys::None) { 0 } else { 16 };
    let context = Deliveries {
        progress: Arc::clone(&progress),
        latency: Mutex::new(histogram()),
        last_ack: Mutex::new(None),
        bytes_per_message: (w.message_bytes + key_bytes) as u64,
    };
    // A threaded producer serves delivery reports as they arrive; polling from the send loop
    // (one event per poll) let reports queue up and inflated the measured ack latency.
    let producer: ThreadedProducer<Deliveries> = config
        .create_with_context(context)
        .context("cannot create a producer")?;
    let share = w.messages.map(|m| {
        let base = m / w.producers as u64;
        base + u64::from((index as u64) < m % w.producers as u64)
    });
    let interval = (w.rate > 0.0).then(|| Duration::from_secs_f64(w.producers as f64 / w.rate));
    let deadline = w.duration.map(|d| w.started + d);
    let mut rng = rand::rng();
    // Values are windows of a random pool: every message differs and none compresses, the
    // honest worst case for a codec (identical values would make lz4 look unrealistically good).
    let mut pool = vec![0u8; POOL_BYTES + w.message_bytes];
    rng.fill(&mut pool[..]);
    let mut value = vec![0u8; w.message_bytes.max(8)];
    let mut first_send = None;
    let mut connect = histogram();
    let mut next_send = Instant::now();
    let mut sent = 0u64;
    let partitions = w.partitions.max(1);
    loop {
        if share.is_some_and(|s| sent >= s)
            || deadline.is_some_and(|d| Instant::now() >= d)
            || progress.stop.load(Ordering::Relaxed)
        {
            break;
        }
        if let Some(interval) = interval {
            let now = Instant::now();
            if now < next_send {
                std::thread::sleep(next_send - now);
            }
            next_send += interval;
        }
        let at = (sent as usize).wrapping_mul(4099) % POOL_BYTES;
        let body = value.len() - 8;
        value[8..].copy_from_slice(&pool[at..at + body]);
        value[..8].copy_from_slice(&now_micros().to_be_bytes());
        let key = match w.keys {
            Keys::None => None,
            Keys::Sequential => Some(format!("{:016}", sent * w.producers as u64 + index as u64)),
            Keys::Random(n) => Some(format!("{:016}", rng.random_range(0..n.max(1)))),
        };
        let partition = ((sent as usize * w.producers + index) % partitions as usize) as i32;
        let mut record = BaseRecord::with_opaque_to(&w.topic, Box::new(Instant::now()))
            .payload(&value[..w.message_bytes.max(8)]);
        if let Some(k) = &key {
            record = record.key(k.as_str());
        } else {
            record = record.partition(partition);
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    std::thread::sleep(Duration::from_millis(1));
                    record = r;
                }
                Err((e, _)) => {
                    progress.errors.fetch_add(1, Ordering::Relaxed);
                    eprintln!("send failed: {e}");
                    break;
                }
            }
        }
        sent += 1;
        progress.sent.fetch_add(1, Ordering::Relaxed);
        if sent == 1 {
            connect = first_acknowledged(&producer)?;
            // The rate is timed from here, the start of the stream.
            next_send = Instant::now();
            first_send = Some(next_send);
        }
    }
    producer
        .flush(Duration::from_secs(120))
        .context("flushing the producer")?;
    let context = producer.context();
    let latency = context
        .latency
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let last_ack = *context
        .last_ack
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let connect_bytes = connect.len() * context.bytes_per_message;
    Ok(Produced {
        latency,
        connect,
        connect_bytes,
        first_send,
        last_ack,
    })
}

/// Waits until the producer's only message so far is acknowledged, and takes its latency out of
/// the producer's histogram.
fn first_acknowledged(producer: &ThreadedProducer<Deliveries>) -> anyhow::Result<Histogram<u64>> {
    producer
        .flush(Duration::from_secs(120))
        .context("waiting for the first acknowledgement")?;
    let mut latency = producer
        .context()
        .latency
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    Ok(std::mem::replace(&mut *latency, histogram()))
}
