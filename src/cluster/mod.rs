//! The cluster: which broker leads which partition, decided by one elected controller and kept
//! in the metadata store (etcd in a cluster, the embedded store on a single node, where the one
//! broker is its own controller). `state.rs` is a partition's replication state, `assign.rs`
//! rack-aware replica placement, `plan.rs` the controller's decisions as a pure function, `reassign.rs` moving replicas,
//! `controller.rs` the election and the loop that applies them, `view.rs` a broker's picture of
//! the cluster and `triggers.rs` waiting on the store's watches.

pub mod assign;
pub mod controller;
pub mod plan;
pub mod reassign;
pub mod state;
pub mod triggers;
pub mod view;
