//! An encoded response as a run of buffers: a Fetch response's record batches stay in the log's or
//! the chunk cache's buffers and go to the socket from there in one vectored write, instead of
//! being copied into the response (as Kafka sends them with `sendfile`).

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes};

/// A response body (header included, size prefix not), in order.
#[derive(Debug)]
pub struct Response {
    pieces: Vec<Bytes>,
}

impl Response {
    fn len(&self) -> usize {
        self.pieces.iter().map(Bytes::len).sum()
    }

    /// The body in one buffer (a copy when it is in several pieces).
    #[cfg(test)]
    pub fn to_bytes(&self) -> Bytes {
        match self.pieces.as_slice() {
            [] => Bytes::new(),
            [one] => one.clone(),
            many => {
                let mut out = bytes::BytesMut::with_capacity(self.len());
                for piece in many {
                    out.extend_from_slice(piece);
                }
                out.freeze()
            }
        }
    }

    /// The body's pieces, in order.
    #[cfg(test)]
    pub fn pieces(&self) -> &[Bytes] {
        &self.pieces
    }

    /// The frame to write: the body's size, then the body.
    pub fn into_frame(self) -> Frame {
        let size = Bytes::copy_from_slice(&(self.len() as u32).to_be_bytes());
        let pieces: VecDeque<Bytes> = std::iter::once(size)
            .chain(self.pieces.into_iter().filter(|p| !p.is_empty()))
            .collect();
        let remaining = pieces.iter().map(Bytes::len).sum();
        Frame { pieces, remaining }
    }
}

impl From<Bytes> for Response {
    fn from(body: Bytes) -> Self {
        Response { pieces: vec![body] }
    }
}

impl From<Vec<Bytes>> for Response {
    fn from(pieces: Vec<Bytes>) -> Self {
        Response { pieces }
    }
}

/// A response framed for the socket, consumed as it is written.
#[derive(Debug)]
pub struct Frame {
    /// What is left to write; never holds an empty piece.
    pieces: VecDeque<Bytes>,
    remaining: usize,
}

impl Buf for Frame {
    fn remaining(&self) -> usize {
        self.remaining
    }

    fn chunk(&self) -> &[u8] {
        self.pieces.front().map_or(&[], |p| p.as_ref())
    }

    fn advance(&mut self, mut cnt: usize) {
        assert!(cnt <= self.remaining, "advanced past the end of a frame");
        self.remaining -= cnt;
        while cnt > 0 {
            let Some(front) = self.pieces.front_mut() else {
                return;
            };
            if cnt < front.len() {
                front.advance(cnt);
                return;
            }
            cnt -= front.len();
            self.pieces.pop_front();
        }
    }

    fn chunks_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut filled = 0;
        for (slot, piece) in dst.iter_mut().zip(&self.pieces) {
            *slot = IoSlice::new(piece);
            filled += 1;
        }
        filled
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// However a writer takes it, a frame yields the size and then the pieces' bytes.
        #[test]
        fn a_frame_is_the_size_then_the_pieces(
            pieces in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..8),
            steps in proptest::collection::vec(1usize..50, 1..40),
            vectored in any::<bool>(),
        ) {
            let body: Vec<u8> = pieces.concat();
            let response = Response::from(pieces.into_iter().map(Bytes::from).collect::<Vec<_>>());
            prop_assert_eq!(response.len(), body.len());
            prop_assert_eq!(&response.to_bytes()[..], &body[..]);
            let mut expected = (body.len() as u32).to_be_bytes().to_vec();
            expected.extend_from_slice(&body);
            let mut frame = response.into_frame();
            let mut written = Vec::new();
            let mut steps = steps.into_iter().cycle();
            while frame.has_remaining() {
                let step = steps.next().expect("cycle");
                let n = if vectored {
                    let mut slices = [IoSlice::new(&[]); 3];
                    let filled = frame.chunks_vectored(&mut slices);
                    let mut n = 0;
                    for slice in &slices[..filled] {
                        let take = slice.len().min(step - n);
                        written.extend_from_slice(&slice[..take]);
                        n += take;
                        if n == step {
                            break;
                        }
                    }
                    n
                } else {
                    let chunk = frame.chunk();
                    let n = chunk.len().min(step);
                    written.extend_from_slice(&chunk[..n]);
                    n
                };
                prop_assert!(n > 0, "a frame with bytes left offers some");
                frame.advance(n);
                prop_assert_eq!(frame.remaining(), expected.len() - written.len());
            }
            prop_assert_eq!(written, expected);
        }
    }
}
