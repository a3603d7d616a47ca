//! FindCoordinator: there is no group or transaction coordinator yet, and this says so with
//! COORDINATOR_NOT_AVAILABLE rather than pointing clients at APIs the broker does not offer.
//!
//! The API is advertised all the same because librdkafka (and so kcat and confluent-kafka) only
//! enables lz4 for brokers that list it: without it, `compression.type=lz4` producers silently
//! send uncompressed batches. Consumer groups replace this handler with a real coordinator.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

/// FindCoordinator v4 moved from one key to a batch of keys.
const BATCHED_FROM: i16 = 4;

const WHY: &str = "this broker has no group or transaction coordinator yet";

/// Handles a FindCoordinator request.
pub fn handle(version: i16, request: FindCoordinatorRequest) -> FindCoordinatorResponse {
    let code = ResponseError::CoordinatorNotAvailable.code();
    let response = FindCoordinatorResponse::default();
    if version >= BATCHED_FROM {
        let coordinators = request
            .coordinator_keys
            .into_iter()
            .map(|key| {
                Coordinator::default()
                    .with_key(key)
                    .with_node_id(BrokerId(-1))
                    .with_port(-1)
                    .with_error_code(code)
                    .with_error_message(Some(StrBytes::from_static_str(WHY)))
            })
            .collect();
        response.with_coordinators(coordinators)
    } else {
        response
            .with_error_code(code)
            .with_error_message(Some(StrBytes::from_static_str(WHY)))
            .with_node_id(BrokerId(-1))
            .with_port(-1)
    }
}
