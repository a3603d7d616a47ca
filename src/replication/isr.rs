//! ISR changes, made by the partition's leader: a follower that has not caught up for
//! `replica.lag.time.max.ms` is removed, one that fetches below the high watermark (it lost
//! acknowledged data) is removed at once, one that has caught up again is added back. Each change
//! is a compare-and-set of the partition state at the version the leader read, and only while
//! the state still names this broker leader at its epoch, so a deposed leader cannot write.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::broker::replica::{Role, RoleSource};
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

/// Applies `change`, decided while leading at `epoch`, to the partition's ISR in the metadata
/// store, then to the leader's role. Nothing is written once the leader's term has moved on: a
/// decision of an earlier term (a follower caught up by its measure) does not hold in a later one.
pub async fn change_isr(
    broker: &Broker,
    partition: &Partition,
    epoch: i32,
    change: IsrChange,
) -> Result<()> {
    let me = broker.settings().broker_id;
    if !matches!(partition.role(), Role::Leader { epoch: e, .. } if e == epoch) {
        return Ok(());
    }
    let key = keys::partition_state(partition.topic_id(), partition.index());
    let history = broker.store().history();
    let Some((state, version)) = read_state(broker, &key).await? else {
        return Ok(());
    };
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
        let role = Role::Leader {
            epoch,
            isr: state.isr,
        };
        let source = RoleSource::State {
            history,
            version,
            epoch,
        };
        partition.set_role(role, source, now_ms()).await;
        return Ok(());
    }
    let history = broker.store().history();
    let new_version = broker
        .store()
        .put(&key, next.encode(), Expect::Version(version))
        .await?;
    tracing::info!(topic = %partition.topic_id(), partition = partition.index(), from = ?state.isr, to = ?next.isr, "ISR changed");
    let role = Role::Leader {
        epoch,
        isr: next.isr,
    };
    partition
        .set_role(
            role,
            RoleSource::State {
                history,
                version: new_version,
                epoch,
            },
            now_ms(),
        )
        .await;
    Ok(())
}

/// The partition state stored at `key` and its version.
async fn read_state(broker: &Broker, key: &str) -> Result<Option<(PartitionState, u64)>> {
    let Some(current) = broker.store().get(key).await? else {
        return Ok(None);
    };
    let state = PartitionState::decode(&current.value).map_err(|e| {
        BrokerError::Metadata(MetadataError::Corrupt {
            key: key.to_string(),
            reason: e.to_string(),
        })
    })?;
    Ok(Some((state, current.version)))
}

/// After a failed ISR change, whose write may still have landed (a timeout): re-reads the state,
/// retrying while the store does not answer and this broker still leads at the same epoch, and
/// takes the ISR it holds. Until this returns, a follower being added keeps holding the high
/// watermark.
pub async fn settle_after_failure(broker: &Broker, partition: &Partition, epoch: i32) {
    let me = broker.settings().broker_id;
    let key = keys::partition_state(partition.topic_id(), partition.index());
    let mut wait = Duration::from_millis(100);
    while partition.role().epoch() == Some(epoch) {
        let history = broker.store().history();
        match read_state(broker, &key).await {
            Ok(Some((state, version))) => {
                if state.leader == me && state.leader_epoch == epoch {
                    let role = Role::Leader {
                        epoch,
                        isr: state.isr,
                    };
                    let source = RoleSource::State {
                        history,
                        version,
                        epoch,
                    };
                    partition.set_role(role, source, now_ms()).await;
                }
                return;
            }
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(partition = partition.index(), error = %e, "re-reading the partition state after a failed ISR change");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
    }
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
            let Some(epoch) = partition.leader_epoch().ok() else {
                continue;
            };
            if partition.lagging_followers(now_ms(), max_lag).is_empty() {
                continue;
            }
            if let Err(e) = change_isr(&broker, &partition, epoch, IsrChange::Remove).await {
                tracing::warn!(partition = partition.index(), error = %e, "could not shrink the ISR");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{one_partition, open_broker};

    /// Changes `p`'s stored state with `change` behind the broker's back; returns the new state
    /// and its version.
    async fn rewrite_state(
        broker: &Broker,
        p: &Partition,
        change: impl FnOnce(&mut PartitionState),
    ) -> (PartitionState, u64) {
        let key = keys::partition_state(p.topic_id(), p.index());
        let (mut state, version) = read_state(broker, &key)
            .await
            .expect("read")
            .expect("stored");
        change(&mut state);
        let version = broker
            .store()
            .put(&key, state.encode(), Expect::Version(version))
            .await
            .expect("write");
        (state, version)
    }

    /// A failed write may have landed: the leader takes the ISR the store holds.
    #[tokio::test]
    async fn after_a_failed_change_the_leader_takes_the_stored_isr() {
        let dir = tempfile::tempdir().expect("tempdir");
        let broker = open_broker(dir.path()).await;
        let p = one_partition(&broker, "settle").await;
        let me = broker.settings().broker_id;
        // The write that landed.
        rewrite_state(&broker, &p, |state| {
            assert_eq!(state.isr, vec![me]);
            state.isr.push(2);
        })
        .await;
        assert_eq!(p.isr(), Some(vec![me]), "the leader did not hear of it");
        settle_after_failure(&broker, &p, p.leader_epoch().expect("leads")).await;
        assert_eq!(p.isr(), Some(vec![me, 2]));
    }

    /// An addition decided in an earlier term, written late, is not written into a later one:
    /// the follower was caught up by that term's measure, not by this one's.
    #[tokio::test]
    async fn an_earlier_terms_addition_is_not_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let broker = open_broker(dir.path()).await;
        let p = one_partition(&broker, "late").await;
        let earlier = p.leader_epoch().expect("leads");
        let (state, version) = rewrite_state(&broker, &p, |state| {
            state.leader_epoch += 1;
            state.replicas.push(2);
        })
        .await;
        let role = Role::Leader {
            epoch: earlier + 1,
            isr: state.isr.clone(),
        };
        let source = RoleSource::State {
            history: 0,
            version,
            epoch: earlier + 1,
        };
        p.set_role(role, source, now_ms()).await;
        let add = IsrChange::Add {
            replica: 2,
            incarnation: 1,
        };
        change_isr(&broker, &p, earlier, add).await.expect("change");
        let key = keys::partition_state(p.topic_id(), p.index());
        let (after, _) = read_state(&broker, &key)
            .await
            .expect("read")
            .expect("stored");
        assert_eq!(after.isr, state.isr);
    }
}
