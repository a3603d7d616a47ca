//! Produce, in two stages: [`append`] validates, optionally recompresses and appends each
//! partition's batches on its leader; [`Appended::acknowledged`] then waits for what `acks` asks
//! — nothing for acks=1, every in-sync replica (the high watermark passing the batches) for
//! acks=-1, all partitions at once — and builds the response (none for acks=0).
//! `min.insync.replicas` is checked before the append and again after the wait. A connection
//! may append its next Produce while this one's acknowledgement is pending.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::join_all;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, TopicName};
use strata_tiering::{AppendOptions, AppendOutcome};
use tokio::time::Instant;
use uuid::Uuid;

use crate::broker::{Broker, Partition, Topic, now_ms};
use crate::error::{BrokerError, Result};
use crate::protocol::errors::code_and_message;
use crate::protocol::records::recompress;

/// A Produce request whose batches are in the leaders' logs (or refused), its acknowledgement
/// still to come.
#[derive(Debug)]
pub struct Appended {
    version: i16,
    acks: i16,
    /// When acks=all stops waiting: the request's `timeout_ms` after it arrived.
    deadline: Instant,
    topics: Vec<AppendedTopic>,
}

#[derive(Debug)]
struct AppendedTopic {
    name: TopicName,
    topic_id: Uuid,
    partitions: Vec<(i32, Result<Written>)>,
}

/// Batches appended to one partition, and the ISR size the topic requires.
#[derive(Debug)]
struct Written {
    partition: Arc<Partition>,
    outcome: AppendOutcome,
    required: i32,
}

/// Appends every partition's batches of `request`, in request order.
pub async fn append(broker: &Broker, version: i16, request: ProduceRequest) -> Appended {
    let acks = request.acks;
    let timeout = Duration::from_millis(u64::try_from(request.timeout_ms).unwrap_or(0).max(1));
    // One deadline for the whole request, as Kafka's `timeout_ms` is.
    let deadline = Instant::now() + timeout;
    let transactional = request.transactional_id.is_some();
    let mut topics = Vec::with_capacity(request.topic_data.len());
    for topic_data in request.topic_data {
        let topic = broker.topic(&topic_data.name);
        let mut partitions = Vec::with_capacity(topic_data.partition_data.len());
        for data in topic_data.partition_data {
            let written = append_partition(
                topic.as_deref(),
                &topic_data.name,
                data.index,
                data.records,
                acks,
                transactional,
            )
            .await;
            partitions.push((data.index, written));
        }
        topics.push(AppendedTopic {
            name: topic_data.name,
            topic_id: topic_data.topic_id,
            partitions,
        });
    }
    Appended {
        version,
        acks,
        deadline,
        topics,
    }
}

impl Appended {
    /// Waits until every appended partition is acknowledged as `acks` asks, all partitions at
    /// once; the response, or `None` for acks=0.
    pub async fn acknowledged(self) -> Option<ProduceResponse> {
        let (version, acks) = (self.version, self.acks);
        let deadline = self.deadline;
        let mut responses = Vec::with_capacity(self.topics.len());
        for topic in self.topics {
            let name = &topic.name;
            let waits = topic
                .partitions
                .into_iter()
                .map(|(index, written)| async move {
                    let written = match written {
                        Ok(w) => acknowledge(w, acks, deadline).await,
                        Err(e) => Err(e),
                    };
                    partition_response(name, index, written, version)
                });
            let partitions = join_all(waits).await;
            responses.push(
                TopicProduceResponse::default()
                    .with_name(topic.name)
                    .with_topic_id(topic.topic_id)
                    .with_partition_responses(partitions),
            );
        }
        (acks != 0).then(|| ProduceResponse::default().with_responses(responses))
    }
}

async fn append_partition(
    topic: Option<&Topic>,
    name: &str,
    index: i32,
    records: Option<Bytes>,
    acks: i16,
    transactional: bool,
) -> Result<Written> {
    if !matches!(acks, -1..=1) {
        return Err(BrokerError::InvalidRequiredAcks(acks));
    }
    if transactional {
        return Err(BrokerError::TransactionsUnsupported);
    }
    let topic = topic.ok_or_else(|| BrokerError::UnknownTopicOrPartition(name.to_string()))?;
    let partition = topic.led_partition(index)?;
    let mut records = records.filter(|r| !r.is_empty()).ok_or_else(|| {
        BrokerError::InvalidRecords("the produce request carried no records".into())
    })?;
    let config = topic.config();
    let required = config.min_insync_replicas();
    if acks == -1 && (in_sync(&partition) as i32) < required {
        return Err(BrokerError::NotEnoughReplicas {
            isr: in_sync(&partition),
            required,
        });
    }
    if let Some(target) = config.compression() {
        records = recompress(records, target)?;
    }
    let options = AppendOptions {
        now_ms: now_ms(),
        leader_epoch: 0,
        log_append_time: config.log_append_time(),
    };
    let outcome = partition.append(records, options).await?;
    Ok(Written {
        partition,
        outcome,
        required,
    })
}

fn in_sync(partition: &Partition) -> usize {
    partition.isr().map_or(0, |isr| isr.len())
}

/// Waits for `written` to be acknowledged: the high watermark past it by `deadline` for acks=-1.
async fn acknowledge(written: Written, acks: i16, deadline: Instant) -> Result<AppendOutcome> {
    if acks == -1 {
        let partition = &written.partition;
        partition
            .wait_for_high_watermark(
                written.outcome.last_offset + 1,
                written.outcome.leader_epoch,
                deadline.saturating_duration_since(Instant::now()),
            )
            .await?;
        if (in_sync(partition) as i32) < written.required {
            return Err(BrokerError::NotEnoughReplicasAfterAppend {
                required: written.required,
            });
        }
    }
    Ok(written.outcome)
}

fn partition_response(
    topic: &TopicName,
    index: i32,
    outcome: Result<AppendOutcome>,
    version: i16,
) -> PartitionProduceResponse {
    let response = PartitionProduceResponse::default().with_index(index);
    match outcome {
        Ok(outcome) => response
            .with_base_offset(outcome.base_offset)
            .with_log_append_time_ms(outcome.log_append_time.unwrap_or(-1))
            .with_log_start_offset(outcome.log_start_offset),
        Err(e) => {
            tracing::debug!(topic = %topic.0, partition = index, error = %e, "produce failed");
            let (code, message) = code_and_message(&e);
            let response = response
                .with_error_code(code)
                .with_base_offset(-1)
                .with_log_append_time_ms(-1)
                .with_log_start_offset(-1);
            if version >= 8 {
                response.with_error_message(message)
            } else {
                response
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::error::ResponseError;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::protocol::StrBytes;

    use super::*;
    use crate::test_support::{batch, open_broker, partitions_awaiting_a_follower};

    fn request(partitions: &[i32], timeout_ms: i32) -> ProduceRequest {
        let data = partitions.iter().map(|&index| {
            PartitionProduceData::default()
                .with_index(index)
                .with_records(Some(batch(&["a", "b"], 1_000)))
        });
        ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(timeout_ms)
            .with_topic_data(vec![
                TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_static_str("two")))
                    .with_partition_data(data.collect()),
            ])
    }

    fn answers(response: &ProduceResponse) -> Vec<(i32, i16, i64)> {
        response.responses[0]
            .partition_responses
            .iter()
            .map(|p| (p.index, p.error_code, p.base_offset))
            .collect()
    }

    #[tokio::test]
    async fn every_partition_is_appended_before_acknowledgements_are_awaited() {
        let dir = tempfile::tempdir().expect("tempdir");
        let broker = open_broker(dir.path()).await;
        let partitions = partitions_awaiting_a_follower(&broker, "two", 2).await;
        let appended = append(&broker, 8, request(&[0, 1], 30_000)).await;
        let ends: Vec<_> = partitions.iter().map(|p| p.log_end_offset()).collect();
        assert_eq!(
            ends,
            vec![2, 2],
            "both partitions appended, neither acknowledged yet"
        );
        let acknowledged = tokio::spawn(appended.acknowledged());
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !acknowledged.is_finished(),
            "acks=all waits for the follower"
        );
        for p in &partitions {
            p.follower_fetched(2, 2, now_ms(), 30_000);
        }
        let response = acknowledged.await.expect("task").expect("acks=all answers");
        assert_eq!(answers(&response), vec![(0, 0, 0), (1, 0, 0)]);
    }

    #[tokio::test]
    async fn partitions_share_the_request_timeout() {
        let dir = tempfile::tempdir().expect("tempdir");
        let broker = open_broker(dir.path()).await;
        partitions_awaiting_a_follower(&broker, "two", 2).await;
        let started = Instant::now();
        let response = append(&broker, 8, request(&[0, 1], 1_000))
            .await
            .acknowledged()
            .await
            .expect("acks=all answers");
        let timed_out = ResponseError::RequestTimedOut.code();
        assert_eq!(
            answers(&response),
            vec![(0, timed_out, -1), (1, timed_out, -1)]
        );
        // Waited one after the other, two partitions would take two timeouts.
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(1) && waited < Duration::from_millis(1_900),
            "waited {waited:?} for a 1 s timeout"
        );
    }
}
