//! A topic as the broker serves it: its id, effective config, partition count and the partitions
//! this broker holds a replica of.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use uuid::Uuid;

use super::partition::Partition;
use crate::error::{BrokerError, Result};
use crate::topic_config::TopicConfig;

/// A topic and the partitions hosted here.
#[derive(Debug)]
pub struct Topic {
    name: String,
    id: Uuid,
    config: RwLock<TopicConfig>,
    partition_count: AtomicI32,
    partitions: RwLock<BTreeMap<i32, Arc<Partition>>>,
}

impl Topic {
    /// A topic of `partition_count` partitions, none opened yet.
    pub fn new(name: String, id: Uuid, config: TopicConfig, partition_count: i32) -> Self {
        Topic {
            name,
            id,
            config: RwLock::new(config),
            partition_count: AtomicI32::new(partition_count),
            partitions: RwLock::new(BTreeMap::new()),
        }
    }

    /// The topic name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The topic id.
    pub fn id(&self) -> Uuid {
        self.id
    }

    /// Whether the topic is internal (`__consumer_offsets`, `__transaction_state`).
    pub fn is_internal(&self) -> bool {
        self.name.starts_with("__")
    }

    /// A copy of the effective config.
    pub fn config(&self) -> TopicConfig {
        self.config
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces the config and applies it to every hosted partition's log.
    pub fn set_config(&self, config: TopicConfig) {
        let log_config = config.log_config();
        *self.config.write().unwrap_or_else(PoisonError::into_inner) = config;
        for p in self.partitions() {
            p.log().set_config(log_config.clone());
        }
    }

    /// The partitions hosted on this broker, in index order.
    pub fn partitions(&self) -> Vec<Arc<Partition>> {
        self.partitions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// One hosted partition.
    pub fn partition(&self, index: i32) -> Option<Arc<Partition>> {
        self.partitions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&index)
            .cloned()
    }

    /// A partition this broker leads: UNKNOWN_TOPIC_OR_PARTITION for an index the topic does
    /// not have, NOT_LEADER_OR_FOLLOWER when another broker leads it.
    pub fn led_partition(&self, index: i32) -> Result<Arc<Partition>> {
        if !self.has_partition(index) {
            return Err(BrokerError::UnknownTopicOrPartition(format!(
                "{}-{index}",
                self.name
            )));
        }
        let partition = self.partition(index).ok_or(BrokerError::NotLeader {
            topic_id: self.id,
            partition: index,
        })?;
        partition.leader_epoch()?;
        Ok(partition)
    }

    /// Number of partitions of the topic (hosted here or not).
    pub fn partition_count(&self) -> i32 {
        self.partition_count.load(Ordering::Acquire)
    }

    /// Whether `index` is one of the topic's partitions.
    pub fn has_partition(&self, index: i32) -> bool {
        (0..self.partition_count()).contains(&index)
    }

    /// Takes a new partition count (CreatePartitions, here or on another broker).
    pub fn set_partition_count(&self, count: i32) {
        self.partition_count.fetch_max(count, Ordering::AcqRel);
    }

    /// Adds an opened partition.
    pub fn add_partition(&self, partition: Arc<Partition>) {
        self.partitions
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(partition.index(), partition);
    }

    /// Removes a hosted partition (its replica moved away).
    pub fn remove_partition(&self, index: i32) -> Option<Arc<Partition>> {
        self.partitions
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&index)
    }
}
