//! The coordinator's clock: one task that runs every group's timers (session expiry, the end of
//! a join phase), refreshes the consumer-lag gauges and expires old offsets, until the broker
//! shuts down; then it answers every member still waiting in a JoinGroup or SyncGroup.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;

/// How often group timers run: the resolution of session and rebalance timeouts.
const TIMER_TICK: Duration = Duration::from_millis(100);
/// How often the lag gauges are refreshed.
const LAG_REFRESH: Duration = Duration::from_secs(1);

/// Labels of a group's partition.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupPartitionLabels {
    /// The group.
    pub group: String,
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: String,
}

/// Consumer-lag gauges: high watermark minus committed offset, per group and partition.
#[derive(Debug, Clone, Default)]
pub struct GroupMetrics {
    /// The lag of each committed partition.
    pub lag: Family<GroupPartitionLabels, Gauge>,
}

impl GroupMetrics {
    /// Registers the gauges (the broker adds the `strata_` prefix).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "consumer_group_lag",
            "Messages between a group's committed offset and the high watermark",
            self.lag.clone(),
        );
    }
}

/// Runs group timers and lag refreshes until `cancel` fires.
pub async fn run_group_timers(broker: Arc<Broker>, cancel: CancellationToken) {
    let mut timers = tokio::time::interval(TIMER_TICK);
    timers.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut lag = tokio::time::interval(LAG_REFRESH);
    lag.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let settings = broker.settings();
    let retention_ms = settings.offsets_retention_ms;
    let mut expiry = tokio::time::interval(Duration::from_millis(
        settings.offsets_retention_check_interval_ms,
    ));
    expiry.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            _ = timers.tick() => broker.groups().tick(&broker.offsets_log()).await,
            _ = lag.tick() => refresh_lag(&broker).await,
            _ = expiry.tick() => {
                let now = crate::broker::now_ms();
                broker.groups().expire_offsets(&broker.offsets_log(), now, retention_ms).await;
            }
        }
    }
    broker.groups().shutdown().await;
}

async fn refresh_lag(broker: &Broker) {
    let lags = broker.groups().lag(&broker.offsets_log()).await;
    let gauges = &broker.groups().metrics().lag;
    gauges.clear();
    for (group, topic, partition, lag) in lags {
        let labels = GroupPartitionLabels {
            group,
            topic,
            partition: partition.to_string(),
        };
        gauges.get_or_create(&labels).set(lag);
    }
}
