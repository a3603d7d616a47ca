//! Errors of the broker. Each variant says what went wrong in the broker's own terms; the Kafka
//! error code a client sees is chosen once, in `protocol::errors`.

use strata_tiering::LogError;

use crate::metadata::MetadataError;

/// A failed broker operation.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The topic does not exist (or, for a partition index, the partition does not).
    #[error("unknown topic or partition: {0}")]
    UnknownTopicOrPartition(String),
    /// No topic has this id.
    #[error("unknown topic id {0}")]
    UnknownTopicId(uuid::Uuid),
    /// A topic with this name already exists.
    #[error("topic '{0}' already exists")]
    TopicAlreadyExists(String),
    /// The topic name is not a legal Kafka topic name.
    #[error("invalid topic name '{name}': {reason}")]
    InvalidTopicName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A partition count is not acceptable.
    #[error("{0}")]
    InvalidPartitions(String),
    /// A replication factor cannot be satisfied by this cluster.
    #[error("{0}")]
    InvalidReplicationFactor(String),
    /// A replica assignment names brokers that do not exist or is malformed.
    #[error("{0}")]
    InvalidReplicaAssignment(String),
    /// A configuration name or value is not acceptable.
    #[error("{0}")]
    InvalidConfig(String),
    /// The request is well-formed but asks for something this broker does not do.
    #[error("{0}")]
    InvalidRequest(String),
    /// `acks` is not -1, 0 or 1.
    #[error("acks must be -1, 0 or 1, not {0}")]
    InvalidRequiredAcks(i16),
    /// Fewer in-sync replicas than `min.insync.replicas` for an `acks=all` produce.
    #[error("{isr} in-sync replicas, but min.insync.replicas is {required}")]
    NotEnoughReplicas {
        /// Current in-sync replica count.
        isr: usize,
        /// The topic's `min.insync.replicas`.
        required: i32,
    },
    /// The in-sync replicas fell below `min.insync.replicas` while an `acks=all` produce waited;
    /// the records were appended by the leader.
    #[error("the in-sync replicas fell below min.insync.replicas {required} after the append")]
    NotEnoughReplicasAfterAppend {
        /// The topic's `min.insync.replicas`.
        required: i32,
    },
    /// This broker does not lead the partition (or does not hold it at all).
    #[error("this broker does not lead partition {partition} of topic {topic_id}")]
    NotLeader {
        /// The topic id.
        topic_id: uuid::Uuid,
        /// The partition.
        partition: i32,
    },
    /// The partition has no leader right now (an election is due or no replica is alive).
    #[error("partition {0} has no leader")]
    LeaderNotAvailable(String),
    /// An `acks=all` produce was not replicated to the ISR within the request's timeout.
    #[error("the records were not replicated to every in-sync replica in time")]
    ReplicationTimedOut,
    /// A reassignment cannot start or be cancelled.
    #[error(transparent)]
    Reassignment(#[from] crate::cluster::reassign::ReassignError),
    /// The preferred replica already leads.
    #[error("the preferred replica already leads the partition")]
    ElectionNotNeeded,
    /// The preferred replica is down or out of sync.
    #[error("the preferred replica {0} is not alive and in sync")]
    PreferredLeaderNotAvailable(i32),
    /// The controller did not make the election in time.
    #[error("the controller did not elect the preferred leader in time")]
    ElectionTimedOut,
    /// Transactions are not supported yet.
    #[error("transactional produce requires a transaction coordinator, which this broker lacks")]
    TransactionsUnsupported,
    /// The records could not be decoded or re-encoded (for `compression.type`).
    #[error("records could not be decoded: {0}")]
    InvalidRecords(String),
    /// The local log failed.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The metadata store failed.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// The data directory and the metadata store belong to different clusters.
    #[error(transparent)]
    Identity(#[from] crate::broker::identity::IdentityError),
    /// The object store URL or options cannot be used.
    #[error(transparent)]
    ObjectStoreConfig(#[from] strata_tiering::remote::store::StoreUrlError),
    /// A background task the request waited for has gone (the broker is shutting down).
    #[error("the broker is shutting down")]
    ShuttingDown,
}

/// Result type of the broker.
pub type Result<T, E = BrokerError> = std::result::Result<T, E>;
