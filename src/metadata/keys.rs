//! Every key of the metadata store, in one place. The layout is a format: change it deliberately.
//! In etcd every key below is stored under `/strata/<cluster-name>/` (see `etcd.rs`).
//!
//! | key | value |
//! | --- | --- |
//! | `cluster/id` | `{"cluster_id": "..."}`, written once when the cluster is first started |
//! | `topics/<name>` | a [`TopicRecord`](super::catalog::TopicRecord) |
//! | `producer-ids/next` | `{"next": n}`: the first producer id not yet handed out in a block |
//! | `brokers/<id>` | a [`BrokerRecord`](super::registration::BrokerRecord) under the broker's lease (etcd only) |
//! | `controller` | `{"broker_id": n}`: the controller, under its lease; the key's version is the controller epoch |
//! | `partitions/<topic id>/<partition>` | a [`PartitionState`](crate::cluster::state::PartitionState): replicas, leader, leader epoch, ISR (and its members' incarnations) |
//! | `elections/<topic id>/<partition>` | `{}`: a preferred-leader election asked of the controller, removed once handled |
//! | `tiering/<topic id>/<partition>` | `{"version": n, "key": "…"}`: the partition's current remote manifest (about 150 bytes, whatever the history) |

/// The key holding the cluster id.
pub const CLUSTER_ID: &str = "cluster/id";
/// The prefix of every topic record.
pub const TOPICS_PREFIX: &str = "topics/";
/// The key of the producer id allocator.
pub const NEXT_PRODUCER_ID: &str = "producer-ids/next";

/// The prefix of every broker registration.
pub const BROKERS_PREFIX: &str = "brokers/";

/// The key of one broker's registration.
pub fn broker(id: i32) -> String {
    format!("{BROKERS_PREFIX}{id}")
}

/// The key of one topic's record.
pub fn topic(name: &str) -> String {
    format!("{TOPICS_PREFIX}{name}")
}

/// The key of one partition's remote manifest pointer.
pub fn manifest_pointer(topic_id: uuid::Uuid, partition: i32) -> String {
    format!("tiering/{}/{partition}", topic_id.simple())
}

/// Under this prefix a compactor claims the partition it works on (see `compactor.rs`).
pub const COMPACTION_CLAIMS_PREFIX: &str = "compaction-claims/";

/// The claim key of one partition, held under a compactor's lease.
pub fn compaction_claim(topic_id: uuid::Uuid, partition: i32) -> String {
    format!(
        "{COMPACTION_CLAIMS_PREFIX}{}/{partition}",
        topic_id.simple()
    )
}

/// The key the controller holds.
pub const CONTROLLER: &str = "controller";

/// The prefix of every partition state.
pub const PARTITIONS_PREFIX: &str = "partitions/";

/// The key of one partition's replication state.
pub fn partition_state(topic_id: uuid::Uuid, partition: i32) -> String {
    format!("{PARTITIONS_PREFIX}{}/{partition}", topic_id.simple())
}

/// The prefix of preferred-leader election requests.
pub const ELECTIONS_PREFIX: &str = "elections/";

/// The key asking the controller for a preferred-leader election of one partition.
pub fn preferred_election(topic_id: uuid::Uuid, partition: i32) -> String {
    format!("{ELECTIONS_PREFIX}{}/{partition}", topic_id.simple())
}

/// The topic id and partition of a [`partition_state`] or [`preferred_election`] key.
pub fn parse_partition_key(prefix: &str, key: &str) -> Option<(uuid::Uuid, i32)> {
    let (topic, partition) = key.strip_prefix(prefix)?.split_once('/')?;
    Some((uuid::Uuid::parse_str(topic).ok()?, partition.parse().ok()?))
}
