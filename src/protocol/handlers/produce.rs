//! Produce: validate, optionally recompress, and append each partition's batches on its leader;
//! acks=0 gets no response, acks=1 is answered once the batches are in the leader's log, acks=-1
//! once every in-sync replica has them (the high watermark passed them), with
//! `min.insync.replicas` checked before the append and again after the wait.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use strata_tiering::AppendOptions;

use crate::broker::{Broker, Topic, now_ms};
use crate::error::{BrokerError, Result};
use crate::protocol::errors::code_and_message;
use crate::protocol::records::recompress;

/// Handles a Produce request; `None` when acks=0.
pub async fn handle(
    broker: &Broker,
    version: i16,
    request: ProduceRequest,
) -> Option<ProduceResponse> {
    let acks = request.acks;
    let timeout = Duration::from_millis(u64::try_from(request.timeout_ms).unwrap_or(0).max(1));
    let transactional = request.transactional_id.is_some();
    let mut responses = Vec::with_capacity(request.topic_data.len());
    for topic_data in request.topic_data {
        let topic = broker.topic(&topic_data.name);
        let mut partitions = Vec::with_capacity(topic_data.partition_data.len());
        for data in topic_data.partition_data {
            let outcome = produce_partition(
                topic.as_deref(),
                &topic_data.name,
                data.index,
                data.records,
                (acks, timeout),
                transactional,
            )
            .await;
            let response = PartitionProduceResponse::default().with_index(data.index);
            partitions.push(match outcome {
                Ok((base_offset, log_append_time, log_start_offset)) => response
                    .with_base_offset(base_offset)
                    .with_log_append_time_ms(log_append_time)
                    .with_log_start_offset(log_start_offset),
                Err(e) => {
                    tracing::debug!(topic = %topic_data.name.0, partition = data.index, error = %e, "produce failed");
                    let (code, message) = code_and_message(&e);
                    let response = response
                        .with_error_code(code)
                        .with_base_offset(-1)
                        .with_log_append_time_ms(-1)
                        .with_log_start_offset(-1);
                    if version >= 8 { response.with_error_message(message) } else { response }
                }
            });
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(topic_data.name)
                .with_topic_id(topic_data.topic_id)
                .with_partition_responses(partitions),
        );
    }
    (acks != 0).then(|| ProduceResponse::default().with_responses(responses))
}

async fn produce_partition(
    topic: Option<&Topic>,
    name: &str,
    index: i32,
    records: Option<Bytes>,
    (acks, timeout): (i16, Duration),
    transactional: bool,
) -> Result<(i64, i64, i64)> {
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
    let in_sync = |p: &crate::broker::Partition| p.isr().map_or(0, |isr| isr.len());
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
    if acks == -1 {
        partition
            .wait_for_high_watermark(outcome.last_offset + 1, timeout)
            .await?;
        if (in_sync(&partition) as i32) < required {
            return Err(BrokerError::NotEnoughReplicasAfterAppend { required });
        }
    }
    Ok((
        outcome.base_offset,
        outcome.log_append_time.unwrap_or(-1),
        outcome.log_start_offset,
    ))
}
