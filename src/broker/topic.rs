//! A topic as the broker serves it: its id, effective config and partitions.

use std::sync::{Arc, PoisonError, RwLock};

use uuid::Uuid;

use super::partition::Partition;
use crate::topic_config::TopicConfig;

/// A topic and its partitions.
#[derive(Debug)]
pub struct Topic {
    name: String,
    id: Uuid,
    config: RwLock<TopicConfig>,
    partitions: RwLock<Vec<Arc<Partition>>>,
}

impl Topic {
    /// Builds a topic from its opened partitions.
    pub fn new(
        name: String,
        id: Uuid,
        config: TopicConfig,
        partitions: Vec<Arc<Partition>>,
    ) -> Self {
        Topic {
            name,
            id,
            config: RwLock::new(config),
            partitions: RwLock::new(partitions),
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

    /// Replaces the config and applies it to every partition's log.
    pub fn set_config(&self, config: TopicConfig) {
        let log_config = config.log_config();
        *self.config.write().unwrap_or_else(PoisonError::into_inner) = config;
        for p in self.partitions() {
            p.log().set_config(log_config.clone());
        }
    }

    /// All partitions, in index order.
    pub fn partitions(&self) -> Vec<Arc<Partition>> {
        self.partitions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// One partition, if the index exists.
    pub fn partition(&self, index: i32) -> Option<Arc<Partition>> {
        let partitions = self
            .partitions
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        usize::try_from(index)
            .ok()
            .and_then(|i| partitions.get(i).cloned())
    }

    /// Number of partitions.
    pub fn partition_count(&self) -> i32 {
        self.partitions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len() as i32
    }

    /// Adds newly created partitions (CreatePartitions).
    pub fn add_partitions(&self, added: Vec<Arc<Partition>>) {
        self.partitions
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(added);
    }
}
