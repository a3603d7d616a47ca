//! Background work on every partition log: retention and time-based flushing. One loop, driven by
//! tickers, stopped by a cancellation token.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::{Broker, now_ms};

/// Runs retention every `log-retention-check-interval-ms` and `flush.ms` checks every
/// `log-flush-scheduler-interval-ms`, until `cancel` fires.
pub async fn run_housekeeping(broker: Arc<Broker>, cancel: CancellationToken) {
    let mut retention = tokio::time::interval(Duration::from_millis(
        broker.settings().retention_check_interval_ms,
    ));
    let mut flush = tokio::time::interval(Duration::from_millis(
        broker.settings().flush_scheduler_interval_ms,
    ));
    retention.set_missed_tick_behavior(MissedTickBehavior::Delay);
    flush.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = retention.tick() => run_on_logs(&broker, "retention", |p, now| {
                p.log().apply_retention(now).map(drop)
            }).await,
            _ = flush.tick() => run_on_logs(&broker, "flush", |p, now| p.log().flush_if_due(now)).await,
        }
    }
}

async fn run_on_logs(
    broker: &Arc<Broker>,
    what: &'static str,
    job: fn(&super::Partition, i64) -> strata_tiering::Result<()>,
) {
    let partitions: Vec<_> = broker
        .topics()
        .iter()
        .flat_map(|t| t.partitions())
        .collect();
    let done = tokio::task::spawn_blocking(move || {
        for p in partitions {
            if let Err(e) = job(&p, now_ms()) {
                tracing::error!(log = %p.log().dir().display(), error = %e, "{what} failed");
            }
        }
    })
    .await;
    if done.is_err() {
        tracing::error!("the {what} pass panicked");
    }
}
