//! ElectLeaders: preferred-leader elections (the controller moves leadership back to each
//! partition's first replica). Unclean elections by request are refused: the controller makes
//! them only for topics that allow them, when no in-sync replica is left.

use std::time::Duration;

use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;
use crate::protocol::errors::code_and_message;

/// `election_type` of a preferred-leader election.
const PREFERRED: i8 = 0;

/// Handles an ElectLeaders request.
pub async fn handle(broker: &Broker, request: ElectLeadersRequest) -> ElectLeadersResponse {
    let timeout = Duration::from_millis(u64::try_from(request.timeout_ms).unwrap_or(0).max(1));
    let wanted: Vec<(TopicName, Vec<i32>)> = match request.topic_partitions {
        Some(list) => list.into_iter().map(|t| (t.topic, t.partitions)).collect(),
        None => broker
            .topics()
            .iter()
            .map(|t| {
                (
                    TopicName(StrBytes::from(t.name().to_string())),
                    (0..t.partition_count()).collect(),
                )
            })
            .collect(),
    };
    let mut results = Vec::with_capacity(wanted.len());
    for (topic, partitions) in wanted {
        let mut partition_result = Vec::with_capacity(partitions.len());
        for partition in partitions {
            let result = PartitionResult::default().with_partition_id(partition);
            let outcome = if request.election_type == PREFERRED {
                broker
                    .elect_preferred_leader(&topic, partition, timeout)
                    .await
            } else {
                Err(crate::error::BrokerError::InvalidRequest(
                    "unclean elections are made by the controller for topics that allow them"
                        .into(),
                ))
            };
            partition_result.push(match outcome {
                Ok(()) => result,
                Err(e) => {
                    let (code, message) = code_and_message(&e);
                    result.with_error_code(code).with_error_message(message)
                }
            });
        }
        results.push(
            ReplicaElectionResult::default()
                .with_topic(topic)
                .with_partition_result(partition_result),
        );
    }
    ElectLeadersResponse::default().with_replica_election_results(results)
}
