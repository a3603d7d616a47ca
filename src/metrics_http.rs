//! The Prometheus endpoint: `GET /metrics` on its own address (`--metrics-listen`), in the text
//! exposition format, with every counter prefixed `strata_`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;

/// The registry of every metric the broker exports.
pub fn registry(broker: &Broker) -> Registry {
    let mut registry = Registry::with_prefix("strata");
    broker.tiering_metrics().register(&mut registry);
    broker.groups().metrics().register(&mut registry);
    broker.compaction().metrics().register(&mut registry);
    registry
}

/// Serves `/metrics` on `listener` until `cancel` fires.
pub async fn serve(listener: TcpListener, registry: Registry, cancel: CancellationToken) {
    let registry = Arc::new(registry);
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let registry = Arc::clone(&registry);
            async move {
                let mut text = String::new();
                match encode(&mut text, &registry) {
                    Ok(()) => (
                        StatusCode::OK,
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        text,
                    )
                        .into_response(),
                    Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
                }
            }
        }),
    );
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(cancel.cancelled_owned())
        .await
    {
        tracing::error!(error = %e, "the metrics endpoint failed");
    }
}

/// Binds the metrics address.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
