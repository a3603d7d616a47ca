//! DeleteTopics: by name (v1–5) or by name or id (v6+).

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use crate::broker::Broker;
use crate::error::BrokerError;
use crate::protocol::errors::code_and_message;

/// Handles a DeleteTopics request.
pub async fn handle(
    broker: &Broker,
    version: i16,
    request: DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    let targets: Vec<(Option<TopicName>, Uuid)> = if version >= 6 {
        request
            .topics
            .into_iter()
            .map(|t| (t.name, t.topic_id))
            .collect()
    } else {
        request
            .topic_names
            .into_iter()
            .map(|n| (Some(n), Uuid::nil()))
            .collect()
    };
    let mut responses = Vec::with_capacity(targets.len());
    for (name, id) in targets {
        let resolved = match (&name, id) {
            (Some(name), _) => broker
                .topic(name)
                .map(|t| (t.name().to_string(), t.id()))
                .ok_or_else(|| BrokerError::UnknownTopicOrPartition(name.to_string())),
            (None, id) => broker
                .topic_by_id(id)
                .map(|t| (t.name().to_string(), t.id()))
                .ok_or(BrokerError::UnknownTopicId(id)),
        };
        let outcome = match resolved {
            Ok((topic_name, topic_id)) => broker
                .delete_topic(&topic_name)
                .await
                .map(|()| (topic_name, topic_id)),
            Err(e) => Err(e),
        };
        responses.push(match outcome {
            Ok((topic_name, topic_id)) => DeletableTopicResult::default()
                .with_name(Some(TopicName(StrBytes::from(topic_name))))
                .with_topic_id(topic_id),
            Err(e) => {
                let (code, message) = code_and_message(&e);
                let r = DeletableTopicResult::default()
                    .with_name(name)
                    .with_topic_id(id)
                    .with_error_code(code);
                if version >= 5 {
                    r.with_error_message(message)
                } else {
                    r
                }
            }
        });
    }
    DeleteTopicsResponse::default().with_responses(responses)
}
