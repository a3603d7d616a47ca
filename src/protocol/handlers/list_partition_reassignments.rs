//! ListPartitionReassignments: the partitions being moved, with their full replica set and the
//! replicas being added and removed.

use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    BrokerId, ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;

/// Handles a ListPartitionReassignments request.
pub fn handle(
    broker: &Broker,
    request: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    let wanted = |topic: &str, partition: i32| match &request.topics {
        None => true,
        Some(topics) => topics
            .iter()
            .any(|t| t.name.0.as_str() == topic && t.partition_indexes.contains(&partition)),
    };
    let ids = |ids: &[i32]| ids.iter().map(|b| BrokerId(*b)).collect::<Vec<_>>();
    let mut topics: Vec<OngoingTopicReassignment> = Vec::new();
    for (topic, partition, state) in broker.reassignments() {
        if !wanted(&topic, partition) {
            continue;
        }
        let ongoing = OngoingPartitionReassignment::default()
            .with_partition_index(partition)
            .with_replicas(ids(&state.replicas))
            .with_adding_replicas(ids(&state.adding_replicas))
            .with_removing_replicas(ids(&state.removing_replicas));
        match topics.iter_mut().find(|t| t.name.0.as_str() == topic) {
            Some(t) => t.partitions.push(ongoing),
            None => topics.push(
                OngoingTopicReassignment::default()
                    .with_name(TopicName(StrBytes::from(topic)))
                    .with_partitions(vec![ongoing]),
            ),
        }
    }
    ListPartitionReassignmentsResponse::default().with_topics(topics)
}
