//! Partition reassignment as changes of a partition's state (Kafka's KIP-455 model). Starting a
//! reassignment makes the replicas the union of the target and the current ones — target first,
//! so the target's first broker becomes the preferred leader — and records which replicas are
//! being added and removed. The new replicas start following at once; the controller completes
//! the move once every target replica is in the ISR (see `plan.rs`). Cancelling goes back to the
//! original replicas.

use super::state::PartitionState;

/// Why a reassignment cannot start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReassignError {
    /// The target is empty or names a broker twice.
    #[error("the replicas {0:?} must be distinct and not empty")]
    InvalidTarget(Vec<i32>),
    /// The target names a broker that is not registered.
    #[error("broker {0} is not a live broker of the cluster")]
    UnknownBroker(i32),
    /// The target changes the replication factor and the request did not allow it.
    #[error("the target changes the replication factor from {from} to {to}")]
    ReplicationFactorChange {
        /// The current replication factor.
        from: usize,
        /// The target's.
        to: usize,
    },
    /// A cancellation for a partition that is not being reassigned.
    #[error("the partition is not being reassigned")]
    NoReassignmentInProgress,
}

/// The replicas the partition had before its ongoing reassignment (or has, without one).
pub fn original_replicas(state: &PartitionState) -> Vec<i32> {
    state
        .replicas
        .iter()
        .copied()
        .filter(|r| !state.adding_replicas.contains(r))
        .collect()
}

/// The replicas the partition will have once its reassignment completes.
pub fn target_replicas(state: &PartitionState) -> Vec<i32> {
    state
        .replicas
        .iter()
        .copied()
        .filter(|r| !state.removing_replicas.contains(r))
        .collect()
}

/// Checks a replica list given by a client (a move's target, or a topic's explicit assignment):
/// distinct live brokers, at least one.
pub fn check_replicas(replicas: &[i32], live: &[i32]) -> Result<(), ReassignError> {
    let mut distinct = replicas.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    if replicas.is_empty() || distinct.len() != replicas.len() {
        return Err(ReassignError::InvalidTarget(replicas.to_vec()));
    }
    match replicas.iter().find(|b| !live.contains(b)) {
        Some(unknown) => Err(ReassignError::UnknownBroker(*unknown)),
        None => Ok(()),
    }
}

/// The state that starts moving the partition to `target` (replacing any ongoing move).
pub fn start(
    state: &PartitionState,
    target: &[i32],
    live: &[i32],
    allow_replication_factor_change: bool,
) -> Result<PartitionState, ReassignError> {
    check_replicas(target, live)?;
    let original = original_replicas(state);
    if !allow_replication_factor_change && original.len() != target.len() {
        return Err(ReassignError::ReplicationFactorChange {
            from: original.len(),
            to: target.len(),
        });
    }
    let mut next = state.clone();
    next.replicas = target.to_vec();
    next.replicas
        .extend(original.iter().copied().filter(|r| !target.contains(r)));
    next.adding_replicas = target
        .iter()
        .copied()
        .filter(|r| !original.contains(r))
        .collect();
    next.removing_replicas = original
        .iter()
        .copied()
        .filter(|r| !target.contains(r))
        .collect();
    // Replicas of an abandoned target leave the ISR with it.
    let replicas = next.replicas.clone();
    next.retain_isr(|r| replicas.contains(&r));
    Ok(next)
}

/// The state that cancels the ongoing reassignment: back to the original replicas.
pub fn cancel(state: &PartitionState) -> Result<PartitionState, ReassignError> {
    if !state.is_reassigning() {
        return Err(ReassignError::NoReassignmentInProgress);
    }
    let original = original_replicas(state);
    let mut next = state.clone();
    next.retain_isr(|r| original.contains(&r));
    next.replicas = original;
    next.adding_replicas.clear();
    next.removing_replicas.clear();
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(replicas: &[i32], isr: &[i32], adding: &[i32], removing: &[i32]) -> PartitionState {
        PartitionState {
            replicas: replicas.to_vec(),
            leader: 1,
            leader_epoch: 3,
            isr: isr.to_vec(),
            incarnations: Default::default(),
            adding_replicas: adding.to_vec(),
            removing_replicas: removing.to_vec(),
        }
    }

    #[test]
    fn starting_a_move_adds_the_target_in_front() {
        let before = state(&[1, 2, 3], &[1, 2, 3], &[], &[]);
        let moving = start(&before, &[4, 2, 3], &[1, 2, 3, 4], false).expect("starts");
        assert_eq!(moving, state(&[4, 2, 3, 1], &[1, 2, 3], &[4], &[1]));
        assert_eq!(target_replicas(&moving), [4, 2, 3]);
        assert_eq!(original_replicas(&moving), [2, 3, 1]);
        assert_eq!(
            moving.leader, 1,
            "leadership moves only when the move completes"
        );
    }

    #[test]
    fn a_new_target_replaces_an_ongoing_move_and_cancel_restores_the_original() {
        let moving = state(&[4, 2, 3, 1], &[1, 2, 3, 4], &[4], &[1]);
        let again = start(&moving, &[5, 2, 3], &[1, 2, 3, 4, 5], false).expect("starts");
        assert_eq!(again, state(&[5, 2, 3, 1], &[1, 2, 3], &[5], &[1]));
        let cancelled = cancel(&again).expect("cancels");
        assert_eq!(cancelled, state(&[2, 3, 1], &[1, 2, 3], &[], &[]));
        assert_eq!(
            cancel(&cancelled),
            Err(ReassignError::NoReassignmentInProgress)
        );
    }

    #[test]
    fn bad_targets_are_refused() {
        let s = state(&[1, 2], &[1, 2], &[], &[]);
        let live = [1, 2, 3];
        assert!(matches!(
            start(&s, &[], &live, true),
            Err(ReassignError::InvalidTarget(_))
        ));
        assert!(matches!(
            start(&s, &[1, 1], &live, true),
            Err(ReassignError::InvalidTarget(_))
        ));
        assert_eq!(
            start(&s, &[1, 9], &live, true),
            Err(ReassignError::UnknownBroker(9))
        );
        assert!(matches!(
            start(&s, &[1, 2, 3], &live, false),
            Err(ReassignError::ReplicationFactorChange { from: 2, to: 3 })
        ));
        assert!(start(&s, &[1, 2, 3], &live, true).is_ok());
    }
}
