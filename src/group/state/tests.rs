//! The group state machine driven by plain calls with an explicit clock.

use super::*;

const SESSION: i32 = 10_000;
const REBALANCE: i32 = 30_000;
const DELAY: i32 = 3_000;

fn limits() -> GroupLimits {
    GroupLimits {
        initial_rebalance_delay_ms: DELAY,
        ..GroupLimits::default()
    }
}

fn request(member_id: &str, protocols: &[&str]) -> JoinRequest {
    JoinRequest {
        member_id: member_id.to_string(),
        instance_id: None,
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: SESSION,
        rebalance_timeout_ms: REBALANCE,
        protocol_type: "consumer".into(),
        protocols: protocols
            .iter()
            .map(|p| (p.to_string(), Bytes::from(format!("meta-{p}"))))
            .collect(),
        require_known_member_id: false,
    }
}

fn now<T>(reply: Reply<T>) -> T {
    match reply {
        Reply::Now(t) => t,
        Reply::Later(_) => panic!("expected an immediate answer"),
    }
}

fn later<T: std::fmt::Debug>(reply: Reply<T>) -> oneshot::Receiver<T> {
    match reply {
        Reply::Later(rx) => rx,
        Reply::Now(t) => panic!("expected to wait, got {t:?}"),
    }
}

fn done<T>(rx: &mut oneshot::Receiver<T>) -> Option<T> {
    rx.try_recv().ok()
}

/// Two members joined and synced at t=0..DELAY: returns the group and the two member ids.
fn stable_pair() -> (Group, String, String) {
    let mut g = Group::new("g", limits(), 0);
    let mut a = later(g.join(request("", &["range"]), 0));
    let mut b = later(g.join(request("", &["range"]), 10));
    assert!(
        done(&mut a).is_none(),
        "the initial delay holds the first rebalance"
    );
    g.tick(i64::from(DELAY) + 10);
    let (ra, rb) = (done(&mut a).expect("joined"), done(&mut b).expect("joined"));
    assert_eq!((ra.generation, rb.generation), (1, 1));
    let (leader, follower) = if ra.leader == ra.member_id {
        (ra, rb)
    } else {
        (rb, ra)
    };
    assert_eq!(leader.members.len(), 2, "the leader gets every member");
    assert!(follower.members.is_empty());
    let assignments = vec![
        (leader.member_id.clone(), Bytes::from_static(b"L")),
        (follower.member_id.clone(), Bytes::from_static(b"F")),
    ];
    let mut fs = later(
        g.sync(
            &follower.member_id,
            None,
            1,
            (None, None),
            Vec::new(),
            3_500,
        )
        .0,
    );
    let (reply, completed) = g.sync(&leader.member_id, None, 1, (None, None), assignments, 3_600);
    assert!(completed);
    let mut ls = later(reply);
    g.finish_sync(Ok(()), 4_000);
    assert_eq!(done(&mut ls).expect("synced"), Ok(Bytes::from_static(b"L")));
    assert_eq!(done(&mut fs).expect("synced"), Ok(Bytes::from_static(b"F")));
    assert_eq!(g.state(), GroupState::Stable);
    (g, leader.member_id, follower.member_id)
}

#[test]
fn members_join_sync_and_receive_their_assignments() {
    let (g, leader, follower) = stable_pair();
    assert_eq!(g.generation(), 1);
    assert_eq!(g.protocol(), Some("range"));
    let stored = g.stored();
    assert_eq!(stored.leader.as_deref(), Some(leader.as_str()));
    assert_eq!(stored.members.len(), 2);
    assert!(stored.members.iter().any(|m| m.id == follower));
}

#[test]
fn a_new_member_must_first_get_its_id_from_v4() {
    let mut g = Group::new("g", limits(), 0);
    let mut req = request("", &["range"]);
    req.require_known_member_id = true;
    let first = now(g.join(req.clone(), 0));
    assert_eq!(first.error, Some(GroupError::MemberIdRequired));
    assert!(!first.member_id.is_empty());
    req.member_id = first.member_id.clone();
    let mut rx = later(g.join(req, 5));
    g.tick(i64::from(DELAY) + 5);
    let joined = done(&mut rx).expect("joined");
    assert_eq!(joined.error, None);
    assert_eq!(joined.member_id, first.member_id);
    assert_eq!(joined.leader, first.member_id);
}

#[test]
fn errors_match_what_clients_expect() {
    let (mut g, leader, follower) = stable_pair();
    let t = 5_000;
    assert_eq!(g.heartbeat(&leader, None, 1, t), Ok(()));
    assert_eq!(
        g.heartbeat("nobody", None, 1, t),
        Err(GroupError::UnknownMemberId)
    );
    assert_eq!(
        g.heartbeat(&leader, None, 7, t),
        Err(GroupError::IllegalGeneration)
    );
    assert_eq!(
        g.check_commit(&follower, None, 0),
        Err(GroupError::IllegalGeneration)
    );
    assert_eq!(
        g.check_commit("", None, -1),
        Err(GroupError::UnknownMemberId),
        "a standalone commit into a group with members"
    );
    assert_eq!(g.check_commit(&follower, None, 1), Ok(()));
    let mut bad_session = request(&leader, &["range"]);
    bad_session.session_timeout_ms = 10;
    assert_eq!(
        now(g.join(bad_session, t)).error,
        Some(GroupError::InvalidSessionTimeout)
    );
    assert_eq!(
        now(g.join(request("", &["roundrobin"]), t)).error,
        Some(GroupError::InconsistentGroupProtocol),
        "no assignor in common with the members"
    );
    let mut other_type = request("", &["range"]);
    other_type.protocol_type = "connect".into();
    assert_eq!(
        now(g.join(other_type, t)).error,
        Some(GroupError::InconsistentGroupProtocol)
    );
    assert_eq!(
        now(g.join(request("ghost", &["range"]), t)).error,
        Some(GroupError::UnknownMemberId)
    );
    let (reply, _) = g.sync(&follower, None, 1, (Some("connect"), None), Vec::new(), t);
    assert_eq!(now(reply), Err(GroupError::InconsistentGroupProtocol));

    // A rebalance: heartbeats say REBALANCE_IN_PROGRESS, syncs of the old generation too.
    let _c = later(g.join(request("", &["range"]), t));
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    assert_eq!(
        g.heartbeat(&leader, None, 1, t),
        Err(GroupError::RebalanceInProgress)
    );
    let (reply, _) = g.sync(&follower, None, 1, (None, None), Vec::new(), t);
    assert_eq!(now(reply), Err(GroupError::RebalanceInProgress));
    assert_eq!(
        g.check_commit(&follower, None, 1),
        Ok(()),
        "members may commit the old generation's progress before rejoining"
    );
}

#[test]
fn a_member_that_stops_heartbeating_is_removed_and_the_rest_rebalance() {
    let (mut g, leader, follower) = stable_pair();
    // The leader keeps heartbeating; the follower goes silent.
    // The follower's last sign of life was its SyncGroup, at 3_500.
    let session_end = 3_500 + i64::from(SESSION);
    let mut t = 4_000;
    while t + 1_000 < session_end {
        t += 1_000;
        assert_eq!(g.heartbeat(&leader, None, 1, t), Ok(()));
        g.tick(t);
    }
    assert_eq!(g.state(), GroupState::Stable, "not yet expired");
    t = session_end + 1;
    assert_eq!(g.heartbeat(&leader, None, 1, t), Ok(()));
    g.tick(t);
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    assert_eq!(
        g.heartbeat(&follower, None, 1, t),
        Err(GroupError::UnknownMemberId)
    );
    assert_eq!(
        g.heartbeat(&leader, None, 1, t),
        Err(GroupError::RebalanceInProgress)
    );
    let mut rx = later(g.join(request(&leader, &["range"]), t + 10));
    let rejoined = done(&mut rx).expect("the only member rejoined: no need to wait");
    assert_eq!((rejoined.generation, rejoined.members.len()), (2, 1));
}

#[test]
fn members_that_do_not_rejoin_in_time_are_dropped() {
    let (mut g, leader, follower) = stable_pair();
    let t = 5_000;
    let mut third = later(g.join(request("", &["range"]), t));
    let mut lead = later(g.join(request(&leader, &["range"]), t + 1));
    // The follower keeps heartbeating but never rejoins; the rebalance timeout ends the phase.
    let deadline = t + i64::from(REBALANCE);
    for beat in (t + 2..deadline).step_by(1_000) {
        assert_eq!(
            g.heartbeat(&follower, None, 1, beat),
            Err(GroupError::RebalanceInProgress)
        );
        g.tick(beat);
    }
    g.tick(deadline - 1);
    assert!(done(&mut lead).is_none());
    g.tick(t + i64::from(REBALANCE) + 1);
    let joined = done(&mut lead).expect("phase over");
    assert_eq!(joined.generation, 2);
    assert_eq!(joined.members.len(), 2, "the leader and the new member");
    assert!(done(&mut third).is_some());
    assert_eq!(
        g.heartbeat(&follower, None, 2, t + i64::from(REBALANCE) + 2),
        Err(GroupError::UnknownMemberId)
    );
}

#[test]
fn leaving_rebalances_and_the_last_member_leaves_an_empty_group() {
    let (mut g, leader, follower) = stable_pair();
    assert_eq!(g.leave(&follower, None, 5_000), Ok(()));
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    assert_eq!(
        g.leave(&follower, None, 5_000),
        Err(GroupError::UnknownMemberId)
    );
    assert_eq!(g.leave(&leader, None, 5_001), Ok(()));
    assert_eq!(g.state(), GroupState::Empty);
    assert!(g.is_empty());
    assert_eq!(g.generation(), 2);
    assert_eq!(
        g.check_commit("", None, -1),
        Ok(()),
        "standalone commits once empty"
    );
}

#[test]
fn a_leaders_sync_during_the_sync_phase_is_cancelled_by_a_new_join() {
    let mut g = Group::new("g", limits(), 0);
    let mut a = later(g.join(request("", &["range"]), 0));
    g.tick(i64::from(DELAY));
    let ra = done(&mut a).expect("joined");
    let (reply, completed) = g.sync(&ra.member_id, None, 1, (None, None), Vec::new(), 5);
    assert!(completed);
    let mut waiting = later(reply);
    // The assignment could not be persisted: the member hears it and nothing is kept.
    g.finish_sync(Err(GroupError::CoordinatorNotAvailable), 10);
    assert_eq!(
        done(&mut waiting),
        Some(Err(GroupError::CoordinatorNotAvailable))
    );
    assert_eq!(g.state(), GroupState::CompletingRebalance);
    let _b = later(g.join(request("", &["range"]), 20));
    assert_eq!(g.state(), GroupState::PreparingRebalance);
}

#[test]
fn the_assignor_is_the_one_most_members_prefer_among_those_all_support() {
    let mut g = Group::new("g", limits(), 0);
    let mut rx: Vec<_> = [
        &["roundrobin", "range"][..],
        &["range", "roundrobin"],
        &["range", "sticky", "roundrobin"],
    ]
    .iter()
    .enumerate()
    .map(|(i, p)| later(g.join(request("", p), i as i64)))
    .collect();
    g.tick(i64::from(DELAY) + 10);
    let results: Vec<JoinResult> = rx.iter_mut().map(|r| done(r).expect("joined")).collect();
    assert!(
        results
            .iter()
            .all(|r| r.protocol.as_deref() == Some("range"))
    );
}

#[test]
fn a_static_member_rejoining_under_a_new_id_keeps_its_assignment_and_fences_the_old_id() {
    let mut g = Group::new("g", limits(), 0);
    let mut req = request("", &["range"]);
    req.instance_id = Some("instance-1".into());
    let mut rx = later(g.join(req.clone(), 0));
    g.tick(i64::from(DELAY));
    let first = done(&mut rx).expect("joined");
    let (reply, _) = g.sync(
        &first.member_id,
        Some("instance-1"),
        1,
        (None, None),
        vec![(first.member_id.clone(), Bytes::from_static(b"A"))],
        3_050,
    );
    let mut synced = later(reply);
    g.finish_sync(Ok(()), 3_100);
    assert_eq!(done(&mut synced), Some(Ok(Bytes::from_static(b"A"))));

    // The process restarts: a new member id for the same instance, no rebalance.
    let again = now(g.join(req, 5_000));
    assert_eq!(again.error, None);
    assert_ne!(again.member_id, first.member_id);
    assert_eq!(again.generation, 1);
    assert_eq!(g.state(), GroupState::Stable);
    let (reply, _) = g.sync(
        &again.member_id,
        Some("instance-1"),
        1,
        (None, None),
        Vec::new(),
        5_000,
    );
    assert_eq!(now(reply), Ok(Bytes::from_static(b"A")));
    assert_eq!(
        g.heartbeat(&first.member_id, Some("instance-1"), 1, 5_001),
        Err(GroupError::FencedInstanceId)
    );
    assert_eq!(
        g.leave(&first.member_id, Some("instance-1"), 5_002),
        Err(GroupError::FencedInstanceId)
    );
}

#[test]
fn a_restored_group_is_stable_with_its_members_and_generation() {
    let (g, leader, _) = stable_pair();
    let stored = g.stored();
    let restored = Group::restore("g", stored.clone(), limits(), 100_000);
    assert_eq!(restored.state(), GroupState::Stable);
    assert_eq!(restored.generation(), 1);
    assert_eq!(restored.stored().members, stored.members);
    let mut restored = restored;
    assert_eq!(restored.heartbeat(&leader, None, 1, 100_001), Ok(()));
}
