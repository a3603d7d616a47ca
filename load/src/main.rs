//! `strata-load`: an end-to-end load generator for any Kafka-compatible bootstrap address, on
//! librdkafka (the `rdkafka` crate). Workloads: `produce` (send-to-acknowledgement latency),
//! `consume` (read throughput from a position), `e2e` (producers and tail consumers together:
//! send-to-consume latency). Throughput in messages and MB (10^6 bytes of keys and values) per
//! second, latency percentiles from HDR histograms; a progress bar while it runs, and a JSON
//! summary as the last line on stdout (and in `--json`).

mod consume;
mod produce;
mod stats;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::Consumer;
use rdkafka::types::RDKafkaErrorCode;

use crate::stats::{Latency, Rate, Summary};

/// What to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Producers only.
    Produce,
    /// Consumers only, from `--from`.
    Consume,
    /// Producers and tail consumers together.
    E2e,
}

/// Where consumers start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum From {
    /// The log start of each partition.
    Beginning,
    /// The high watermark when the run starts.
    End,
}

/// Load generator for Kafka-compatible brokers.
#[derive(Debug, Parser)]
#[command(name = "strata-load", version)]
struct Cli {
    /// The workload.
    #[arg(value_enum)]
    mode: Mode,
    /// Bootstrap address.
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// Topic; created with `--partitions` and `--replication-factor` if missing.
    #[arg(long, default_value = "strata-load")]
    topic: String,
    /// Bytes of each message value (the first 8 carry its send time).
    #[arg(long, default_value_t = 1024)]
    message_bytes: usize,
    /// Messages to produce (or to consume, for `consume`); default 100000 unless `--duration-s`.
    #[arg(long)]
    messages: Option<u64>,
    /// Run for this long instead of a message count.
    #[arg(long)]
    duration_s: Option<f64>,
    /// Target produce rate in messages per second over all producers; 0 for as fast as possible.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Partitions (of a topic this tool creates, and the ones it spreads messages over).
    #[arg(long, default_value_t = 1)]
    partitions: i32,
    /// Replication factor of a topic this tool creates.
    #[arg(long, default_value_t = 1)]
    replication_factor: i32,
    /// Producer threads, each with its own client.
    #[arg(long, default_value_t = 1)]
    producers: usize,
    /// Consumer threads, each with its own client and a share of the partitions.
    #[arg(long, default_value_t = 1)]
    consumers: usize,
    /// `acks`: 0, 1 or all.
    #[arg(long, default_value = "all")]
    acks: String,
    /// `compression.type`: none, gzip, snappy, lz4, zstd.
    #[arg(long, default_value = "none")]
    compression: String,
    /// Keys: none (round-robin over partitions), sequential, or random:N (N distinct keys).
    #[arg(long, default_value = "none")]
    keys: String,
    /// Where consumers start (`consume`).
    #[arg(long, value_enum, default_value_t = From::Beginning)]
    from: From,
    /// Extra producer settings, `name=value`.
    #[arg(long = "producer-config")]
    producer_config: Vec<String>,
    /// Extra consumer settings, `name=value`.
    #[arg(long = "consumer-config")]
    consumer_config: Vec<String>,
    /// Also write the JSON summary to this file.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// No progress bar.
    #[arg(long)]
    no_progress: bool,
}

/// Key choice of produced messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keys {
    /// No key; messages go round-robin over the partitions.
    None,
    /// A new key for every message.
    Sequential,
    /// Uniformly among this many keys.
    Random(u64),
}

/// The resolved workload every thread reads.
#[derive(Debug, Clone)]
pub(crate) struct Workload {
    bootstrap: String,
    topic: String,
    message_bytes: usize,
    messages: Option<u64>,
    duration: Option<Duration>,
    started: Instant,
    rate: f64,
    partitions: i32,
    producers: usize,
    consumers: usize,
    acks: String,
    compression: String,
    keys: Keys,
    producer_config: Vec<(String, String)>,
    consumer_config: Vec<(String, String)>,
}

/// Counters shared by the threads and the progress bar.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    sent: AtomicU64,
    acked: AtomicU64,
    acked_bytes: AtomicU64,
    consumed: AtomicU64,
    consumed_bytes: AtomicU64,
    errors: AtomicU64,
    stop: AtomicBool,
}

fn pairs(items: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    items
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .with_context(|| format!("'{kv}' is not name=value"))
        })
        .collect()
}

fn parse_keys(text: &str) -> anyhow::Result<Keys> {
    Ok(match text {
        "none" => Keys::None,
        "sequential" => Keys::Sequential,
        other => match other.strip_prefix("random:").map(str::parse) {
            Some(Ok(n)) => Keys::Random(n),
            _ => bail!("--keys must be none, sequential or random:N, not '{other}'"),
        },
    })
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.producers == 0 || cli.consumers == 0 || cli.partitions < 1 {
        bail!("--producers, --consumers and --partitions must be at least 1");
    }
    let messages = match (cli.messages, cli.duration_s) {
        (None, None) => Some(100_000),
        (m, _) => m,
    };
    let w = Arc::new(Workload {
        bootstrap: cli.bootstrap.clone(),
        topic: cli.topic.clone(),
        message_bytes: cli.message_bytes.max(8),
        messages,
        duration: cli.duration_s.map(Duration::from_secs_f64),
        started: Instant::now(),
        rate: cli.rate,
        partitions: cli.partitions,
        producers: cli.producers,
        consumers: cli.consumers,
        acks: cli.acks.clone(),
        compression: cli.compression.clone(),
        keys: parse_keys(&cli.keys)?,
        producer_config: pairs(&cli.producer_config)?,
        consumer_config: pairs(&cli.consumer_config)?,
    });
    ensure_topic(&cli)?;
    let summary = run(&cli, w)?;
    let line = serde_json::to_string(&summary)?;
    if let Some(path) = &cli.json {
        std::fs::write(path, format!("{line}\n"))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    println!("{line}");
    Ok(())
}

/// Creates the topic unless it exists.
fn ensure_topic(cli: &Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &cli.bootstrap)
        .create()
        .context("cannot create an admin client")?;
    let topic = NewTopic::new(
        &cli.topic,
        cli.partitions,
        TopicReplication::Fixed(cli.replication_factor),
    );
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = runtime
        .block_on(admin.create_topics([&topic], &options))
        .context("CreateTopics")?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => bail!("cannot create topic {name}: {code}"),
        }
    }
    Ok(())
}

/// Each partition's start offset for the consumers.
fn start_offsets(w: &Workload, from: From) -> anyhow::Result<Vec<(i32, i64)>> {
    let consumer = consume::consumer(w)?;
    (0..w.partitions)
        .map(|p| {
            let (low, high) = consumer
                .fetch_watermarks(&w.topic, p, Duration::from_secs(30))
                .with_context(|| format!("watermarks of partition {p}"))?;
            Ok((p, if from == From::Beginning { low } else { high }))
        })
        .collect()
}

fn run(cli: &Cli, w: Arc<Workload>) -> anyhow::Result<Summary> {
    let progress = Arc::new(Progress::default());
    let bar = progress_bar(cli, &w);
    let updater = {
        let (bar, progress) = (bar.clone(), Arc::clone(&progress));
        std::thread::spawn(move || {
            while !progress.stop.load(Ordering::Relaxed) {
                let (acked, consumed) = (
                    progress.acked.load(Ordering::Relaxed),
                    progress.consumed.load(Ordering::Relaxed),
                );
                bar.set_position(acked.max(consumed));
                bar.set_message(format!(
                    "sent {} acked {acked} consumed {consumed} errors {}",
                    progress.sent.load(Ordering::Relaxed),
                    progress.errors.load(Ordering::Relaxed)
                ));
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let consuming = cli.mode != Mode::Produce;
    let producing = cli.mode != Mode::Consume;
    let starts = if consuming {
        start_offsets(
            &w,
            if cli.mode == Mode::E2e {
                From::End
            } else {
                cli.from
            },
        )?
    } else {
        Vec::new()
    };
    let consumers: Vec<_> = (0..if consuming { w.consumers } else { 0 })
        .map(|i| {
            let (w, p, starts) = (Arc::clone(&w), Arc::clone(&progress), starts.clone());
            let e2e = cli.mode == Mode::E2e;
            std::thread::spawn(move || consume::consume(&w, &starts, i, e2e, p))
        })
        .collect();
    let producers: Vec<_> = (0..if producing { w.producers } else { 0 })
        .map(|i| {
            let (w, p) = (Arc::clone(&w), Arc::clone(&progress));
            std::thread::spawn(move || produce::produce(&w, i, p))
        })
        .collect();
    let mut produce_latency = stats::histogram();
    let mut connect_latency = stats::histogram();
    let mut connect_bytes = 0;
    let (mut first_send, mut last_ack) = (None::<Instant>, None::<Instant>);
    for handle in producers {
        let produced = handle
            .join()
            .map_err(|_| anyhow::anyhow!("a producer thread panicked"))??;
        produce_latency.add(&produced.latency)?;
        connect_latency.add(&produced.connect)?;
        connect_bytes += produced.connect_bytes;
        first_send = earliest(first_send, produced.first_send);
        last_ack = latest(last_ack, produced.last_ack);
    }
    if consuming {
        wait_for_consumers(&w, cli.mode, &progress, &bar);
    }
    progress.stop.store(true, Ordering::Relaxed);
    let mut e2e_latency = stats::histogram();
    let (mut first, mut last) = (None::<Instant>, None::<Instant>);
    for handle in consumers {
        let consumed = handle
            .join()
            .map_err(|_| anyhow::anyhow!("a consumer thread panicked"))??;
        e2e_latency.add(&consumed.latency)?;
        first = earliest(first, consumed.first);
        last = latest(last, consumed.last);
    }
    let _ = updater.join();
    bar.finish_and_clear();
    let seconds = |a: Option<Instant>, b: Option<Instant>| match (a, b) {
        (Some(a), Some(b)) => b.duration_since(a).as_secs_f64(),
        _ => 0.0,
    };
    // A consume-only run is timed from its start: its first message comes after connecting.
    let consume_from = if cli.mode == Mode::Consume {
        Some(w.started)
    } else {
        first
    };
    Ok(Summary {
        workload: format!("{:?}", cli.mode).to_lowercase(),
        // The stream's rate: each producer's first message, acknowledged before its stream
        // started, is counted in `produce_connect_ms` only.
        produced: producing.then(|| {
            Rate::new(
                progress.acked.load(Ordering::Relaxed) - connect_latency.len(),
                progress.acked_bytes.load(Ordering::Relaxed) - connect_bytes,
                seconds(first_send, last_ack),
            )
        }),
        consumed: consuming.then(|| {
            Rate::new(
                progress.consumed.load(Ordering::Relaxed),
                progress.consumed_bytes.load(Ordering::Relaxed),
                seconds(consume_from, last),
            )
        }),
        produce_ack_ms: Latency::of(&produce_latency),
        produce_connect_ms: Latency::of(&connect_latency),
        end_to_end_ms: Latency::of(&e2e_latency),
        errors: progress.errors.load(Ordering::Relaxed),
    })
}

/// Until the consumers have read what they should: everything acknowledged (e2e), the message
/// count or the duration (consume); gives up 30 s after consumption stalls.
fn wait_for_consumers(w: &Workload, mode: Mode, progress: &Progress, bar: &ProgressBar) {
    let target = match mode {
        Mode::E2e => Some(progress.acked.load(Ordering::Relaxed)),
        _ => w.messages,
    };
    let deadline = w.duration.map(|d| w.started + d);
    let (mut seen, mut since) = (0, Instant::now());
    loop {
        let consumed = progress.consumed.load(Ordering::Relaxed);
        if target.is_some_and(|t| consumed >= t) || deadline.is_some_and(|d| Instant::now() >= d) {
            return;
        }
        if consumed != seen {
            (seen, since) = (consumed, Instant::now());
        } else if since.elapsed() > Duration::from_secs(30) {
            bar.println(format!(
                "consumption stalled at {consumed} messages; stopping"
            ));
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn latest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// A spinner on stderr refreshed from the shared counters (hidden when stderr is no terminal or
/// with `--no-progress`).
fn progress_bar(cli: &Cli, w: &Workload) -> ProgressBar {
    let target = if cli.no_progress {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    };
    let bar = ProgressBar::with_draw_target(w.messages, target);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_settings_parse() {
        assert_eq!(parse_keys("none").expect("none"), Keys::None);
        assert_eq!(parse_keys("sequential").expect("seq"), Keys::Sequential);
        assert_eq!(parse_keys("random:100").expect("random"), Keys::Random(100));
        assert!(parse_keys("random:x").is_err());
        assert!(parse_keys("zipf").is_err());
        assert_eq!(
            pairs(&["linger.ms=0".into()]).expect("pairs"),
            vec![("linger.ms".to_string(), "0".to_string())]
        );
        assert!(pairs(&["nonsense".into()]).is_err());
    }

    #[test]
    fn the_cli_accepts_the_documented_flags() {
        let cli = Cli::try_parse_from([
            "strata-load",
            "e2e",
            "--rate",
            "5000",
            "--acks",
            "1",
            "--compression",
            "lz4",
            "--partitions",
            "3",
            "--keys",
            "random:1000",
            "--json",
            "/tmp/x.json",
        ])
        .expect("parse");
        assert_eq!((cli.mode, cli.partitions, cli.rate), (Mode::E2e, 3, 5000.0));
        assert!(Cli::try_parse_from(["strata-load", "fly"]).is_err());
    }
}
