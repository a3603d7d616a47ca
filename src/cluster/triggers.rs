//! Waiting for changes under a few key prefixes of the metadata store, through its watches.

use std::time::Duration;

use tokio::sync::watch;

use crate::metadata::MetadataStore;

/// Watches of several prefixes, awaited together.
#[derive(Debug)]
pub struct Triggers {
    receivers: Vec<watch::Receiver<u64>>,
}

impl Triggers {
    /// Watches every prefix in `prefixes`.
    pub fn new(store: &dyn MetadataStore, prefixes: &[&str]) -> Self {
        Triggers {
            receivers: prefixes.iter().map(|p| store.watch(p)).collect(),
        }
    }

    /// Returns once something under one of the prefixes changed since the last call (or since
    /// the watches were made), at the latest after `timeout`.
    pub async fn changed(&mut self, timeout: Duration) {
        let waits = self
            .receivers
            .iter_mut()
            .map(|r| Box::pin(r.changed()))
            .collect::<Vec<_>>();
        let any = futures::future::select_all(waits);
        match tokio::time::timeout(timeout, any).await {
            Ok((Ok(()), _, _)) | Err(_) => {}
            // A watch that ended (the store is closing): do not spin on it.
            Ok((Err(_), _, _)) => tokio::time::sleep(timeout).await,
        }
        for r in &mut self.receivers {
            r.borrow_and_update();
        }
    }
}
