//! The unreferenced-object sweep: deletes the objects of a partition that its current manifest
//! does not name and that are older than a grace period. These are what crashes and fenced
//! writers leave behind (see the module doc of `remote`). The choice is a pure function,
//! [`plan_sweep`]; [`sweep_partition`] performs the I/O.
//!
//! # Why it is safe
//! - The current manifest names every object a reader of it needs: each of its segments, and
//!   itself. Those are never deleted, however old.
//! - An object written but not yet published (between steps 2 and 4 of the offload protocol) is
//!   unreferenced but young. The listing is taken *before* the pointer is read, so an object
//!   published in between is referenced, and one not yet published is younger than the grace.
//!   The grace must therefore exceed the longest time from an object's write to the publication
//!   of the manifest naming it, plus the clock skew between the store and the sweeper.
//! - A broker still holding an older manifest may read a segment that is no longer listed:
//!   retention and DeleteRecords delete the segments they drop at once, and a compaction swap
//!   leaves the segments it replaced to this sweep, whose grace counts from an object's write,
//!   not from when it stopped being referenced. Such a read fails, and
//!   `RemotePartition::read` then finds the pointer moved, reloads the manifest and reads again,
//!   so the reader sees the cleaned segment instead. Older manifest objects are read only through
//!   the pointer: a broker that read a pointer just before it moved may find that manifest gone
//!   and reads the pointer again.
//! - Manifests above the pointer's version are publishes in flight or failed, or, after the
//!   metadata store was restored from a backup, the manifests written since: the objects they
//!   name may be the only copy of data offloaded since the backup, until the leader publishes its
//!   newer manifest again. Their objects, and they, are kept too.
//! - When the manifest cannot be read, the sweep fails and deletes nothing.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use uuid::Uuid;

use super::manifest::Manifest;
use super::paths::{PartitionPaths, manifest_version};
use super::pointer::ManifestPointers;
use crate::error::{LogError, Result};

/// One object found by listing a partition's root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    /// Object key.
    pub key: String,
    /// When the store last wrote it, in milliseconds since the epoch.
    pub last_modified_ms: i64,
    /// Size in bytes.
    pub size: u64,
}

/// What one sweep of a partition did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Objects found under the partition's root.
    pub listed: usize,
    /// Objects deleted (including ones already gone).
    pub deleted: usize,
    /// Bytes of the deleted objects, as listed.
    pub deleted_bytes: u64,
}

/// Keys of the objects to delete: those not in `referenced` and last written more than
/// `grace_ms` before `now_ms`.
pub fn plan_sweep(
    listing: &[ListedObject],
    referenced: &HashSet<String>,
    grace_ms: i64,
    now_ms: i64,
) -> Vec<String> {
    listing
        .iter()
        .filter(|o| {
            !referenced.contains(&o.key) && now_ms.saturating_sub(o.last_modified_ms) > grace_ms
        })
        .map(|o| o.key.clone())
        .collect()
}

/// The listed manifest objects of a version above `pointer_version`. A publish moves the pointer
/// to its manifest soon after writing it, so these are publishes in flight or failed, and, after
/// the metadata store was restored from a backup, the manifests written since the backup. Those
/// may name the only copy of data offloaded since, until a leader that still holds the newest
/// publishes it again: the objects of every manifest above the pointer are kept.
fn manifests_above(listing: &[ListedObject], pointer_version: u64) -> Vec<&ListedObject> {
    listing
        .iter()
        .filter(|o| manifest_version(&o.key).is_some_and(|v| v > pointer_version))
        .collect()
}

/// The manifest at `key`; `None` if it is gone.
async fn read_manifest(store: &dyn ObjectStore, key: &str) -> Result<Option<Manifest>> {
    match Manifest::fetch(store, key).await {
        Ok(manifest) => Ok(Some(manifest)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Sweeps one partition: lists its root, then reads the current pointer and its manifest, and
/// the manifests above the pointer's version (all of them with no pointer), and deletes every
/// listed object none of them names (nor is) and older than `grace` at `now_ms`. An object
/// already gone counts as deleted. See the module doc for why this is safe and how long `grace`
/// must be. Dropping the future midway is safe: it leaves only fewer objects deleted.
pub async fn sweep_partition(
    store: &dyn ObjectStore,
    paths: &PartitionPaths,
    pointers: &dyn ManifestPointers,
    topic_id: Uuid,
    partition: i32,
    grace: Duration,
    now_ms: i64,
) -> Result<SweepReport> {
    let root = paths.root();
    let listing: Vec<ListedObject> = store
        .list(Some(&root))
        .map_ok(|meta| ListedObject {
            key: meta.location.to_string(),
            last_modified_ms: meta.last_modified.timestamp_millis(),
            size: meta.size,
        })
        .try_collect()
        .await
        .map_err(|e| LogError::object_store(&root, e))?;
    // Only now the pointer: see the module doc.
    let mut referenced = HashSet::new();
    let pointer = pointers.get(topic_id, partition).await?;
    let pointer_version = pointer.as_ref().map_or(0, |p| p.version);
    if let Some(pointer) = pointer {
        let manifest =
            read_manifest(store, &pointer.key)
                .await?
                .ok_or_else(|| LogError::CorruptRemote {
                    key: pointer.key.clone(),
                    reason: "the manifest the pointer names is missing".into(),
                })?;
        referenced.extend(manifest.segments.into_iter().map(|s| s.key));
        referenced.insert(pointer.key);
    }
    for newer in manifests_above(&listing, pointer_version) {
        if let Some(manifest) = read_manifest(store, &newer.key).await? {
            tracing::debug!(partition = %root, manifest = %newer.key, pointer = pointer_version, "keeping the objects of a manifest above the pointer");
            referenced.extend(manifest.segments.into_iter().map(|s| s.key));
            referenced.insert(newer.key.clone());
        }
    }
    let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
    let sizes: HashMap<&str, u64> = listing.iter().map(|o| (o.key.as_str(), o.size)).collect();
    let mut report = SweepReport {
        listed: listing.len(),
        ..SweepReport::default()
    };
    for key in plan_sweep(&listing, &referenced, grace_ms, now_ms) {
        let path = Path::from(key.as_str());
        match store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(LogError::object_store(&key, e)),
        }
        report.deleted += 1;
        report.deleted_bytes += sizes.get(key.as_str()).copied().unwrap_or(0);
    }
    if report.deleted > 0 {
        tracing::info!(partition = %root, deleted = report.deleted, bytes = report.deleted_bytes, "swept unreferenced remote objects");
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use std::time::{SystemTime, UNIX_EPOCH};

    use object_store::PutPayload;
    use object_store::memory::InMemory;

    use super::*;
    use crate::remote::manifest::RemoteSegment;
    use crate::remote::pointer::{ManifestPointer, MemoryPointers};

    fn obj(key: &str, last_modified_ms: i64) -> ListedObject {
        ListedObject {
            key: key.into(),
            last_modified_ms,
            size: 1,
        }
    }

    #[test]
    fn plan_table() {
        let listing = [obj("ref-old", 0), obj("young", 950), obj("old", 100)];
        let referenced: HashSet<String> = ["ref-old".to_string()].into();
        // (grace, now, expected)
        let cases: &[(i64, i64, &[&str])] = &[
            (100, 1_000, &["old"]),           // young (age 50) kept, referenced never goes
            (10, 1_000, &["young", "old"]),   // both past the grace
            (900, 1_000, &[]),                // "old" is exactly at the grace: kept
            (899, 1_000, &["old"]),           // one past the boundary
            (0, 100, &[]),                    // age 0 is not past a grace of 0
            (0, i64::MAX, &["young", "old"]), // referenced survives any age
            (i64::MAX, i64::MAX, &[]),        // nothing is that old
        ];
        for &(grace, now, expected) in cases {
            assert_eq!(
                plan_sweep(&listing, &referenced, grace, now),
                expected,
                "grace={grace} now={now}"
            );
        }
    }

    fn now_ms() -> i64 {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after the epoch");
        i64::try_from(since.as_millis()).expect("fits")
    }

    async fn put(store: &InMemory, key: &Path, bytes: Vec<u8>) {
        store.put(key, PutPayload::from(bytes)).await.expect("put");
    }

    fn segment(key: &Path) -> RemoteSegment {
        RemoteSegment {
            key: key.to_string(),
            base_offset: 0,
            next_offset: 10,
            first_timestamp: 0,
            max_timestamp: 0,
            log_bytes: 3,
            offset_index_bytes: 0,
            time_index_bytes: 0,
            leader_epoch: 0,
            crc32c: 0,
        }
    }

    async fn keys(store: &InMemory) -> HashSet<String> {
        store
            .list(None)
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .expect("list")
    }

    /// Pointers whose partition 0 of `topic` points at manifest `version` at `key`.
    async fn pointing_at(topic: Uuid, version: u64, key: &str) -> MemoryPointers {
        let pointers = MemoryPointers::default();
        let pointer = ManifestPointer {
            version,
            key: key.to_string(),
        };
        assert!(
            pointers
                .swap(topic, 0, None, &pointer, None)
                .await
                .expect("swap")
        );
        pointers
    }

    #[tokio::test]
    async fn sweep_deletes_only_old_unreferenced_objects() {
        let topic = Uuid::from_u128(7);
        let paths = PartitionPaths::new("p", topic, 0);
        let other = PartitionPaths::new("p", topic, 1);
        let store = InMemory::new();
        let (a, b) = (paths.new_segment(0, 0), paths.new_segment(0, 0));
        put(&store, &a, b"aaa".to_vec()).await;
        put(&store, &b, b"bbbb".to_vec()).await;
        let old = Manifest::empty(topic, 0);
        let old = Manifest { version: 1, ..old };
        put(&store, &paths.new_manifest(1), old.encode()).await;
        let current = old.with_segment(segment(&a)).expect("append");
        let current_key = paths.new_manifest(current.version);
        put(&store, &current_key, current.encode()).await;
        let pointers = pointing_at(topic, current.version, current_key.as_ref()).await;
        let elsewhere = other.new_segment(0, 0);
        put(&store, &elsewhere, b"x".to_vec()).await;

        let hour = Duration::from_secs(3600);
        let report = sweep_partition(&store, &paths, &pointers, topic, 0, hour, now_ms() + 1_000)
            .await
            .expect("sweep");
        assert_eq!(
            report,
            SweepReport {
                listed: 4,
                deleted: 0,
                deleted_bytes: 0
            }
        );

        let report = sweep_partition(
            &store,
            &paths,
            &pointers,
            topic,
            0,
            Duration::ZERO,
            now_ms() + 1_000,
        )
        .await
        .expect("sweep");
        assert_eq!(report.listed, 4);
        assert_eq!(report.deleted, 2);
        assert_eq!(report.deleted_bytes, 4 + old.encode().len() as u64);
        let expected: HashSet<String> = [
            a.to_string(),
            current_key.to_string(),
            elsewhere.to_string(),
        ]
        .into();
        assert_eq!(
            keys(&store).await,
            expected,
            "other partitions are untouched"
        );
    }

    /// The pointer went back (a metadata store restored from a backup), or never got past a
    /// failed publish: what the manifests above it name is kept, the rest goes.
    #[tokio::test]
    async fn the_objects_of_manifests_above_the_pointer_are_kept() {
        let topic = Uuid::from_u128(8);
        let paths = PartitionPaths::new("", topic, 0);
        let store = InMemory::new();
        let (a, b, c) = (
            paths.new_segment(0, 0),
            paths.new_segment(10, 0),
            paths.new_segment(20, 0),
        );
        for seg in [&a, &b, &c] {
            put(&store, seg, b"aa".to_vec()).await;
        }
        let first = Manifest {
            version: 1,
            ..Manifest::empty(topic, 0)
        }
        .with_segment(segment(&a))
        .expect("append");
        let first_key = paths.new_manifest(first.version);
        put(&store, &first_key, first.encode()).await;
        let later = RemoteSegment {
            base_offset: 10,
            next_offset: 20,
            ..segment(&b)
        };
        let newer = first.with_segment(later).expect("append");
        let newer_key = paths.new_manifest(newer.version);
        put(&store, &newer_key, newer.encode()).await;
        let sweep = |pointers: MemoryPointers| {
            let (store, paths) = (&store, &paths);
            async move {
                sweep_partition(
                    store,
                    paths,
                    &pointers,
                    topic,
                    0,
                    Duration::ZERO,
                    now_ms() + 1_000,
                )
                .await
                .expect("sweep")
            }
        };

        let report = sweep(MemoryPointers::default()).await;
        assert_eq!(report.deleted, 1, "no pointer yet: only {c} goes");
        let pointers = pointing_at(topic, first.version, first_key.as_ref()).await;
        assert_eq!(sweep(pointers).await.deleted, 0);
        let expected: HashSet<String> = [a, b, first_key, newer_key]
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(keys(&store).await, expected);
    }

    #[tokio::test]
    async fn sweep_fails_and_deletes_nothing_when_the_manifest_is_unreadable() {
        let topic = Uuid::from_u128(9);
        let paths = PartitionPaths::new("", topic, 0);
        let store = InMemory::new();
        let seg = paths.new_segment(0, 0);
        put(&store, &seg, b"aa".to_vec()).await;
        let pointers = pointing_at(topic, 1, paths.new_manifest(1).as_ref()).await;
        let result = sweep_partition(
            &store,
            &paths,
            &pointers,
            topic,
            0,
            Duration::ZERO,
            now_ms() + 1_000,
        )
        .await;
        assert!(result.is_err(), "a missing manifest must stop the sweep");
        assert_eq!(keys(&store).await, [seg.to_string()].into());
    }
}
