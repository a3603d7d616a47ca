//! Keeping the broker in line with the cluster: topics created, changed or deleted through any
//! broker, partitions this broker holds a replica of opened (or closed when moved away), and each
//! partition's role taken from its state — leader, follower (with a replication task) or
//! offline. Runs on start and whenever a watch on the metadata store fires.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::replica::{Role, RoleSource};
use super::{Broker, Topic, now_ms};
use super::{empty_start, identity};
use crate::cluster::plan::Stored;
use crate::cluster::state::NO_LEADER;
use crate::cluster::triggers::Triggers;
use crate::cluster::view::ClusterView;
use crate::error::Result;
use crate::group::OFFSETS_TOPIC;
use crate::metadata::catalog::TopicRecord;
use crate::metadata::keys;
use crate::replication::follower;
use crate::topic_config::TopicConfig;

/// The longest the broker goes without re-reading the cluster when no watch fires.
const RESYNC: Duration = Duration::from_secs(30);

/// Re-reads the cluster whenever something changes, until `cancel` fires.
pub async fn run_cluster_sync(broker: Arc<Broker>, cancel: CancellationToken) {
    let mut triggers = Triggers::new(
        &**broker.store(),
        &[
            keys::TOPICS_PREFIX,
            keys::BROKERS_PREFIX,
            keys::PARTITIONS_PREFIX,
            keys::CONTROLLER,
        ],
    );
    let mut retry = Duration::from_millis(100);
    loop {
        match broker.sync_with_cluster().await {
            Ok(()) => retry = Duration::from_millis(100),
            Err(e) => {
                tracing::warn!(error = %e, "could not read the cluster's state; serving with what is known");
                retry = (retry * 2).min(Duration::from_secs(5));
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(retry) => continue,
                }
            }
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = triggers.changed(RESYNC) => {}
        }
    }
}

impl Broker {
    /// Reads topics and partition states and applies them to the local topics and partitions.
    pub async fn sync_with_cluster(self: &Arc<Self>) -> Result<()> {
        let _sync = self.sync.lock().await;
        // The view first: a partition state is written only after its topic's record, so the
        // records read next hold every topic the view has states for.
        let view = ClusterView::read(&**self.store()).await?;
        let records = self.catalog.topics().await?;
        // Read after the topics: a store wiped or swapped before they were read fails here, so
        // its missing topics delete no log.
        identity::check(&self.catalog, self.cluster_id()).await?;
        self.sync_topics(&records).await?;
        self.sync_partitions(&view).await;
        let states = view.partitions.values().map(|stored| &stored.state);
        let (me, data_dir) = (self.settings.broker_id, &self.settings.data_dir);
        if let Err(e) = empty_start::forget_if_in_sync(data_dir, states, me, self.incarnation) {
            tracing::warn!(error = %e, "could not remove the started-empty marker");
        }
        self.cluster.send_replace(Arc::new(view));
        Ok(())
    }

    async fn sync_topics(&self, records: &[TopicRecord]) -> Result<()> {
        for record in records {
            match self.topic(&record.name) {
                Some(topic) if topic.id() == record.id => {
                    topic.set_partition_count(record.partitions);
                    if topic.config().overrides() != &record.configs {
                        let config =
                            TopicConfig::new(record.configs.clone(), Arc::clone(&self.defaults))?;
                        topic.set_config(config);
                    }
                }
                Some(stale) => {
                    // Deleted and created again elsewhere while this broker looked away.
                    self.remove_local_topic(&stale).await;
                    self.insert_topic(self.new_topic(record)?);
                }
                None => self.insert_topic(self.new_topic(record)?),
            }
        }
        for topic in self.topics() {
            if !records.iter().any(|r| r.id == topic.id()) {
                tracing::info!(topic = %topic.name(), "topic deleted through another broker");
                self.remove_local_topic(&topic).await;
            }
        }
        Ok(())
    }

    fn new_topic(&self, record: &TopicRecord) -> Result<Arc<Topic>> {
        let config = TopicConfig::new(record.configs.clone(), Arc::clone(&self.defaults))?;
        Ok(Arc::new(Topic::new(
            record.name.clone(),
            record.id,
            config,
            record.partitions,
        )))
    }

    async fn sync_partitions(self: &Arc<Self>, view: &ClusterView) {
        let me = self.settings.broker_id;
        for topic in self.topics() {
            for index in 0..topic.partition_count() {
                let stored = view.partitions.get(&(topic.id(), index));
                match (stored, topic.partition(index)) {
                    (Some(stored), _) if stored.state.is_replica(me) => {
                        if let Err(e) = self.apply_state(&topic, index, stored, view.history).await
                        {
                            tracing::warn!(topic = %topic.name(), partition = index, error = %e, "could not take up a partition");
                        }
                    }
                    (Some(_), Some(moved)) => {
                        tracing::info!(topic = %topic.name(), partition = index, "replica moved away; removing the local copy");
                        topic.remove_partition(index);
                        self.close_partition(&moved, true).await;
                    }
                    _ => {}
                }
            }
        }
    }

    async fn apply_state(
        self: &Arc<Self>,
        topic: &Arc<Topic>,
        index: i32,
        stored: &Stored,
        history: u64,
    ) -> Result<()> {
        let state = &stored.state;
        let me = self.settings.broker_id;
        let partition = match topic.partition(index) {
            Some(p) => p,
            None => {
                let p = self
                    .open_partition(topic.id(), index, &topic.config())
                    .await?;
                topic.add_partition(Arc::clone(&p));
                p
            }
        };
        let role = if state.leader == me && !state.is_current(me, self.incarnation) {
            // Elected as this broker's previous process: wait for the controller to elect
            // again (this process, if it is the last in sync, or another replica).
            Role::Offline
        } else if state.leader == me {
            Role::Leader {
                epoch: state.leader_epoch,
                isr: state.isr.clone(),
            }
        } else if state.leader == NO_LEADER {
            Role::Offline
        } else {
            Role::Follower {
                leader: state.leader,
                epoch: state.leader_epoch,
            }
        };
        let was_leader = matches!(partition.role(), Role::Leader { .. });
        let source = RoleSource::State {
            history,
            version: stored.version,
            epoch: state.leader_epoch,
        };
        if !partition.set_role(role, source, now_ms()).await {
            return Ok(());
        }
        // What was taken: a leader role may have been refused for its epoch.
        let role = partition.role();
        tracing::info!(topic = %topic.name(), partition = index, role = ?role, "partition role changed");
        let offsets = topic.name() == OFFSETS_TOPIC;
        match role {
            Role::Follower { .. } => {
                follower::spawn(Arc::clone(self), Arc::clone(topic), Arc::clone(&partition));
                if offsets && was_leader {
                    self.groups.unload_partition(index, topic.partition_count());
                }
            }
            Role::Leader { .. } if offsets => {
                if let Err(e) = self.groups.load_partition(&self.offsets_log(), index).await {
                    tracing::warn!(partition = index, error = %e, "could not load the consumer groups of an offsets partition");
                }
            }
            Role::Offline if offsets && was_leader => {
                self.groups.unload_partition(index, topic.partition_count());
            }
            _ => {}
        }
        Ok(())
    }
}
