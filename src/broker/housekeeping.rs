//! Background work on every partition: offload to the remote tier, retention in both tiers,
//! time-based flushing and drop-behind. Loops driven by tickers, stopped by a cancellation token;
//! flushing and drop-behind do not wait for an upload. Compaction and the bucket sweep have a loop
//! of their own (`compaction.rs`): a long pass must not hold up offload.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use strata_tiering::log::PartitionLog;

use super::{Broker, compaction, now_ms};

/// Runs, until `cancel` fires, three loops: offload every `tiering-interval-ms` and retention
/// every `log-retention-check-interval-ms`; every `log-flush-scheduler-interval-ms`, the fsync of
/// segments sealed since (a roll does not fsync under the log's lock) and the `flush.ms` checks;
/// and drop-behind (`--log-drop-behind-bytes`, every 250 ms; not started when 0). An upload paced
/// over many seconds must not leave sealed segments unsynced, nor the page cache growing,
/// meanwhile.
pub async fn run_housekeeping(broker: Arc<Broker>, cancel: CancellationToken) {
    let settings = broker.settings();
    let flushes = tokio::spawn(every(
        settings.flush_scheduler_interval_ms,
        cancel.clone(),
        {
            let broker = Arc::clone(&broker);
            move || flush_all(Arc::clone(&broker))
        },
    ));
    let keep = settings.drop_behind_bytes;
    let drops = (keep > 0).then(|| {
        tokio::spawn(every(DROP_BEHIND_INTERVAL_MS, cancel.clone(), {
            let broker = Arc::clone(&broker);
            move || drop_behind_all(Arc::clone(&broker), keep)
        }))
    });
    let mut offload = ticker(settings.tiering.interval_ms);
    let mut retention = ticker(settings.retention_check_interval_ms);
    let mut pointers_read_in = broker.store().history();
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            _ = offload.tick() => offload_all(&broker, &mut pointers_read_in).await,
            _ = retention.tick() => retain_all(&broker).await,
        }
    }
    for task in std::iter::once(flushes).chain(drops) {
        if task.await.is_err() {
            tracing::error!("a housekeeping loop panicked");
        }
    }
}

/// A ticker that waits a whole period after a late tick rather than bursting to catch up.
fn ticker(ms: u64) -> tokio::time::Interval {
    let mut t = tokio::time::interval(Duration::from_millis(ms));
    t.set_missed_tick_behavior(MissedTickBehavior::Delay);
    t
}

/// Runs `pass` every `period_ms` until `cancel` fires.
async fn every<Pass, Done>(period_ms: u64, cancel: CancellationToken, mut pass: Pass)
where
    Pass: FnMut() -> Done,
    Done: Future<Output = ()>,
{
    let mut tick = ticker(period_ms);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = tick.tick() => pass().await,
        }
    }
}

/// How often drop-behind runs. Short, so each pass writes back little: at 60,000 msgs/s on three
/// replicas (produce_timeline.py, 2026-11-24) passes every 1 s held ~10 produce requests over
/// 12.8 ms each; every 250 ms, none.
const DROP_BEHIND_INTERVAL_MS: u64 = 250;

/// Below this share of free space on the data directory's disk, a lagging upload is logged as a
/// warning on every offload pass.
const LOW_DISK_SHARE: f64 = 0.10;

/// Offloads every tiered partition. Once the metadata store is found to have gone back in time
/// (a later history than `pointers_read_in`), leaders first re-read their manifest pointers, which
/// went back too: each then publishes its newer manifest again (`RemotePartition::reload`).
async fn offload_all(broker: &Broker, pointers_read_in: &mut u64) {
    let history = broker.store().history();
    let (lagging, pointers_read) = offload_partitions(broker, history != *pointers_read_in).await;
    if pointers_read {
        *pointers_read_in = history;
    }
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

/// Offloads every tiered partition; returns how many failed to (and so keep growing locally),
/// and whether every leader could re-read its manifest pointer first. A leader re-reads it when
/// `read_pointers`, and when a compaction service rewrites the bucket: readers must move to the
/// compacted segments (a cached old chunk would never fail a read).
async fn offload_partitions(broker: &Broker, read_pointers: bool) -> (usize, bool) {
    let mut lagging = 0;
    let mut pointers_read = true;
    let read_pointers = read_pointers || !broker.settings().compaction.remote_in_broker;
    for topic in broker.topics() {
        if !topic.config().remote_storage() {
            continue;
        }
        for p in topic.partitions() {
            if read_pointers
                && p.leader_epoch().is_ok()
                && let Err(e) = p.remote().refresh().await
            {
                pointers_read = false;
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
    (lagging, pointers_read)
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

async fn flush_all(broker: Arc<Broker>) {
    on_every_log(&broker, "flush", |log| {
        if let Err(e) = log.flush_sealed() {
            tracing::error!(log = %log.dir().display(), error = %e, "fsync of sealed segments failed");
        }
        if let Err(e) = log.flush_if_due(now_ms()) {
            tracing::error!(log = %log.dir().display(), error = %e, "flush failed");
        }
    })
    .await;
}

/// Drops from the page cache what every partition's log holds more than `keep` bytes behind its
/// end (`strata_tiering::page_cache`).
async fn drop_behind_all(broker: Arc<Broker>, keep: u64) {
    on_every_log(&broker, "drop-behind", move |log| {
        if let Err(e) = log.drop_behind(keep) {
            tracing::warn!(log = %log.dir().display(), error = %e, "dropping written data from the page cache failed");
        }
    })
    .await;
}

/// Runs `work` on every partition's log, one after another on a blocking thread (it does file
/// I/O); `pass` names it in the log line if it panics.
async fn on_every_log(
    broker: &Broker,
    pass: &'static str,
    work: impl Fn(&PartitionLog) + Send + 'static,
) {
    let partitions: Vec<_> = broker
        .topics()
        .iter()
        .flat_map(|t| t.partitions())
        .collect();
    let done = tokio::task::spawn_blocking(move || {
        for p in partitions {
            work(p.log());
        }
    })
    .await;
    if done.is_err() {
        tracing::error!(pass, "a background pass over the logs panicked");
    }
}
