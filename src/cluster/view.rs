//! A broker's picture of the cluster: live brokers, the controller and every partition's state,
//! re-read from the metadata store whenever a watch says something changed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::plan::{PartitionKey, Stored};
use super::state::PartitionState;
use crate::metadata::registration::{BrokerRecord, live_brokers};
use crate::metadata::{MetadataError, MetadataStore, keys};

/// The value of the controller key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerRecord {
    /// The controller's broker id.
    pub broker_id: i32,
}

/// The controller and its epoch (the version of its key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Controller {
    /// The controller's broker id.
    pub broker_id: i32,
    /// The controller epoch.
    pub epoch: u64,
}

/// The cluster as last read from the metadata store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterView {
    /// Live brokers by id.
    pub brokers: BTreeMap<i32, BrokerRecord>,
    /// The controller, if one is elected.
    pub controller: Option<Controller>,
    /// Every partition's state.
    pub partitions: BTreeMap<PartitionKey, Stored>,
    /// The store's history the view was read in, taken before the read
    /// ([`MetadataStore::history`]): the history its versions belong to.
    pub history: u64,
}

impl ClusterView {
    /// Reads the whole view.
    pub async fn read(store: &dyn MetadataStore) -> Result<Self, MetadataError> {
        let history = store.history();
        let brokers = live_brokers(store)
            .await?
            .into_iter()
            .map(|b| (b.broker_id, b))
            .collect();
        Ok(ClusterView {
            brokers,
            controller: read_controller(store).await?,
            partitions: read_partitions(store).await?,
            history,
        })
    }

    /// One partition's state.
    pub fn partition(&self, topic: Uuid, index: i32) -> Option<&PartitionState> {
        self.partitions.get(&(topic, index)).map(|s| &s.state)
    }
}

/// The elected controller, if any.
pub async fn read_controller(
    store: &dyn MetadataStore,
) -> Result<Option<Controller>, MetadataError> {
    let Some(v) = store.get(keys::CONTROLLER).await? else {
        return Ok(None);
    };
    let record: ControllerRecord =
        serde_json::from_str(&v.value).map_err(|e| MetadataError::Corrupt {
            key: keys::CONTROLLER.into(),
            reason: e.to_string(),
        })?;
    Ok(Some(Controller {
        broker_id: record.broker_id,
        epoch: v.version,
    }))
}

/// Every stored partition state.
pub async fn read_partitions(
    store: &dyn MetadataStore,
) -> Result<BTreeMap<PartitionKey, Stored>, MetadataError> {
    let mut out = BTreeMap::new();
    for (key, v) in store.list(keys::PARTITIONS_PREFIX).await? {
        let corrupt = |reason: String| MetadataError::Corrupt {
            key: key.clone(),
            reason,
        };
        let partition = keys::parse_partition_key(keys::PARTITIONS_PREFIX, &key)
            .ok_or_else(|| corrupt("not a partition key".into()))?;
        let state = PartitionState::decode(&v.value).map_err(|e| corrupt(e.to_string()))?;
        out.insert(
            partition,
            Stored {
                state,
                version: v.version,
            },
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use async_trait::async_trait;

    use super::*;
    use crate::metadata::embedded::EmbeddedStore;
    use crate::metadata::{Expect, Versioned, Write};

    /// An embedded store that is found to have gone back in time while it answers its next list.
    #[derive(Debug)]
    struct TurningStore {
        inner: EmbeddedStore,
        history: AtomicU64,
    }

    #[async_trait]
    impl MetadataStore for TurningStore {
        async fn get(&self, key: &str) -> Result<Option<Versioned>, MetadataError> {
            self.inner.get(key).await
        }
        async fn list(&self, prefix: &str) -> Result<Vec<(String, Versioned)>, MetadataError> {
            let listed = self.inner.list(prefix).await;
            self.history.fetch_add(1, Ordering::SeqCst);
            listed
        }
        async fn put(
            &self,
            key: &str,
            value: String,
            expect: Expect,
        ) -> Result<u64, MetadataError> {
            self.inner.put(key, value, expect).await
        }
        async fn delete(&self, key: &str, expect: Expect) -> Result<(), MetadataError> {
            self.inner.delete(key, expect).await
        }
        async fn transact(
            &self,
            conditions: &[(String, Expect)],
            writes: Vec<Write>,
        ) -> Result<u64, MetadataError> {
            self.inner.transact(conditions, writes).await
        }
        fn watch(&self, prefix: &str) -> tokio::sync::watch::Receiver<u64> {
            self.inner.watch(prefix)
        }
        fn history(&self) -> u64 {
            self.history.load(Ordering::SeqCst)
        }
    }

    /// Versions read while the store turned out to have gone back may belong to either history:
    /// the view counts them in the earlier one, so they never pass for newer than they are.
    #[tokio::test]
    async fn a_view_belongs_to_the_history_before_its_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = TurningStore {
            inner: EmbeddedStore::open(&dir.path().join("metadata.json")).expect("store"),
            history: AtomicU64::new(3),
        };
        let view = ClusterView::read(&store).await.expect("read");
        assert!(store.history() > 3, "the store turned during the read");
        assert_eq!(view.history, 3);
    }
}
