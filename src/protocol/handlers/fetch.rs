//! Fetch: read committed batches from each requested partition, honouring the response's
//! `max_bytes`, each partition's `partition_max_bytes` and, when too little data is ready,
//! `min_bytes` and `max_wait_ms`. A waiting fetch subscribes to the high watermarks of its
//! partitions before it reads, so an append that lands at any moment wakes it at once; there is
//! no polling.
//!
//! Fetch sessions (KIP-227) are not kept: every response carries session id 0, which tells clients
//! to send full requests.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use futures::future::select_all;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, TopicName};
use tokio::time::Instant;
use uuid::Uuid;

use crate::broker::{Broker, Partition};
use crate::error::BrokerError;
use crate::protocol::errors::response_error;

/// Fetch v13 replaced topic names with topic ids.
const TOPIC_IDS_FROM: i16 = 13;
/// The most a response carries whatever the client asks for: Kafka's `fetch.max.bytes` default.
/// It bounds the memory one fetch can make the broker allocate.
const FETCH_MAX_BYTES: usize = 57_671_680;

struct Target {
    partition_index: i32,
    fetch_offset: i64,
    max_bytes: usize,
    partition: Result<Arc<Partition>, BrokerError>,
}

struct TopicTargets {
    name: TopicName,
    id: Uuid,
    partitions: Vec<Target>,
}

/// Handles a Fetch request.
pub async fn handle(broker: &Broker, version: i16, request: FetchRequest) -> FetchResponse {
    let deadline = Instant::now() + Duration::from_millis(request.max_wait_ms.max(0) as u64);
    let min_bytes = request.min_bytes.max(0) as usize;
    let max_bytes = if request.max_bytes > 0 {
        (request.max_bytes as usize).min(FETCH_MAX_BYTES)
    } else {
        FETCH_MAX_BYTES
    };
    let topics = resolve(broker, version, &request);
    let has_partitions = topics.iter().any(|t| !t.partitions.is_empty());
    let mut final_pass = false;
    loop {
        let mut watchers: Vec<_> = topics
            .iter()
            .flat_map(|t| &t.partitions)
            .filter_map(|t| t.partition.as_ref().ok().map(|p| p.watch_high_watermark()))
            .collect();
        let (response, bytes, errors) = read(version, &topics, max_bytes, deadline).await;
        let satisfied = bytes >= min_bytes || errors;
        if (satisfied && has_partitions) || final_pass || Instant::now() >= deadline {
            return response;
        }
        if watchers.is_empty() {
            tokio::time::sleep_until(deadline).await;
            final_pass = true;
            continue;
        }
        let woken = select_all(watchers.iter_mut().map(|w| Box::pin(w.changed())));
        if tokio::time::timeout_at(deadline, woken).await.is_err() {
            final_pass = true;
        }
    }
}

fn resolve(broker: &Broker, version: i16, request: &FetchRequest) -> Vec<TopicTargets> {
    request
        .topics
        .iter()
        .map(|t| {
            let topic = if version >= TOPIC_IDS_FROM {
                broker
                    .topic_by_id(t.topic_id)
                    .ok_or(BrokerError::UnknownTopicId(t.topic_id))
            } else {
                broker
                    .topic(&t.topic)
                    .ok_or_else(|| BrokerError::UnknownTopicOrPartition(t.topic.to_string()))
            };
            let partitions = t
                .partitions
                .iter()
                .map(|p| Target {
                    partition_index: p.partition,
                    fetch_offset: p.fetch_offset,
                    max_bytes: p.partition_max_bytes.max(0) as usize,
                    partition: match &topic {
                        Ok(topic) => topic.led_partition(p.partition),
                        Err(BrokerError::UnknownTopicId(id)) => {
                            Err(BrokerError::UnknownTopicId(*id))
                        }
                        Err(_) => Err(BrokerError::UnknownTopicOrPartition(t.topic.to_string())),
                    },
                })
                .collect();
            TopicTargets {
                name: t.topic.clone(),
                id: t.topic_id,
                partitions,
            }
        })
        .collect()
}

/// Remote reads get at least this long, even from a fetch with a shorter max wait, so a consumer
/// replaying from the bucket with `fetch.wait.max.ms=0` still makes progress.
const REMOTE_READ_FLOOR: Duration = Duration::from_millis(100);

/// One pass over every partition. Partitions whose offset is in the remote tier are read
/// concurrently on their own tasks; one that is not ready by the deadline answers with no records
/// (its read goes on and warms the cache for the next fetch). Returns the response, the record
/// bytes in it, and whether any partition failed (which answers the fetch at once).
async fn read(
    version: i16,
    topics: &[TopicTargets],
    max_bytes: usize,
    deadline: Instant,
) -> (FetchResponse, usize, bool) {
    let mut remote = HashMap::new();
    for (t, topic) in topics.iter().enumerate() {
        for (i, target) in topic.partitions.iter().enumerate() {
            if let Ok(p) = &target.partition
                && p.is_remote(target.fetch_offset)
            {
                let max = target.max_bytes.min(max_bytes);
                let (p, offset) = (Arc::clone(p), target.fetch_offset);
                remote.insert(
                    (t, i),
                    tokio::spawn(async move { p.read(offset, max, true).await }),
                );
            }
        }
    }
    let remote_deadline = deadline.max(Instant::now() + REMOTE_READ_FLOOR);
    let mut total = 0usize;
    let mut errors = false;
    let mut responses = Vec::with_capacity(topics.len());
    for (t, topic) in topics.iter().enumerate() {
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for (i, target) in topic.partitions.iter().enumerate() {
            let data = PartitionData::default()
                .with_partition_index(target.partition_index)
                .with_preferred_read_replica(BrokerId(-1));
            let partition = match &target.partition {
                Ok(p) => p,
                Err(e) => {
                    errors = true;
                    partitions.push(failed(data, e));
                    continue;
                }
            };
            let (hw, start) = (
                partition.high_watermark(),
                partition.log_start_offset().await,
            );
            let budget = target.max_bytes.min(max_bytes.saturating_sub(total));
            let result = match remote.remove(&(t, i)) {
                Some(handle) => match tokio::time::timeout_at(remote_deadline, handle).await {
                    // Over the response budget and not the first data: leave it for the next fetch.
                    Ok(Ok(Ok(records))) if records.len() > budget && total > 0 => Ok(Bytes::new()),
                    Ok(Ok(result)) => result,
                    Ok(Err(_)) => Err(BrokerError::ShuttingDown),
                    Err(_) => Ok(Bytes::new()),
                },
                None if budget == 0 && total > 0 => Ok(Bytes::new()),
                None => {
                    partition
                        .read(target.fetch_offset, budget, total == 0)
                        .await
                }
            };
            let data = data
                .with_high_watermark(hw)
                .with_last_stable_offset(hw)
                .with_log_start_offset(start);
            partitions.push(match result {
                Ok(records) => {
                    total += records.len();
                    data.with_records(Some(records))
                }
                Err(e) => {
                    errors = true;
                    failed(data, &e)
                }
            });
        }
        let response = FetchableTopicResponse::default().with_partitions(partitions);
        responses.push(if version >= TOPIC_IDS_FROM {
            response.with_topic_id(topic.id)
        } else {
            response.with_topic(topic.name.clone())
        });
    }
    (
        FetchResponse::default().with_responses(responses),
        total,
        errors,
    )
}

fn failed(data: PartitionData, error: &BrokerError) -> PartitionData {
    tracing::debug!(error = %error, "fetch partition failed");
    data.with_error_code(response_error(error).code())
        .with_records(Some(bytes::Bytes::new()))
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::protocol::StrBytes;
    use strata_tiering::AppendOptions;

    use super::*;
    use crate::broker::{NewTopic, now_ms};
    use crate::test_support::{batch, open_broker};

    fn request(topic: &str, id: Uuid, max_bytes: i32, partition_max_bytes: i32) -> FetchRequest {
        let partitions = (0..2)
            .map(|p| {
                FetchPartition::default()
                    .with_partition(p)
                    .with_fetch_offset(0)
                    .with_partition_max_bytes(partition_max_bytes)
            })
            .collect();
        FetchRequest::default()
            .with_max_bytes(max_bytes)
            .with_min_bytes(1)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from(topic.to_string())))
                    .with_topic_id(id)
                    .with_partitions(partitions),
            ])
    }

    fn records_len(response: &FetchResponse) -> Vec<usize> {
        response.responses[0]
            .partitions
            .iter()
            .map(|p| p.records.as_ref().map_or(0, |r| r.len()))
            .collect()
    }

    /// A broker with a two-partition topic `t` holding ten equal batches per partition; returns
    /// the topic and the size of one batch.
    async fn two_partitions_of_ten_batches(dir: &std::path::Path) -> (Arc<Broker>, Uuid, usize) {
        let broker = open_broker(dir).await;
        let new = NewTopic {
            name: "t".into(),
            partitions: Some(2),
            ..NewTopic::default()
        };
        let topic = broker.create_topic(new).await.expect("create");
        let options = AppendOptions {
            now_ms: now_ms(),
            leader_epoch: 0,
            log_append_time: false,
        };
        let one = batch(&["0123456789"; 5], 1);
        for p in topic.partitions() {
            for _ in 0..10 {
                p.append(one.clone(), options).await.expect("append");
            }
        }
        (broker, topic.id(), one.len())
    }

    #[tokio::test]
    async fn topics_resolve_by_name_before_v13_and_by_id_after() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (broker, id, _) = two_partitions_of_ten_batches(dir.path()).await;
        let by_name = handle(&broker, 12, request("t", Uuid::nil(), 1 << 20, 1 << 20)).await;
        assert!(records_len(&by_name).iter().all(|n| *n > 0));
        let by_id = handle(&broker, 13, request("", id, 1 << 20, 1 << 20)).await;
        assert_eq!(records_len(&by_id), records_len(&by_name));
        assert_eq!(by_id.responses[0].topic_id, id);
        let unknown = handle(&broker, 13, request("t", Uuid::new_v4(), 1 << 20, 1 << 20)).await;
        let code = unknown.responses[0].partitions[0].error_code;
        assert_eq!(
            code,
            kafka_protocol::error::ResponseError::UnknownTopicId.code()
        );
    }

    #[tokio::test]
    async fn response_and_partition_byte_limits_hold() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (broker, _, b) = two_partitions_of_ten_batches(dir.path()).await;
        // Each partition is cut to whole batches under its own limit.
        let limited = handle(
            &broker,
            12,
            request("t", Uuid::nil(), 1 << 20, (3 * b + 1) as i32),
        )
        .await;
        assert_eq!(records_len(&limited), vec![3 * b, 3 * b]);
        // The response limit leaves the second partition what the first did not use.
        let total = handle(
            &broker,
            12,
            request("t", Uuid::nil(), (4 * b) as i32, 1 << 20),
        )
        .await;
        assert_eq!(records_len(&total), vec![4 * b, 0]);
        // A first batch larger than every limit still comes back whole (KIP-74).
        let tiny = handle(&broker, 12, request("t", Uuid::nil(), 1, 1)).await;
        assert_eq!(records_len(&tiny), vec![b, 0]);
    }
}
