//! The controller's decisions as a pure function of the cluster's state: which partition states
//! to create (replicas for new partitions), which to change (a new leader when the leader is
//! gone, dead brokers out of the ISR) and which to delete (partitions of deleted topics). The
//! controller (`controller.rs`) only reads the store, calls [`plan`] and writes the result.
//!
//! A broker that restarted since the ISR recorded it (a new incarnation) may have lost what it
//! acknowledged. While a member that stayed up is live, restarted members leave the ISR and may
//! not lead until they have caught up again. When none is, nobody is removed (the ISR keeps the
//! replicas that may hold the acknowledged data) and the partition waits until every member is
//! back: then all of them restarted (a whole-cluster restart) and the first in replica order
//! leads, passing over members whose data directory held no logs when they started (a new or
//! wiped disk) while another member came back with its logs. The first one back is not elected
//! at once, as it may be the one that came back empty.

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

/// What the plan needs of a live broker.
#[derive(Debug, Clone, Copy)]
struct Live {
    /// The incarnation it runs as.
    incarnation: u64,
    /// Its data directory held no logs when it started.
    started_empty: bool,
}

/// The live brokers, by id.
type Alive = BTreeMap<i32, Live>;

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
    let alive: Alive = live
        .iter()
        .map(|b| {
            let live = Live {
                incarnation: b.incarnation,
                started_empty: b.started_empty,
            };
            (b.id, live)
        })
        .collect();
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
    alive: &Alive,
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
        .filter(|r| alive.contains_key(r))
        .collect();
    // Every replica of a new partition is empty, hence in sync.
    let isr = if live_replicas.is_empty() {
        replicas.clone()
    } else {
        live_replicas.clone()
    };
    let mut state = PartitionState {
        leader: live_replicas.first().copied().unwrap_or(NO_LEADER),
        leader_epoch: 0,
        replicas,
        isr,
        incarnations: BTreeMap::new(),
        adding_replicas: Vec::new(),
        removing_replicas: Vec::new(),
    };
    for r in live_replicas {
        state.stamp(r, alive[&r].incarnation);
    }
    Some(state)
}

/// Whether ISR member `replica` is live but restarted since the ISR recorded it.
fn restarted(state: &PartitionState, alive: &Alive, replica: i32) -> bool {
    alive
        .get(&replica)
        .is_some_and(|live| !state.is_current(replica, live.incarnation))
}

/// Whether an ISR member is live and runs as the incarnation the ISR recorded.
fn any_current(state: &PartitionState, alive: &Alive) -> bool {
    state
        .isr
        .iter()
        .any(|r| alive.contains_key(r) && !restarted(state, alive, *r))
}

/// Takes restarted brokers out of the ISR while a member that stayed up is live.
fn drop_restarted(next: &mut PartitionState, alive: &Alive) {
    if !any_current(next, alive) {
        return;
    }
    let keep: Vec<i32> = next
        .isr
        .iter()
        .copied()
        .filter(|r| !restarted(next, alive, *r))
        .collect();
    next.retain_isr(|r| keep.contains(&r));
}

/// Makes live `leader` the leader under a new epoch, recorded in sync as the incarnation it
/// runs as.
fn elect(next: &mut PartitionState, alive: &Alive, leader: i32) {
    next.leader = leader;
    next.leader_epoch += 1;
    if let Some(live) = alive.get(&leader) {
        next.stamp(leader, live.incarnation);
    }
}

/// Finishes a reassignment whose target replicas are all in sync: the replicas become the
/// target, and a leader outside it hands over to the first in-sync live target replica.
fn complete_reassignment(next: &mut PartitionState, alive: &Alive) {
    let target = target_replicas(next);
    if !target.iter().all(|r| next.isr.contains(r)) {
        return;
    }
    if !target.contains(&next.leader) {
        let Some(&leader) = target.iter().find(|r| alive.contains_key(r)) else {
            return;
        };
        elect(next, alive, leader);
    }
    next.retain_isr(|r| target.contains(&r));
    next.replicas = target;
    next.adding_replicas.clear();
    next.removing_replicas.clear();
}

fn next_state(
    state: &PartitionState,
    alive: &Alive,
    topic: &TopicSpec,
    wants_preferred: bool,
) -> PartitionState {
    let mut next = state.clone();
    drop_restarted(&mut next, alive);
    // A leader that restarted is out of the ISR now, or no member stayed up and it may be
    // elected again, under a new epoch, below.
    let leader_alive = next.leader != NO_LEADER
        && alive.contains_key(&next.leader)
        && !restarted(state, alive, next.leader);
    if leader_alive {
        // Dead followers leave the ISR at once; the leader shrinks it for slow ones itself.
        let leader = next.leader;
        next.retain_isr(|r| r == leader || alive.contains_key(&r));
        if next.is_reassigning() {
            complete_reassignment(&mut next, alive);
            return next;
        }
        if wants_preferred
            && let Some(&first) = next.replicas.first()
            && first != leader
            && alive.contains_key(&first)
            && next.isr.contains(&first)
        {
            elect(&mut next, alive, first);
        }
        return next;
    }
    // Restarted members are still in the ISR only when no member that stayed up is live: they
    // may lead once every member is back, one that came back with its logs before one that came
    // back empty. In replica order, so the preferred replica wins when it is eligible.
    let all_back = next.isr.iter().all(|r| alive.contains_key(r));
    let eligible: Vec<i32> = next
        .replicas
        .iter()
        .copied()
        .filter(|r| {
            next.isr.contains(r)
                && alive.contains_key(r)
                && (all_back || !restarted(&next, alive, *r))
        })
        .collect();
    let came_back_empty = |r: i32| restarted(&next, alive, r) && alive[&r].started_empty;
    let in_sync = eligible
        .iter()
        .copied()
        .find(|r| !came_back_empty(*r))
        .or_else(|| eligible.first().copied());
    match in_sync {
        Some(leader) => {
            elect(&mut next, alive, leader);
            next.retain_isr(|r| alive.contains_key(&r));
        }
        None => {
            let unclean = topic
                .unclean_leader_election
                .then(|| {
                    next.replicas
                        .iter()
                        .copied()
                        .find(|r| alive.contains_key(r))
                })
                .flatten();
            match unclean {
                Some(leader) => {
                    tracing::warn!(topic = %topic.id, leader, "unclean leader election: an out-of-sync replica leads");
                    next.retain_isr(|_| false);
                    next.isr = vec![leader];
                    elect(&mut next, alive, leader);
                }
                None if next.leader != NO_LEADER => {
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
