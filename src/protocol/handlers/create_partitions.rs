//! CreatePartitions: raise the partition count of topics.

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use crate::broker::Broker;
use crate::error::BrokerError;
use crate::protocol::errors::code_and_message;

/// Handles a CreatePartitions request.
pub async fn handle(broker: &Broker, request: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let me = broker.settings().broker_id;
        let bad_assignment = topic.assignments.as_ref().is_some_and(|a| {
            a.iter()
                .any(|r| r.broker_ids.is_empty() || r.broker_ids.iter().any(|b| b.0 != me))
        });
        let outcome = if bad_assignment {
            Err(BrokerError::InvalidReplicaAssignment(format!(
                "assignments may only name broker {me}"
            )))
        } else {
            broker
                .create_partitions(&topic.name, topic.count, request.validate_only)
                .await
        };
        let result = CreatePartitionsTopicResult::default().with_name(topic.name);
        results.push(match outcome {
            Ok(()) => result,
            Err(e) => {
                let (code, message) = code_and_message(&e);
                result.with_error_code(code).with_error_message(message)
            }
        });
    }
    CreatePartitionsResponse::default().with_results(results)
}
