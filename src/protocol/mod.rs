//! The Kafka wire protocol edge: the listener, framed connections, request decoding and one handler
//! per API. Requests are decoded with the `kafka-protocol` crate into calls on the
//! [`Broker`](crate::broker::Broker); broker errors become Kafka error codes here and only here
//! (see [`errors`]).

pub mod connection;
pub mod dispatch;
pub mod errors;
pub mod handlers;
pub mod metrics;
pub mod records;
pub mod response;
pub mod server;
pub mod versions;
