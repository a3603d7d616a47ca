//! The replication state of one partition as etcd holds it (`partitions/<topic id>/<index>`):
//! its replicas, leader, leader epoch and in-sync replicas. Only etcd transactions that compare
//! the previous version change it: the controller's (fenced by its own key) and the leader's ISR
//! changes (fenced by the version it read).
//!
//! Each ISR member is recorded with the incarnation of the broker process that was in sync (as
//! Kafka's KIP-903 records broker epochs): a broker that restarted may have come back with less
//! than it acknowledged (an emptied disk, unsynced writes), so until it has caught up again under
//! its new incarnation it is not a candidate for leadership.

use std::collections::BTreeMap;

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
    /// The incarnation ([`BrokerRecord::incarnation`]) under which each ISR member was in sync.
    /// A member without an entry is not checked: a single node (incarnation 0), a state written
    /// before incarnations were recorded, or a follower whose fetches carry none (an older
    /// binary) that joined the ISR.
    ///
    /// [`BrokerRecord::incarnation`]: crate::metadata::registration::BrokerRecord::incarnation
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub incarnations: BTreeMap<i32, u64>,
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

    /// Whether `broker`, running as `incarnation`, is the process the ISR recorded it as (or
    /// the ISR recorded none).
    pub fn is_current(&self, broker: i32, incarnation: u64) -> bool {
        self.incarnations
            .get(&broker)
            .is_none_or(|recorded| *recorded == incarnation)
    }

    /// Records that `broker` is in sync as `incarnation` (0, unknown, records nothing).
    pub fn stamp(&mut self, broker: i32, incarnation: u64) {
        if incarnation == 0 {
            self.incarnations.remove(&broker);
        } else {
            self.incarnations.insert(broker, incarnation);
        }
    }

    /// Keeps the ISR members for which `keep` holds, and only their incarnations.
    pub fn retain_isr(&mut self, keep: impl Fn(i32) -> bool) {
        self.isr.retain(|r| keep(*r));
        let isr = &self.isr;
        self.incarnations.retain(|r, _| isr.contains(r));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_without_incarnations_decode_and_check_nobody() {
        let state =
            PartitionState::decode(r#"{"replicas":[1,2],"leader":1,"leader_epoch":3,"isr":[1,2]}"#)
                .expect("decodes");
        assert!(state.incarnations.is_empty());
        assert!(state.is_current(1, 42));
        assert_eq!(
            state.encode(),
            r#"{"replicas":[1,2],"leader":1,"leader_epoch":3,"isr":[1,2]}"#
        );
    }

    #[test]
    fn incarnations_follow_the_isr() {
        let mut state =
            PartitionState::decode(r#"{"replicas":[1,2],"leader":1,"leader_epoch":3,"isr":[1,2]}"#)
                .expect("decodes");
        state.stamp(1, 11);
        state.stamp(2, 21);
        assert!(state.is_current(2, 21));
        assert!(!state.is_current(2, 22));
        state.retain_isr(|r| r == 1);
        assert_eq!(state.incarnations, BTreeMap::from([(1, 11)]));
        assert!(state.is_current(2, 22), "not in the ISR: nothing recorded");
        state.stamp(1, 0);
        assert!(state.incarnations.is_empty(), "0 records nothing");
        let round_trip = PartitionState::decode(&state.encode()).expect("decodes");
        assert_eq!(round_trip, state);
    }
}
