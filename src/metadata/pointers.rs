//! Remote manifest pointers kept in the metadata store, moved with compare-and-set.

use std::sync::Arc;

use async_trait::async_trait;
use strata_tiering::LogError;
use strata_tiering::remote::{ManifestPointer, ManifestPointers, SwapGuard};
use uuid::Uuid;

use super::{Expect, MetadataError, MetadataStore, Write, keys};

/// [`ManifestPointers`] over the cluster's metadata store.
#[derive(Debug, Clone)]
pub struct StorePointers {
    store: Arc<dyn MetadataStore>,
}

impl StorePointers {
    /// Pointers kept in `store`.
    pub fn new(store: Arc<dyn MetadataStore>) -> Self {
        StorePointers { store }
    }

    /// Removes a partition's pointer (topic deletion).
    pub async fn delete(&self, topic_id: Uuid, partition: i32) -> Result<(), MetadataError> {
        self.store
            .delete(&keys::manifest_pointer(topic_id, partition), Expect::Any)
            .await
    }
}

fn unavailable(e: impl std::fmt::Display) -> LogError {
    LogError::PointerStore(e.to_string())
}

#[async_trait]
impl ManifestPointers for StorePointers {
    async fn get(
        &self,
        topic_id: Uuid,
        partition: i32,
    ) -> strata_tiering::Result<Option<ManifestPointer>> {
        let key = keys::manifest_pointer(topic_id, partition);
        match self.store.get(&key).await.map_err(unavailable)? {
            None => Ok(None),
            Some(v) => serde_json::from_str(&v.value)
                .map(Some)
                .map_err(unavailable),
        }
    }

    async fn swap(
        &self,
        topic_id: Uuid,
        partition: i32,
        expected: Option<&ManifestPointer>,
        next: &ManifestPointer,
        guard: Option<&SwapGuard>,
    ) -> strata_tiering::Result<bool> {
        let key = keys::manifest_pointer(topic_id, partition);
        let current = self.store.get(&key).await.map_err(unavailable)?;
        let condition = match (&current, expected) {
            (None, None) => Expect::Absent,
            (Some(v), Some(want)) => {
                let stored: ManifestPointer =
                    serde_json::from_str(&v.value).map_err(unavailable)?;
                if &stored != want {
                    return Ok(false);
                }
                Expect::Version(v.version)
            }
            _ => return Ok(false),
        };
        let value = serde_json::to_string(next).map_err(unavailable)?;
        let mut conditions = vec![(key.clone(), condition)];
        if let Some(guard) = guard {
            conditions.push((guard.key.clone(), Expect::Version(guard.version)));
        }
        match self
            .store
            .transact(&conditions, vec![Write::Put { key, value }])
            .await
        {
            Ok(_) => Ok(true),
            Err(MetadataError::Conflict { .. }) => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::embedded::EmbeddedStore;

    #[tokio::test]
    async fn pointers_move_only_from_the_expected_value() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(EmbeddedStore::open(&dir.path().join("m.json")).expect("store"));
        let store_ref = Arc::clone(&store);
        let pointers = StorePointers::new(store);
        let id = Uuid::new_v4();
        let p1 = ManifestPointer {
            version: 1,
            key: "m1".into(),
        };
        let p2 = ManifestPointer {
            version: 2,
            key: "m2".into(),
        };
        assert_eq!(pointers.get(id, 0).await.expect("get"), None);
        assert!(pointers.swap(id, 0, None, &p1, None).await.expect("create"));
        assert!(
            !pointers
                .swap(id, 0, None, &p2, None)
                .await
                .expect("stale create")
        );
        assert!(
            !pointers
                .swap(id, 0, Some(&p2), &p2, None)
                .await
                .expect("wrong expectation")
        );
        // A guard: the claim key must still be at the version the claimant saw.
        let claim = store_ref
            .put("claims/x", "me".into(), Expect::Absent)
            .await
            .expect("claim");
        let held = SwapGuard {
            key: "claims/x".into(),
            version: claim,
        };
        let lost = SwapGuard {
            key: "claims/x".into(),
            version: claim + 100,
        };
        assert!(
            !pointers
                .swap(id, 0, Some(&p1), &p2, Some(&lost))
                .await
                .expect("a lost claim")
        );
        assert_eq!(pointers.get(id, 0).await.expect("get"), Some(p1.clone()));
        assert!(
            pointers
                .swap(id, 0, Some(&p1), &p2, Some(&held))
                .await
                .expect("move")
        );
        assert_eq!(pointers.get(id, 0).await.expect("get"), Some(p2));
        pointers.delete(id, 0).await.expect("delete");
        assert_eq!(pointers.get(id, 1).await.expect("other partition"), None);
    }
}
