//! Which cluster a data directory belongs to.
//!
//! The first start against a metadata store records the store's cluster id in
//! `<data-dir>/cluster.id` (Kafka keeps it in `meta.properties`). Every later start compares the
//! two and refuses a store that holds another cluster, or no cluster while the directory belongs
//! to one or holds partition logs. A directory that records no cluster but holds logs (written
//! before cluster ids were recorded) joins the store's cluster only if it holds the logs of one
//! of the store's topics. Without that check a broker pointed at the wrong `--etcd` or
//! `--cluster-name`, or at an etcd that was wiped, reads no topics and deletes every local log
//! as a deleted topic's. A running broker checks the store again each time it applies the
//! store's topics ([`check`], from `sync.rs`), so an etcd wiped under it deletes nothing either.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::empty_start;
use crate::error::Result;
use crate::metadata::catalog::Catalog;

/// The file under the data directory that names its cluster.
pub const FILE: &str = "cluster.id";

/// What a store of the wrong cluster, or of none, usually means.
const WRONG_STORE: &str = "is --etcd or --cluster-name wrong, or was etcd wiped? Without --etcd \
     the store is <data-dir>/metadata.json";

/// A data directory and a metadata store that do not belong together.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The store holds another cluster than the one the data directory belongs to.
    #[error(
        "this data directory belongs to cluster {dir}, but the metadata store holds cluster \
         {store}: is --etcd or --cluster-name wrong? Not starting, so that no log is deleted as \
         a deleted topic's"
    )]
    Foreign {
        /// The data directory's cluster.
        dir: String,
        /// The store's cluster.
        store: String,
    },
    /// The store holds no cluster, but the data directory belongs to one.
    #[error(
        "this data directory belongs to cluster {dir}, but the metadata store holds no cluster \
         ({}). Not starting, so that no log is deleted as a deleted topic's; to start this \
         directory over in a new cluster, remove {} and its logs",
        WRONG_STORE,
        path.display()
    )]
    Missing {
        /// The data directory's cluster.
        dir: String,
        /// The file naming it.
        path: PathBuf,
    },
    /// The store holds no cluster, and the data directory holds partition logs it never
    /// recorded a cluster for (written before cluster ids were recorded).
    #[error(
        "the metadata store holds no cluster, but this data directory holds partition logs \
         ({}). Not starting, so that no log is deleted as a deleted topic's; to start over, \
         remove {}",
        WRONG_STORE,
        logs.display()
    )]
    Unclaimed {
        /// The logs directory.
        logs: PathBuf,
    },
    /// The data directory records no cluster and holds logs of none of the store's topics.
    #[error(
        "this data directory holds partition logs, none of a topic of cluster {store}, the one \
         the metadata store holds ({}). Not starting, so that no log is deleted as a deleted \
         topic's; to join cluster {store} anyway, remove {}",
        WRONG_STORE,
        logs.display()
    )]
    Unrelated {
        /// The store's cluster.
        store: String,
        /// The logs directory.
        logs: PathBuf,
    },
    /// While running: the store no longer holds this broker's cluster.
    #[error(
        "the metadata store no longer holds cluster {expected} (it holds {}): its topics are not \
         applied, so that no log is deleted; serving with what is known",
        found.as_deref().unwrap_or("no cluster")
    )]
    Changed {
        /// This broker's cluster.
        expected: String,
        /// What the store holds now.
        found: Option<String>,
    },
    /// The file naming the cluster could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

/// Checks that the data directory `data_dir` belongs to the cluster the store holds, recording
/// it on the first start (and creating the cluster when the store holds none and the directory
/// holds no logs); the cluster id.
pub async fn establish(catalog: &Catalog, data_dir: &Path) -> Result<String> {
    let id = match (catalog.stored_cluster_id().await?, recorded(data_dir)?) {
        (Some(store), Some(dir)) if store == dir => return Ok(store),
        (Some(store), Some(dir)) => return Err(IdentityError::Foreign { dir, store }.into()),
        (Some(store), None) if !holds_a_stored_topic(catalog, data_dir).await? => {
            let logs = empty_start::logs_dir(data_dir);
            return Err(IdentityError::Unrelated { store, logs }.into());
        }
        (None, Some(dir)) => {
            let path = data_dir.join(FILE);
            return Err(IdentityError::Missing { dir, path }.into());
        }
        (Some(store), None) => store,
        (None, None) => {
            let logs = empty_start::logs_dir(data_dir);
            let holds_logs =
                empty_start::holds_logs(data_dir).map_err(|source| IdentityError::Io {
                    path: logs.clone(),
                    source,
                })?;
            if holds_logs {
                return Err(IdentityError::Unclaimed { logs }.into());
            }
            catalog.cluster_id().await?
        }
    };
    record(data_dir, &id)?;
    tracing::info!(cluster = %id, "this data directory now belongs to the cluster");
    Ok(id)
}

/// Checks that the store still holds cluster `expected`.
pub async fn check(catalog: &Catalog, expected: &str) -> Result<()> {
    match catalog.stored_cluster_id().await? {
        Some(id) if id == expected => Ok(()),
        found => Err(IdentityError::Changed {
            expected: expected.to_string(),
            found,
        }
        .into()),
    }
}

/// Whether `data_dir` holds no topic's logs, or the logs of at least one topic the store holds:
/// a directory that records no cluster (written before cluster ids were recorded, or a replaced
/// disk) joins the store's cluster only then.
async fn holds_a_stored_topic(catalog: &Catalog, data_dir: &Path) -> Result<bool> {
    let logs = empty_start::logs_dir(data_dir);
    let local = match fs::read_dir(&logs) {
        Ok(entries) => entries
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<io::Result<Vec<_>>>(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
    .map_err(|source| IdentityError::Io {
        path: logs.clone(),
        source,
    })?;
    if local.is_empty() {
        return Ok(true);
    }
    let stored = catalog.topics().await?;
    Ok(stored
        .iter()
        .any(|t| local.contains(&t.id.simple().to_string())))
}

/// The cluster `data_dir` was recorded as belonging to, if any.
fn recorded(data_dir: &Path) -> Result<Option<String>, IdentityError> {
    let path = data_dir.join(FILE);
    match fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => Ok(Some(text.trim().to_string())),
        Ok(_) => Err(IdentityError::Io {
            path,
            source: io::Error::new(io::ErrorKind::InvalidData, "empty: it names no cluster"),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(IdentityError::Io { path, source }),
    }
}

/// Records durably that `data_dir` belongs to cluster `id`.
fn record(data_dir: &Path, id: &str) -> Result<(), IdentityError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| IdentityError::Io { path, source }
    };
    let path = data_dir.join(FILE);
    let staged = data_dir.join(format!("{FILE}.new"));
    fs::create_dir_all(data_dir).map_err(io(data_dir))?;
    let mut file = fs::File::create(&staged).map_err(io(&staged))?;
    writeln!(file, "{id}").map_err(io(&staged))?;
    file.sync_all().map_err(io(&staged))?;
    fs::rename(&staged, &path).map_err(io(&path))?;
    fs::File::open(data_dir)
        .and_then(|dir| dir.sync_all())
        .map_err(io(data_dir))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::broker::Broker;
    use crate::error::BrokerError;
    use crate::metadata::MetadataStore;
    use crate::metadata::catalog::TopicRecord;
    use crate::metadata::embedded::EmbeddedStore;
    use crate::settings::Settings;

    fn catalog(dir: &Path) -> Catalog {
        fs::create_dir_all(dir).expect("store dir");
        let store = EmbeddedStore::open(&dir.join("metadata.json")).expect("store");
        Catalog::new(Arc::new(store))
    }

    #[tokio::test]
    async fn the_first_start_records_the_cluster_and_later_starts_find_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, data) = (catalog(&dir.path().join("a")), dir.path().join("data"));
        let id = establish(&store, &data).await.expect("first start");
        assert_eq!(recorded(&data).expect("read").as_deref(), Some(id.as_str()));
        assert_eq!(establish(&store, &data).await.expect("restart"), id);
        check(&store, &id).await.expect("same cluster");
    }

    #[tokio::test]
    async fn an_empty_data_directory_joins_the_cluster_the_store_holds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = catalog(&dir.path().join("a"));
        let id = store.cluster_id().await.expect("cluster");
        let data = dir.path().join("wiped");
        assert_eq!(establish(&store, &data).await.expect("join"), id);
    }

    #[tokio::test]
    async fn a_store_of_another_cluster_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        establish(&catalog(&dir.path().join("a")), &data)
            .await
            .expect("first cluster");
        let other = catalog(&dir.path().join("b"));
        other.cluster_id().await.expect("second cluster");
        let err = establish(&other, &data).await.expect_err("foreign");
        assert!(
            matches!(err, BrokerError::Identity(IdentityError::Foreign { .. })),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_store_without_a_cluster_is_refused_once_the_directory_belongs_to_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let id = establish(&catalog(&dir.path().join("a")), &data)
            .await
            .expect("first cluster");
        let wiped = catalog(&dir.path().join("wiped"));
        let err = establish(&wiped, &data).await.expect_err("missing");
        assert!(
            matches!(err, BrokerError::Identity(IdentityError::Missing { .. })),
            "{err}"
        );
        let err = check(&wiped, &id).await.expect_err("changed");
        assert!(
            matches!(
                err,
                BrokerError::Identity(IdentityError::Changed { found: None, .. })
            ),
            "{err}"
        );
        assert_eq!(wiped.stored_cluster_id().await.expect("read"), None);
    }

    #[tokio::test]
    async fn logs_without_a_recorded_cluster_join_only_a_cluster_that_has_their_topics() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = catalog(&dir.path().join("a"));
        let id = store.cluster_id().await.expect("cluster");
        let topic = TopicRecord {
            name: "kept".into(),
            id: uuid::Uuid::new_v4(),
            partitions: 1,
            configs: Default::default(),
            replication_factor: 1,
            assignment: None,
        };
        store.create_topic(&topic).await.expect("topic");
        let logs_of = |name: &str, topic: &str| {
            let data = dir.path().join(name);
            fs::create_dir_all(empty_start::logs_dir(&data).join(topic).join("0")).expect("log");
            data
        };

        let unrelated = logs_of("unrelated", "0123456789abcdef0123456789abcdef");
        let err = establish(&store, &unrelated).await.expect_err("unrelated");
        assert!(
            matches!(err, BrokerError::Identity(IdentityError::Unrelated { .. })),
            "{err}"
        );
        assert_eq!(recorded(&unrelated).expect("read"), None);

        let related = logs_of("related", &topic.id.simple().to_string());
        assert_eq!(establish(&store, &related).await.expect("related"), id);
    }

    #[tokio::test]
    async fn an_empty_cluster_file_is_an_error_not_a_cluster() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        fs::create_dir_all(&data).expect("data");
        fs::write(data.join(FILE), "\n").expect("empty file");
        let err = establish(&catalog(&dir.path().join("a")), &data)
            .await
            .expect_err("empty");
        assert!(
            matches!(err, BrokerError::Identity(IdentityError::Io { .. })),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_broker_does_not_open_on_a_store_of_another_cluster() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        fs::create_dir_all(&data).expect("data");
        let store: Arc<dyn MetadataStore> =
            Arc::new(EmbeddedStore::open(&data.join("metadata.json")).expect("store"));
        Catalog::new(Arc::clone(&store))
            .cluster_id()
            .await
            .expect("cluster");
        let settings = Settings::for_data_dir(&data);
        let err = Broker::open(settings, store, 0, "another".into())
            .await
            .expect_err("another cluster");
        assert!(
            matches!(err, BrokerError::Identity(IdentityError::Changed { .. })),
            "{err}"
        );
    }

    #[tokio::test]
    async fn logs_without_a_recorded_cluster_are_not_given_to_a_new_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        fs::create_dir_all(empty_start::logs_dir(&data).join("topic").join("0")).expect("log");
        let store = catalog(&dir.path().join("a"));
        let err = establish(&store, &data).await.expect_err("unclaimed");
        assert!(
            matches!(err, BrokerError::Identity(IdentityError::Unclaimed { .. })),
            "{err}"
        );
        assert_eq!(store.stored_cluster_id().await.expect("read"), None);
    }
}
