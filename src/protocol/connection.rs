//! One client connection: size-prefixed frames in, responses out, in request order.
//!
//! Requests are handled one at a time, as Kafka does, with one exception that keeps order: a
//! Produce is handled until its batches are appended, and while it waits for its
//! acknowledgement (acks=all: the followers) the next Produce may be read and appended. So a
//! client that pipelines produce requests gets its batches replicated together rather than one
//! round trip after another. Up to [`PIPELINE_DEPTH`] acknowledgements wait at once; responses
//! leave in request order; any other request waits until every earlier response is written. A
//! frame that cannot be handled (too large, truncated, undecodable, an API this broker does not
//! offer) closes the connection with one log line, after the responses already due; other
//! connections carry on. Shutting down, a connection stops reading and writes what is due.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use kafka_protocol::messages::ApiKey;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::dispatch::{Begun, PendingResponse, ProtocolError, begin};
use super::metrics::RequestMetrics;
use super::response::Response;
use crate::broker::Broker;

/// Bytes read from the socket at a time while a frame arrives; the buffer grows with what arrives,
/// never with what the size prefix claims.
const READ_CHUNK: usize = 64 * 1024;

/// Most Produce acknowledgements one connection has pending at once.
pub const PIPELINE_DEPTH: usize = 16;

/// Reads size-prefixed frames. Everything read is kept in the reader, so a read abandoned midway
/// (a `select!` taking another branch) loses nothing.
#[derive(Debug)]
pub struct FrameReader {
    buf: BytesMut,
    max_size: usize,
}

impl FrameReader {
    /// A reader refusing frames over `max_size` bytes.
    pub fn new(max_size: usize) -> Self {
        FrameReader {
            buf: BytesMut::new(),
            max_size,
        }
    }

    /// The next frame. `Ok(None)` is a clean end of stream between frames. Cancel-safe.
    pub async fn next(
        &mut self,
        reader: &mut (impl AsyncRead + Unpin),
    ) -> Result<Option<Bytes>, ProtocolError> {
        loop {
            let wanted = match self.frame_size()? {
                Some(size) if self.buf.len() >= 4 + size => {
                    self.buf.advance(4);
                    return Ok(Some(self.buf.split_to(size).freeze()));
                }
                Some(size) => 4 + size - self.buf.len(),
                None => 4 - self.buf.len(),
            };
            self.buf.reserve(wanted.min(READ_CHUNK));
            let n = reader
                .read_buf(&mut self.buf)
                .await
                .map_err(ProtocolError::Io)?;
            if n == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(ProtocolError::Truncated)
                };
            }
        }
    }

    /// The size of the frame at the front, once its prefix is in.
    fn frame_size(&self) -> Result<Option<usize>, ProtocolError> {
        let Some(prefix) = self.buf.get(..4) else {
            return Ok(None);
        };
        let size = i32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
        if size < 0 || size as usize > self.max_size {
            return Err(ProtocolError::FrameTooLarge {
                size: i64::from(size),
                max: self.max_size,
            });
        }
        Ok(Some(size as usize))
    }
}

/// Serves one connection until the client closes it, a frame is bad, or `cancel` fires.
pub async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    broker: Arc<Broker>,
    metrics: RequestMetrics,
    cancel: CancellationToken,
) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(%peer, error = %e, "could not set TCP_NODELAY");
    }
    let (mut reader, mut writer) = stream.into_split();
    let mut connection = Connection {
        broker,
        metrics,
        client_host: format!("/{}", peer.ip()),
        pending: FuturesOrdered::new(),
    };
    let mut outcome = connection.serve(&mut reader, &mut writer, &cancel).await;
    if !matches!(outcome, Err(ProtocolError::Io(_))) {
        // The client closed its side, sent a bad frame, or the broker is shutting down: the
        // responses already due still go out (the server gives a draining connection a while).
        outcome = outcome.and(connection.drain(&mut writer).await);
    }
    match outcome {
        Ok(()) => {}
        Err(ProtocolError::Io(e)) => tracing::debug!(%peer, error = %e, "client went away"),
        Err(e) => tracing::warn!(%peer, error = %e, "closing connection"),
    }
}

/// A connection's state between requests.
struct Connection {
    broker: Arc<Broker>,
    metrics: RequestMetrics,
    client_host: String,
    /// Responses not yet written, in request order.
    pending: FuturesOrdered<PendingResponse>,
}

impl Connection {
    async fn serve(
        &mut self,
        reader: &mut (impl AsyncRead + Unpin),
        writer: &mut (impl AsyncWrite + Unpin),
        cancel: &CancellationToken,
    ) -> Result<(), ProtocolError> {
        let mut frames = FrameReader::new(self.broker.settings().socket_request_max_bytes);
        loop {
            let frame = tokio::select! {
                // Finished responses go out before the next frame is read.
                biased;
                () = cancel.cancelled() => return Ok(()),
                Some(response) = self.pending.next() => {
                    self.write_due(writer, response).await?;
                    continue;
                }
                frame = frames.next(reader), if self.pending.len() < PIPELINE_DEPTH => frame,
            };
            let Some(frame) = frame? else {
                return Ok(());
            };
            let api = frame
                .get(0..2)
                .and_then(|k| ApiKey::try_from(i16::from_be_bytes([k[0], k[1]])).ok());
            if api != Some(ApiKey::Produce) {
                // Only a Produce may start before the responses ahead of it are out.
                self.drain(writer).await?;
            }
            let started = Instant::now();
            match begin(&self.broker, frame, &self.client_host).await? {
                Begun::Answered(response) => {
                    if let Some(api) = api {
                        self.metrics.observe(api, started.elapsed());
                    }
                    // Behind every earlier response (already out unless this was a Produce).
                    self.drain(writer).await?;
                    write_response(writer, response).await?;
                }
                Begun::Acknowledging(response) => {
                    let appended = Instant::now();
                    let metrics = self.metrics.clone();
                    self.pending.push_back(Box::pin(async move {
                        let response = response.await;
                        let local = appended.duration_since(started);
                        metrics.observe_phases(ApiKey::Produce, local, appended.elapsed());
                        metrics.observe(ApiKey::Produce, started.elapsed());
                        response
                    }));
                }
            }
        }
    }

    /// Writes every pending response, in order, as each becomes ready.
    async fn drain(&mut self, writer: &mut (impl AsyncWrite + Unpin)) -> Result<(), ProtocolError> {
        while let Some(response) = self.pending.next().await {
            self.write_due(writer, response).await?;
        }
        Ok(())
    }

    /// Writes the next response in order. One that could not be made ends the connection, and
    /// the responses behind it are dropped: written without it, they would answer the wrong
    /// requests.
    async fn write_due(
        &mut self,
        writer: &mut (impl AsyncWrite + Unpin),
        response: Result<Option<Response>, ProtocolError>,
    ) -> Result<(), ProtocolError> {
        match response {
            Ok(response) => write_response(writer, response).await,
            Err(e) => {
                self.pending = FuturesOrdered::new();
                Err(e)
            }
        }
    }
}

/// Writes one response, its size and body pieces in vectored writes (a fetch response's records
/// are not copied behind its size); nothing for a request that takes no response.
async fn write_response(
    writer: &mut (impl AsyncWrite + Unpin),
    response: Option<Response>,
) -> Result<(), ProtocolError> {
    let Some(response) = response else {
        return Ok(());
    };
    writer
        .write_all_buf(&mut response.into_frame())
        .await
        .map_err(ProtocolError::Io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_are_read_whole_and_bounded() {
        let mut frames = FrameReader::new(100);
        let mut input: &[u8] = &[0, 0, 0, 3, 1, 2, 3, 0, 0, 0, 2, 9];
        let frame = frames.next(&mut input).await.expect("ok").expect("frame");
        assert_eq!(&frame[..], &[1, 2, 3]);
        assert!(matches!(
            frames.next(&mut input).await,
            Err(ProtocolError::Truncated)
        ));
        let mut empty: &[u8] = &[];
        let next = FrameReader::new(100).next(&mut empty).await;
        assert!(next.expect("eof").is_none());
        let mut huge: &[u8] = &[0x7f, 0xff, 0xff, 0xff, 0];
        assert!(matches!(
            FrameReader::new(100).next(&mut huge).await,
            Err(ProtocolError::FrameTooLarge { .. })
        ));
        let mut negative: &[u8] = &[0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            FrameReader::new(100).next(&mut negative).await,
            Err(ProtocolError::FrameTooLarge { .. })
        ));
    }

    #[tokio::test]
    async fn a_read_abandoned_midway_loses_nothing() {
        let (mut client, mut server) = tokio::io::duplex(64);
        let mut frames = FrameReader::new(100);
        client.write_all(&[0, 0, 0, 5, 1, 2]).await.expect("write");
        let abandoned = tokio::time::timeout(
            std::time::Duration::from_millis(20),
            frames.next(&mut server),
        )
        .await;
        assert!(abandoned.is_err(), "half a frame is not a frame");
        client.write_all(&[3, 4, 5, 0, 0]).await.expect("write");
        let frame = frames.next(&mut server).await.expect("ok").expect("frame");
        assert_eq!(&frame[..], &[1, 2, 3, 4, 5]);
        client.write_all(&[0, 1, 9]).await.expect("write");
        let frame = frames.next(&mut server).await.expect("ok").expect("frame");
        assert_eq!(&frame[..], &[9], "the next frame's prefix was kept");
    }

    /// A Produce v8 frame (size prefix included) of one batch of `values` for `partition` of
    /// `topic`, acks=all.
    fn produce_frame(topic: &str, partition: i32, correlation_id: i32, values: &[&str]) -> Bytes {
        use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
        use kafka_protocol::messages::{ProduceRequest, RequestHeader, TopicName};
        use kafka_protocol::protocol::{Encodable, StrBytes};
        const VERSION: i16 = 8;
        let header = RequestHeader::default()
            .with_request_api_key(ApiKey::Produce as i16)
            .with_request_api_version(VERSION)
            .with_correlation_id(correlation_id);
        let body = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![
                TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                    .with_partition_data(vec![
                        PartitionProduceData::default()
                            .with_index(partition)
                            .with_records(Some(crate::test_support::batch(values, 1_000))),
                    ]),
            ]);
        let mut frame = BytesMut::new();
        frame.extend_from_slice(&[0; 4]);
        header
            .encode(&mut frame, ApiKey::Produce.request_header_version(VERSION))
            .expect("header");
        body.encode(&mut frame, VERSION).expect("body");
        let size = (frame.len() - 4) as u32;
        frame[..4].copy_from_slice(&size.to_be_bytes());
        frame.freeze()
    }

    /// An ApiVersions v0 frame.
    fn api_versions_frame(correlation_id: i32) -> Bytes {
        let mut frame = BytesMut::new();
        frame.extend_from_slice(&10u32.to_be_bytes());
        frame.extend_from_slice(&(ApiKey::ApiVersions as i16).to_be_bytes());
        frame.extend_from_slice(&0i16.to_be_bytes());
        frame.extend_from_slice(&correlation_id.to_be_bytes());
        frame.extend_from_slice(&(-1i16).to_be_bytes());
        frame.freeze()
    }

    /// The client's end of a connection served by `broker`.
    struct Client {
        reader: tokio::io::ReadHalf<tokio::io::DuplexStream>,
        writer: tokio::io::WriteHalf<tokio::io::DuplexStream>,
        responses: FrameReader,
        metrics: RequestMetrics,
    }

    impl Client {
        fn connect(broker: &Arc<Broker>, cancel: &CancellationToken) -> Self {
            let (client, server) = tokio::io::duplex(1 << 20);
            let (mut server_reader, mut server_writer) = tokio::io::split(server);
            let metrics = RequestMetrics::default();
            let mut connection = Connection {
                broker: Arc::clone(broker),
                metrics: metrics.clone(),
                client_host: "/127.0.0.1".into(),
                pending: FuturesOrdered::new(),
            };
            let stop = cancel.clone();
            tokio::spawn(async move {
                connection
                    .serve(&mut server_reader, &mut server_writer, &stop)
                    .await
            });
            let (reader, writer) = tokio::io::split(client);
            Client {
                reader,
                writer,
                responses: FrameReader::new(1 << 20),
                metrics,
            }
        }

        async fn send(&mut self, frame: Bytes) {
            self.writer.write_all(&frame).await.expect("send");
        }

        /// Asserts no response arrives for a while.
        async fn expect_silence(&mut self, why: &str) {
            let mut byte = [0u8; 1];
            let read = tokio::time::timeout(
                std::time::Duration::from_millis(100),
                self.reader.read(&mut byte),
            )
            .await;
            assert!(read.is_err(), "{why}");
        }

        /// The next response: its correlation id, and the base offset of a Produce response.
        async fn response(&mut self, produce: bool) -> (i32, Option<i64>) {
            use kafka_protocol::messages::ProduceResponse;
            use kafka_protocol::protocol::Decodable;
            let mut response = self
                .responses
                .next(&mut self.reader)
                .await
                .expect("read")
                .expect("response");
            let correlation_id = response.get_i32();
            let base_offset = produce.then(|| {
                let produced = ProduceResponse::decode(&mut response, 8).expect("decode");
                let partition = &produced.responses[0].partition_responses[0];
                assert_eq!(partition.error_code, 0);
                partition.base_offset
            });
            (correlation_id, base_offset)
        }
    }

    async fn wait_for_log_ends(partitions: &[Arc<crate::broker::Partition>], end: i64) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while partitions.iter().any(|p| p.log_end_offset() < end) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "later produces were not appended while earlier ones waited"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn produces_are_appended_while_earlier_ones_wait_and_answered_in_order() {
        use crate::broker::now_ms;

        let dir = tempfile::tempdir().expect("tempdir");
        let broker = crate::test_support::open_broker(dir.path()).await;
        let partitions =
            crate::test_support::partitions_awaiting_a_follower(&broker, "pipelined", 3).await;
        let cancel = CancellationToken::new();
        let mut client = Client::connect(&broker, &cancel);
        for (correlation_id, partition) in [(1, 0), (2, 1), (3, 2)] {
            client
                .send(produce_frame(
                    "pipelined",
                    partition,
                    correlation_id,
                    &["a", "b"],
                ))
                .await;
        }
        // All three are appended before any is acknowledged.
        wait_for_log_ends(&partitions, 2).await;

        // The later requests are acknowledged first; nothing may overtake the first.
        partitions[2].follower_fetched(2, 2, now_ms(), 30_000);
        partitions[1].follower_fetched(2, 2, now_ms(), 30_000);
        client
            .expect_silence("a response overtook an earlier, unacknowledged one")
            .await;
        partitions[0].follower_fetched(2, 2, now_ms(), 30_000);
        for correlation_id in 1..=3 {
            assert_eq!(client.response(true).await, (correlation_id, Some(0)));
        }

        // Any other request waits for the Produce ahead of it.
        client
            .send(produce_frame("pipelined", 0, 4, &["c", "d"]))
            .await;
        client.send(api_versions_frame(5)).await;
        wait_for_log_ends(&partitions[..1], 4).await;
        client
            .expect_silence("ApiVersions was answered before the Produce ahead of it")
            .await;
        partitions[0].follower_fetched(2, 4, now_ms(), 30_000);
        assert_eq!(client.response(true).await, (4, Some(2)));
        assert_eq!(client.response(false).await, (5, None));
        cancel.cancel();

        // Each Produce's wait for the follower counts as remote time, not local: the first
        // waited through 100 ms of silence above.
        let mut registry = prometheus_client::registry::Registry::with_prefix("strata");
        client.metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        for line in [
            r#"strata_request_local_seconds_count{api="Produce"} 4"#,
            r#"strata_request_remote_seconds_count{api="Produce"} 4"#,
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        let sum = |name: &str| -> f64 {
            let prefix = format!("{name}_sum{{api=\"Produce\"}} ");
            text.lines()
                .find_map(|l| l.strip_prefix(prefix.as_str()))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{prefix} in {text}"))
        };
        let (local, remote) = (
            sum("strata_request_local_seconds"),
            sum("strata_request_remote_seconds"),
        );
        assert!(remote >= 0.1, "remote {remote} s");
        assert!(local < remote, "local {local} s, remote {remote} s");
    }
}
