//! The controller's decisions as a pure function of the cluster's state: which partition states
//! to create (replicas for new partitions), which to change (a new leader when the leader is
//! gone, dead brokers out of the ISR) and which to delete (partitions of deleted topics). The
//! controller (`controller.rs`) only reads the store, calls [`plan`] and writes the result.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::assign::{Candidate, assign};
use super::reassign::target_replicas;
use super::state::{NO_LEADER, PartitionState};

/// What the controller needs to know of a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    /// The topic id.
    pub id: Uuid,
    /// Number of partitions.
    pub partitions: i32,
    /// Replicas per partition.
    pub replication_factor: i16,
    /// Replicas asked for explicitly at creation, by partition.
    pub assignment: Option<Vec<Vec<i32>>>,
    /// `unclean.leader.election.enable`.
    pub unclean_leader_election: bool,
}

/// A stored partition state and its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The state.
    pub state: PartitionState,
    /// Its version in the store, for compare-and-set.
    pub version: u64,
}

/// A partition, by topic id and index.
pub type PartitionKey = (Uuid, i32);

/// One write the controller makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A new partition's first state.
    Create {
        /// The partition.
        partition: PartitionKey,
        /// Its state.
        state: PartitionState,
    },
    /// A changed state, written only if the stored version is still `version`.
    Update {
        /// The partition.
        partition: PartitionKey,
        /// The version read.
        version: u64,
        /// The new state.
        state: PartitionState,
    },
    /// The state of a partition whose topic is gone.
    Delete {
        /// The partition.
        partition: PartitionKey,
        /// The version read.
        version: u64,
    },
}

/// Everything the controller decides from `topics`, the stored `states` and the `live` brokers.
/// Leader elections bump the leader epoch; preferred leaders are moved back only on request
/// (`preferred`), when the preferred replica is live and in sync; a reassignment completes once
/// every target replica is in sync, moving leadership if the leader is not among them.
pub fn plan(
    topics: &[TopicSpec],
    states: &BTreeMap<PartitionKey, Stored>,
    live: &[Candidate],
    preferred: &BTreeSet<PartitionKey>,
) -> Vec<Change> {
    let alive: BTreeSet<i32> = live.iter().map(|b| b.id).collect();
    let mut changes = Vec::new();
    let mut known = BTreeSet::new();
    for topic in topics {
        for index in 0..topic.partitions {
            let key = (topic.id, index);
            known.insert(key);
            let Some(stored) = states.get(&key) else {
                if let Some(state) = new_partition(topic, index, live, &alive) {
                    changes.push(Change::Create {
                        partition: key,
                        state,
                    });
                }
                continue;
            };
            let wants_preferred = preferred.contains(&key);
            let next = next_state(&stored.state, &alive, topic, wants_preferred);
            if next != stored.state {
                changes.push(Change::Update {
                    partition: key,
                    version: stored.version,
                    state: next,
                });
            }
        }
    }
    for (key, stored) in states {
        if !known.contains(key) {
            changes.push(Change::Delete {
                partition: *key,
                version: stored.version,
            });
        }
    }
    changes
}

fn new_partition(
    topic: &TopicSpec,
    index: i32,
    live: &[Candidate],
    alive: &BTreeSet<i32>,
) -> Option<PartitionState> {
    let replicas = match &topic.assignment {
        Some(explicit) => explicit.get(usize::try_from(index).ok()?)?.clone(),
        None => {
            let factor = usize::try_from(topic.replication_factor).ok()?;
            let offset = topic.id.as_u128() as usize;
            assign(live, index, 1, factor, offset)?.pop()?
        }
    };
    let live_replicas: Vec<i32> = replicas
        .iter()
        .copied()
        .filter(|r| alive.contains(r))
        .collect();
    // Every replica of a new partition is empty, hence in sync.
    let isr = if live_replicas.is_empty() {
        replicas.clone()
    } else {
        live_replicas.clone()
    };
    Some(PartitionState {
        leader: live_replicas.first().copied().unwrap_or(NO_LEADER),
        leader_epoch: 0,
        replicas,
        isr,
        adding_replicas: Vec::new(),
        removing_replicas: Vec::new(),
    })
}

/// Finishes a reassignment whose target replicas are all in sync: the replicas become the
/// target, and a leader outside it hands over to the first in-sync live target replica.
fn complete_reassignment(next: &mut PartitionState, alive: &BTreeSet<i32>) {
    let target = target_replicas(next);
    if !target.iter().all(|r| next.isr.contains(r)) {
        return;
    }
    if !target.contains(&next.leader) {
        let Some(&leader) = target.iter().find(|r| alive.contains(r)) else {
            return;
        };
        next.leader = leader;
        next.leader_epoch += 1;
    }
    next.isr.retain(|r| target.contains(r));
    next.replicas = target;
    next.adding_replicas.clear();
    next.removing_replicas.clear();
}

fn next_state(
    state: &PartitionState,
    alive: &BTreeSet<i32>,
    topic: &TopicSpec,
    wants_preferred: bool,
) -> PartitionState {
    let mut next = state.clone();
    let leader_alive = state.leader != NO_LEADER && alive.contains(&state.leader);
    if leader_alive {
        // Dead followers leave the ISR at once; the leader shrinks it for slow ones itself.
        next.isr.retain(|r| *r == state.leader || alive.contains(r));
        if state.is_reassigning() {
            complete_reassignment(&mut next, alive);
            return next;
        }
        if wants_preferred
            && let Some(&first) = state.replicas.first()
            && first != state.leader
            && alive.contains(&first)
            && state.isr.contains(&first)
        {
            next.leader = first;
            next.leader_epoch += 1;
        }
        return next;
    }
    // In replica order, so the preferred replica wins when it is eligible.
    let in_sync = state
        .replicas
        .iter()
        .copied()
        .find(|r| state.isr.contains(r) && alive.contains(r));
    match in_sync {
        Some(leader) => {
            next.leader = leader;
            next.leader_epoch += 1;
            next.isr.retain(|r| alive.contains(r));
        }
        None => {
            let unclean = topic
                .unclean_leader_election
                .then(|| state.replicas.iter().copied().find(|r| alive.contains(r)))
                .flatten();
            match unclean {
                Some(leader) => {
                    tracing::warn!(topic = %topic.id, leader, "unclean leader election: an out-of-sync replica leads");
                    next.leader = leader;
                    next.leader_epoch += 1;
                    next.isr = vec![leader];
                }
                None if state.leader != NO_LEADER => {
                    // Keep the ISR: its last members are the ones that may lead again.
                    next.leader = NO_LEADER;
                    next.leader_epoch += 1;
                }
                None => {}
            }
        }
    }
    next
}

#[cfg(test)]
mod tests;
