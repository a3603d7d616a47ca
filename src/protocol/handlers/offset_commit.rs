//! OffsetCommit: stores a group's consumed positions in `__consumer_offsets`.

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::broker::{Broker, now_ms};
use crate::group::records::CommittedOffset;
use crate::group::{Committer, OffsetToCommit, partition_error};
use crate::protocol::errors::{group_code, group_error};

/// Handles an OffsetCommit request.
pub async fn handle(broker: &Broker, request: OffsetCommitRequest) -> OffsetCommitResponse {
    let now = now_ms();
    let offsets: Vec<OffsetToCommit> = request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| OffsetToCommit {
                topic: t.name.to_string(),
                partition: p.partition_index,
                value: CommittedOffset {
                    offset: p.committed_offset,
                    leader_epoch: p.committed_leader_epoch,
                    metadata: p
                        .committed_metadata
                        .as_ref()
                        .map(|s| s.to_string())
                        .unwrap_or_default(),
                    commit_timestamp_ms: now,
                },
            })
        })
        .collect();
    let instance = request.group_instance_id.as_ref().map(|s| s.to_string());
    let committer = Committer {
        member_id: &request.member_id,
        generation: request.generation_id_or_member_epoch,
        instance_id: instance.as_deref(),
    };
    let result = broker
        .groups()
        .commit(&broker.offsets_log(), &request.group_id, committer, offsets)
        .await;
    // Every partition carries the outcome: a group-level refusal applies to all of them.
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let code = match &result {
                        Err(e) => group_error(*e).code(),
                        Ok(results) => {
                            group_code(partition_error(results, t.name.as_str(), p.partition_index))
                        }
                    };
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(TopicName(StrBytes::from(t.name.to_string())))
                .with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}
