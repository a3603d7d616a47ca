//! Every object key of the remote tier. The layout is a format: it is versioned (`v1`) and changed
//! only deliberately.
//!
//! ```text
//! <prefix>/v1/<spread>/<topic id>/<partition>/segments/<base offset:020>-<epoch>-<upload id>.seg
//! <prefix>/v1/<spread>/<topic id>/<partition>/manifests/<version:020>-<writer id>.json
//! ```
//! `<spread>` is four hex digits of a hash of the topic id and partition, so the partitions of
//! one hot topic land under different key prefixes and do not share one prefix's request limit.

use object_store::path::Path;
use uuid::Uuid;

/// Layout version, the first path component under the prefix.
const LAYOUT: &str = "v1";

/// Key naming for one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionPaths {
    root: String,
}

impl PartitionPaths {
    /// The keys of partition `partition` of the topic `topic_id`, under `prefix` (may be empty).
    pub fn new(prefix: &str, topic_id: Uuid, partition: i32) -> Self {
        let id = topic_id.simple().to_string();
        let spread = crc32c::crc32c(format!("{id}/{partition}").as_bytes()) & 0xffff;
        let prefix = prefix.trim_matches('/');
        let head = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        };
        PartitionPaths {
            root: format!("{head}{LAYOUT}/{spread:04x}/{id}/{partition}"),
        }
    }

    /// A fresh key for an upload of the segment starting at `base_offset`.
    pub fn new_segment(&self, base_offset: i64, leader_epoch: i32) -> Path {
        Path::from(format!(
            "{}/segments/{base_offset:020}-{leader_epoch}-{}.seg",
            self.root,
            Uuid::new_v4().simple()
        ))
    }

    /// A fresh key for a manifest of `version`. Two writers (the leader and the compaction
    /// service) may both write a version `n + 1` before one of them wins the pointer; each writes
    /// its own object, so the winner's is never overwritten by the loser's.
    pub fn new_manifest(&self, version: u64) -> Path {
        Path::from(format!(
            "{}/manifests/{version:020}-{}.json",
            self.root,
            Uuid::new_v4().simple()
        ))
    }

    /// The partition's root, under which every one of its objects lives.
    pub fn root(&self) -> Path {
        Path::from(self.root.clone())
    }
}

/// The version of the manifest object at `key`, if `key` names one
/// ([`PartitionPaths::new_manifest`]).
pub fn manifest_version(key: &str) -> Option<u64> {
    let (_, name) = key.rsplit_once("/manifests/")?;
    let (version, _) = name.split_once('-')?;
    version.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_spread_and_ordered() {
        let id = Uuid::from_u128(0x1234);
        let a = PartitionPaths::new("bucket-prefix/", id, 0);
        let b = PartitionPaths::new("bucket-prefix", id, 1);
        let m = a.new_manifest(7).to_string();
        assert_ne!(
            m,
            a.new_manifest(7).to_string(),
            "every writer gets its own key"
        );
        assert!(m.starts_with("bucket-prefix/v1/"), "{m}");
        assert!(
            m.contains("/00000000000000000000000000001234/0/manifests/00000000000000000007-")
                && m.ends_with(".json"),
            "{m}"
        );
        assert_ne!(
            a.root().as_ref().split('/').nth(2),
            b.root().as_ref().split('/').nth(2)
        );
        assert_eq!(manifest_version(&m), Some(7));
        let s1 = a.new_segment(42, 3).to_string();
        let s2 = a.new_segment(42, 3).to_string();
        assert_ne!(s1, s2, "every upload attempt gets its own key");
        assert!(s1.contains("/segments/00000000000000000042-3-"), "{s1}");
        assert_eq!(manifest_version(&s1), None);
        assert!(
            PartitionPaths::new("", id, 0)
                .new_manifest(1)
                .to_string()
                .starts_with("v1/")
        );
    }
}
