//! DeleteRecords: move partitions' log start offsets forward.

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use crate::broker::{Broker, now_ms};
use crate::error::BrokerError;
use crate::protocol::errors::response_error;

/// DeleteRecords' "up to the high watermark".
const HIGH_WATERMARK: i64 = -1;

/// Handles a DeleteRecords request.
pub async fn handle(broker: &Broker, request: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let mut topics = Vec::with_capacity(request.topics.len());
    for t in request.topics {
        let topic = broker.topic(&t.name);
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let partition = topic
                .as_ref()
                .ok_or_else(|| BrokerError::UnknownTopicOrPartition(t.name.0.to_string()))
                .and_then(|topic| topic.led_partition(p.partition_index));
            let outcome = match partition {
                Ok(partition) => {
                    let offset = if p.offset == HIGH_WATERMARK {
                        partition.high_watermark()
                    } else {
                        p.offset
                    };
                    partition.delete_records_before(offset, now_ms()).await
                }
                Err(e) => Err(e),
            };
            let result =
                DeleteRecordsPartitionResult::default().with_partition_index(p.partition_index);
            partitions.push(match outcome {
                Ok(low_watermark) => result.with_low_watermark(low_watermark),
                Err(e) => result
                    .with_low_watermark(-1)
                    .with_error_code(response_error(&e).code()),
            });
        }
        topics.push(
            DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    DeleteRecordsResponse::default().with_topics(topics)
}
