//! OffsetFetch: a group's committed offsets (what consumers resume from, and what lag tools read).

use std::collections::BTreeMap;

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;
use crate::group::records::CommittedOffset;

/// OffsetFetch v8 fetches several groups at once.
const BATCHED_FROM: i16 = 8;

/// Committed offsets by topic, then partition; `None` where nothing is committed.
type ByTopic = BTreeMap<String, Vec<(i32, Option<CommittedOffset>)>>;

async fn fetch(broker: &Broker, group: &str, wanted: Option<Vec<(String, Vec<i32>)>>) -> ByTopic {
    let partitions = wanted.map(|topics| {
        topics
            .into_iter()
            .flat_map(|(t, ps)| ps.into_iter().map(move |p| (t.clone(), p)))
            .collect()
    });
    let mut out = ByTopic::new();
    for ((topic, partition), committed) in broker.groups().fetch_offsets(group, partitions).await {
        out.entry(topic).or_default().push((partition, committed));
    }
    out
}

fn parts(committed: Option<CommittedOffset>) -> (i64, i32, StrBytes) {
    match committed {
        Some(c) => (c.offset, c.leader_epoch, StrBytes::from(c.metadata)),
        None => (-1, -1, StrBytes::default()),
    }
}

/// Handles an OffsetFetch request.
pub async fn handle(
    broker: &Broker,
    version: i16,
    request: OffsetFetchRequest,
) -> OffsetFetchResponse {
    if version >= BATCHED_FROM {
        let mut groups = Vec::with_capacity(request.groups.len());
        for g in request.groups {
            let wanted = g.topics.map(|ts| {
                ts.into_iter()
                    .map(|t| (t.name.to_string(), t.partition_indexes))
                    .collect()
            });
            let topics = fetch(broker, &g.group_id, wanted)
                .await
                .into_iter()
                .map(|(name, partitions)| {
                    OffsetFetchResponseTopics::default()
                        .with_name(TopicName(StrBytes::from(name)))
                        .with_partitions(
                            partitions
                                .into_iter()
                                .map(|(index, committed)| {
                                    let (offset, epoch, metadata) = parts(committed);
                                    OffsetFetchResponsePartitions::default()
                                        .with_partition_index(index)
                                        .with_committed_offset(offset)
                                        .with_committed_leader_epoch(epoch)
                                        .with_metadata(Some(metadata))
                                })
                                .collect(),
                        )
                })
                .collect();
            groups.push(
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id)
                    .with_topics(topics),
            );
        }
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let wanted = request.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name.to_string(), t.partition_indexes))
            .collect()
    });
    let topics = fetch(broker, &request.group_id, wanted)
        .await
        .into_iter()
        .map(|(name, partitions)| {
            OffsetFetchResponseTopic::default()
                .with_name(TopicName(StrBytes::from(name)))
                .with_partitions(
                    partitions
                        .into_iter()
                        .map(|(index, committed)| {
                            let (offset, epoch, metadata) = parts(committed);
                            OffsetFetchResponsePartition::default()
                                .with_partition_index(index)
                                .with_committed_offset(offset)
                                .with_committed_leader_epoch(epoch)
                                .with_metadata(Some(metadata))
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetFetchResponse::default().with_topics(topics)
}
