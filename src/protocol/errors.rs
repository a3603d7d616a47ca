//! The one place broker errors become Kafka error codes.

use kafka_protocol::error::ResponseError;
use strata_tiering::LogError;

use crate::error::BrokerError;
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
        BrokerError::TransactionsUnsupported => ResponseError::InvalidTxnState,
        // Well-formed but unacceptable records: INVALID_RECORD, which clients do not retry.
        BrokerError::InvalidRecords(_) => ResponseError::InvalidRecord,
        BrokerError::Log(e) => log_error(e),
        BrokerError::Metadata(e) => metadata_error(e),
        BrokerError::ShuttingDown => ResponseError::BrokerNotAvailable,
        BrokerError::ObjectStoreConfig(_) => ResponseError::UnknownServerError,
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
        LogError::Fenced { .. } => ResponseError::NotLeaderOrFollower,
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
