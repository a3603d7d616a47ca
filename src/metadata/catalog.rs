//! Typed records of the metadata store: the cluster id, topics and producer id blocks.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use uuid::Uuid;

use super::{Expect, MetadataError, MetadataStore, keys};
use crate::error::{BrokerError, Result};

/// How many producer ids one allocation takes from the store.
pub const PRODUCER_ID_BLOCK: i64 = 1000;

/// A topic as the cluster knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRecord {
    /// The topic name.
    pub name: String,
    /// The topic id, fixed at creation; a re-created topic gets a new one.
    pub id: Uuid,
    /// Number of partitions.
    pub partitions: i32,
    /// Topic-level config overrides, by Kafka config name.
    pub configs: BTreeMap<String, String>,
    /// Replicas per partition.
    #[serde(default = "one")]
    pub replication_factor: i16,
    /// Replicas asked for explicitly at creation, by partition (the controller assigns them
    /// otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment: Option<Vec<Vec<i32>>>,
}

fn one() -> i16 {
    1
}

#[derive(Debug, Serialize, Deserialize)]
struct ClusterId {
    cluster_id: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct NextProducerId {
    next: i64,
}

/// Typed access to the metadata store.
#[derive(Debug, Clone)]
pub struct Catalog {
    store: Arc<dyn MetadataStore>,
}

fn decode<T: DeserializeOwned>(key: &str, value: &str) -> Result<T> {
    serde_json::from_str(value).map_err(|e| {
        BrokerError::Metadata(MetadataError::Corrupt {
            key: key.to_string(),
            reason: e.to_string(),
        })
    })
}

fn encode<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value)
        .map_err(|e| BrokerError::Metadata(MetadataError::Unavailable(e.to_string())))
}

impl Catalog {
    /// Wraps a store.
    pub fn new(store: Arc<dyn MetadataStore>) -> Self {
        Catalog { store }
    }

    /// The cluster id the store holds, if it holds one.
    pub async fn stored_cluster_id(&self) -> Result<Option<String>> {
        match self.store.get(keys::CLUSTER_ID).await? {
            Some(v) => Ok(Some(
                decode::<ClusterId>(keys::CLUSTER_ID, &v.value)?.cluster_id,
            )),
            None => Ok(None),
        }
    }

    /// The cluster id, created on first use.
    pub async fn cluster_id(&self) -> Result<String> {
        loop {
            if let Some(id) = self.stored_cluster_id().await? {
                return Ok(id);
            }
            // Kafka cluster ids are 22-character URL-safe base64 of a UUID; a simple UUID string
            // without dashes serves the same purpose and clients treat it as opaque.
            let id = ClusterId {
                cluster_id: Uuid::new_v4().simple().to_string(),
            };
            match self
                .store
                .put(keys::CLUSTER_ID, encode(&id)?, Expect::Absent)
                .await
            {
                Ok(_) => return Ok(id.cluster_id),
                Err(MetadataError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Every topic.
    pub async fn topics(&self) -> Result<Vec<TopicRecord>> {
        let mut out = Vec::new();
        for (key, v) in self.store.list(keys::TOPICS_PREFIX).await? {
            out.push(decode(&key, &v.value)?);
        }
        Ok(out)
    }

    /// Creates a topic; fails with [`BrokerError::TopicAlreadyExists`] if the name is taken.
    pub async fn create_topic(&self, record: &TopicRecord) -> Result<()> {
        match self
            .store
            .put(&keys::topic(&record.name), encode(record)?, Expect::Absent)
            .await
        {
            Ok(_) => Ok(()),
            Err(MetadataError::Conflict { .. }) => {
                Err(BrokerError::TopicAlreadyExists(record.name.clone()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Applies `change` to a topic's record with compare-and-set, retrying on conflicts.
    pub async fn update_topic(
        &self,
        name: &str,
        change: impl Fn(&mut TopicRecord) -> Result<()>,
    ) -> Result<TopicRecord> {
        let key = keys::topic(name);
        loop {
            let Some(current) = self.store.get(&key).await? else {
                return Err(BrokerError::UnknownTopicOrPartition(name.to_string()));
            };
            let mut record: TopicRecord = decode(&key, &current.value)?;
            change(&mut record)?;
            match self
                .store
                .put(&key, encode(&record)?, Expect::Version(current.version))
                .await
            {
                Ok(_) => return Ok(record),
                Err(MetadataError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Deletes a topic's record.
    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        let key = keys::topic(name);
        let Some(current) = self.store.get(&key).await? else {
            return Err(BrokerError::UnknownTopicOrPartition(name.to_string()));
        };
        self.store
            .delete(&key, Expect::Version(current.version))
            .await?;
        Ok(())
    }

    /// Takes the next block of producer ids; ids are never handed out twice, even across restarts.
    pub async fn allocate_producer_ids(&self) -> Result<Range<i64>> {
        loop {
            let current = self.store.get(keys::NEXT_PRODUCER_ID).await?;
            let (next, expect) = match &current {
                Some(v) => (
                    decode::<NextProducerId>(keys::NEXT_PRODUCER_ID, &v.value)?.next,
                    Expect::Version(v.version),
                ),
                None => (0, Expect::Absent),
            };
            let value = encode(&NextProducerId {
                next: next + PRODUCER_ID_BLOCK,
            })?;
            match self.store.put(keys::NEXT_PRODUCER_ID, value, expect).await {
                Ok(_) => return Ok(next..next + PRODUCER_ID_BLOCK),
                Err(MetadataError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::embedded::EmbeddedStore;

    fn catalog(dir: &std::path::Path) -> Catalog {
        Catalog::new(Arc::new(
            EmbeddedStore::open(&dir.join("m.json")).expect("open"),
        ))
    }

    #[tokio::test]
    async fn topics_are_created_once_updated_and_deleted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let catalog = catalog(dir.path());
        let record = TopicRecord {
            name: "t".into(),
            id: Uuid::new_v4(),
            partitions: 2,
            configs: BTreeMap::new(),
            replication_factor: 1,
            assignment: None,
        };
        catalog.create_topic(&record).await.expect("create");
        assert!(matches!(
            catalog.create_topic(&record).await,
            Err(BrokerError::TopicAlreadyExists(_))
        ));
        let updated = catalog
            .update_topic("t", |r| {
                r.partitions = 5;
                Ok(())
            })
            .await
            .expect("update");
        assert_eq!(updated.partitions, 5);
        assert_eq!(catalog.topics().await.expect("list"), vec![updated]);
        catalog.delete_topic("t").await.expect("delete");
        assert!(matches!(
            catalog.delete_topic("t").await,
            Err(BrokerError::UnknownTopicOrPartition(_))
        ));
    }

    #[tokio::test]
    async fn producer_id_blocks_and_cluster_id_persist() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (first, id) = {
            let catalog = catalog(dir.path());
            (
                catalog.allocate_producer_ids().await.expect("block"),
                catalog.cluster_id().await.expect("id"),
            )
        };
        let catalog = catalog(dir.path());
        let second = catalog.allocate_producer_ids().await.expect("block");
        assert_eq!(first, 0..PRODUCER_ID_BLOCK);
        assert_eq!(second.start, first.end);
        assert_eq!(catalog.cluster_id().await.expect("id"), id);
    }
}
