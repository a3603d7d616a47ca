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
}

impl ClusterView {
    /// Reads the whole view.
    pub async fn read(store: &dyn MetadataStore) -> Result<Self, MetadataError> {
        let brokers = live_brokers(store)
            .await?
            .into_iter()
            .map(|b| (b.broker_id, b))
            .collect();
        Ok(ClusterView {
            brokers,
            controller: read_controller(store).await?,
            partitions: read_partitions(store).await?,
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
