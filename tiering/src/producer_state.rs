//! Idempotent-producer state of one partition: for each producer id, its epoch and the metadata
//! of its last few batches, enough to recognise a retried batch and to reject gaps in sequences.
//!
//! The state is derived from the log: it is rebuilt on open by replaying batch headers from the
//! newest snapshot (`<offset>.snapshot`, JSON, written when a segment is sealed and on clean close)
//! to the end of the log.

use std::collections::{HashMap, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::batch::{BatchHeader, increment_sequence};
use crate::error::{LogError, Result};

/// How many recent batches per producer are remembered for duplicate detection; Kafka clients
/// keep at most five requests in flight per connection with idempotence on.
const REMEMBERED_BATCHES: usize = 5;

/// Metadata of one appended batch of an idempotent producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchMetadata {
    /// Sequence of the first record.
    pub first_sequence: i32,
    /// Sequence of the last record.
    pub last_sequence: i32,
    /// Offset the batch was stored at.
    pub base_offset: i64,
    /// Offset of its last record.
    pub last_offset: i64,
}

/// What is known of one producer id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerEntry {
    /// The newest epoch seen.
    pub epoch: i16,
    /// The most recent batches, oldest first.
    pub batches: VecDeque<BatchMetadata>,
}

/// The outcome of checking a batch against the producer state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// The batch is new and follows the producer's last sequence (or carries no producer id).
    Append,
    /// The batch was already appended: acknowledge it with its original offsets.
    Duplicate(BatchMetadata),
}

/// Producer state of one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerStateTable {
    producers: HashMap<i64, ProducerEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Snapshot {
    offset: i64,
    producers: Vec<(i64, ProducerEntry)>,
}

impl ProducerStateTable {
    /// Decides whether `header` may be appended. Only the batch's producer fields are read.
    pub fn check(&self, header: &BatchHeader) -> Result<SequenceCheck> {
        if !header.has_producer_id() {
            return Ok(SequenceCheck::Append);
        }
        let (pid, epoch, seq) = (
            header.producer_id,
            header.producer_epoch,
            header.base_sequence,
        );
        let Some(entry) = self.producers.get(&pid) else {
            // As in Kafka since KIP-360: with no state for the producer (its batches were removed
            // by retention or DeleteRecords, or the log was rebuilt from the remote tier), any
            // sequence is accepted and starts the producer's history.
            return Ok(SequenceCheck::Append);
        };
        if epoch < entry.epoch {
            return Err(LogError::ProducerFenced {
                producer_id: pid,
                current: entry.epoch,
                got: epoch,
            });
        }
        if epoch > entry.epoch {
            return expect_sequence(pid, 0, seq);
        }
        let last_sequence = header.last_sequence();
        if let Some(dup) = entry
            .batches
            .iter()
            .find(|b| b.first_sequence == seq && b.last_sequence == last_sequence)
        {
            return Ok(SequenceCheck::Duplicate(*dup));
        }
        let expected = entry
            .batches
            .back()
            .map_or(0, |b| increment_sequence(b.last_sequence, 1));
        expect_sequence(pid, expected, seq)
    }

    /// Records an appended batch; `header` carries its assigned offsets.
    pub fn record(&mut self, header: &BatchHeader) {
        if !header.has_producer_id() {
            return;
        }
        let entry = self
            .producers
            .entry(header.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: header.producer_epoch,
                batches: VecDeque::new(),
            });
        if header.producer_epoch > entry.epoch {
            entry.epoch = header.producer_epoch;
            entry.batches.clear();
        }
        if entry.batches.len() == REMEMBERED_BATCHES {
            entry.batches.pop_front();
        }
        entry.batches.push_back(BatchMetadata {
            first_sequence: header.base_sequence,
            last_sequence: header.last_sequence(),
            base_offset: header.base_offset,
            last_offset: header.last_offset(),
        });
    }

    /// Number of producers tracked.
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    /// Whether no producer is tracked.
    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// Writes the state as of `offset` to `dir/<offset>.snapshot` (a temporary file fsynced,
    /// renamed, the directory fsynced: a crash leaves either the old or the new snapshot, whole)
    /// and only then removes the other snapshots.
    pub fn write_snapshot(&self, dir: &Path, offset: i64) -> Result<()> {
        let mut producers: Vec<_> = self
            .producers
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        producers.sort_by_key(|(k, _)| *k);
        let json = serde_json::to_vec(&Snapshot { offset, producers })
            .map_err(|e| LogError::io(dir, std::io::Error::other(e)))?;
        crate::epochs::write_durably(dir, &snapshot_name(offset), &json)?;
        for (old, old_path) in list_snapshots(dir)? {
            if old != offset {
                fs::remove_file(&old_path).map_err(|e| LogError::io(&old_path, e))?;
            }
        }
        Ok(())
    }

    /// Loads the newest snapshot at or below `max_offset`; returns the empty state and offset 0
    /// when there is none or it cannot be read (the caller then replays the whole log).
    pub fn load_snapshot(dir: &Path, max_offset: i64) -> Result<(Self, Option<i64>)> {
        let newest = list_snapshots(dir)?
            .into_iter()
            .filter(|(o, _)| *o <= max_offset)
            .max();
        let Some((offset, path)) = newest else {
            return Ok((Self::default(), None));
        };
        let parsed = fs::read(&path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Snapshot>(&bytes).ok());
        match parsed {
            Some(s) => Ok((
                ProducerStateTable {
                    producers: s.producers.into_iter().collect(),
                },
                Some(offset),
            )),
            None => {
                tracing::warn!(snapshot = %path.display(), "ignoring an unreadable producer snapshot");
                Ok((Self::default(), None))
            }
        }
    }
}

/// Deletes the snapshots of offsets above `offset`: after the log is truncated to `offset` they
/// describe batches that are gone. `i64::MIN` deletes them all.
pub fn delete_snapshots_above(dir: &Path, offset: i64) -> Result<()> {
    for (at, path) in list_snapshots(dir)? {
        if at > offset {
            fs::remove_file(&path).map_err(|e| LogError::io(&path, e))?;
        }
    }
    Ok(())
}

fn expect_sequence(producer_id: i64, expected: i32, got: i32) -> Result<SequenceCheck> {
    if got == expected {
        Ok(SequenceCheck::Append)
    } else {
        Err(LogError::OutOfOrderSequence {
            producer_id,
            expected,
            got,
        })
    }
}

fn snapshot_name(offset: i64) -> String {
    format!("{}.snapshot", crate::segment::file_stem(offset))
}

fn list_snapshots(dir: &Path) -> Result<Vec<(i64, PathBuf)>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| LogError::io(dir, e))? {
        let path = entry.map_err(|e| LogError::io(dir, e))?.path();
        if path.extension().is_some_and(|e| e == "snapshot")
            && let Some(offset) = path.file_stem().and_then(|s| s.to_str()?.parse().ok())
        {
            found.push((offset, path));
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::tests::{TestBatch, build_batch};

    fn header(pid: i64, epoch: i16, seq: i32, records: i32, base_offset: i64) -> BatchHeader {
        let bytes = build_batch(TestBatch {
            records,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            ..TestBatch::default()
        });
        let mut h = BatchHeader::parse(&bytes).expect("header");
        h.base_offset = base_offset;
        h
    }

    #[test]
    fn sequences_must_follow_on() {
        let mut table = ProducerStateTable::default();
        assert_eq!(
            table.check(&header(7, 0, 0, 3, 0)).expect("first"),
            SequenceCheck::Append
        );
        table.record(&header(7, 0, 0, 3, 0));
        assert_eq!(
            table.check(&header(7, 0, 3, 1, 3)).expect("next"),
            SequenceCheck::Append
        );
        let gap = table.check(&header(7, 0, 5, 1, 3)).expect_err("gap");
        assert!(matches!(
            gap,
            LogError::OutOfOrderSequence {
                expected: 3,
                got: 5,
                ..
            }
        ));
        let unknown = table
            .check(&header(8, 0, 4, 1, 3))
            .expect("an unknown producer may resume");
        assert_eq!(unknown, SequenceCheck::Append);
    }

    #[test]
    fn a_retried_batch_is_a_duplicate_with_its_original_offsets() {
        let mut table = ProducerStateTable::default();
        table.record(&header(7, 0, 0, 3, 100));
        table.record(&header(7, 0, 3, 2, 103));
        let dup = table.check(&header(7, 0, 0, 3, 999)).expect("dup");
        assert_eq!(
            dup,
            SequenceCheck::Duplicate(BatchMetadata {
                first_sequence: 0,
                last_sequence: 2,
                base_offset: 100,
                last_offset: 102
            })
        );
    }

    #[test]
    fn epochs_fence_and_reset() {
        let mut table = ProducerStateTable::default();
        table.record(&header(7, 3, 0, 1, 0));
        assert!(matches!(
            table.check(&header(7, 2, 1, 1, 1)),
            Err(LogError::ProducerFenced { .. })
        ));
        assert_eq!(
            table.check(&header(7, 4, 0, 1, 1)).expect("bump"),
            SequenceCheck::Append
        );
        assert!(table.check(&header(7, 4, 1, 1, 1)).is_err());
    }

    #[test]
    fn only_five_batches_are_remembered() {
        let mut table = ProducerStateTable::default();
        for i in 0..6 {
            table.record(&header(1, 0, i, 1, i64::from(i)));
        }
        assert!(table.check(&header(1, 0, 0, 1, 0)).is_err());
        assert!(matches!(
            table.check(&header(1, 0, 1, 1, 0)),
            Ok(SequenceCheck::Duplicate(_))
        ));
    }

    #[test]
    fn snapshots_round_trip_and_replace_older_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut table = ProducerStateTable::default();
        table.record(&header(1, 0, 0, 2, 0));
        table.write_snapshot(dir.path(), 2).expect("write");
        table.record(&header(2, 5, 0, 1, 2));
        table.write_snapshot(dir.path(), 3).expect("write");
        assert_eq!(list_snapshots(dir.path()).expect("list").len(), 1);
        let (loaded, at) = ProducerStateTable::load_snapshot(dir.path(), 10).expect("load");
        assert_eq!((loaded, at), (table, Some(3)));
        let (empty, at) = ProducerStateTable::load_snapshot(dir.path(), 2).expect("load");
        assert!(empty.is_empty() && at.is_none());
    }
}
