//! ListOffsets: the earliest, latest, max-timestamp or first-at-timestamp offset of partitions.

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use crate::broker::{Broker, Partition};
use crate::error::{BrokerError, Result};
use crate::protocol::errors::response_error;
use crate::protocol::records::first_record_at_or_after;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;

/// Handles a ListOffsets request.
pub async fn handle(
    broker: &Broker,
    version: i16,
    request: ListOffsetsRequest,
) -> ListOffsetsResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let topic = broker.topic(&t.name);
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let response = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index);
                    let found = topic
                        .as_ref()
                        .and_then(|topic| topic.partition(p.partition_index))
                        .ok_or_else(|| {
                            BrokerError::UnknownTopicOrPartition(format!(
                                "{}-{}",
                                t.name.0, p.partition_index
                            ))
                        })
                        .and_then(|partition| lookup(&partition, p.timestamp));
                    match found {
                        Ok((timestamp, offset)) => {
                            let response = response.with_timestamp(timestamp).with_offset(offset);
                            // Leader epochs appear in v4; earlier versions must leave the field unset.
                            if version >= 4 {
                                response.with_leader_epoch(0)
                            } else {
                                response
                            }
                        }
                        Err(e) => response
                            .with_error_code(response_error(&e).code())
                            .with_timestamp(-1)
                            .with_offset(-1),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

/// The (timestamp, offset) answering `timestamp` for one partition; (-1, -1) when no record has a
/// timestamp at or after it.
fn lookup(partition: &Partition, timestamp: i64) -> Result<(i64, i64)> {
    let log = partition.log();
    match timestamp {
        LATEST => Ok((-1, partition.high_watermark())),
        EARLIEST | EARLIEST_LOCAL => Ok((-1, log.log_start_offset())),
        MAX_TIMESTAMP => match log.max_timestamp() {
            Some((max, _)) => find(partition, max),
            None => Ok((-1, -1)),
        },
        t if t >= 0 => find(partition, t),
        other => Err(BrokerError::InvalidRequest(format!(
            "unknown ListOffsets timestamp {other}"
        ))),
    }
}

fn find(partition: &Partition, timestamp: i64) -> Result<(i64, i64)> {
    let start = partition.log().log_start_offset();
    let Some(batch) = partition.log().batch_at_timestamp(timestamp)? else {
        return Ok((-1, -1));
    };
    Ok(first_record_at_or_after(batch, timestamp, start)?
        .filter(|&(_, o)| o < partition.high_watermark())
        .unwrap_or((-1, -1)))
}
