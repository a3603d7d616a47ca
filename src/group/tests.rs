//! The coordinator over an in-memory `__consumer_offsets`: what it writes is what a restart reads.

use std::collections::HashMap;
use std::sync::Mutex as StdMutex;

use super::*;

/// Loads every offsets partition, as a broker leading all of them does.
async fn load_all(coordinator: &GroupCoordinator, log: &dyn OffsetsLog) -> usize {
    let mut loaded = 0;
    for p in 0..log.partitions().unwrap_or(0) {
        loaded += coordinator.load_partition(log, p).await.expect("loaded");
    }
    loaded
}

/// `__consumer_offsets` in memory, with one topic "t" of two partitions to commit for.
#[derive(Default)]
struct MemoryLog {
    partitions: StdMutex<HashMap<i32, Vec<KeyValue>>>,
    fail: AtomicBool,
    /// Another broker leads every partition.
    foreign: AtomicBool,
}

#[async_trait]
impl OffsetsLog for MemoryLog {
    async fn ensure(&self) -> Result<i32, GroupError> {
        Ok(3)
    }
    fn partitions(&self) -> Option<i32> {
        Some(3)
    }
    async fn append(&self, partition: i32, records: Vec<KeyValue>) -> Result<(), GroupError> {
        if self.fail.load(Ordering::Relaxed) {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        self.partitions
            .lock()
            .expect("lock")
            .entry(partition)
            .or_default()
            .extend(records);
        Ok(())
    }
    async fn read_all(&self, partition: i32) -> Result<Vec<KeyValue>, GroupError> {
        Ok(self
            .partitions
            .lock()
            .expect("lock")
            .get(&partition)
            .cloned()
            .unwrap_or_default())
    }
    fn high_watermark(&self, topic: &str, partition: i32) -> Option<i64> {
        (topic == "t" && (0..2).contains(&partition)).then_some(100)
    }
    fn leads(&self, _partition: i32) -> bool {
        !self.foreign.load(Ordering::Relaxed)
    }
}

fn offset(partition: i32, offset: i64) -> OffsetToCommit {
    OffsetToCommit {
        topic: "t".into(),
        partition,
        value: CommittedOffset {
            offset,
            leader_epoch: 0,
            metadata: "m".into(),
            commit_timestamp_ms: 1,
        },
    }
}

const STANDALONE: Committer<'static> = Committer {
    member_id: "",
    generation: -1,
    instance_id: None,
};

#[test]
fn groups_land_in_the_partition_kafka_would_choose() {
    // Java: "abc".hashCode() == 96354; "polygenelubricants".hashCode() == Integer.MIN_VALUE.
    assert_eq!(partition_for("abc", 50), 96354 % 50);
    assert_eq!(partition_for("polygenelubricants", 50), 0);
    assert_eq!(partition_for("", 50), 0);
}

#[tokio::test]
async fn commits_are_read_back_after_a_restart_and_deleted_groups_stay_deleted() {
    let log = MemoryLog::default();
    let coordinator = GroupCoordinator::new(GroupLimits::default());
    let results = coordinator
        .commit(
            &log,
            "g1",
            STANDALONE,
            vec![offset(0, 10), offset(1, 20), offset(1, 25)],
        )
        .await
        .expect("committed");
    assert!(results.iter().all(|(_, _, e)| e.is_none()));
    let refused = coordinator
        .commit(
            &log,
            "g2",
            STANDALONE,
            vec![
                offset(7, 1),
                OffsetToCommit {
                    value: CommittedOffset {
                        metadata: "x".repeat(OFFSET_METADATA_MAX_BYTES + 1),
                        ..offset(0, 1).value
                    },
                    ..offset(0, 1)
                },
                offset(1, 3),
            ],
        )
        .await
        .expect("answered");
    assert_eq!(
        refused.iter().map(|r| r.2).collect::<Vec<_>>(),
        [
            Some(GroupError::UnknownTopicOrPartition),
            Some(GroupError::OffsetMetadataTooLarge),
            None
        ]
    );

    let restarted = GroupCoordinator::new(GroupLimits::default());
    assert_eq!(load_all(&restarted, &log).await, 2);
    let fetched = restarted.fetch_offsets("g1", None).await;
    let offsets: Vec<(i32, i64)> = fetched
        .iter()
        .map(|((_, p), o)| (*p, o.as_ref().expect("committed").offset))
        .collect();
    assert_eq!(offsets, [(0, 10), (1, 25)], "the latest commit wins");
    assert_eq!(
        restarted
            .fetch_offsets("g9", Some(vec![("t".into(), 0)]))
            .await,
        [(("t".to_string(), 0), None)]
    );
    assert_eq!(
        restarted.lag(&log).await.len(),
        3,
        "one lag per committed partition"
    );

    restarted.delete(&log, "g1").await.expect("deleted");
    assert_eq!(
        restarted.delete(&log, "g1").await,
        Err(GroupError::GroupIdNotFound)
    );
    let again = GroupCoordinator::new(GroupLimits::default());
    assert_eq!(load_all(&again, &log).await, 1);
    assert!(again.describe("g1").await.is_none());
    assert!(again.describe("g2").await.is_some());
}

#[tokio::test]
async fn a_commit_the_log_refuses_is_not_remembered() {
    let log = MemoryLog::default();
    let coordinator = GroupCoordinator::new(GroupLimits::default());
    log.fail.store(true, Ordering::Relaxed);
    assert_eq!(
        coordinator
            .commit(&log, "g", STANDALONE, vec![offset(0, 5)])
            .await,
        Err(GroupError::CoordinatorNotAvailable)
    );
    assert_eq!(
        coordinator
            .fetch_offsets("g", Some(vec![("t".into(), 0)]))
            .await,
        [(("t".to_string(), 0), None)]
    );
}

#[tokio::test]
async fn a_broker_that_does_not_lead_the_offsets_partition_is_not_the_coordinator() {
    let log = MemoryLog::default();
    log.foreign.store(true, Ordering::Relaxed);
    let coordinator = GroupCoordinator::new(GroupLimits::default());
    assert_eq!(
        coordinator
            .commit(&log, "g", STANDALONE, vec![offset(0, 5)])
            .await,
        Err(GroupError::NotCoordinator)
    );
    let member = Committer {
        member_id: "m",
        generation: 1,
        instance_id: None,
    };
    assert_eq!(
        coordinator.heartbeat(&log, "g", member).await,
        Err(GroupError::NotCoordinator)
    );
    assert_eq!(
        coordinator.leave(&log, "g", &[("m".into(), None)]).await,
        Err(GroupError::NotCoordinator)
    );
}

#[tokio::test]
async fn a_group_with_members_is_not_deleted_and_its_membership_survives_a_restart() {
    let log = MemoryLog::default();
    let limits = GroupLimits {
        initial_rebalance_delay_ms: 0,
        ..GroupLimits::default()
    };
    let coordinator = GroupCoordinator::new(limits);
    let join = JoinRequest {
        member_id: String::new(),
        instance_id: None,
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 10_000,
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), Bytes::from_static(b"sub"))],
        require_known_member_id: false,
    };
    let joined = coordinator.join(&log, "g", join).await;
    assert_eq!((joined.error, joined.generation), (None, 1));
    let member = Committer {
        member_id: &joined.member_id,
        generation: 1,
        instance_id: None,
    };
    let assignment = vec![(joined.member_id.clone(), Bytes::from_static(b"all"))];
    assert_eq!(
        coordinator
            .sync(&log, "g", member, (None, None), assignment)
            .await,
        Ok(Bytes::from_static(b"all"))
    );
    assert_eq!(
        coordinator.delete(&log, "g").await,
        Err(GroupError::NonEmptyGroup)
    );

    let restarted = GroupCoordinator::new(limits);
    load_all(&restarted, &log).await;
    let described = restarted.describe("g").await.expect("restored");
    assert_eq!(described.state, "Stable");
    assert_eq!(described.members.len(), 1);
    assert_eq!(described.members[0].5, Bytes::from_static(b"all"));
    assert_eq!(restarted.heartbeat(&log, "g", member).await, Ok(()));

    restarted.shutdown().await;
    let late = JoinRequest {
        member_id: joined.member_id.clone(),
        instance_id: None,
        client_id: "c".into(),
        client_host: "h".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 10_000,
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), Bytes::new())],
        require_known_member_id: false,
    };
    assert_eq!(
        restarted.join(&log, "g", late).await.error,
        Some(GroupError::CoordinatorNotAvailable),
        "nothing waits for a rebalance once the broker shuts down"
    );
}

#[tokio::test]
async fn offsets_expire_by_commit_time_for_standalone_consumers_and_groups_are_forgotten() {
    let log = MemoryLog::default();
    let coordinator = GroupCoordinator::new(GroupLimits::default());
    let day = 86_400_000;
    let base = crate::broker::now_ms();
    let mut old = offset(0, 5);
    old.value.commit_timestamp_ms = base - 2 * day;
    let mut recent = offset(1, 6);
    recent.value.commit_timestamp_ms = base;
    coordinator
        .commit(&log, "s", STANDALONE, vec![old, recent])
        .await
        .expect("committed");
    coordinator.expire_offsets(&log, base, day).await;
    let left = coordinator.fetch_offsets("s", None).await;
    assert_eq!(left.len(), 1, "only the old commit expired");
    assert_eq!(left[0].0, ("t".to_string(), 1));
    coordinator.expire_offsets(&log, base + 2 * day, day).await;
    assert!(
        coordinator.describe("s").await.is_none(),
        "an empty group with no offsets is forgotten"
    );
    let restarted = GroupCoordinator::new(GroupLimits::default());
    load_all(&restarted, &log).await;
    assert!(
        restarted.describe("s").await.is_none(),
        "the tombstones stick"
    );
}
