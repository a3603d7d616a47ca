//! Compaction, the bucket sweep and retention health on this broker. Every replica compacts its
//! own local log; the leader of a tiered partition also compacts its remote segments and sweeps
//! its objects, so one broker at a time writes a partition's manifest.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use strata_compaction::metrics::PartitionTierLabels;
use strata_compaction::{
    CompactionConfig, CompactionMetrics, LocalBounds, PassReport, RemoteLimits, Throttle,
    compact_local, compact_remote,
};
use strata_tiering::LogConfig;
use strata_tiering::remote::sweep::sweep_partition;
use strata_tiering::retention::overdue_ms;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::{Broker, Partition, Topic, now_ms};
use crate::settings::CompactionSettings;

/// What compaction shares across partitions: its rate limits and metrics.
#[derive(Debug)]
pub struct Compaction {
    limits: RemoteLimits,
    metrics: CompactionMetrics,
}

impl Compaction {
    /// The shared state for `settings`.
    pub fn new(settings: &CompactionSettings) -> Self {
        Compaction {
            limits: RemoteLimits {
                bytes: Arc::new(Throttle::new(settings.io_bytes_per_second)),
                requests: Arc::new(Throttle::new(settings.object_store_requests_per_second)),
            },
            metrics: CompactionMetrics::default(),
        }
    }

    /// The metrics.
    pub fn metrics(&self) -> &CompactionMetrics {
        &self.metrics
    }
}

fn label(topic: &Topic, partition: &Partition) -> String {
    format!("{}/{}", topic.name(), partition.index())
}

/// Runs compaction every `log-cleaner-backoff-ms` and the sweep every `remote-sweep-interval-ms`
/// until `cancel` fires; a pass in progress then stops at its next batch, swapping nothing in.
pub async fn run_compaction(broker: Arc<Broker>, cancel: CancellationToken) {
    let settings = &broker.settings().compaction;
    let ticker = |ms: u64| {
        let mut t = tokio::time::interval(Duration::from_millis(ms));
        t.set_missed_tick_behavior(MissedTickBehavior::Delay);
        t
    };
    let mut compact = ticker(settings.backoff_ms);
    let mut sweep = ticker(settings.sweep_interval_ms);
    loop {
        let work = async {
            tokio::select! {
                _ = compact.tick() => compact_all(&broker).await,
                _ = sweep.tick() => sweep_all(&broker).await,
            }
        };
        tokio::select! {
            () = cancel.cancelled() => {
                broker.compaction().limits.bytes.stop();
                return;
            }
            () = work => {}
        }
    }
}

/// One pass over every partition of every compacted topic this broker holds.
async fn compact_all(broker: &Broker) {
    if !broker.settings().compaction.enable {
        return;
    }
    for topic in broker.topics() {
        let Some(config) = topic.config().compaction_config() else {
            continue;
        };
        for p in topic.partitions() {
            compact_partition(broker, &topic, &p, &config).await;
        }
    }
}

async fn compact_partition(
    broker: &Broker,
    topic: &Topic,
    p: &Arc<Partition>,
    config: &CompactionConfig,
) {
    let compaction = broker.compaction();
    let settings = &broker.settings().compaction;
    let (partition, cfg) = (Arc::clone(p), config.clone());
    let (budget, bytes) = (
        settings.dedupe_buffer_bytes,
        Arc::clone(&compaction.limits.bytes),
    );
    let tiered = topic.config().remote_storage();
    let bounds = LocalBounds {
        committed_end: p.high_watermark(),
        remote_cleaned_offset: if tiered {
            Some(p.remote().manifest().await.cleaner.cleaned_offset)
        } else {
            None
        },
    };
    let local = tokio::task::spawn_blocking(move || {
        compact_local(partition.log(), &cfg, bounds, budget, &bytes, now_ms())
    })
    .await;
    match local {
        Ok(Ok(report)) => record(compaction, "local", topic, p, report),
        Ok(Err(e)) => {
            compaction.metrics.record_failure("local");
            tracing::warn!(partition = %label(topic, p), error = %e, "local compaction failed; it will be tried again");
        }
        Err(e) => {
            compaction.metrics.record_failure("local");
            tracing::error!(partition = %label(topic, p), error = %e, "the local compaction task stopped");
        }
    }
    if !tiered || !settings.remote_in_broker || p.leader_epoch().is_err() {
        return;
    }
    let scratch = scratch_dir(broker, topic, p);
    match compact_remote(
        p.remote(),
        config,
        &scratch,
        settings.dedupe_buffer_bytes,
        &compaction.limits,
        None,
        now_ms(),
    )
    .await
    {
        Ok(report) => record(compaction, "remote", topic, p, report),
        Err(e) => {
            compaction.metrics.record_failure("remote");
            tracing::warn!(partition = %label(topic, p), error = %e, "remote compaction failed; it will be tried again");
        }
    }
}

fn record(
    compaction: &Compaction,
    tier: &str,
    topic: &Topic,
    p: &Partition,
    report: Option<PassReport>,
) {
    let Some(report) = report else {
        return;
    };
    compaction.metrics.record_pass(tier, &report);
    tracing::info!(
        partition = %label(topic, p),
        tier,
        cleaned_to = report.pass_end,
        keys = report.keys,
        records_removed = report.records_removed,
        bytes_read = report.bytes_read,
        bytes_written = report.bytes_written,
        segments_replaced = report.segments_replaced,
        "compacted"
    );
}

/// Where the remote pass of a partition keeps its downloads and cleaned segments.
fn scratch_dir(broker: &Broker, topic: &Topic, p: &Partition) -> PathBuf {
    broker.settings().data_dir.join("compaction").join(format!(
        "{}-{}",
        topic.id().simple(),
        p.index()
    ))
}

/// Sweeps the bucket prefix of every tiered partition this broker leads.
async fn sweep_all(broker: &Broker) {
    if !broker.settings().compaction.remote_in_broker {
        return;
    }
    let grace = Duration::from_millis(broker.settings().compaction.sweep_grace_ms);
    let tier = broker.remote_tier();
    for topic in broker.topics() {
        if !topic.config().remote_storage() {
            continue;
        }
        for p in topic.partitions() {
            if p.leader_epoch().is_err() {
                continue;
            }
            let swept = sweep_partition(
                tier.store.as_ref(),
                p.remote().paths(),
                tier.pointers.as_ref(),
                topic.id(),
                p.index(),
                grace,
                now_ms(),
            )
            .await;
            match swept {
                Ok(report) if report.deleted > 0 => {
                    broker
                        .compaction()
                        .metrics
                        .swept_objects
                        .inc_by(report.deleted as u64);
                    tracing::info!(partition = %label(&topic, &p), objects = report.deleted, bytes = report.deleted_bytes, "swept unreferenced objects");
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(partition = %label(&topic, &p), error = %e, "the sweep failed; it will be tried again")
                }
            }
        }
    }
}

/// Publishes how far past its retention the oldest data of `p` is, in each tier.
pub(super) async fn record_retention_health(
    broker: &Broker,
    topic: &Topic,
    p: &Partition,
    config: &LogConfig,
) {
    let now = now_ms();
    let gauge = |tier: &str, value: i64| {
        broker
            .compaction()
            .metrics
            .retention_overdue_ms
            .get_or_create(&PartitionTierLabels {
                partition: label(topic, p),
                tier: tier.to_string(),
            })
            .set(value);
    };
    if let Ok(sealed) = p.log().sealed_segments() {
        let (local_ms, _) = config.local_limits();
        gauge(
            "local",
            overdue_ms(sealed.iter().map(|s| s.max_timestamp), local_ms, now),
        );
    }
    if config.remote_storage && p.leader_epoch().is_ok() {
        let manifest = p.remote().manifest().await;
        gauge(
            "remote",
            overdue_ms(
                manifest.segments.iter().map(|s| s.max_timestamp),
                config.retention_ms,
                now,
            ),
        );
    }
}
