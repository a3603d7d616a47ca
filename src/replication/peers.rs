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
            return Ok(client(channel.clone()));
        }
        let channel = Endpoint::from_shared(format!("http://{address}"))?
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5))
            .connect_lazy();
        channels.insert(address.to_string(), channel.clone());
        Ok(client(channel))
    }
}

/// The largest replication response a follower takes: a leader returns a first batch larger
/// than the fetch's `max_bytes` whole (a topic's `max.message.bytes` may be far above it), and a
/// record batch's length is an `i32`. tonic's default of 4 MiB refused such a response, and the
/// follower never caught up.
const MAX_RESPONSE_BYTES: usize = i32::MAX as usize;

fn client(channel: Channel) -> ReplicationClient<Channel> {
    ReplicationClient::new(channel).max_decoding_message_size(MAX_RESPONSE_BYTES)
}
