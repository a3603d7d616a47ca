//! OffsetDelete: removes a group's committed offsets of topics its members no longer consume.

use bytes::Buf;
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{
    ConsumerProtocolSubscription, OffsetDeleteRequest, OffsetDeleteResponse,
};
use kafka_protocol::protocol::Decodable;

use crate::broker::Broker;
use crate::group::partition_error;
use crate::group::state::Group;
use crate::protocol::errors::group_code;

/// Whether any member of a "consumer" group subscribes to `topic`, read from the subscriptions
/// the members sent (other protocol types cannot be read, so they count as subscribed).
fn subscribed(group: &Group, topic: &str) -> bool {
    if group.protocol_type() != Some("consumer") {
        return true;
    }
    let protocol = group.protocol().unwrap_or_default();
    group.members().any(|m| {
        let mut metadata = m.metadata(protocol);
        if metadata.remaining() < 2 {
            return false;
        }
        let version = metadata.get_i16();
        ConsumerProtocolSubscription::decode(&mut metadata, version)
            .map(|s| s.topics.iter().any(|t| t.as_str() == topic))
            .unwrap_or(true)
    })
}

/// Handles an OffsetDelete request.
pub async fn handle(broker: &Broker, request: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let partitions = request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (t.name.to_string(), p.partition_index))
        })
        .collect();
    let result = broker
        .groups()
        .delete_offsets(
            &broker.offsets_log(),
            &request.group_id,
            partitions,
            subscribed,
        )
        .await;
    let results = match result {
        Err(e) => return OffsetDeleteResponse::default().with_error_code(group_code(Some(e))),
        Ok(r) => r,
    };
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let error = partition_error(&results, t.name.as_str(), p.partition_index);
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(group_code(error))
                })
                .collect();
            OffsetDeleteResponseTopic::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    OffsetDeleteResponse::default().with_topics(topics)
}
