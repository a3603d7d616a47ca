//! Whether this broker came back without its logs (`BrokerRecord::started_empty`): a broker that
//! starts with no partition log in its data directory (a new or wiped disk), or without the log
//! of a partition the metadata store has it in sync for, writes the marker
//! `<data-dir>/started-empty`, and registers as started empty while the marker is there. The
//! marker goes only once the broker is in sync, as its current process, for every partition it
//! holds a replica of: a broker that restarts again before that (its partitions' directories
//! created meanwhile, but empty) still counts as started empty, so the controller never elects
//! it, after a whole-cluster restart, over a replica that kept its log.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use uuid::Uuid;

use crate::cluster::plan::{PartitionKey, Stored};
use crate::cluster::state::PartitionState;

const MARKER: &str = "started-empty";

/// Where the partition logs under `data_dir` live: `logs/<topic id>/<partition>/`.
pub(super) fn logs_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("logs")
}

/// The log directory of partition `index` of topic `topic` under `data_dir`.
pub(super) fn partition_dir(data_dir: &Path, topic: Uuid, index: i32) -> PathBuf {
    logs_dir(data_dir)
        .join(topic.simple().to_string())
        .join(index.to_string())
}

/// Whether `broker`, whose data lives in `data_dir`, counts as started empty, marking it so
/// (durably) when the directory holds no partition log, or lacks the log of a partition whose
/// stored state (`partitions`) has the broker in its ISR (one directory lost, the others kept).
/// Called once, before it registers.
pub fn started_empty(
    data_dir: &Path,
    broker: i32,
    partitions: &BTreeMap<PartitionKey, Stored>,
) -> io::Result<bool> {
    let marker = data_dir.join(MARKER);
    if marker.try_exists()? {
        return Ok(true);
    }
    let mut lost = None;
    for ((topic, index), stored) in partitions {
        if stored.state.isr.contains(&broker)
            && !partition_dir(data_dir, *topic, *index).try_exists()?
        {
            lost = Some((*topic, *index));
            break;
        }
    }
    if let Some((topic, partition)) = lost {
        tracing::warn!(%topic, partition, "the log of a partition this broker was in sync for is gone: counting as started empty");
    } else if holds_logs(data_dir)? {
        return Ok(false);
    }
    fs::create_dir_all(data_dir)?;
    fs::File::create(&marker)?.sync_all()?;
    fs::File::open(data_dir)?.sync_all()?;
    Ok(true)
}

/// Removes the marker once `broker`, running as `incarnation`, is in the ISR as that incarnation
/// of every partition in `states` it holds a replica of.
pub(super) fn forget_if_in_sync<'a>(
    data_dir: &Path,
    states: impl IntoIterator<Item = &'a PartitionState>,
    broker: i32,
    incarnation: u64,
) -> io::Result<()> {
    let in_sync = states
        .into_iter()
        .filter(|s| s.is_replica(broker))
        .all(|s| s.isr.contains(&broker) && s.is_current(broker, incarnation));
    if !in_sync {
        return Ok(());
    }
    match fs::remove_file(data_dir.join(MARKER)) {
        Ok(()) => {
            tracing::info!(
                "in sync for every partition held: no longer counts as started empty at the next start"
            );
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Whether `data_dir` holds the log of at least one partition. An unreadable directory is an
/// error, not "empty".
pub(super) fn holds_logs(data_dir: &Path) -> io::Result<bool> {
    let topics = match fs::read_dir(logs_dir(data_dir)) {
        Ok(topics) => topics,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    for topic in topics {
        let topic = topic?;
        if topic.file_type()?.is_dir() && fs::read_dir(topic.path())?.next().is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn state(replicas: &[i32], isr: &[i32], incarnations: &[(i32, u64)]) -> PartitionState {
        PartitionState {
            replicas: replicas.to_vec(),
            leader: isr.first().copied().unwrap_or(-1),
            leader_epoch: 3,
            isr: isr.to_vec(),
            incarnations: BTreeMap::from_iter(incarnations.iter().copied()),
            adding_replicas: Vec::new(),
            removing_replicas: Vec::new(),
        }
    }

    #[test]
    fn an_empty_start_is_remembered_until_the_broker_is_in_sync_everywhere() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let none = BTreeMap::new();
        assert!(started_empty(&data, 1, &none).expect("first start"));
        // Partitions opened since (empty), then a restart: still started empty.
        fs::create_dir_all(logs_dir(&data).join("t").join("0")).expect("partition dir");
        assert!(started_empty(&data, 1, &none).expect("second start"));
        let behind = state(&[1, 2], &[2], &[(2, 20)]);
        let caught_up = state(&[1, 2], &[2, 1], &[(2, 20), (1, 11)]);
        let elsewhere = state(&[2, 3], &[2], &[]);
        forget_if_in_sync(&data, [&caught_up, &behind, &elsewhere], 1, 11).expect("check");
        assert!(
            started_empty(&data, 1, &none).expect("third start"),
            "behind on one"
        );
        let stale = state(&[1, 2], &[2, 1], &[(2, 20), (1, 10)]);
        forget_if_in_sync(&data, [&caught_up, &stale], 1, 11).expect("check");
        assert!(
            started_empty(&data, 1, &none).expect("fourth start"),
            "in the ISR as an earlier process only"
        );
        forget_if_in_sync(&data, [&caught_up, &elsewhere], 1, 11).expect("check");
        assert!(!started_empty(&data, 1, &none).expect("fifth start"));
    }

    /// A broker that kept some partitions' logs but lost one it was in sync for did not come
    /// back with its logs: electing it could lose what that partition acknowledged.
    #[test]
    fn a_lost_log_of_an_in_sync_partition_counts_as_started_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let (kept, lost, other) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        fs::create_dir_all(partition_dir(&data, kept, 0)).expect("partition dir");
        let stored = |state| Stored { state, version: 1 };
        let mut partitions = BTreeMap::from([
            ((kept, 0), stored(state(&[1, 2], &[1, 2], &[]))),
            ((other, 0), stored(state(&[1, 2], &[2], &[]))),
        ]);
        assert!(
            !started_empty(&data, 1, &partitions).expect("start"),
            "no log of a partition it was not in sync for is missing"
        );
        partitions.insert((lost, 3), stored(state(&[2, 1], &[2, 1], &[])));
        assert!(started_empty(&data, 1, &partitions).expect("start"));
        assert!(
            started_empty(&data, 1, &BTreeMap::new()).expect("restart"),
            "remembered"
        );
    }

    #[test]
    fn a_data_dir_with_a_partition_log_did_not_start_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let topic = logs_dir(dir.path()).join("0123");
        fs::create_dir_all(&topic).expect("topic dir");
        assert!(
            !holds_logs(dir.path()).expect("read"),
            "a topic without partitions"
        );
        fs::create_dir(topic.join("0")).expect("partition dir");
        assert!(!started_empty(dir.path(), 1, &BTreeMap::new()).expect("start"));
        assert!(!dir.path().join(MARKER).exists());
    }
}
