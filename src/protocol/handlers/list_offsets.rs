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
    let mut topics = Vec::with_capacity(request.topics.len());
    for t in request.topics {
        let topic = broker.topic(&t.name);
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in &t.partitions {
            let response =
                ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index);
            let found = match topic
                .as_ref()
                .map(|topic| topic.led_partition(p.partition_index))
            {
                Some(Ok(partition)) => lookup(&partition, p.timestamp)
                    .await
                    .map(|(t, o)| (t, o, partition.leader_epoch().unwrap_or(-1))),
                Some(Err(e)) => Err(e),
                None => Err(BrokerError::UnknownTopicOrPartition(format!(
                    "{}-{}",
                    t.name.0, p.partition_index
                ))),
            };
            partitions.push(match found {
                Ok((timestamp, offset, epoch)) => {
                    let response = response.with_timestamp(timestamp).with_offset(offset);
                    // Leader epochs appear in v4; earlier versions must leave the field unset.
                    if version >= 4 {
                        response.with_leader_epoch(epoch)
                    } else {
                        response
                    }
                }
                Err(e) => response
                    .with_error_code(response_error(&e).code())
                    .with_timestamp(-1)
                    .with_offset(-1),
            });
        }
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    ListOffsetsResponse::default().with_topics(topics)
}

/// The (timestamp, offset) answering `timestamp` for one partition, across both tiers; (-1, -1)
/// when no record has a timestamp at or after it.
async fn lookup(partition: &Partition, timestamp: i64) -> Result<(i64, i64)> {
    match timestamp {
        LATEST => Ok((-1, partition.high_watermark())),
        EARLIEST => Ok((-1, partition.log_start_offset().await)),
        EARLIEST_LOCAL => Ok((-1, partition.log().log_start_offset())),
        MAX_TIMESTAMP => {
            let local = partition.log().max_timestamp().map(|(t, _)| t);
            let remote = partition
                .remote()
                .manifest()
                .await
                .segments
                .iter()
                .map(|s| s.max_timestamp)
                .max();
            match local.max(remote) {
                Some(max) => find(partition, max).await,
                None => Ok((-1, -1)),
            }
        }
        t if t >= 0 => find(partition, t).await,
        other => Err(BrokerError::InvalidRequest(format!(
            "unknown ListOffsets timestamp {other}"
        ))),
    }
}

async fn find(partition: &Partition, timestamp: i64) -> Result<(i64, i64)> {
    let start = partition.log_start_offset().await;
    let Some(batch) = partition.batch_at_timestamp(timestamp).await? else {
        return Ok((-1, -1));
    };
    let found = first_record_at_or_after(batch, timestamp, start)?;
    Ok(found
        .filter(|&(_, o)| o < partition.high_watermark())
        .unwrap_or((-1, -1)))
}
