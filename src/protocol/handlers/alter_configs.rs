//! AlterConfigs (the legacy, non-incremental API): a topic's overrides are replaced as a whole.

use std::collections::BTreeMap;

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};

use super::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use crate::broker::Broker;
use crate::error::{BrokerError, Result};
use crate::protocol::errors::code_and_message;

/// Handles an AlterConfigs request.
pub async fn handle(broker: &Broker, request: AlterConfigsRequest) -> AlterConfigsResponse {
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let configs: Vec<(String, Option<String>)> = resource
            .configs
            .iter()
            .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
            .collect();
        let outcome = alter(
            broker,
            resource.resource_type,
            &resource.resource_name,
            configs,
            request.validate_only,
        )
        .await;
        let response = AlterConfigsResourceResponse::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name);
        responses.push(match outcome {
            Ok(()) => response,
            Err(e) => {
                let (code, message) = code_and_message(&e);
                response.with_error_code(code).with_error_message(message)
            }
        });
    }
    AlterConfigsResponse::default().with_responses(responses)
}

async fn alter(
    broker: &Broker,
    resource_type: i8,
    name: &str,
    configs: Vec<(String, Option<String>)>,
    validate_only: bool,
) -> Result<()> {
    match resource_type {
        RESOURCE_TOPIC => {
            let mut overrides = BTreeMap::new();
            for (key, value) in configs {
                let value = value
                    .ok_or_else(|| BrokerError::InvalidConfig(format!("null value for {key}")))?;
                overrides.insert(key, value);
            }
            broker
                .alter_topic_config(name, |_| Ok(overrides.clone()), validate_only)
                .await
        }
        RESOURCE_BROKER => Err(BrokerError::InvalidRequest(
            "broker configs are static: set them with flags, STRATA_* variables or the config file"
                .into(),
        )),
        other => Err(BrokerError::InvalidRequest(format!(
            "config resource type {other} is not supported"
        ))),
    }
}
