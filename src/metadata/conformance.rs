//! What every [`MetadataStore`] must do, written once and run against each implementation
//! (embedded here, etcd against the etcd the test command starts).

use super::{Expect, MetadataError, MetadataStore};

/// Compare-and-set, listing by prefix and conditional deletes. Leaves `topics/b` and `other`.
pub(crate) async fn check(store: &dyn MetadataStore) {
    let v1 = store
        .put("topics/a", "1".into(), Expect::Absent)
        .await
        .expect("create");
    assert!(matches!(
        store.put("topics/a", "2".into(), Expect::Absent).await,
        Err(MetadataError::Conflict { .. })
    ));
    let v2 = store
        .put("topics/a", "2".into(), Expect::Version(v1))
        .await
        .expect("cas");
    assert!(v2 > v1, "versions grow with every write");
    assert!(matches!(
        store.put("topics/a", "3".into(), Expect::Version(v1)).await,
        Err(MetadataError::Conflict { .. })
    ));
    store
        .put("topics/b", "b".into(), Expect::Any)
        .await
        .expect("put");
    store
        .put("other", "x".into(), Expect::Any)
        .await
        .expect("put");
    let listed = store.list("topics/").await.expect("list");
    assert_eq!(
        listed.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
        ["topics/a", "topics/b"]
    );
    assert_eq!(listed[0].1.version, v2);
    assert_eq!(
        store.get("topics/a").await.expect("get").map(|v| v.value),
        Some("2".into())
    );
    assert!(store.delete("topics/a", Expect::Version(v1)).await.is_err());
    assert!(store.delete("topics/a", Expect::Absent).await.is_err());
    store
        .delete("topics/a", Expect::Version(v2))
        .await
        .expect("delete");
    assert!(store.get("topics/a").await.expect("get").is_none());
    store
        .delete("missing", Expect::Any)
        .await
        .expect("deleting nothing is fine");
    store
        .delete("missing", Expect::Absent)
        .await
        .expect("absent as expected");
}
