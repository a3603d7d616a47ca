//! The APIs and versions this broker advertises in ApiVersions. An API that is not listed is not
//! implemented; a request for it closes the connection.
//!
//! Each API is offered from its oldest record-batch-v2-era version that the `kafka-protocol` crate
//! decodes (the same floor as Apache Kafka 4.0) up to a version whose fields are all honoured.
//! Clients with old caps (librdkafka, kafkajs' non-flexible versions) negotiate down within these.

use kafka_protocol::messages::ApiKey;

/// (API, oldest version, newest version) for every supported API.
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 11),
    (ApiKey::Fetch, 4, 16),
    // v0 has a hand-written codec (handlers/list_offsets_v0.rs) for clients that never ask.
    (ApiKey::ListOffsets, 0, 8),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::FindCoordinator, 0, 4),
    // Cluster administration: preferred-leader elections and replica moves.
    (ApiKey::ElectLeaders, 0, 2),
    (ApiKey::AlterPartitionReassignments, 0, 1),
    (ApiKey::ListPartitionReassignments, 0, 0),
    // Consumer groups (the classic protocol). librdkafka caps JoinGroup at 5, LeaveGroup at 1
    // and FindCoordinator at 2; OffsetCommit/OffsetFetch stop below the KIP-848 member epochs.
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 8),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
];

/// The supported version range of `api`, if it is supported at all.
pub fn supported_range(api: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED
        .iter()
        .find(|(k, _, _)| *k == api)
        .map(|&(_, min, max)| (min, max))
}

/// Whether `api` is supported at `version`.
pub fn is_supported(api: ApiKey, version: i16) -> bool {
    supported_range(api).is_some_and(|(min, max)| (min..=max).contains(&version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_advertised_version_is_one_the_codec_knows() {
        for &(api, min, max) in SUPPORTED {
            // ListOffsets v0 is decoded by hand.
            let min = if api == ApiKey::ListOffsets {
                min.max(1)
            } else {
                min
            };
            let codec = api.valid_versions();
            assert!(
                codec.min <= min && max <= codec.max,
                "{api:?} {min}..={max} vs {codec:?}"
            );
        }
    }

    #[test]
    fn client_caps_fit() {
        // kafkajs needs the non-flexible versions; librdkafka caps DescribeConfigs at 1.
        for (api, version) in [
            (ApiKey::Produce, 7),
            (ApiKey::Fetch, 11),
            (ApiKey::Metadata, 6),
            (ApiKey::ApiVersions, 2),
            (ApiKey::DescribeConfigs, 1),
            (ApiKey::Produce, 3),
            (ApiKey::Fetch, 4),
        ] {
            assert!(is_supported(api, version), "{api:?} v{version}");
        }
        assert!(!is_supported(ApiKey::ApiVersions, 4));
        // librdkafka enables lz4 only for brokers that list FindCoordinator.
        assert!(is_supported(ApiKey::FindCoordinator, 2));
        for (api, version) in [
            (ApiKey::JoinGroup, 5),
            (ApiKey::LeaveGroup, 1),
            (ApiKey::SyncGroup, 3),
            (ApiKey::OffsetCommit, 7),
            (ApiKey::OffsetFetch, 7),
        ] {
            assert!(is_supported(api, version), "{api:?} v{version}");
        }
    }
}
