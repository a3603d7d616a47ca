//! IncrementalAlterConfigs: SET, DELETE, APPEND and SUBTRACT on single topic configs.

use std::collections::BTreeMap;

use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};

use super::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use crate::broker::Broker;
use crate::error::{BrokerError, Result};
use crate::protocol::errors::code_and_message;
use crate::topic_config::{self, TopicConfig};

const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;

/// One requested change.
#[derive(Debug, Clone)]
struct Change {
    name: String,
    operation: i8,
    value: Option<String>,
}

/// Handles an IncrementalAlterConfigs request.
pub async fn handle(
    broker: &Broker,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let changes: Vec<Change> = resource
            .configs
            .iter()
            .map(|c| Change {
                name: c.name.to_string(),
                operation: c.config_operation,
                value: c.value.as_ref().map(|v| v.to_string()),
            })
            .collect();
        let outcome = match resource.resource_type {
            RESOURCE_TOPIC => {
                broker.alter_topic_config(&resource.resource_name, |current| apply(current, &changes), request.validate_only).await
            }
            RESOURCE_BROKER => Err(BrokerError::InvalidRequest(
                "broker configs are static: set them with flags, STRATA_* variables or the config file".into(),
            )),
            other => Err(BrokerError::InvalidRequest(format!("config resource type {other} is not supported"))),
        };
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
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

/// Applies `changes` to the overrides of `current`. APPEND and SUBTRACT start from the effective
/// value, so appending `compact` to an unset `cleanup.policy` gives `delete,compact`, as in Kafka.
fn apply(current: &TopicConfig, changes: &[Change]) -> Result<BTreeMap<String, String>> {
    let mut next = current.overrides().clone();
    for change in changes {
        let list = topic_config::is_list(&change.name)?;
        let value = || {
            change.value.clone().ok_or_else(|| {
                BrokerError::InvalidConfig(format!("null value for {}", change.name))
            })
        };
        match change.operation {
            SET => {
                next.insert(change.name.clone(), value()?);
            }
            DELETE => {
                next.remove(&change.name);
            }
            APPEND | SUBTRACT if list => {
                let given = value()?;
                let base = match next.get(&change.name) {
                    Some(v) => v.clone(),
                    None => current.effective(&change.name)?,
                };
                let mut items: Vec<String> = base
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect();
                for item in given.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    if change.operation == APPEND {
                        if !items.iter().any(|i| i == item) {
                            items.push(item.to_string());
                        }
                    } else {
                        items.retain(|i| i != item);
                    }
                }
                if items.is_empty() {
                    next.remove(&change.name);
                } else {
                    next.insert(change.name.clone(), items.join(","));
                }
            }
            APPEND | SUBTRACT => {
                return Err(BrokerError::InvalidConfig(format!(
                    "{} is not a list: APPEND and SUBTRACT apply only to lists",
                    change.name
                )));
            }
            other => {
                return Err(BrokerError::InvalidRequest(format!(
                    "unknown config operation {other}"
                )));
            }
        }
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(name: &str, operation: i8, value: Option<&str>) -> Change {
        Change {
            name: name.into(),
            operation,
            value: value.map(Into::into),
        }
    }

    fn config(overrides: BTreeMap<String, String>) -> TopicConfig {
        TopicConfig::new(overrides, Default::default()).expect("valid")
    }

    #[test]
    fn operations_apply_in_order() {
        let current = config([("retention.ms".to_string(), "100".to_string())].into());
        let next = apply(
            &current,
            &[
                change("retention.ms", DELETE, None),
                change("segment.bytes", SET, Some("2048")),
                change("cleanup.policy", APPEND, Some("compact")),
                change("cleanup.policy", APPEND, Some("delete,compact")),
            ],
        )
        .expect("valid");
        assert_eq!(next.get("retention.ms"), None);
        assert_eq!(next.get("segment.bytes").map(String::as_str), Some("2048"));
        assert_eq!(
            next.get("cleanup.policy").map(String::as_str),
            Some("delete,compact")
        );
        let next = config(next);
        let after = apply(
            &next,
            &[change("cleanup.policy", SUBTRACT, Some("compact,delete"))],
        )
        .expect("valid");
        assert_eq!(after.get("cleanup.policy"), None);
        assert!(apply(&next, &[change("retention.ms", APPEND, Some("5"))]).is_err());
        assert!(apply(&next, &[change("nope", SET, Some("5"))]).is_err());
        assert!(apply(&next, &[change("retention.ms", 9, Some("5"))]).is_err());
    }
}
