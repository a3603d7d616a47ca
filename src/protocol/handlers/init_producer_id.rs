//! InitProducerId: a fresh producer id for an idempotent producer. Every call, including an epoch
//! bump after an error, gets a new id at epoch 0, as Kafka does for non-transactional producers.

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use crate::broker::Broker;
use crate::error::BrokerError;
use crate::protocol::errors::response_error;

/// Handles an InitProducerId request.
pub async fn handle(broker: &Broker, request: InitProducerIdRequest) -> InitProducerIdResponse {
    let outcome = if request.transactional_id.is_some() {
        Err(BrokerError::TransactionsUnsupported)
    } else {
        broker.next_producer_id().await
    };
    match outcome {
        Ok(id) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(e) => {
            tracing::debug!(error = %e, "InitProducerId failed");
            InitProducerIdResponse::default()
                .with_error_code(response_error(&e).code())
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
        }
    }
}
