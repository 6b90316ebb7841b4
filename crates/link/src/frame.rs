//! The body of a `/beaufort/sync/2` request: a batch of encoded sync messages.
//!
//! A request carries every message queued for one member since its previous request was
//! acknowledged, in the order they were queued, so a link delivers in FIFO order with a single
//! substream in flight. The request is one length-prefixed frame (see the codec in `lib.rs`):
//!
//! ```text
//! frame   = len:u32be body                 len ≤ MAX_BATCH_BYTES
//! body    = count:u32be message{count}     count ≥ 1
//! message = len:u32be bytes                1 ≤ len ≤ MAX_MESSAGE_BYTES
//! ```
//!
//! Nothing may follow the last message. Decoding is strict and allocation-free beyond the body
//! itself (whose size the frame limit already bounds): anything else is a protocol violation, which
//! only a faulty peer commits.

use beaufort_core::wire::MAX_MESSAGE_BYTES;

/// Bytes of every length or count prefix.
const PREFIX_BYTES: usize = 4;

/// Largest batch body: one message of the core's maximum size with its prefix and the count, so
/// that any message the core can produce fits a batch of its own.
pub const MAX_BATCH_BYTES: usize = MAX_MESSAGE_BYTES + 2 * PREFIX_BYTES;

/// Why received bytes are not a well-formed batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The frame announces a body larger than [`MAX_BATCH_BYTES`].
    #[error("batch of {len} bytes exceeds the limit of {MAX_BATCH_BYTES}")]
    Oversized {
        /// The announced size.
        len: usize,
    },
    /// The body ends inside a prefix or a message.
    #[error("batch ends inside a length prefix or a message")]
    Truncated,
    /// The count is zero (an honest sender never sends an empty batch).
    #[error("batch holds no message")]
    Empty,
    /// A message of zero bytes (no sync message encodes to nothing).
    #[error("batch holds an empty message")]
    EmptyMessage,
    /// A message larger than the core's limit.
    #[error("message of {len} bytes exceeds the limit of {MAX_MESSAGE_BYTES}")]
    MessageTooLarge {
        /// The announced size.
        len: usize,
    },
    /// Bytes after the last counted message.
    #[error("{0} bytes follow the last message of the batch")]
    TrailingBytes(usize),
}

/// A well-formed batch: built by [`BatchBuilder`] or validated by [`Batch::decode`], so iterating
/// it never meets a malformed prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    body: Vec<u8>,
    count: usize,
}

impl Batch {
    /// Validates a received body.
    pub fn decode(body: Vec<u8>) -> Result<Batch, FrameError> {
        if body.len() > MAX_BATCH_BYTES {
            return Err(FrameError::Oversized { len: body.len() });
        }
        let (count, mut rest) = split_prefix(&body)?;
        if count == 0 {
            return Err(FrameError::Empty);
        }
        // Every message takes at least five bytes, so this loop ends within body.len() / 5
        // rounds whatever the announced count.
        for _ in 0..count {
            let (len, after) = split_prefix(rest)?;
            if len == 0 {
                return Err(FrameError::EmptyMessage);
            }
            if len > MAX_MESSAGE_BYTES {
                return Err(FrameError::MessageTooLarge { len });
            }
            rest = after.get(len..).ok_or(FrameError::Truncated)?;
        }
        if !rest.is_empty() {
            return Err(FrameError::TrailingBytes(rest.len()));
        }
        Ok(Batch { body, count })
    }

    /// How many messages it holds (at least one: an empty batch is malformed, so there is no
    /// `is_empty`).
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.count
    }

    /// The encoded body (without the frame's length prefix).
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Bytes it takes on the wire, the frame's length prefix included.
    pub fn wire_bytes(&self) -> usize {
        PREFIX_BYTES + self.body.len()
    }

    /// The messages, in order.
    pub fn messages(&self) -> Messages<'_> {
        let rest = self.body.get(PREFIX_BYTES..).unwrap_or_default();
        Messages {
            rest,
            left: self.count,
        }
    }
}

/// Iterator over a [`Batch`]'s messages.
pub struct Messages<'a> {
    rest: &'a [u8],
    left: usize,
}

impl<'a> Iterator for Messages<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // The batch is well-formed, so these never fail; if they did, iteration just stops.
        let (len, after) = split_prefix(self.rest).ok()?;
        let message = after.get(..len)?;
        self.rest = after.get(len..)?;
        Some(message)
    }
}

/// Builds a batch from messages while they fit in [`MAX_BATCH_BYTES`].
pub(crate) struct BatchBuilder {
    body: Vec<u8>,
    count: usize,
}

impl BatchBuilder {
    /// An empty batch.
    pub fn new() -> BatchBuilder {
        BatchBuilder {
            body: vec![0; PREFIX_BYTES],
            count: 0,
        }
    }

    /// Whether a message of `len` bytes can be appended. A message that is empty or larger than
    /// [`MAX_MESSAGE_BYTES`] never can; any other fits an empty batch.
    pub fn fits(&self, len: usize) -> bool {
        acceptable(len) && self.body.len() + PREFIX_BYTES + len <= MAX_BATCH_BYTES
    }

    /// Appends a message if it [fits](Self::fits); false (and nothing appended) otherwise.
    pub fn push(&mut self, message: &[u8]) -> bool {
        let Ok(len) = u32::try_from(message.len()) else {
            return false;
        };
        if !self.fits(message.len()) {
            return false;
        }
        self.body.extend_from_slice(&len.to_be_bytes());
        self.body.extend_from_slice(message);
        self.count += 1;
        true
    }

    /// The batch, or `None` if nothing was appended.
    pub fn finish(mut self) -> Option<Batch> {
        let count = u32::try_from(self.count).ok().filter(|&c| c > 0)?;
        self.body
            .get_mut(..PREFIX_BYTES)?
            .copy_from_slice(&count.to_be_bytes());
        Some(Batch {
            body: self.body,
            count: self.count,
        })
    }
}

/// Whether a message of `len` bytes may travel in a batch at all.
pub(crate) fn acceptable(len: usize) -> bool {
    (1..=MAX_MESSAGE_BYTES).contains(&len)
}

/// Splits a big-endian u32 prefix off `bytes`.
fn split_prefix(bytes: &[u8]) -> Result<(usize, &[u8]), FrameError> {
    let (prefix, rest) = bytes
        .split_first_chunk::<PREFIX_BYTES>()
        .ok_or(FrameError::Truncated)?;
    let value = usize::try_from(u32::from_be_bytes(*prefix)).unwrap_or(usize::MAX);
    Ok((value, rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn body(count: u32, messages: &[&[u8]]) -> Vec<u8> {
        let mut body = count.to_be_bytes().to_vec();
        for m in messages {
            body.extend_from_slice(&u32::try_from(m.len()).unwrap().to_be_bytes());
            body.extend_from_slice(m);
        }
        body
    }

    #[test]
    fn round_trip_keeps_order_and_content() {
        let messages: Vec<Vec<u8>> = (0..50u8).map(|i| vec![i; usize::from(i) + 1]).collect();
        let mut builder = BatchBuilder::new();
        for m in &messages {
            assert!(builder.push(m));
        }
        let batch = builder.finish().unwrap();
        assert_eq!(batch.len(), 50);
        let decoded = Batch::decode(batch.body().to_vec()).unwrap();
        assert_eq!(decoded, batch);
        let back: Vec<&[u8]> = decoded.messages().collect();
        assert_eq!(back, messages.iter().map(Vec::as_slice).collect::<Vec<_>>());
    }

    #[test]
    fn a_maximal_message_fits_alone_and_nothing_after_it() {
        let big = vec![7u8; MAX_MESSAGE_BYTES];
        let mut builder = BatchBuilder::new();
        assert!(builder.push(&big));
        assert!(!builder.push(&[1]));
        let batch = builder.finish().unwrap();
        assert_eq!(batch.body().len(), MAX_BATCH_BYTES);
        assert_eq!(Batch::decode(batch.body().to_vec()).unwrap().len(), 1);
    }

    #[test]
    fn builder_refuses_empty_and_oversized_messages() {
        let mut builder = BatchBuilder::new();
        assert!(!builder.push(&[]));
        assert!(!builder.push(&vec![0u8; MAX_MESSAGE_BYTES + 1]));
        assert!(builder.finish().is_none());
    }

    #[test]
    fn malformed_bodies_are_rejected() {
        let cases: Vec<(Vec<u8>, FrameError)> = vec![
            (vec![], FrameError::Truncated),
            (vec![0, 0, 1], FrameError::Truncated),
            (body(0, &[]), FrameError::Empty),
            (body(1, &[]), FrameError::Truncated),
            (body(2, &[b"ab"]), FrameError::Truncated),
            (body(1, &[b"ab", b"c"]), FrameError::TrailingBytes(5)),
            (body(1, &[b""]), FrameError::EmptyMessage),
            (
                {
                    let mut b = body(1, &[b"abc"]);
                    b.truncate(b.len() - 1);
                    b
                },
                FrameError::Truncated,
            ),
            (
                {
                    let mut b = 1u32.to_be_bytes().to_vec();
                    b.extend_from_slice(&u32::MAX.to_be_bytes());
                    b
                },
                FrameError::MessageTooLarge {
                    len: usize::try_from(u32::MAX).unwrap(),
                },
            ),
            (
                // A huge count over a short body must fail fast, not loop or allocate.
                body(u32::MAX, &[b"x"]),
                FrameError::Truncated,
            ),
            (
                vec![1u8; MAX_BATCH_BYTES + 1],
                FrameError::Oversized {
                    len: MAX_BATCH_BYTES + 1,
                },
            ),
        ];
        for (bytes, expected) in cases {
            assert_eq!(Batch::decode(bytes.clone()), Err(expected), "{bytes:?}");
        }
    }

    #[test]
    fn random_garbage_never_panics_and_valid_results_are_consistent() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..20_000 {
            let len = rng.gen_range(0..64);
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            // Bias towards plausible prefixes so that the deeper checks are reached.
            if bytes.len() >= 8 && rng.gen_bool(0.5) {
                bytes[..4].copy_from_slice(&rng.gen_range(0u32..4).to_be_bytes());
                bytes[4..8].copy_from_slice(&rng.gen_range(0u32..16).to_be_bytes());
            }
            if let Ok(batch) = Batch::decode(bytes.clone()) {
                let total: usize = batch.messages().map(|m| m.len() + PREFIX_BYTES).sum();
                assert_eq!(batch.messages().count(), batch.len());
                assert_eq!(total + PREFIX_BYTES, bytes.len());
            }
        }
    }
}
