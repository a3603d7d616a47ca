//! The TCP listener: accepts connections and runs each on its own task until shutdown.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::connection::serve_connection;
use super::metrics::RequestMetrics;
use crate::broker::Broker;

/// How long shutdown waits for connections to finish the request they are handling.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Accepts connections on `listener` until `cancel` fires, then waits briefly for in-flight
/// requests to complete. Every request's duration goes to `metrics`.
pub async fn serve(
    listener: TcpListener,
    broker: Arc<Broker>,
    metrics: RequestMetrics,
    cancel: CancellationToken,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    tracing::debug!(%peer, "accepted connection");
                    connections.spawn(serve_connection(
                        stream,
                        peer,
                        Arc::clone(&broker),
                        metrics.clone(),
                        cancel.clone(),
                    ));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(done) = connections.join_next(), if !connections.is_empty() => {
                if let Err(e) = done {
                    tracing::error!(error = %e, "a connection task failed");
                }
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, async {
        while connections.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tracing::warn!("connections still busy after {DRAIN_TIMEOUT:?}; closing them");
        connections.abort_all();
    }
}
