//! The replication state of one partition as etcd holds it (`partitions/<topic id>/<index>`):
//! its replicas, leader, leader epoch and in-sync replicas. Only etcd transactions that compare
//! the previous version change it: the controller's (fenced by its own key) and the leader's ISR
//! changes (fenced by the version it read).

use serde::{Deserialize, Serialize};

/// No leader: every in-sync replica is down.
pub const NO_LEADER: i32 = -1;

/// One partition's replicas and leadership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    /// Every replica, the preferred leader first.
    pub replicas: Vec<i32>,
    /// The leader's broker id, or [`NO_LEADER`].
    pub leader: i32,
    /// Bumped with every change of leader; stamped on the batches the leader appends.
    pub leader_epoch: i32,
    /// The replicas in sync with the leader, the leader included.
    pub isr: Vec<i32>,
    /// Replicas being added by an ongoing reassignment (already in `replicas`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adding_replicas: Vec<i32>,
    /// Replicas being removed by an ongoing reassignment (still in `replicas`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removing_replicas: Vec<i32>,
}

impl PartitionState {
    /// Whether `broker` holds a replica.
    pub fn is_replica(&self, broker: i32) -> bool {
        self.replicas.contains(&broker)
    }

    /// Whether a reassignment is under way.
    pub fn is_reassigning(&self) -> bool {
        !self.adding_replicas.is_empty() || !self.removing_replicas.is_empty()
    }

    /// Decodes a stored state.
    pub fn decode(value: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(value)
    }

    /// Encodes the state for the store.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}
