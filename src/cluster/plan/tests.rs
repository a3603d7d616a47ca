use super::*;

fn live(ids: &[i32]) -> Vec<Candidate> {
    ids.iter()
        .map(|id| Candidate {
            id: *id,
            rack: None,
            incarnation: 0,
            started_empty: false,
        })
        .collect()
}

/// Live brokers running as the given incarnations.
fn live_as(brokers: &[(i32, u64)]) -> Vec<Candidate> {
    brokers
        .iter()
        .map(|(id, incarnation)| Candidate {
            id: *id,
            rack: None,
            incarnation: *incarnation,
            started_empty: false,
        })
        .collect()
}

/// `s` with its ISR members recorded as the given incarnations (of brokers in the ISR).
fn stamped(mut s: PartitionState, incarnations: &[(i32, u64)]) -> PartitionState {
    for (broker, incarnation) in incarnations {
        if s.isr.contains(broker) {
            s.stamp(*broker, *incarnation);
        }
    }
    s
}

fn topic(partitions: i32, rf: i16) -> TopicSpec {
    TopicSpec {
        id: Uuid::from_u128(7),
        partitions,
        replication_factor: rf,
        assignment: None,
        unclean_leader_election: false,
    }
}

fn state(replicas: &[i32], leader: i32, epoch: i32, isr: &[i32]) -> PartitionState {
    PartitionState {
        replicas: replicas.to_vec(),
        leader,
        leader_epoch: epoch,
        isr: isr.to_vec(),
        incarnations: BTreeMap::new(),
        adding_replicas: Vec::new(),
        removing_replicas: Vec::new(),
    }
}

fn moving(
    replicas: &[i32],
    leader: i32,
    isr: &[i32],
    adding: &[i32],
    removing: &[i32],
) -> PartitionState {
    PartitionState {
        adding_replicas: adding.to_vec(),
        removing_replicas: removing.to_vec(),
        ..state(replicas, leader, 2, isr)
    }
}

#[test]
fn reassignments_complete_once_the_target_is_in_sync() {
    let t = topic(1, 2);
    let r = [3, 2, 1];
    // Replica 3 is being added, 1 removed; 1 leads.
    assert_eq!(
        update(&t, moving(&r, 1, &[1, 2], &[3], &[1]), &[1, 2, 3]),
        None,
        "3 not in sync yet"
    );
    assert_eq!(
        update(&t, moving(&r, 1, &[1, 2, 3], &[3], &[1]), &[1, 2, 3]),
        Some(state(&[3, 2], 3, 3, &[2, 3])),
        "done: the leader was being removed, the first target replica leads"
    );
    assert_eq!(
        update(&t, moving(&r, 2, &[1, 2, 3], &[3], &[1]), &[1, 2, 3]),
        Some(state(&[3, 2], 2, 2, &[2, 3])),
        "done: the leader stays"
    );
}

fn stored(t: &TopicSpec, index: i32, s: PartitionState) -> BTreeMap<PartitionKey, Stored> {
    BTreeMap::from([(
        (t.id, index),
        Stored {
            state: s,
            version: 10,
        },
    )])
}

/// The one update `plan` makes for partition 0 of `t`, given its state and the live brokers.
fn update(t: &TopicSpec, s: PartitionState, alive: &[i32]) -> Option<PartitionState> {
    update_as(t, s, &live(alive))
}

/// [`update`] with live brokers that have incarnations.
fn update_as(t: &TopicSpec, s: PartitionState, live: &[Candidate]) -> Option<PartitionState> {
    let changes = plan(
        std::slice::from_ref(t),
        &stored(t, 0, s),
        live,
        &BTreeSet::new(),
    );
    match changes.as_slice() {
        [] => None,
        [Change::Update { version, state, .. }] => {
            assert_eq!(*version, 10, "compares the version read");
            Some(state.clone())
        }
        other => panic!("unexpected changes {other:?}"),
    }
}

#[test]
fn new_partitions_get_replicas_on_live_brokers() {
    let t = topic(3, 3);
    let changes = plan(
        std::slice::from_ref(&t),
        &BTreeMap::new(),
        &live(&[1, 2, 3]),
        &BTreeSet::new(),
    );
    assert_eq!(changes.len(), 3);
    let mut leaders = BTreeSet::new();
    for change in changes {
        let Change::Create { state, .. } = change else {
            panic!("creates only")
        };
        assert_eq!(state.replicas.len(), 3);
        assert_eq!(state.leader, state.replicas[0]);
        assert_eq!(state.isr, state.replicas);
        assert_eq!(state.leader_epoch, 0);
        leaders.insert(state.leader);
    }
    assert_eq!(leaders.len(), 3, "leaders spread over the brokers");
}

#[test]
fn new_partitions_record_the_incarnations_in_sync() {
    let t = topic(1, 2);
    let live = live_as(&[(1, 11), (2, 21)]);
    let changes = plan(
        std::slice::from_ref(&t),
        &BTreeMap::new(),
        &live,
        &BTreeSet::new(),
    );
    let [Change::Create { state, .. }] = changes.as_slice() else {
        panic!("one create: {changes:?}")
    };
    assert_eq!(state.incarnations, BTreeMap::from([(1, 11), (2, 21)]));
}

#[test]
fn restarted_brokers_do_not_lead_before_catching_up() {
    let t = topic(1, 3);
    let r = [1, 2, 3];
    let all = [(1, 11), (2, 21), (3, 31)];
    type Row<'a> = (
        &'a str,
        PartitionState,
        &'a [(i32, u64)],
        Option<PartitionState>,
    );
    #[rustfmt::skip]
    let table: Vec<Row> = vec![
        ("nobody restarted: nothing to do",
            stamped(state(&r, 1, 4, &r), &all), &all, None),
        ("a restarted follower leaves the ISR",
            stamped(state(&r, 1, 4, &r), &all), &[(1, 11), (2, 22), (3, 31)],
            Some(stamped(state(&r, 1, 4, &[1, 3]), &[(1, 11), (3, 31)]))),
        ("a restarted leader hands over to an in-sync replica",
            stamped(state(&r, 1, 4, &r), &all), &[(1, 12), (2, 21), (3, 31)],
            Some(stamped(state(&r, 2, 5, &[2, 3]), &[(2, 21), (3, 31)]))),
        ("dead leader: the replica that stayed up leads, not the restarted one first in order",
            stamped(state(&r, 1, 4, &r), &all), &[(2, 22), (3, 31)],
            Some(stamped(state(&r, 3, 5, &[3]), &[(3, 31)]))),
        ("dead leader and only a restarted follower: no leader until the leader returns",
            stamped(state(&r, 1, 4, &[1, 2]), &all), &[(2, 22), (3, 31)],
            Some(stamped(state(&r, NO_LEADER, 5, &[1, 2]), &[(1, 11), (2, 21)]))),
        ("... which comes back restarted too: the first in replica order leads",
            stamped(state(&r, NO_LEADER, 5, &[1, 2]), &all), &[(1, 12), (2, 22), (3, 31)],
            Some(stamped(state(&r, 1, 6, &[1, 2]), &[(1, 12), (2, 21)]))),
        ("whole cluster down: the first one back does not lead alone",
            stamped(state(&r, NO_LEADER, 5, &r), &all), &[(3, 32)], None),
        ("... nor the first two",
            stamped(state(&r, NO_LEADER, 5, &r), &all), &[(2, 22), (3, 32)], None),
        ("... once all are back, the first in replica order leads",
            stamped(state(&r, NO_LEADER, 5, &r), &all), &[(1, 12), (2, 22), (3, 32)],
            Some(stamped(state(&r, 1, 6, &r), &[(1, 12), (2, 21), (3, 31)]))),
        ("the last in-sync replica restarted: it leads again under a new epoch",
            stamped(state(&r, 1, 4, &[1]), &all), &[(1, 12), (2, 21), (3, 31)],
            Some(stamped(state(&r, 1, 5, &[1]), &[(1, 12)]))),
        ("the offline partition's last in-sync replica returns restarted",
            stamped(state(&r, NO_LEADER, 5, &[2]), &all), &[(2, 22)],
            Some(stamped(state(&r, 2, 6, &[2]), &[(2, 22)]))),
        ("every member restarted: the first replica leads, the others stay for now",
            stamped(state(&r, 1, 4, &r), &all), &[(1, 12), (2, 22), (3, 32)],
            Some(stamped(state(&r, 1, 5, &r), &[(1, 12), (2, 21), (3, 31)]))),
        ("... and leave the ISR in the next round",
            stamped(state(&r, 1, 5, &r), &[(1, 12), (2, 21), (3, 31)]), &[(1, 12), (2, 22), (3, 32)],
            Some(stamped(state(&r, 1, 5, &[1]), &[(1, 12)]))),
    ];
    for (name, before, alive, expected) in table {
        assert_eq!(update_as(&t, before, &live_as(alive)), expected, "{name}");
    }
}

#[test]
fn after_a_whole_cluster_restart_a_replica_back_with_its_logs_leads_before_an_empty_one() {
    let t = topic(1, 3);
    let r = [1, 2, 3];
    let all = [(1, 11), (2, 21), (3, 31)];
    let back = |empty: &[i32]| {
        let mut live = live_as(&[(1, 12), (2, 22), (3, 32)]);
        for c in &mut live {
            c.started_empty = empty.contains(&c.id);
        }
        live
    };
    let leader_after = |s: PartitionState, empty: &[i32]| {
        update_as(&t, s, &back(empty)).map(|next| (next.leader, next.leader_epoch))
    };
    let down = stamped(state(&r, NO_LEADER, 5, &r), &all);
    assert_eq!(
        leader_after(down.clone(), &[1]),
        Some((2, 6)),
        "the emptied first replica is passed over"
    );
    assert_eq!(leader_after(down.clone(), &[1, 2]), Some((3, 6)));
    assert_eq!(
        leader_after(down.clone(), &[1, 2, 3]),
        Some((1, 6)),
        "all came back empty: the first in replica order, as before"
    );
    assert_eq!(leader_after(down, &[]), Some((1, 6)));
    // A member that caught up since it started empty (in sync as its new incarnation) is no
    // longer passed over.
    let caught_up = stamped(state(&r, 3, 6, &[1, 3]), &[(1, 12), (3, 31)]);
    let mut live = back(&[1]);
    live.retain(|c| c.id != 3);
    assert_eq!(
        update_as(&t, caught_up, &live).map(|next| next.leader),
        Some(1),
        "the leader died: the member in sync as its current incarnation leads"
    );
}

#[test]
fn new_partitions_wait_for_enough_brokers() {
    let t = topic(1, 3);
    let changes = plan(&[t], &BTreeMap::new(), &live(&[1, 2]), &BTreeSet::new());
    assert!(changes.is_empty());
}

#[test]
fn explicit_assignments_are_kept() {
    let mut t = topic(2, 1);
    t.assignment = Some(vec![vec![3, 1], vec![2, 3]]);
    let changes = plan(&[t], &BTreeMap::new(), &live(&[1, 3]), &BTreeSet::new());
    let states: Vec<_> = changes
        .into_iter()
        .map(|c| match c {
            Change::Create { state, .. } => state,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(states[0], state(&[3, 1], 3, 0, &[3, 1]));
    assert_eq!(states[1], state(&[2, 3], 3, 0, &[3]));
}

#[test]
fn leader_elections() {
    let t = topic(1, 3);
    let mut unclean = topic(1, 3);
    unclean.unclean_leader_election = true;
    let r = [1, 2, 3];
    type Row<'a> = (
        &'a str,
        &'a TopicSpec,
        PartitionState,
        &'a [i32],
        Option<PartitionState>,
    );
    #[rustfmt::skip]
    let table: Vec<Row> = vec![
        ("healthy: nothing to do", &t, state(&r, 1, 4, &r), &[1, 2, 3], None),
        ("dead follower leaves the ISR", &t, state(&r, 1, 4, &r), &[1, 3], Some(state(&r, 1, 4, &[1, 3]))),
        ("dead leader: first live ISR member in replica order", &t, state(&r, 1, 4, &[1, 3, 2]), &[2, 3], Some(state(&r, 2, 5, &[3, 2]))),
        ("dead leader: out-of-sync replicas are not eligible", &t, state(&r, 1, 4, &[1, 3]), &[2, 3], Some(state(&r, 3, 5, &[3]))),
        ("no live ISR member: offline, ISR kept", &t, state(&r, 1, 4, &[1]), &[2, 3], Some(state(&r, NO_LEADER, 5, &[1]))),
        ("offline stays offline without change", &t, state(&r, NO_LEADER, 5, &[1]), &[2, 3], None),
        ("offline partition comes back with its last ISR member", &t, state(&r, NO_LEADER, 5, &[1]), &[1, 2], Some(state(&r, 1, 6, &[1]))),
        ("unclean election when allowed", &unclean, state(&r, 1, 4, &[1]), &[3], Some(state(&r, 3, 5, &[3]))),
        ("the leader itself is never dropped from the ISR", &t, state(&r, 2, 1, &[2]), &[2], None),
    ];
    for (name, topic, before, alive, expected) in table {
        assert_eq!(update(topic, before, alive), expected, "{name}");
    }
}

#[test]
fn preferred_leader_moves_back_only_on_request_and_when_in_sync() {
    let t = topic(1, 3);
    let key = (t.id, 0);
    let requested = BTreeSet::from([key]);
    let r = [1, 2, 3];
    let run = |s: PartitionState, alive: &[i32], preferred: &BTreeSet<PartitionKey>| {
        plan(
            std::slice::from_ref(&t),
            &stored(&t, 0, s),
            &live(alive),
            preferred,
        )
    };
    assert!(run(state(&r, 2, 3, &r), &r, &BTreeSet::new()).is_empty());
    assert_eq!(
        run(state(&r, 2, 3, &r), &r, &requested),
        vec![Change::Update {
            partition: key,
            version: 10,
            state: state(&r, 1, 4, &r)
        }]
    );
    assert!(run(state(&r, 2, 3, &[2, 3]), &r, &requested).is_empty());
}

#[test]
fn partitions_of_deleted_topics_are_removed() {
    let t = topic(1, 1);
    let states = stored(&t, 0, state(&[1], 1, 0, &[1]));
    assert_eq!(
        plan(&[], &states, &live(&[1]), &BTreeSet::new()),
        vec![Change::Delete {
            partition: (t.id, 0),
            version: 10
        }]
    );
}
