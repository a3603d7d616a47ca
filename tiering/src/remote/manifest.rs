//! The remote manifest of one partition: the ordered list of its segments in object storage.
//! Each version is an immutable JSON object; see the module doc of `remote` for how versions are
//! published. Format version 1:
//!
//! ```json
//! {"format":1,"version":3,"topic_id":"…","partition":0,"log_start_offset":0,
//!  "segments":[{"key":"…","base_offset":0,"next_offset":100,"first_timestamp":…,
//!               "max_timestamp":…,"log_bytes":…,"offset_index_bytes":…,"time_index_bytes":…,
//!               "leader_epoch":0,"crc32c":…}]}
//! ```

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{LogError, Result};
use crate::log::CleanCheckpoint;

/// The manifest format this code writes and reads.
pub const FORMAT: u32 = 1;

/// One segment in object storage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteSegment {
    /// Object key.
    pub key: String,
    /// First offset.
    pub base_offset: i64,
    /// Offset after the last record.
    pub next_offset: i64,
    /// Timestamp of the first batch.
    pub first_timestamp: i64,
    /// Largest record timestamp.
    pub max_timestamp: i64,
    /// Bytes of record batches at the start of the object.
    pub log_bytes: u64,
    /// Bytes of the offset index that follows them.
    pub offset_index_bytes: u64,
    /// Bytes of the time index that follows the offset index.
    pub time_index_bytes: u64,
    /// Leader epoch of the broker that uploaded it.
    pub leader_epoch: i32,
    /// CRC-32C of the whole object, checked when it was uploaded and by full-object readers.
    pub crc32c: u32,
}

impl RemoteSegment {
    /// Total size of the object.
    pub fn object_bytes(&self) -> u64 {
        self.log_bytes + self.offset_index_bytes + self.time_index_bytes
    }
}

/// A version of a partition's manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version, [`FORMAT`].
    pub format: u32,
    /// Manifest version; each published manifest has a larger one.
    pub version: u64,
    /// The topic.
    pub topic_id: Uuid,
    /// The partition.
    pub partition: i32,
    /// The first offset still readable remotely (DeleteRecords and retention move it).
    pub log_start_offset: i64,
    /// Segments in offset order, never overlapping.
    pub segments: Vec<RemoteSegment>,
    /// How far compaction has cleaned the remote segments (absent in manifests written before
    /// compaction existed, and until the first pass).
    #[serde(default)]
    pub cleaner: CleanCheckpoint,
}

impl Manifest {
    /// The manifest of a partition that has offloaded nothing (version 0, never published).
    pub fn empty(topic_id: Uuid, partition: i32) -> Self {
        Manifest {
            format: FORMAT,
            version: 0,
            topic_id,
            partition,
            log_start_offset: 0,
            segments: Vec::new(),
            cleaner: CleanCheckpoint::default(),
        }
    }

    /// Offset after the last remote record, if anything was offloaded.
    pub fn end_offset(&self) -> Option<i64> {
        self.segments.last().map(|s| s.next_offset)
    }

    /// The first readable remote offset, if anything was offloaded.
    pub fn start_offset(&self) -> Option<i64> {
        self.segments
            .first()
            .map(|s| s.base_offset.max(self.log_start_offset))
    }

    /// Bytes of record batches held remotely.
    pub fn log_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.log_bytes).sum()
    }

    /// The segment holding `offset`, or the first one after it when `offset` falls in a gap.
    pub fn find(&self, offset: i64) -> Option<&RemoteSegment> {
        let i = self.segments.partition_point(|s| s.next_offset <= offset);
        self.segments.get(i)
    }

    /// The segment after `segment` (by key), for read-ahead across segment boundaries.
    pub fn next_after(&self, key: &str) -> Option<&RemoteSegment> {
        let i = self.segments.iter().position(|s| s.key == key)?;
        self.segments.get(i + 1)
    }

    /// The same manifest as the next version: published again to move the pointer to it.
    pub fn next_version(&self) -> Manifest {
        let mut next = self.clone();
        next.version += 1;
        next
    }

    /// The next version, with `segment` appended. It must end after the current end; it may start
    /// before it: a new leader's local segments need not begin where the previous leader's did,
    /// and the offsets they share hold the same committed batches, so [`Manifest::find`] reads
    /// each offset from the first segment that holds it.
    /// Records below the manifest's log start (DeleteRecords before the upload) stay unreadable.
    pub fn with_segment(&self, segment: RemoteSegment) -> Result<Manifest> {
        if let Some(end) = self.end_offset()
            && segment.next_offset <= end
        {
            return Err(LogError::CorruptRemote {
                key: segment.key,
                reason: format!(
                    "segment ends at {} but the manifest already reaches {end}",
                    segment.next_offset
                ),
            });
        }
        let mut next = self.next_version();
        next.segments.push(segment);
        Ok(next)
    }

    /// The next version, with the log start moved to `offset` and the segments wholly below it
    /// dropped. Returns the dropped segments, whose objects may be deleted once this is published.
    pub fn with_log_start(&self, offset: i64) -> (Manifest, Vec<RemoteSegment>) {
        let mut next = self.next_version();
        next.log_start_offset = next.log_start_offset.max(offset);
        let keep_from = next
            .segments
            .partition_point(|s| s.next_offset <= next.log_start_offset);
        let dropped = next.segments.drain(..keep_from).collect();
        (next, dropped)
    }

    /// The next version, with each run of consecutive segments named by `replaced` (object keys)
    /// swapped for its compacted `replacement` (which may be absent when compaction kept nothing),
    /// and `cleaner` recorded. Fails when a replaced segment is no longer listed: the
    /// manifest changed since compaction read it, and the pass must be planned again.
    pub fn with_compacted(
        &self,
        swaps: &[(Vec<String>, Option<RemoteSegment>)],
        cleaner: CleanCheckpoint,
    ) -> Result<Manifest> {
        let mut next = self.next_version();
        next.cleaner = cleaner;
        for (replaced, replacement) in swaps {
            let first = replaced
                .first()
                .and_then(|key| next.segments.iter().position(|s| &s.key == key));
            let Some(at) = first.filter(|at| {
                replaced
                    .iter()
                    .enumerate()
                    .all(|(i, key)| next.segments.get(at + i).is_some_and(|s| &s.key == key))
            }) else {
                return Err(LogError::SwapConflict {
                    key: replaced.first().cloned().unwrap_or_default(),
                });
            };
            next.segments
                .splice(at..at + replaced.len(), replacement.iter().cloned());
        }
        Ok(next)
    }

    /// Serialises the manifest.
    pub fn encode(&self) -> Vec<u8> {
        // Serialising plain data with string keys cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads the manifest object at `key` and decodes it. A missing object is an error for which
    /// [`LogError::is_not_found`] holds.
    pub async fn fetch(store: &dyn ObjectStore, key: &str) -> Result<Manifest> {
        let path = Path::from(key);
        let bytes = store
            .get(&path)
            .await
            .map_err(|e| LogError::object_store(key, e))?
            .bytes()
            .await
            .map_err(|e| LogError::object_store(key, e))?;
        Manifest::decode(key, &bytes)
    }

    /// Parses and checks a manifest read from `key`.
    pub fn decode(key: &str, bytes: &[u8]) -> Result<Manifest> {
        let corrupt = |reason: String| LogError::CorruptRemote {
            key: key.to_string(),
            reason,
        };
        let manifest: Manifest =
            serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
        if manifest.format != FORMAT {
            return Err(corrupt(format!(
                "unknown manifest format {}",
                manifest.format
            )));
        }
        for pair in manifest.segments.windows(2) {
            if pair[1].base_offset < pair[0].next_offset {
                return Err(corrupt(format!(
                    "segments {} and {} overlap",
                    pair[0].key, pair[1].key
                )));
            }
        }
        if manifest
            .segments
            .iter()
            .any(|s| s.next_offset <= s.base_offset)
        {
            return Err(corrupt("a segment has no offsets".into()));
        }
        Ok(manifest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn segment(base: i64, next: i64) -> RemoteSegment {
        RemoteSegment {
            key: format!("s{base}"),
            base_offset: base,
            next_offset: next,
            first_timestamp: base,
            max_timestamp: next,
            log_bytes: 100,
            offset_index_bytes: 8,
            time_index_bytes: 12,
            leader_epoch: 0,
            crc32c: 1,
        }
    }

    #[test]
    fn segments_append_in_order_and_are_found_by_offset() {
        let m = Manifest::empty(Uuid::nil(), 0);
        assert_eq!((m.start_offset(), m.end_offset()), (None, None));
        let m = m.with_segment(segment(0, 10)).expect("first");
        let m = m.with_segment(segment(10, 20)).expect("second");
        let m = m.with_segment(segment(25, 30)).expect("after a gap");
        assert!(
            m.with_segment(segment(26, 30)).is_err(),
            "nothing new refused"
        );
        let overlapping = m
            .with_segment(segment(28, 40))
            .expect("a new leader's segment");
        assert_eq!(overlapping.find(29).map(|s| s.base_offset), Some(25));
        assert_eq!(overlapping.find(30).map(|s| s.base_offset), Some(28));
        assert_eq!(m.version, 3);
        assert_eq!(m.find(0).map(|s| s.base_offset), Some(0));
        assert_eq!(m.find(19).map(|s| s.base_offset), Some(10));
        assert_eq!(
            m.find(22).map(|s| s.base_offset),
            Some(25),
            "a gap reads on"
        );
        assert_eq!(m.find(30), None);
        assert_eq!(m.next_after("s10").map(|s| s.base_offset), Some(25));
        let (moved, dropped) = m.with_log_start(15);
        assert_eq!(
            dropped.iter().map(|s| s.base_offset).collect::<Vec<_>>(),
            vec![0]
        );
        assert_eq!((moved.start_offset(), moved.version), (Some(15), 4));
    }

    #[test]
    fn compaction_swaps_runs_of_segments() {
        let m = Manifest::empty(Uuid::nil(), 0);
        let m = [
            segment(0, 10),
            segment(10, 20),
            segment(20, 30),
            segment(30, 40),
        ]
        .into_iter()
        .fold(m, |m, s| m.with_segment(s).expect("append"));
        let mut cleaned = segment(0, 18);
        cleaned.key = "c0".into();
        let swapped = m
            .with_compacted(
                &[
                    (vec!["s0".into(), "s10".into()], Some(cleaned)),
                    (vec!["s20".into()], None),
                ],
                CleanCheckpoint {
                    cleaned_offset: 30,
                    tombstone_deadline_ms: None,
                    tombstone_waits_for_remote: None,
                },
            )
            .expect("swap");
        let keys: Vec<_> = swapped.segments.iter().map(|s| s.key.as_str()).collect();
        assert_eq!(keys, ["c0", "s30"]);
        assert_eq!(
            (swapped.cleaner.cleaned_offset, swapped.version),
            (30, m.version + 1)
        );
        assert_eq!(swapped.find(19).map(|s| s.key.as_str()), Some("s30"));
        assert!(
            swapped
                .with_compacted(&[(vec!["s10".into()], None)], CleanCheckpoint::default())
                .is_err(),
            "a segment no longer listed cannot be swapped"
        );
        assert!(
            m.with_compacted(
                &[(vec!["s0".into(), "s20".into()], None)],
                CleanCheckpoint::default()
            )
            .is_err(),
            "a run must be consecutive"
        );
        let decoded = Manifest::decode("k", &swapped.encode()).expect("decodes");
        assert_eq!(decoded, swapped);
        let old = br#"{"format":1,"version":1,"topic_id":"00000000-0000-0000-0000-000000000000","partition":0,"log_start_offset":0,"segments":[]}"#;
        assert_eq!(
            Manifest::decode("k", old).expect("old").cleaner,
            CleanCheckpoint::default()
        );
    }

    #[test]
    fn bad_manifests_are_refused() {
        assert!(Manifest::decode("k", b"{").is_err());
        let mut m = Manifest::empty(Uuid::nil(), 0);
        m.segments = vec![segment(0, 10), segment(5, 15)];
        assert!(Manifest::decode("k", &m.encode()).is_err());
        m.segments = vec![segment(0, 10)];
        m.format = 9;
        assert!(Manifest::decode("k", &m.encode()).is_err());
    }

    proptest! {
        #[test]
        fn manifests_round_trip(lengths in proptest::collection::vec((1i64..1000, 0i64..5), 0..50)) {
            let mut m = Manifest::empty(Uuid::new_v4(), 3);
            let mut next = 0;
            for (len, gap) in lengths {
                m = m.with_segment(segment(next + gap, next + gap + len)).expect("in order");
                next += gap + len;
            }
            let decoded = Manifest::decode("k", &m.encode()).expect("decodes");
            prop_assert_eq!(decoded, m);
        }
    }
}
