//! One client connection: size-prefixed frames in, responses out, in request order.
//!
//! Requests on a connection are handled one at a time, as Kafka does, so responses keep the order
//! clients rely on. A frame that cannot be handled (too large, truncated, undecodable, an API this
//! broker does not offer) closes the connection with one log line; other connections carry on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::dispatch::{ProtocolError, dispatch};
use super::metrics::RequestMetrics;
use crate::broker::Broker;

/// Bytes read from the socket at a time while a frame arrives; the buffer grows with what arrives,
/// never with what the size prefix claims.
const READ_CHUNK: usize = 64 * 1024;

/// Reads one frame. `Ok(None)` is a clean end of stream between frames.
pub async fn read_frame(
    reader: &mut (impl AsyncRead + Unpin),
    max_size: usize,
) -> Result<Option<Bytes>, ProtocolError> {
    let mut size = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = reader
            .read(&mut size[got..])
            .await
            .map_err(ProtocolError::Io)?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(ProtocolError::Truncated)
            };
        }
        got += n;
    }
    let size = i32::from_be_bytes(size);
    if size < 0 || size as usize > max_size {
        return Err(ProtocolError::FrameTooLarge {
            size: i64::from(size),
            max: max_size,
        });
    }
    let size = size as usize;
    let mut buf = BytesMut::with_capacity(size.min(READ_CHUNK));
    while buf.len() < size {
        buf.reserve((size - buf.len()).min(READ_CHUNK));
        let want = size - buf.len();
        let n = (&mut *reader)
            .take(want as u64)
            .read_buf(&mut buf)
            .await
            .map_err(ProtocolError::Io)?;
        if n == 0 {
            return Err(ProtocolError::Truncated);
        }
    }
    Ok(Some(buf.freeze()))
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
    let max = broker.settings().socket_request_max_bytes;
    let client_host = format!("/{}", peer.ip());
    loop {
        let frame = tokio::select! {
            () = cancel.cancelled() => return,
            frame = read_frame(&mut reader, max) => frame,
        };
        let frame = match frame {
            Ok(Some(frame)) => frame,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "closing connection");
                return;
            }
        };
        let api = frame
            .get(0..2)
            .and_then(|k| ApiKey::try_from(i16::from_be_bytes([k[0], k[1]])).ok());
        let started = Instant::now();
        let outcome = dispatch(&broker, frame, &client_host).await;
        if let Some(api) = api {
            metrics.observe(api, started.elapsed());
        }
        match outcome {
            Ok(Some(response)) => {
                // The size and the body in one vectored write: a fetch response of many MiB is
                // not copied again behind its size.
                let size = Bytes::copy_from_slice(&(response.len() as u32).to_be_bytes());
                let mut out = size.chain(response);
                if let Err(e) = writer.write_all_buf(&mut out).await {
                    tracing::debug!(%peer, error = %e, "client went away");
                    return;
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(%peer, error = %e, "closing connection");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_are_read_whole_and_bounded() {
        let mut input: &[u8] = &[0, 0, 0, 3, 1, 2, 3, 0, 0, 0, 2, 9];
        let frame = read_frame(&mut input, 100)
            .await
            .expect("ok")
            .expect("frame");
        assert_eq!(&frame[..], &[1, 2, 3]);
        assert!(matches!(
            read_frame(&mut input, 100).await,
            Err(ProtocolError::Truncated)
        ));
        let mut empty: &[u8] = &[];
        assert!(read_frame(&mut empty, 100).await.expect("eof").is_none());
        let mut huge: &[u8] = &[0x7f, 0xff, 0xff, 0xff, 0];
        assert!(matches!(
            read_frame(&mut huge, 100).await,
            Err(ProtocolError::FrameTooLarge { .. })
        ));
        let mut negative: &[u8] = &[0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            read_frame(&mut negative, 100).await,
            Err(ProtocolError::FrameTooLarge { .. })
        ));
    }
}
