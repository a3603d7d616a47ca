//! What every [`MetadataStore`] must do, written once and run against each implementation
//! (embedded here, etcd against the etcd the test command starts).

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::timeout;

use super::{Expect, MetadataError, MetadataStore, Versioned, Write};

/// Everything below. Leaves `topics/b`, `other`, `txn/b`, `txn/c`, `txn/d`, `txn/fence` and
/// `watched/b`.
pub(crate) async fn check(store: &dyn MetadataStore) {
    compare_and_set(store).await;
    transactions(store).await;
    watches(store).await;
}

/// Compare-and-set, listing by prefix and conditional deletes. Leaves `topics/b` and `other`.
async fn compare_and_set(store: &dyn MetadataStore) {
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

fn put(key: &str, value: &str) -> Write {
    Write::Put {
        key: key.into(),
        value: value.into(),
    }
}

fn delete(key: &str) -> Write {
    Write::Delete { key: key.into() }
}

async fn value(store: &dyn MetadataStore, key: &str) -> Option<Versioned> {
    store.get(key).await.expect("get")
}

/// Multi-key transactions: every write or none, as the conditions say.
async fn transactions(store: &dyn MetadataStore) {
    let fence = store
        .put("txn/fence", "1".into(), Expect::Absent)
        .await
        .expect("create");
    store
        .put("txn/a", "a".into(), Expect::Any)
        .await
        .expect("put");
    let conditions = [
        ("txn/fence".to_string(), Expect::Version(fence)),
        ("txn/c".to_string(), Expect::Absent),
    ];
    let writes = vec![
        put("txn/b", "b"),
        put("txn/c", "c"),
        delete("txn/a"),
        delete("txn/missing"),
    ];
    let revision = store
        .transact(&conditions, writes)
        .await
        .expect("every condition holds");
    assert!(revision > fence, "versions grow with every write");
    let b = Versioned {
        value: "b".into(),
        version: revision,
    };
    assert_eq!(value(store, "txn/b").await, Some(b.clone()));
    assert_eq!(
        value(store, "txn/c").await.map(|v| v.version),
        Some(revision)
    );
    assert_eq!(value(store, "txn/a").await, None);

    // `txn/c` now exists: nothing is written, and the error names the first conditional key.
    let failed = store
        .transact(&conditions, vec![put("txn/d", "d"), delete("txn/b")])
        .await;
    assert!(
        matches!(failed, Err(MetadataError::Conflict { ref key }) if key == "txn/fence"),
        "{failed:?}"
    );
    assert_eq!(value(store, "txn/d").await, None);
    assert_eq!(value(store, "txn/b").await, Some(b));

    // A fenced writer: the fence moved on, so its version no longer matches.
    store
        .put("txn/fence", "2".into(), Expect::Any)
        .await
        .expect("put");
    let fenced = [("txn/fence".to_string(), Expect::Version(fence))];
    let failed = store.transact(&fenced, vec![put("txn/d", "d")]).await;
    assert!(
        matches!(failed, Err(MetadataError::Conflict { ref key }) if key == "txn/fence"),
        "{failed:?}"
    );
    assert_eq!(value(store, "txn/d").await, None);

    let absent = [("txn/d".to_string(), Expect::Absent)];
    store
        .transact(&absent, vec![put("txn/d", "d")])
        .await
        .expect("txn/d is absent");
    assert!(matches!(
        store.transact(&absent, vec![put("txn/d", "e")]).await,
        Err(MetadataError::Conflict { .. })
    ));
    assert_eq!(
        value(store, "txn/d").await.map(|v| v.value),
        Some("d".into())
    );
}

/// Waits for the next change of `watch`, failing the test after 5 s.
pub(super) async fn changed(watch: &mut watch::Receiver<u64>, after: &str) {
    timeout(Duration::from_secs(5), watch.changed())
        .await
        .unwrap_or_else(|_| panic!("no change seen after {after}"))
        .expect("the watch is alive");
}

/// Watches see the writes and deletes under their prefix, and only those.
async fn watches(store: &dyn MetadataStore) {
    let mut watch = store.watch("watched/");
    changed(&mut watch, "starting the watch").await;
    store
        .put("watched/a", "a".into(), Expect::Any)
        .await
        .expect("put");
    changed(&mut watch, "a put").await;
    store
        .delete("watched/a", Expect::Any)
        .await
        .expect("delete");
    changed(&mut watch, "a delete").await;
    store
        .transact(&[], vec![put("watched/b", "b")])
        .await
        .expect("transact");
    changed(&mut watch, "a transaction").await;

    store
        .put("watched", "outside".into(), Expect::Any)
        .await
        .expect("put");
    store
        .put("unwatched/a", "outside".into(), Expect::Any)
        .await
        .expect("put");
    assert!(
        timeout(Duration::from_millis(300), watch.changed())
            .await
            .is_err(),
        "a write outside the prefix is not a change"
    );
}
