//! [`OffsetsLog`] over the broker's own `__consumer_offsets` topic: created on first use with
//! Kafka's settings for it (compacted, never expired by time), appended to like any partition,
//! read back from its log start at startup.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use strata_tiering::AppendOptions;

use super::{GroupError, KeyValue, OFFSETS_TOPIC, OffsetsLog};
use crate::broker::{Broker, NewTopic, Partition, now_ms};
use crate::error::BrokerError;
use crate::protocol::records::{decode_key_values, encode_key_values};

/// How long a commit waits for the ISR (Kafka's `offsets.commit.timeout.ms`).
const COMMIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Bytes read per step while loading a partition.
const READ_STEP_BYTES: usize = 1 << 20;

/// The broker's `__consumer_offsets`.
#[derive(Debug, Clone, Copy)]
pub struct BrokerOffsetsLog<'a>(pub &'a Broker);

fn unavailable(e: BrokerError) -> GroupError {
    tracing::warn!(error = %e, "the __consumer_offsets log failed");
    GroupError::CoordinatorNotAvailable
}

impl BrokerOffsetsLog<'_> {
    fn partition(&self, index: i32) -> Result<Arc<Partition>, GroupError> {
        self.0
            .topic(OFFSETS_TOPIC)
            .and_then(|t| t.partition(index))
            .ok_or(GroupError::CoordinatorNotAvailable)
    }
}

#[async_trait]
impl OffsetsLog for BrokerOffsetsLog<'_> {
    async fn ensure(&self) -> Result<i32, GroupError> {
        if let Some(topic) = self.0.topic(OFFSETS_TOPIC) {
            return Ok(topic.partition_count());
        }
        let configs = BTreeMap::from([
            ("cleanup.policy".to_string(), "compact".to_string()),
            (
                "segment.bytes".to_string(),
                self.0.settings().offsets_topic_segment_bytes.to_string(),
            ),
        ]);
        let live = self.0.cluster().brokers.len().max(1);
        let replication = self
            .0
            .settings()
            .offsets_topic_replication_factor
            .min(i16::try_from(live).unwrap_or(i16::MAX));
        let created = self
            .0
            .create_topic(NewTopic {
                name: OFFSETS_TOPIC.to_string(),
                partitions: Some(self.0.settings().offsets_topic_num_partitions),
                replication_factor: Some(replication),
                configs,
                ..NewTopic::default()
            })
            .await;
        match created {
            Ok(topic) => Ok(topic.partition_count()),
            Err(BrokerError::TopicAlreadyExists(_)) => self
                .0
                .topic(OFFSETS_TOPIC)
                .map(|t| t.partition_count())
                .ok_or(GroupError::CoordinatorNotAvailable),
            Err(e) => Err(unavailable(e)),
        }
    }

    fn partitions(&self) -> Option<i32> {
        self.0.topic(OFFSETS_TOPIC).map(|t| t.partition_count())
    }

    async fn append(&self, partition: i32, records: Vec<KeyValue>) -> Result<(), GroupError> {
        let p = self.partition(partition)?;
        let now = now_ms();
        let batch = encode_key_values(&records, now).map_err(unavailable)?;
        let options = AppendOptions {
            now_ms: now,
            leader_epoch: 0,
            log_append_time: false,
        };
        // Acknowledged only once the whole ISR has it, like acks=all.
        let outcome = p.append(batch, options).await.map_err(unavailable)?;
        p.wait_for_high_watermark(
            outcome.last_offset + 1,
            outcome.leader_epoch,
            COMMIT_TIMEOUT,
        )
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    async fn read_all(&self, partition: i32) -> Result<Vec<KeyValue>, GroupError> {
        let p = self.partition(partition)?;
        let mut offset = p.log_start_offset().await;
        let end = p.high_watermark();
        let mut out = Vec::new();
        while offset < end {
            let batches = p
                .read(offset, READ_STEP_BYTES, true)
                .await
                .map_err(unavailable)?;
            if batches.is_empty() {
                break;
            }
            let next = strata_tiering::batch::split_batches(&batches)
                .map_err(|e| unavailable(e.into()))?
                .last()
                .and_then(|r| strata_tiering::batch::BatchHeader::parse(&batches[r.clone()]).ok())
                .map(|h| h.last_offset() + 1);
            out.extend(decode_key_values(batches).map_err(unavailable)?);
            match next {
                Some(n) if n > offset => offset = n,
                _ => break,
            }
        }
        Ok(out)
    }

    fn leads(&self, partition: i32) -> bool {
        self.partition(partition)
            .is_ok_and(|p| p.leader_epoch().is_ok())
    }

    fn high_watermark(&self, topic: &str, partition: i32) -> Option<i64> {
        let t = self.0.topic(topic)?;
        t.partition(partition).map(|p| p.high_watermark())
    }
}
