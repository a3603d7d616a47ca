//! Replication between brokers. Followers pull from leaders over gRPC (`proto/replication.proto`):
//! `follower.rs` runs one fetch loop per followed partition (truncating where its log diverged
//! from the leader's, by leader epochs), `service.rs` is the leader's side (progress, high
//! watermark, diverging epochs, long-poll), `isr.rs` changes the ISR through etcd, and `peers.rs`
//! keeps one connection per peer broker.

pub mod follower;
pub mod isr;
pub mod peers;
pub mod service;

/// The generated gRPC code of `proto/replication.proto`.
#[allow(
    missing_docs,
    unreachable_pub,
    missing_debug_implementations,
    clippy::allow_attributes,
    clippy::all
)]
pub mod proto {
    tonic::include_proto!("strata.replication.v1");
}

/// Most record bytes one replication fetch returns (`replica.fetch.max.bytes`).
pub const FETCH_MAX_BYTES: i32 = 1 << 20;
/// How long the leader holds a replication fetch that has nothing new.
pub const FETCH_MAX_WAIT_MS: i32 = 500;
