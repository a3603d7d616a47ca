//! ISR changes, made by the partition's leader: a follower that has not caught up for
//! `replica.lag.time.max.ms` is removed, one that fetches below the high watermark (it lost
//! acknowledged data) is removed at once, one that has caught up again is added back. Each change
//! is a compare-and-set of the partition state at the version the leader read, and only while
//! the state still names this broker leader at its epoch, so a deposed leader cannot write.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::broker::replica::Role;
use crate::broker::{Broker, Partition, now_ms};
use crate::cluster::state::PartitionState;
use crate::error::{BrokerError, Result};
use crate::metadata::{Expect, MetadataError, keys};

/// A change of the ISR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsrChange {
    /// A follower that caught up joins, recorded as the incarnation it fetched as.
    Add {
        /// The follower.
        replica: i32,
        /// Its incarnation.
        incarnation: u64,
    },
    /// Followers that fell behind leave.
    Remove,
    /// A follower that lost acknowledged data leaves at once.
    Evict(i32),
}

/// Applies `change` to the partition's ISR in the metadata store, then to the leader's role.
pub async fn change_isr(broker: &Broker, partition: &Partition, change: IsrChange) -> Result<()> {
    let me = broker.settings().broker_id;
    let Role::Leader { epoch, .. } = partition.role() else {
        return Ok(());
    };
    let key = keys::partition_state(partition.topic_id(), partition.index());
    let Some(current) = broker.store().get(&key).await? else {
        return Ok(());
    };
    let state = PartitionState::decode(&current.value).map_err(|e| {
        BrokerError::Metadata(MetadataError::Corrupt {
            key: key.clone(),
            reason: e.to_string(),
        })
    })?;
    if state.leader != me || state.leader_epoch != epoch {
        return Ok(());
    }
    let mut next = state.clone();
    match change {
        IsrChange::Add {
            replica,
            incarnation,
        } => {
            if state.is_replica(replica) && !next.isr.contains(&replica) {
                next.isr.push(replica);
                next.stamp(replica, incarnation);
            }
        }
        IsrChange::Remove => {
            let max_lag = broker.settings().replica_lag_time_max_ms as i64;
            let lagging = partition.lagging_followers(now_ms(), max_lag);
            next.retain_isr(|r| !lagging.contains(&r));
        }
        IsrChange::Evict(replica) => next.retain_isr(|r| r != replica || r == me),
    }
    if next == state {
        // Nothing to write, but the store may be ahead of this leader's role (a sync that read
        // an older state): take what it says, so the high watermark counts every member.
        partition
            .set_role(
                Role::Leader {
                    epoch,
                    isr: state.isr,
                    version: current.version,
                },
                now_ms(),
            )
            .await;
        return Ok(());
    }
    let version = broker
        .store()
        .put(&key, next.encode(), Expect::Version(current.version))
        .await?;
    tracing::info!(topic = %partition.topic_id(), partition = partition.index(), from = ?state.isr, to = ?next.isr, "ISR changed");
    partition
        .set_role(
            Role::Leader {
                epoch,
                isr: next.isr,
                version,
            },
            now_ms(),
        )
        .await;
    Ok(())
}

/// Removes lagging followers from the ISR of every partition this broker leads, checking four
/// times per `replica.lag.time.max.ms`, until `cancel` fires.
pub async fn run_isr_shrinker(broker: Arc<Broker>, cancel: CancellationToken) {
    let period = Duration::from_millis((broker.settings().replica_lag_time_max_ms / 4).max(100));
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(period) => {}
        }
        let max_lag = broker.settings().replica_lag_time_max_ms as i64;
        for partition in broker.topics().iter().flat_map(|t| t.partitions()) {
            if partition.lagging_followers(now_ms(), max_lag).is_empty() {
                continue;
            }
            if let Err(e) = change_isr(&broker, &partition, IsrChange::Remove).await {
                tracing::warn!(partition = partition.index(), error = %e, "could not shrink the ISR");
            }
        }
    }
}
