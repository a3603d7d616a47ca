//! The metadata store in etcd (`--etcd`), for clusters. Every key of [`super::keys`] lives under
//! `/strata/<cluster name>/`, so several clusters can share one etcd. A key's version is its etcd
//! `mod_revision`, and conditional writes are etcd transactions that compare it (or, for
//! [`Expect::Absent`], the `create_revision` 0 of a missing key), so two brokers racing on a key
//! cannot both win. A watch is an etcd watch of the prefix, kept by a background task that
//! re-establishes it after an outage.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, PutOptions, ResponseHeader, Txn, TxnOp,
    WatchOptions, WatchStream,
};
use tokio::sync::watch;

use super::history::{HistoryTracker, Mark};
use super::watch::{Backoff, bump};
use super::{Expect, MetadataError, MetadataStore, Versioned, Write, conflict};

/// How long connecting and each request may take before the store counts as unavailable.
const TIMEOUT: Duration = Duration::from_secs(5);
/// How often the connection is pinged while a request or watch is open, so that a watch on a
/// silently lost etcd fails (etcd refuses pings more often than every 5 s).
const KEEP_ALIVE: Duration = Duration::from_secs(10);

/// The metadata store of one cluster in etcd.
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    prefix: String,
    history: Arc<HistoryTracker>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn unavailable(e: etcd_client::Error) -> MetadataError {
    MetadataError::Unavailable(format!("etcd: {e}"))
}

/// The root under which the keys of cluster `cluster` live.
pub fn cluster_prefix(cluster: &str) -> String {
    format!("/strata/{cluster}/")
}

impl EtcdStore {
    /// Connects to the etcd `endpoints` (`http://host:port`) for the cluster named `cluster`.
    pub async fn connect(endpoints: &[String], cluster: &str) -> Result<Self, MetadataError> {
        let options = ConnectOptions::new()
            .with_connect_timeout(TIMEOUT)
            .with_timeout(TIMEOUT)
            .with_keep_alive(KEEP_ALIVE, TIMEOUT);
        let client = Client::connect(endpoints, Some(options))
            .await
            .map_err(unavailable)?;
        let store = EtcdStore {
            client,
            prefix: cluster_prefix(cluster),
            history: Arc::default(),
        };
        // A first read, so an unreachable etcd fails startup instead of the first request.
        store.get(super::keys::CLUSTER_ID).await?;
        Ok(store)
    }

    /// Grants a lease of `ttl_seconds`; keys put under it vanish when it expires.
    pub async fn grant_lease(&self, ttl_seconds: i64) -> Result<i64, MetadataError> {
        let response = self
            .client
            .lease_client()
            .grant(ttl_seconds, None)
            .await
            .map_err(unavailable)?;
        Ok(response.id())
    }

    /// Refreshes a lease once; `Ok(false)` if it had already expired.
    pub async fn refresh_lease(&self, lease: i64) -> Result<bool, MetadataError> {
        let (mut keeper, mut responses) = match self.client.lease_client().keep_alive(lease).await {
            Ok(stream) => stream,
            // The client's way of saying the lease expired (or was revoked).
            Err(etcd_client::Error::LeaseKeepAliveError(m)) if m == "lease not found" => {
                return Ok(false);
            }
            Err(e) => return Err(unavailable(e)),
        };
        keeper.keep_alive().await.map_err(unavailable)?;
        let response = responses.message().await.map_err(unavailable)?;
        Ok(response.is_some_and(|r| r.ttl() > 0))
    }

    /// Revokes a lease, deleting its keys; failures are logged (the lease expires anyway).
    pub async fn revoke_lease(&self, lease: i64) {
        if let Err(e) = self.client.lease_client().revoke(lease).await {
            tracing::warn!(lease, error = %e, "could not revoke an etcd lease; it will expire");
        }
    }

    /// [`MetadataStore::put`] with the key attached to `lease`.
    pub async fn put_with_lease(
        &self,
        key: &str,
        value: String,
        expect: Expect,
        lease: i64,
    ) -> Result<u64, MetadataError> {
        let op = TxnOp::put(
            self.full(key),
            value,
            Some(PutOptions::new().with_lease(lease)),
        );
        self.conditional(key, expect, op).await
    }

    fn full(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn condition(&self, key: &str, expect: Expect) -> Option<Compare> {
        match expect {
            Expect::Any => None,
            Expect::Absent => Some(Compare::create_revision(key, CompareOp::Equal, 0)),
            Expect::Version(v) => Some(Compare::mod_revision(
                key,
                CompareOp::Equal,
                i64::try_from(v).unwrap_or(i64::MAX),
            )),
        }
    }

    /// Runs `op` on `key` if `expect` holds; returns the store revision after the transaction.
    async fn conditional(
        &self,
        key: &str,
        expect: Expect,
        op: TxnOp,
    ) -> Result<u64, MetadataError> {
        self.txn(&[(key.to_string(), expect)], vec![op]).await
    }

    /// Runs `ops` if every condition holds; returns the store revision after the transaction.
    async fn txn(
        &self,
        conditions: &[(String, Expect)],
        ops: Vec<TxnOp>,
    ) -> Result<u64, MetadataError> {
        let compares: Vec<Compare> = conditions
            .iter()
            .filter_map(|(key, expect)| self.condition(&self.full(key), *expect))
            .collect();
        let sent = self.history.mark();
        let response = self
            .client
            .kv_client()
            .txn(Txn::new().when(compares).and_then(ops))
            .await
            .map_err(unavailable)?;
        let revision = self.answered(sent, response.header());
        if !response.succeeded() {
            return Err(conflict(conditions));
        }
        Ok(u64::try_from(revision).unwrap_or(0))
    }

    /// Records the revision of an answer to a request sent at `sent`; returns it (0 if etcd did
    /// not say).
    fn answered(&self, sent: Mark, header: Option<&ResponseHeader>) -> i64 {
        let Some(header) = header else { return 0 };
        self.history.answered(sent, header.revision());
        header.revision()
    }
}

/// Keeps an etcd watch of every key under `key` open, bumping `sender` on each change and each
/// time the watch is (re-)established, and re-opening it after a backoff whenever it is lost.
async fn keep_watching(client: Client, key: &str, sender: &watch::Sender<u64>) {
    let mut backoff = Backoff::default();
    let mut healthy = true;
    loop {
        let error = match open_watch(client.clone(), key).await {
            Ok(stream) => {
                if !healthy {
                    tracing::info!(key, "the etcd watch is re-established");
                    healthy = true;
                }
                backoff = Backoff::default();
                bump(sender);
                follow(stream, sender).await
            }
            Err(error) => error,
        };
        let wait = backoff.next_wait();
        if healthy {
            tracing::warn!(key, %error, ?wait, "lost the etcd watch; re-establishing it");
        } else {
            tracing::debug!(key, %error, ?wait, "could not re-establish the etcd watch yet");
        }
        healthy = false;
        tokio::time::sleep(wait).await;
    }
}

/// Opens a watch of every key under `key` and waits until etcd confirms it is in place.
async fn open_watch(mut client: Client, key: &str) -> Result<WatchStream, MetadataError> {
    let options = WatchOptions::new().with_prefix();
    let mut stream = client
        .watch(key, Some(options))
        .await
        .map_err(unavailable)?;
    match stream.message().await.map_err(unavailable)? {
        Some(response) if response.created() && !response.canceled() => Ok(stream),
        _ => Err(MetadataError::Unavailable(
            "etcd did not create the watch".into(),
        )),
    }
}

/// Bumps `sender` on every batch of events until the watch fails, ends or is cancelled.
async fn follow(mut stream: WatchStream, sender: &watch::Sender<u64>) -> MetadataError {
    loop {
        match stream.message().await {
            Ok(Some(response)) if response.canceled() => {
                return MetadataError::Unavailable(format!(
                    "etcd cancelled the watch: {}",
                    response.cancel_reason()
                ));
            }
            Ok(Some(response)) => {
                if !response.events().is_empty() {
                    bump(sender);
                }
            }
            Ok(None) => return MetadataError::Unavailable("etcd ended the watch".into()),
            Err(e) => return unavailable(e),
        }
    }
}

fn versioned(key: &str, kv: &etcd_client::KeyValue) -> Result<Versioned, MetadataError> {
    let value = kv.value_str().map_err(|e| MetadataError::Corrupt {
        key: key.to_string(),
        reason: e.to_string(),
    })?;
    Ok(Versioned {
        value: value.to_string(),
        version: u64::try_from(kv.mod_revision()).unwrap_or(0),
    })
}

#[async_trait]
impl MetadataStore for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, MetadataError> {
        let sent = self.history.mark();
        let response = self
            .client
            .kv_client()
            .get(self.full(key), None)
            .await
            .map_err(unavailable)?;
        self.answered(sent, response.header());
        response
            .kvs()
            .first()
            .map(|kv| versioned(key, kv))
            .transpose()
    }

    async fn list(&self, prefix: &str) -> Result<Vec<(String, Versioned)>, MetadataError> {
        let sent = self.history.mark();
        let response = self
            .client
            .kv_client()
            .get(self.full(prefix), Some(GetOptions::new().with_prefix()))
            .await
            .map_err(unavailable)?;
        self.answered(sent, response.header());
        let mut out = Vec::with_capacity(response.kvs().len());
        for kv in response.kvs() {
            let full = kv.key_str().map_err(|e| MetadataError::Corrupt {
                key: prefix.to_string(),
                reason: e.to_string(),
            })?;
            let key = full.strip_prefix(&self.prefix).unwrap_or(full).to_string();
            let value = versioned(&key, kv)?;
            out.push((key, value));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    async fn put(&self, key: &str, value: String, expect: Expect) -> Result<u64, MetadataError> {
        let op = TxnOp::put(self.full(key), value, None);
        self.conditional(key, expect, op).await
    }

    async fn delete(&self, key: &str, expect: Expect) -> Result<(), MetadataError> {
        if expect == Expect::Absent {
            // Nothing to delete; succeed only if there was indeed nothing.
            return match self.get(key).await? {
                None => Ok(()),
                Some(_) => Err(MetadataError::Conflict {
                    key: key.to_string(),
                }),
            };
        }
        let op = TxnOp::delete(self.full(key), None);
        self.conditional(key, expect, op).await.map(|_| ())
    }

    async fn transact(
        &self,
        conditions: &[(String, Expect)],
        writes: Vec<Write>,
    ) -> Result<u64, MetadataError> {
        let ops = writes
            .into_iter()
            .map(|write| match write {
                Write::Put { key, value } => TxnOp::put(self.full(&key), value, None),
                Write::Delete { key } => TxnOp::delete(self.full(&key), None),
            })
            .collect();
        self.txn(conditions, ops).await
    }

    fn watch(&self, prefix: &str) -> watch::Receiver<u64> {
        let (sender, receiver) = watch::channel(0);
        let (client, key) = (self.client.clone(), self.full(prefix));
        tokio::spawn(async move {
            tokio::select! {
                () = sender.closed() => {}
                () = keep_watching(client, &key, &sender) => {}
            }
        });
        receiver
    }

    fn history(&self) -> u64 {
        self.history.current()
    }
}

#[cfg(test)]
mod tests {
    use super::super::conformance::changed;
    use super::*;

    /// The etcd the test command started, if any (`STRATA_TEST_ETCD_ENDPOINT`); under CI its
    /// absence is a failure, not a skip.
    fn endpoint() -> Option<String> {
        match std::env::var("STRATA_TEST_ETCD_ENDPOINT") {
            Ok(e) if !e.is_empty() => Some(e),
            _ => {
                assert!(
                    std::env::var("CI").is_err(),
                    "CI runs the etcd tests: scripts/test.sh must start etcd"
                );
                eprintln!("STRATA_TEST_ETCD_ENDPOINT is not set: skipping the etcd test");
                None
            }
        }
    }

    #[tokio::test]
    async fn etcd_passes_the_store_conformance_tests_and_clusters_do_not_mix() {
        let Some(endpoint) = endpoint() else { return };
        let cluster = format!("test-{}", uuid::Uuid::new_v4().simple());
        let store = EtcdStore::connect(std::slice::from_ref(&endpoint), &cluster)
            .await
            .expect("connect");
        super::super::conformance::check(&store).await;
        let other = EtcdStore::connect(&[endpoint], &format!("{cluster}-other"))
            .await
            .expect("connect");
        assert!(
            other.list("").await.expect("list").is_empty(),
            "another cluster name sees none of these keys"
        );
    }

    /// A TCP proxy to the etcd at `target` (`host:port`) that is down while the returned sender
    /// holds `true`: it cuts every connection and refuses new ones, an etcd outage as the client
    /// sees it. Returns the proxy's endpoint.
    async fn proxy(target: String) -> (String, watch::Sender<bool>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let (down, is_down) = watch::channel(false);
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut is_down = is_down.clone();
                if *is_down.borrow() {
                    continue;
                }
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = is_down.wait_for(|down| *down) => {}
                    }
                });
            }
        });
        (format!("http://{address}"), down)
    }

    #[tokio::test]
    async fn a_watch_lost_in_an_etcd_outage_is_re_established_and_reported_as_a_change() {
        let Some(endpoint) = endpoint() else { return };
        let target = endpoint.trim_start_matches("http://").to_string();
        let (via_proxy, down) = proxy(target).await;
        let cluster = format!("test-{}", uuid::Uuid::new_v4().simple());
        let store = EtcdStore::connect(&[via_proxy], &cluster)
            .await
            .expect("connect");
        let mut watch = store.watch("w/");
        changed(&mut watch, "starting the watch").await;

        down.send_replace(true);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!watch.has_changed().expect("alive"), "nothing was written");
        down.send_replace(false);
        // Nothing was written: this change can only say that the watch is back.
        changed(&mut watch, "etcd came back").await;
        store
            .put("w/a", "a".into(), Expect::Any)
            .await
            .expect("put");
        changed(&mut watch, "a put after the outage").await;
    }

    #[tokio::test]
    async fn an_unreachable_etcd_fails_to_connect_with_a_clear_error() {
        // Port 9 (discard) on loopback: nothing listens there.
        let err = EtcdStore::connect(&["http://127.0.0.1:9".to_string()], "x")
            .await
            .expect_err("no etcd");
        assert!(matches!(err, MetadataError::Unavailable(ref m) if m.starts_with("etcd")));
    }
}
