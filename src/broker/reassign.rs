//! Cluster administration through partition states: moving replicas (AlterPartitionReassignments,
//! ListPartitionReassignments) and preferred-leader elections (ElectLeaders). Reassignments are
//! written here by compare-and-set and completed by the controller; an election is asked of the
//! controller through an `elections/` key and waited for.

use std::time::Duration;

use super::Broker;
use crate::cluster::reassign;
use crate::cluster::state::PartitionState;
use crate::error::{BrokerError, Result};
use crate::metadata::{Expect, MetadataError, keys};

/// An ongoing reassignment: topic, partition and state.
pub type Reassignment = (String, i32, PartitionState);

impl Broker {
    fn partition_key(&self, topic: &str, partition: i32) -> Result<String> {
        let t = self
            .topic(topic)
            .filter(|t| t.has_partition(partition))
            .ok_or_else(|| BrokerError::UnknownTopicOrPartition(format!("{topic}-{partition}")))?;
        Ok(keys::partition_state(t.id(), partition))
    }

    async fn read_state(&self, key: &str) -> Result<(PartitionState, u64)> {
        let stored =
            self.store.get(key).await?.ok_or_else(|| {
                BrokerError::LeaderNotAvailable(format!("{key} has no state yet"))
            })?;
        let state = PartitionState::decode(&stored.value).map_err(|e| {
            BrokerError::Metadata(MetadataError::Corrupt {
                key: key.to_string(),
                reason: e.to_string(),
            })
        })?;
        Ok((state, stored.version))
    }

    /// Starts moving a partition to `target` replicas, or with `None` cancels its move.
    pub async fn reassign_partition(
        &self,
        topic: &str,
        partition: i32,
        target: Option<&[i32]>,
        allow_replication_factor_change: bool,
    ) -> Result<()> {
        let key = self.partition_key(topic, partition)?;
        let live: Vec<i32> = self.cluster().brokers.keys().copied().collect();
        loop {
            let (state, version) = self.read_state(&key).await?;
            let next = match target {
                Some(target) => {
                    reassign::start(&state, target, &live, allow_replication_factor_change)
                }
                None => reassign::cancel(&state),
            }
            .map_err(BrokerError::Reassignment)?;
            match self
                .store
                .put(&key, next.encode(), Expect::Version(version))
                .await
            {
                Ok(_) => {
                    tracing::info!(topic, partition, replicas = ?next.replicas, adding = ?next.adding_replicas, removing = ?next.removing_replicas, "reassignment changed");
                    return Ok(());
                }
                Err(MetadataError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Partitions being reassigned, by topic name.
    pub fn reassignments(&self) -> Vec<Reassignment> {
        let view = self.cluster();
        let mut out = Vec::new();
        for topic in self.topics() {
            for index in 0..topic.partition_count() {
                if let Some(state) = view.partition(topic.id(), index)
                    && state.is_reassigning()
                {
                    out.push((topic.name().to_string(), index, state.clone()));
                }
            }
        }
        out
    }

    /// Moves leadership to the partition's preferred replica (the first), through the
    /// controller, and waits until it leads or `timeout` passes.
    pub async fn elect_preferred_leader(
        &self,
        topic: &str,
        partition: i32,
        timeout: Duration,
    ) -> Result<()> {
        let key = self.partition_key(topic, partition)?;
        let (state, _) = self.read_state(&key).await?;
        let preferred = state.replicas.first().copied().unwrap_or(-1);
        if state.leader == preferred {
            return Err(BrokerError::ElectionNotNeeded);
        }
        let current = self
            .cluster()
            .brokers
            .get(&preferred)
            .is_some_and(|b| state.is_current(preferred, b.incarnation));
        if !state.isr.contains(&preferred) || !current {
            return Err(BrokerError::PreferredLeaderNotAvailable(preferred));
        }
        let id = self
            .topic(topic)
            .map(|t| t.id())
            .ok_or_else(|| BrokerError::UnknownTopicOrPartition(topic.to_string()))?;
        self.store
            .put(
                &keys::preferred_election(id, partition),
                "{}".into(),
                Expect::Any,
            )
            .await?;
        let mut view = self.cluster.subscribe();
        let elected = view.wait_for(|v| {
            v.partition(id, partition)
                .is_some_and(|s| s.leader == preferred)
        });
        match tokio::time::timeout(timeout, elected).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(BrokerError::ShuttingDown),
            Err(_) => Err(BrokerError::ElectionTimedOut),
        }
    }
}
