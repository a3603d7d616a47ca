//! The embedded metadata store of a single-node broker: the whole key space in memory, written to
//! one JSON file on every change (temporary file, fsync, rename), so a crash leaves either the old
//! or the new state. Watches are woken after each persisted change.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, watch};

use super::watch::Watchers;
use super::{Expect, MetadataError, MetadataStore, Versioned, Write, conflict};

/// A file-backed [`MetadataStore`] for one process.
#[derive(Debug)]
pub struct EmbeddedStore {
    path: PathBuf,
    state: Mutex<State>,
    watchers: Watchers,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    revision: u64,
    entries: BTreeMap<String, Entry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    value: String,
    version: u64,
}

impl EmbeddedStore {
    /// Opens (or creates) the store kept in the file at `path`.
    pub fn open(path: &Path) -> Result<Self, MetadataError> {
        let state = match fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| MetadataError::Corrupt {
                key: path.display().to_string(),
                reason: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => return Err(unavailable(path, &e)),
        };
        Ok(EmbeddedStore {
            path: path.to_path_buf(),
            state: Mutex::new(state),
            watchers: Watchers::default(),
        })
    }

    fn persist(&self, state: &State) -> Result<(), MetadataError> {
        let tmp = self.path.with_extension("tmp");
        let json = serde_json::to_vec_pretty(state)
            .map_err(|e| MetadataError::Unavailable(e.to_string()))?;
        let mut file = fs::File::create(&tmp).map_err(|e| unavailable(&tmp, &e))?;
        file.write_all(&json).map_err(|e| unavailable(&tmp, &e))?;
        file.sync_all().map_err(|e| unavailable(&tmp, &e))?;
        fs::rename(&tmp, &self.path).map_err(|e| unavailable(&self.path, &e))?;
        if let Some(dir) = self.path.parent() {
            fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| unavailable(dir, &e))?;
        }
        Ok(())
    }
}

fn unavailable(path: &Path, e: &std::io::Error) -> MetadataError {
    MetadataError::Unavailable(format!("{}: {e}", path.display()))
}

fn holds(current: Option<&Entry>, expect: Expect) -> bool {
    match expect {
        Expect::Any => true,
        Expect::Absent => current.is_none(),
        Expect::Version(v) => current.is_some_and(|e| e.version == v),
    }
}

#[async_trait]
impl MetadataStore for EmbeddedStore {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, MetadataError> {
        let state = self.state.lock().await;
        Ok(state.entries.get(key).map(|e| Versioned {
            value: e.value.clone(),
            version: e.version,
        }))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<(String, Versioned)>, MetadataError> {
        let state = self.state.lock().await;
        Ok(state
            .entries
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, e)| {
                (
                    k.clone(),
                    Versioned {
                        value: e.value.clone(),
                        version: e.version,
                    },
                )
            })
            .collect())
    }

    async fn put(&self, key: &str, value: String, expect: Expect) -> Result<u64, MetadataError> {
        let key = key.to_string();
        let write = Write::Put {
            key: key.clone(),
            value,
        };
        self.transact(&[(key, expect)], vec![write]).await
    }

    async fn delete(&self, key: &str, expect: Expect) -> Result<(), MetadataError> {
        let key = key.to_string();
        let write = Write::Delete { key: key.clone() };
        self.transact(&[(key, expect)], vec![write])
            .await
            .map(|_| ())
    }

    async fn transact(
        &self,
        conditions: &[(String, Expect)],
        writes: Vec<Write>,
    ) -> Result<u64, MetadataError> {
        let mut state = self.state.lock().await;
        if !conditions
            .iter()
            .all(|(key, expect)| holds(state.entries.get(key), *expect))
        {
            return Err(conflict(conditions));
        }
        let revision = state.revision + 1;
        // What each write replaced, to undo them if they cannot be persisted.
        let mut undo = Vec::with_capacity(writes.len());
        for write in writes {
            match write {
                Write::Put { key, value } => {
                    let previous = state.entries.insert(
                        key.clone(),
                        Entry {
                            value,
                            version: revision,
                        },
                    );
                    undo.push((key, previous));
                }
                Write::Delete { key } => {
                    if let Some(previous) = state.entries.remove(&key) {
                        undo.push((key, Some(previous)));
                    }
                }
            }
        }
        if undo.is_empty() {
            return Ok(state.revision);
        }
        state.revision = revision;
        if let Err(e) = self.persist(&state) {
            for (key, previous) in undo.into_iter().rev() {
                match previous {
                    Some(p) => state.entries.insert(key, p),
                    None => state.entries.remove(&key),
                };
            }
            state.revision -= 1;
            return Err(e);
        }
        let changed: Vec<&str> = undo.iter().map(|(key, _)| key.as_str()).collect();
        self.watchers.notify(&changed);
        Ok(revision)
    }

    fn watch(&self, prefix: &str) -> watch::Receiver<u64> {
        self.watchers.add(prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn compare_and_set_and_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("metadata.json");
        let store = EmbeddedStore::open(&path).expect("open");
        crate::metadata::conformance::check(&store).await;
        drop(store);

        let store = EmbeddedStore::open(&path).expect("reopen");
        let listed = store.list("topics/").await.expect("list");
        assert_eq!(
            listed.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
            ["topics/b"]
        );
        assert!(store.get("other").await.expect("get").is_some());
    }

    #[test]
    fn a_corrupt_file_is_reported_not_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("metadata.json");
        fs::write(&path, b"{not json").expect("write");
        assert!(matches!(
            EmbeddedStore::open(&path),
            Err(MetadataError::Corrupt { .. })
        ));
    }
}
