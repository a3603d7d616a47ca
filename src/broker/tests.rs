use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use strata_tiering::AppendOptions;

use super::*;
use crate::test_support::{one_partition, open_broker};

async fn open(dir: &std::path::Path) -> Arc<Broker> {
    open_broker(dir).await
}

fn batch(values: &[&str]) -> Bytes {
    crate::test_support::batch(values, 1_000)
}

fn options() -> AppendOptions {
    AppendOptions {
        now_ms: now_ms(),
        leader_epoch: 0,
        log_append_time: false,
    }
}

#[tokio::test]
async fn topics_and_their_data_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let broker = open(dir.path()).await;
        let configs = [("retention.ms".to_string(), "-1".to_string())].into();
        let topic = broker
            .create_topic(NewTopic {
                name: "orders".into(),
                partitions: Some(3),
                configs,
                ..NewTopic::default()
            })
            .await
            .expect("create");
        let p = topic.partition(2).expect("partition");
        let out = p
            .append(batch(&["a", "b"]), options())
            .await
            .expect("append");
        assert_eq!((out.base_offset, p.high_watermark()), (0, 2));
        broker.close().await;
    }
    let broker = open(dir.path()).await;
    let topic = broker.topic("orders").expect("still there");
    assert_eq!(topic.partition_count(), 3);
    assert_eq!(topic.config().log_config().retention_ms, -1);
    assert_eq!(topic.partition(2).expect("partition").high_watermark(), 2);
}

#[tokio::test]
async fn names_counts_and_duplicates_are_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = open(dir.path()).await;
    let new = |name: &str, partitions| NewTopic {
        name: name.into(),
        partitions,
        ..NewTopic::default()
    };
    assert!(matches!(
        broker.create_topic(new("bad name", None)).await,
        Err(BrokerError::InvalidTopicName { .. })
    ));
    assert!(matches!(
        broker.create_topic(new("..", None)).await,
        Err(BrokerError::InvalidTopicName { .. })
    ));
    assert!(matches!(
        broker.create_topic(new("t", Some(0))).await,
        Err(BrokerError::InvalidPartitions(_))
    ));
    let rf3 = NewTopic {
        replication_factor: Some(3),
        ..new("t", None)
    };
    assert!(matches!(
        broker.create_topic(rf3).await,
        Err(BrokerError::InvalidReplicationFactor(_))
    ));
    broker.create_topic(new("t", None)).await.expect("create");
    assert!(matches!(
        broker.create_topic(new("t", None)).await,
        Err(BrokerError::TopicAlreadyExists(_))
    ));
    assert!(matches!(
        broker.create_partitions("t", 1, false).await,
        Err(BrokerError::InvalidPartitions(_))
    ));
    broker.create_partitions("t", 4, false).await.expect("grow");
    assert_eq!(broker.topic("t").expect("topic").partition_count(), 4);
}

#[tokio::test]
async fn a_deleted_topic_is_gone_with_its_files_and_can_be_recreated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = open(dir.path()).await;
    let topic = broker
        .get_or_create_topic("gone")
        .await
        .expect("auto-create");
    topic
        .partition(0)
        .expect("p")
        .append(batch(&["x"]), options())
        .await
        .expect("append");
    let old_id = topic.id();
    drop(topic);
    broker.delete_topic("gone").await.expect("delete");
    assert!(broker.topic("gone").is_none());
    assert!(
        !dir.path()
            .join("logs")
            .join(old_id.simple().to_string())
            .exists()
    );
    let again = broker.get_or_create_topic("gone").await.expect("recreate");
    assert_ne!(again.id(), old_id);
    assert_eq!(again.partition(0).expect("p").high_watermark(), 0);
}

#[tokio::test]
async fn config_changes_reach_the_logs_and_producer_ids_are_unique() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = open(dir.path()).await;
    broker.get_or_create_topic("c").await.expect("create");
    broker
        .alter_topic_config(
            "c",
            |_| Ok([("segment.bytes".to_string(), "1000".to_string())].into()),
            false,
        )
        .await
        .expect("alter");
    let bad = broker
        .alter_topic_config(
            "c",
            |_| Ok([("segment.bytes".to_string(), "x".to_string())].into()),
            false,
        )
        .await;
    assert!(matches!(bad, Err(BrokerError::InvalidConfig(_))));
    let p = broker.topic("c").expect("topic").partition(0).expect("p");
    for _ in 0..20 {
        p.append(
            batch(&["0123456789012345678901234567890123456789"]),
            options(),
        )
        .await
        .expect("append");
    }
    assert!(
        p.log().segment_count() > 1,
        "segment.bytes=1000 rolls segments"
    );
    let a = broker.next_producer_id().await.expect("id");
    let b = broker.next_producer_id().await.expect("id");
    assert_ne!(a, b);
}

/// A follower the leader decided to add to the ISR counts for the high watermark from that
/// moment: once the store holds it in sync it may be elected, so nothing it lacks may be
/// acknowledged meanwhile.
#[tokio::test]
async fn a_follower_being_added_to_the_isr_holds_the_high_watermark() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = open(dir.path()).await;
    let p = one_partition(&broker, "joins").await;
    p.append(batch(&["a", "b"]), options())
        .await
        .expect("append");
    assert_eq!(p.high_watermark(), 2, "the leader alone is the ISR");
    let ticket = p
        .follower_fetched(2, 2, now_ms(), 30_000)
        .expect("caught up: joins");
    assert!(
        p.follower_fetched(2, 2, now_ms(), 30_000).is_none(),
        "one addition at a time"
    );
    p.append(batch(&["c", "d"]), options())
        .await
        .expect("append");
    assert_eq!(p.high_watermark(), 2, "held by the joining follower");
    p.follower_fetched(2, 4, now_ms(), 30_000);
    assert_eq!(p.high_watermark(), 4);
    p.joined_or_not(ticket);
    p.append(batch(&["e"]), options()).await.expect("append");
    assert_eq!(
        p.high_watermark(),
        5,
        "the addition failed (this store's ISR is still the leader alone)"
    );
}

/// An addition started in an earlier term, ending late, does not release a joiner of the
/// current term: that one still holds the high watermark until its own write is over.
#[tokio::test]
async fn an_earlier_terms_addition_ending_does_not_release_a_later_joiner() {
    let t = leading("generations").await;
    let (p, epoch, version, me) = (&t.p, t.epoch, t.version, t.me);
    let earlier = p
        .follower_fetched(2, 0, now_ms(), 30_000)
        .expect("caught up: joins");
    take(p, leader(epoch + 1, vec![me]), version + 1).await;
    let later = p
        .follower_fetched(2, 0, now_ms(), 30_000)
        .expect("the new term starts its own addition");
    p.joined_or_not(earlier);
    p.append(batch(&["a"]), options()).await.expect("append");
    assert_eq!(p.high_watermark(), 0, "still held by the later joiner");
    p.joined_or_not(later);
    assert_eq!(p.high_watermark(), 1);
}

#[tokio::test]
async fn a_leader_does_not_take_an_older_state_of_its_term() {
    let t = leading("versions").await;
    let (p, epoch, version, me) = (&t.p, t.epoch, t.version, t.me);
    let newer = leader(epoch, vec![me, 2]);
    take(p, newer.clone(), version + 2).await;
    take(p, leader(epoch, vec![me]), version + 1).await;
    assert_eq!(p.role(), newer, "the ISR of the newer state stays");
}

/// A refresh that read the state before a change of leadership does not bring back the old
/// term's leadership, though its epoch differs.
#[tokio::test]
async fn an_older_state_does_not_bring_back_an_earlier_term() {
    let t = leading("terms-back").await;
    let (p, epoch, version, me) = (&t.p, t.epoch, t.version, t.me);
    let follower = replica::Role::Follower {
        leader: 2,
        epoch: epoch + 1,
    };
    assert!(take(p, follower.clone(), version + 2).await);
    assert!(!take(p, leader(epoch, vec![me]), version + 1).await);
    assert_eq!(p.role(), follower);
}

/// A metadata store restored from a snapshot writes lower versions than the ones applied: a
/// newer term is taken all the same, and that term's later states after it.
#[tokio::test]
async fn a_newer_term_is_taken_even_at_an_older_version() {
    let t = leading("restored-store").await;
    let (p, epoch, version, me) = (&t.p, t.epoch, t.version, t.me);
    take(p, leader(epoch, vec![me, 2]), version + 10).await;
    let next = leader(epoch + 1, vec![me, 2]);
    assert!(take(p, next.clone(), version + 5).await);
    assert_eq!(p.role(), next);
    take(p, leader(epoch + 1, vec![me]), version + 6).await;
    assert_eq!(p.role(), leader(epoch + 1, vec![me]));
}

/// A store that went back in time (etcd restored from a backup) writes the same term's states
/// below the version applied: they are taken, being of a later history, and a state read before
/// the store went back is not taken after them, whatever its version or epoch.
#[tokio::test]
async fn a_state_of_a_later_store_history_is_taken_at_any_version() {
    let t = leading("store-history").await;
    let (p, epoch, version, me) = (&t.p, t.epoch, t.version, t.me);
    take(p, leader(epoch, vec![me, 2, 3]), version + 50).await;
    let shrunk = leader(epoch, vec![me, 2]);
    assert!(
        !take_in(p, shrunk.clone(), 1, version + 3).await,
        "no new term"
    );
    assert_eq!(p.role(), shrunk);
    take(p, leader(epoch, vec![me, 2, 3]), version + 60).await;
    assert_eq!(p.role(), shrunk, "read before the store went back");
    take_in(p, leader(epoch, vec![me]), 1, version + 4).await;
    assert_eq!(p.role(), leader(epoch, vec![me]));
    take_in(p, shrunk.clone(), 1, version + 1).await;
    assert_eq!(
        p.role(),
        leader(epoch, vec![me]),
        "versions compare within a history"
    );
    take(p, leader(epoch + 1, vec![me, 2]), version + 90).await;
    assert_eq!(
        p.role(),
        leader(epoch, vec![me]),
        "an earlier history, even of a newer term"
    );
}

/// A sync re-applies every partition's state: the same role again must not wake its watchers
/// (a follower's fetch and a leader's waiting replication fetches end when their role changes).
#[tokio::test]
async fn the_same_role_again_does_not_wake_its_watchers() {
    let t = leading("same-role").await;
    let (p, epoch, version, me) = (&t.p, t.epoch, t.version, t.me);
    let mut watcher = p.watch_role();
    watcher.borrow_and_update();
    take(p, p.role(), version + 1).await;
    assert!(!watcher.has_changed().expect("open"));
    take(p, leader(epoch, vec![me, 2]), version + 2).await;
    assert!(watcher.has_changed().expect("open"));
}

/// Closing is final: a state read before it does not bring the partition back.
#[tokio::test]
async fn no_state_changes_a_closed_partitions_role() {
    let t = leading("closing").await;
    let (p, epoch, version, me) = (&t.p, t.epoch, t.version, t.me);
    p.set_role(
        replica::Role::Offline,
        replica::RoleSource::Closing,
        now_ms(),
    )
    .await;
    take(p, leader(epoch + 1, vec![me]), version + 1).await;
    assert_eq!(p.role(), replica::Role::Offline);
}

/// A partition state lost or restored from an old copy names a leader epoch below the one the
/// log was written at. Serving it would refuse every append (older epoch) or mix terms; the
/// partition goes offline instead.
#[tokio::test]
async fn a_leader_epoch_below_the_logs_latest_takes_the_partition_offline() {
    let t = leading("restored").await;
    let (p, epoch, version, me) = (&t.p, t.epoch, t.version, t.me);
    take(p, leader(epoch + 3, vec![me]), version + 1).await;
    p.append(batch(&["a"]), options()).await.expect("append");
    assert_eq!(p.latest_epoch(), Some(epoch + 3));
    assert!(take(p, leader(epoch + 1, vec![me]), version + 2).await);
    assert_eq!(p.role(), replica::Role::Offline);
    assert!(p.append(batch(&["b"]), options()).await.is_err());
    take(p, leader(epoch + 4, vec![me]), version + 3).await;
    assert_eq!(
        p.role(),
        leader(epoch + 4, vec![me]),
        "a later election serves it"
    );
}

/// A new leader's high watermark can lag what the previous leader acknowledged; a follower joins
/// its ISR only once it has the new leader's log end at the start of the term too.
#[tokio::test]
async fn a_follower_joins_a_new_leaders_isr_only_with_what_the_term_began_with() {
    let t = leading("terms").await;
    let (p, epoch, version, me) = (&t.p, t.epoch, t.version, t.me);
    // Follower 2 never fetches: the high watermark stays where it was.
    take(p, leader(epoch, vec![me, 2]), version + 1).await;
    p.append(batch(&["a", "b", "c", "d"]), options())
        .await
        .expect("append");
    assert_eq!(p.high_watermark(), 0);
    take(p, leader(epoch + 1, vec![me, 2]), version + 2).await;
    assert!(
        p.follower_fetched(3, 3, now_ms(), 30_000).is_none(),
        "at the high watermark but short of the term's start"
    );
    assert!(p.follower_fetched(3, 4, now_ms(), 30_000).is_some());
}

/// A batch is acknowledged only by the high watermark of the term it was appended in: after a
/// new term began, that high watermark may cover a new leader's batches at the same offsets.
#[tokio::test]
async fn an_append_waits_for_the_high_watermark_of_its_own_term() {
    let t = leading("epochs").await;
    let (p, epoch, version, me) = (&t.p, t.epoch, t.version, t.me);
    take(p, leader(epoch, vec![me, 2]), version + 1).await;
    let out = p.append(batch(&["a"]), options()).await.expect("append");
    assert_eq!(out.leader_epoch, epoch);
    take(p, leader(epoch + 1, vec![me]), version + 2).await;
    assert!(
        p.high_watermark() > out.last_offset,
        "the new term's high watermark covers it"
    );
    let waited = p
        .wait_for_high_watermark(
            out.last_offset + 1,
            out.leader_epoch,
            Duration::from_secs(1),
        )
        .await;
    assert!(
        matches!(waited, Err(BrokerError::NotLeader { .. })),
        "{waited:?}"
    );
}

/// One broker leading a partition of its own: the partition, its term's epoch, the version of
/// its stored state and the broker's id. The directory and the broker live as long as this.
struct Leading {
    _dir: tempfile::TempDir,
    _broker: Arc<Broker>,
    p: Arc<Partition>,
    epoch: i32,
    version: u64,
    me: i32,
}

/// A new broker leading one partition of the topic `name`.
async fn leading(name: &str) -> Leading {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = open(dir.path()).await;
    let p = one_partition(&broker, name).await;
    let replica::Role::Leader { epoch, .. } = p.role() else {
        panic!("a single broker leads its partitions");
    };
    let version = crate::test_support::stored_version(&broker, &p).await;
    let me = broker.settings().broker_id;
    Leading {
        _dir: dir,
        _broker: broker,
        p,
        epoch,
        version,
        me,
    }
}

fn leader(epoch: i32, isr: Vec<i32>) -> replica::Role {
    replica::Role::Leader { epoch, isr }
}

/// Gives `p` `role` as read from a partition state at `version`, of the role's epoch.
async fn take(p: &Partition, role: replica::Role, version: u64) -> bool {
    take_in(p, role, 0, version).await
}

/// [`take`], read in the store's history `history`.
async fn take_in(p: &Partition, role: replica::Role, history: u64, version: u64) -> bool {
    let epoch = role.epoch().expect("a role of a term");
    let source = replica::RoleSource::State {
        history,
        version,
        epoch,
    };
    p.set_role(role, source, now_ms()).await
}
