//! Background work on every partition: offload to the remote tier, retention in both tiers, and
//! time-based flushing. One loop, driven by tickers, stopped by a cancellation token. Compaction
//! and the bucket sweep have a loop of their own (`compaction.rs`): a long pass must not hold up
//! offload.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::{Broker, compaction, now_ms};

/// Runs offload every `tiering-interval-ms`, retention every `log-retention-check-interval-ms`
/// and, every `log-flush-scheduler-interval-ms`, the fsync of segments sealed since (a roll does
/// not fsync under the log's lock) and the `flush.ms` checks, until `cancel` fires.
pub async fn run_housekeeping(broker: Arc<Broker>, cancel: CancellationToken) {
    let settings = broker.settings();
    let ticker = |ms: u64| {
        let mut t = tokio::time::interval(Duration::from_millis(ms));
        t.set_missed_tick_behavior(MissedTickBehavior::Delay);
        t
    };
    let mut offload = ticker(settings.tiering.interval_ms);
    let mut retention = ticker(settings.retention_check_interval_ms);
    let mut flush = ticker(settings.flush_scheduler_interval_ms);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = offload.tick() => offload_all(&broker).await,
            _ = retention.tick() => retain_all(&broker).await,
            _ = flush.tick() => flush_all(&broker).await,
        }
    }
}

/// Below this share of free space on the data directory's disk, a lagging upload is logged as a
/// warning on every offload pass.
const LOW_DISK_SHARE: f64 = 0.10;

async fn offload_all(broker: &Broker) {
    let lagging = offload_partitions(broker).await;
    check_disk_space(broker, lagging).await;
}

/// Publishes the data directory's free space and warns while it runs low with uploads behind.
async fn check_disk_space(broker: &Broker, lagging_partitions: usize) {
    let dir = broker.settings().data_dir.clone();
    let space = tokio::task::spawn_blocking(move || {
        Ok::<_, std::io::Error>((fs4::available_space(&dir)?, fs4::total_space(&dir)?))
    })
    .await;
    let Ok(Ok((available, total))) = space else {
        return;
    };
    broker
        .tiering_metrics()
        .data_dir_available_bytes
        .set(i64::try_from(available).unwrap_or(i64::MAX));
    if lagging_partitions > 0 && (available as f64) < LOW_DISK_SHARE * total as f64 {
        tracing::warn!(
            available_bytes = available,
            total_bytes = total,
            lagging_partitions,
            "the data directory's disk is filling while uploads are behind; \
             local segments are deleted only once they are in the bucket"
        );
    }
}

/// Offloads every tiered partition; returns how many failed to (and so keep growing locally).
/// When a compaction service rewrites the bucket, a leader first re-reads the manifest pointer:
/// readers must move to the compacted segments (a cached old chunk would never fail a read).
async fn offload_partitions(broker: &Broker) -> usize {
    let mut lagging = 0;
    let service_compacts = !broker.settings().compaction.remote_in_broker;
    for topic in broker.topics() {
        if !topic.config().remote_storage() {
            continue;
        }
        for p in topic.partitions() {
            if service_compacts
                && p.leader_epoch().is_ok()
                && let Err(e) = p.remote().refresh().await
            {
                tracing::warn!(topic = topic.name(), partition = p.index(), error = %e, "could not re-read the manifest pointer");
            }
            match p.offload(now_ms()).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(
                    topic = topic.name(),
                    partition = p.index(),
                    segments = n,
                    "offloaded"
                ),
                Err(e) => {
                    lagging += 1;
                    tracing::warn!(
                        topic = topic.name(),
                        partition = p.index(),
                        local_bytes = p.log().size_bytes(),
                        error = %e,
                        "offload failed; local segments are kept and the upload will be retried"
                    );
                }
            }
        }
    }
    lagging
}

async fn retain_all(broker: &Broker) {
    for topic in broker.topics() {
        let config = topic.config().log_config();
        for p in topic.partitions() {
            if let Err(e) = p.apply_retention(&config, now_ms()).await {
                tracing::error!(topic = topic.name(), partition = p.index(), error = %e, "retention failed");
            }
            compaction::record_retention_health(broker, &topic, &p, &config).await;
        }
    }
}

async fn flush_all(broker: &Broker) {
    let partitions: Vec<_> = broker
        .topics()
        .iter()
        .flat_map(|t| t.partitions())
        .collect();
    let done = tokio::task::spawn_blocking(move || {
        for p in partitions {
            if let Err(e) = p.log().flush_sealed() {
                tracing::error!(log = %p.log().dir().display(), error = %e, "fsync of sealed segments failed");
            }
            if let Err(e) = p.log().flush_if_due(now_ms()) {
                tracing::error!(log = %p.log().dir().display(), error = %e, "flush failed");
            }
        }
    })
    .await;
    if done.is_err() {
        tracing::error!("the flush pass panicked");
    }
}
