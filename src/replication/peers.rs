//! One gRPC channel per peer broker's replication address, shared by every partition it leads.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use super::proto::replication_client::ReplicationClient;

/// Connections to other brokers, made on first use and reconnected by tonic as needed.
#[derive(Debug, Default)]
pub struct Peers {
    channels: Mutex<HashMap<String, Channel>>,
}

impl Peers {
    /// A client of the replication service at `address` (`host:port`).
    pub fn client(
        &self,
        address: &str,
    ) -> Result<ReplicationClient<Channel>, tonic::transport::Error> {
        let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(channel) = channels.get(address) {
            return Ok(ReplicationClient::new(channel.clone()));
        }
        let channel = Endpoint::from_shared(format!("http://{address}"))?
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5))
            .connect_lazy();
        channels.insert(address.to_string(), channel.clone());
        Ok(ReplicationClient::new(channel))
    }
}
