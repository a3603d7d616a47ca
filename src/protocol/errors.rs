//! The one place broker errors become Kafka error codes.

use kafka_protocol::error::ResponseError;
use strata_tiering::LogError;

use crate::cluster::reassign::ReassignError;
use crate::error::BrokerError;
use crate::group::GroupError;
use crate::metadata::MetadataError;

/// The Kafka error a client should see for `error`.
pub fn response_error(error: &BrokerError) -> ResponseError {
    match error {
        BrokerError::UnknownTopicOrPartition(_) => ResponseError::UnknownTopicOrPartition,
        BrokerError::UnknownTopicId(_) => ResponseError::UnknownTopicId,
        BrokerError::TopicAlreadyExists(_) => ResponseError::TopicAlreadyExists,
        BrokerError::InvalidTopicName { .. } => ResponseError::InvalidTopicException,
        BrokerError::InvalidPartitions(_) => ResponseError::InvalidPartitions,
        BrokerError::InvalidReplicationFactor(_) => ResponseError::InvalidReplicationFactor,
        BrokerError::InvalidReplicaAssignment(_) => ResponseError::InvalidReplicaAssignment,
        BrokerError::InvalidConfig(_) => ResponseError::InvalidConfig,
        BrokerError::InvalidRequest(_) => ResponseError::InvalidRequest,
        BrokerError::InvalidRequiredAcks(_) => ResponseError::InvalidRequiredAcks,
        BrokerError::NotEnoughReplicas { .. } => ResponseError::NotEnoughReplicas,
        BrokerError::NotEnoughReplicasAfterAppend { .. } => {
            ResponseError::NotEnoughReplicasAfterAppend
        }
        BrokerError::NotLeader { .. } => ResponseError::NotLeaderOrFollower,
        BrokerError::LeaderNotAvailable(_) => ResponseError::LeaderNotAvailable,
        BrokerError::ReplicationTimedOut | BrokerError::ElectionTimedOut => {
            ResponseError::RequestTimedOut
        }
        BrokerError::ElectionNotNeeded => ResponseError::ElectionNotNeeded,
        BrokerError::PreferredLeaderNotAvailable(_) => ResponseError::PreferredLeaderNotAvailable,
        BrokerError::Reassignment(e) => reassign_error(e),
        BrokerError::TransactionsUnsupported => ResponseError::InvalidTxnState,
        // Well-formed but unacceptable records: INVALID_RECORD, which clients do not retry.
        BrokerError::InvalidRecords(_) => ResponseError::InvalidRecord,
        BrokerError::Log(e) => log_error(e),
        BrokerError::Metadata(e) => metadata_error(e),
        BrokerError::ShuttingDown => ResponseError::BrokerNotAvailable,
        BrokerError::ObjectStoreConfig(_) | BrokerError::Identity(_) => {
            ResponseError::UnknownServerError
        }
    }
}

fn reassign_error(error: &ReassignError) -> ResponseError {
    match error {
        ReassignError::InvalidTarget(_) | ReassignError::UnknownBroker(_) => {
            ResponseError::InvalidReplicaAssignment
        }
        ReassignError::ReplicationFactorChange { .. } => ResponseError::InvalidReplicationFactor,
        ReassignError::NoReassignmentInProgress => ResponseError::NoReassignmentInProgress,
    }
}

fn log_error(error: &LogError) -> ResponseError {
    match error {
        LogError::CorruptBatch { .. } => ResponseError::CorruptMessage,
        LogError::InvalidRecord { .. } => ResponseError::InvalidRecord,
        LogError::BatchTooLarge { .. } => ResponseError::MessageTooLarge,
        LogError::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
        LogError::ProducerFenced { .. } => ResponseError::InvalidProducerEpoch,
        LogError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        LogError::Io { .. } => ResponseError::KafkaStorageError,
        // A remote read that fails (store down, object missing or corrupt) is a storage error for
        // that partition: clients retry it, and corrupt data is never served.
        LogError::ObjectStore { .. } | LogError::CorruptRemote { .. } => {
            ResponseError::KafkaStorageError
        }
        LogError::PointerStore(_) => ResponseError::KafkaStorageError,
        LogError::Fenced { .. } | LogError::StaleLeaderEpoch { .. } => {
            ResponseError::NotLeaderOrFollower
        }
        // Only replication appends check offsets, and only compaction swaps segments; no client
        // request reaches either.
        LogError::OffsetMismatch { .. } | LogError::SwapConflict { .. } => {
            ResponseError::UnknownServerError
        }
    }
}

fn metadata_error(error: &MetadataError) -> ResponseError {
    match error {
        MetadataError::Conflict { .. } | MetadataError::Unavailable(_) => {
            ResponseError::RequestTimedOut
        }
        MetadataError::Corrupt { .. } => ResponseError::UnknownServerError,
    }
}

/// The error code and message for a response field pair.
pub fn code_and_message(error: &BrokerError) -> (i16, Option<kafka_protocol::protocol::StrBytes>) {
    (response_error(error).code(), Some(error.to_string().into()))
}

/// The Kafka error a group member should see for `error`.
pub fn group_error(error: GroupError) -> ResponseError {
    match error {
        GroupError::InvalidGroupId => ResponseError::InvalidGroupId,
        GroupError::NotCoordinator => ResponseError::NotCoordinator,
        GroupError::UnknownMemberId => ResponseError::UnknownMemberId,
        GroupError::IllegalGeneration => ResponseError::IllegalGeneration,
        GroupError::RebalanceInProgress => ResponseError::RebalanceInProgress,
        GroupError::FencedInstanceId => ResponseError::FencedInstanceId,
        GroupError::InconsistentGroupProtocol => ResponseError::InconsistentGroupProtocol,
        GroupError::InvalidSessionTimeout => ResponseError::InvalidSessionTimeout,
        GroupError::MemberIdRequired => ResponseError::MemberIdRequired,
        GroupError::GroupMaxSizeReached => ResponseError::GroupMaxSizeReached,
        GroupError::GroupIdNotFound => ResponseError::GroupIdNotFound,
        GroupError::NonEmptyGroup => ResponseError::NonEmptyGroup,
        GroupError::GroupSubscribedToTopic => ResponseError::GroupSubscribedToTopic,
        GroupError::OffsetMetadataTooLarge => ResponseError::OffsetMetadataTooLarge,
        GroupError::UnknownTopicOrPartition => ResponseError::UnknownTopicOrPartition,
        GroupError::CoordinatorNotAvailable => ResponseError::CoordinatorNotAvailable,
        GroupError::UnsupportedKeyType => ResponseError::InvalidRequest,
    }
}

/// The error code of an optional group error (0 for none).
pub fn group_code(error: Option<GroupError>) -> i16 {
    error.map_or(0, |e| group_error(e).code())
}
