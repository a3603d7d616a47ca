//! Strata: a Kafka-compatible streaming broker whose log lives in two tiers.
//!
//! The crate is the broker: the Kafka wire protocol server ([`protocol`]), the domain it serves
//! ([`broker`]: topics, partitions, producer ids), the metadata store ([`metadata`]), settings
//! ([`settings`], [`topic_config`]) and process startup and shutdown ([`app`]). The partition log
//! itself lives in the `strata-tiering` crate. See ARCHITECTURE.md for the map.

pub mod app;
pub mod broker;
pub mod cluster;
pub mod compactor;
pub mod error;
pub mod group;
pub mod metadata;
pub mod metrics_http;
pub mod protocol;
pub mod replication;
pub mod settings;
#[cfg(test)]
mod test_support;
pub mod topic_config;
