//! The bounded FIFO of messages waiting for one member's link.
//!
//! A link has at most one request in flight; whatever the runtime sends meanwhile waits here and
//! leaves as one batch when the link is free. The queue is bounded in bytes and in messages so that
//! a slow or stalled peer costs bounded memory and bounded delay.

use crate::frame::{acceptable, Batch, BatchBuilder};
use std::collections::VecDeque;

/// Most message bytes waiting per member. At the demo's 20 Mbit/s class of link this is a few
/// seconds of backlog: beyond it the messages are stale and anti-entropy is the better repair.
pub const MAX_QUEUED_BYTES: usize = 8 * 1024 * 1024;

/// Most messages waiting per member (bounds the per-message overhead of many tiny messages).
pub const MAX_QUEUED_MESSAGES: usize = 65_536;

/// A bounded FIFO of encoded messages for one member.
#[derive(Debug)]
pub struct OutQueue {
    messages: VecDeque<Vec<u8>>,
    bytes: usize,
    max_bytes: usize,
    max_messages: usize,
}

impl OutQueue {
    /// An empty queue with the given bounds.
    pub fn new(max_bytes: usize, max_messages: usize) -> OutQueue {
        OutQueue {
            messages: VecDeque::new(),
            bytes: 0,
            max_bytes,
            max_messages,
        }
    }

    /// Appends a message; returns how many messages were dropped to keep the bounds.
    ///
    /// On overflow the *oldest* messages go. The core tolerates loss (what is lost is repaired by
    /// Merkle anti-entropy), so dropping is always safe; the question is only which loss hurts
    /// least. Newer messages carry newer state (a later delta or vote for a key supersedes an
    /// earlier one), and dropping the oldest keeps the wait of what remains bounded by the queue's
    /// size, whereas dropping the newest would let a congested link deliver only ever-staler data.
    /// A message that can never travel (empty or larger than the core's limit) is dropped itself.
    pub fn push(&mut self, message: Vec<u8>) -> u64 {
        if !acceptable(message.len()) || message.len() > self.max_bytes || self.max_messages == 0 {
            return 1;
        }
        let mut dropped = 0;
        while self.messages.len() >= self.max_messages
            || self.bytes + message.len() > self.max_bytes
        {
            let Some(old) = self.messages.pop_front() else {
                break;
            };
            self.bytes -= old.len();
            dropped += 1;
        }
        self.bytes += message.len();
        self.messages.push_back(message);
        dropped
    }

    /// Takes the longest prefix of the queue that fits one batch (`None` if the queue is empty).
    pub fn take_batch(&mut self) -> Option<Batch> {
        let mut builder = BatchBuilder::new();
        while let Some(front) = self.messages.front() {
            if !builder.fits(front.len()) {
                break;
            }
            let Some(message) = self.messages.pop_front() else {
                break;
            };
            self.bytes -= message.len();
            builder.push(&message);
        }
        builder.finish()
    }

    /// Empties the queue; returns how many messages were dropped.
    pub fn clear(&mut self) -> u64 {
        let dropped = self.messages.len() as u64;
        self.messages.clear();
        self.bytes = 0;
        dropped
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// How many messages wait.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// How many message bytes wait.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::MAX_BATCH_BYTES;
    use beaufort_core::wire::MAX_MESSAGE_BYTES;

    fn numbered(i: u32, len: usize) -> Vec<u8> {
        let mut m = i.to_be_bytes().to_vec();
        m.resize(len.max(4), 0xAB);
        m
    }

    fn number(m: &[u8]) -> u32 {
        u32::from_be_bytes(m[..4].try_into().unwrap())
    }

    fn drain(q: &mut OutQueue) -> Vec<u32> {
        let mut out = Vec::new();
        while let Some(batch) = q.take_batch() {
            out.extend(batch.messages().map(number));
        }
        out
    }

    #[test]
    fn overflow_by_bytes_drops_the_oldest() {
        let mut q = OutQueue::new(100, 1000);
        let mut dropped = 0;
        for i in 0..10 {
            dropped += q.push(numbered(i, 30));
        }
        // Three 30-byte messages fit in 100 bytes; the first seven were pushed out.
        assert_eq!(dropped, 7);
        assert_eq!(q.len(), 3);
        assert_eq!(q.bytes(), 90);
        assert_eq!(drain(&mut q), vec![7, 8, 9]);
        assert!(q.is_empty());
        assert_eq!(q.bytes(), 0);
    }

    #[test]
    fn overflow_by_count_drops_the_oldest() {
        let mut q = OutQueue::new(1 << 20, 4);
        let dropped: u64 = (0..6).map(|i| q.push(numbered(i, 8))).sum();
        assert_eq!(dropped, 2);
        assert_eq!(drain(&mut q), vec![2, 3, 4, 5]);
    }

    #[test]
    fn a_large_message_evicts_as_many_as_needed() {
        let mut q = OutQueue::new(100, 1000);
        for i in 0..5 {
            assert_eq!(q.push(numbered(i, 20)), 0);
        }
        assert_eq!(q.push(numbered(5, 70)), 4);
        assert_eq!(drain(&mut q), vec![4, 5]);
    }

    #[test]
    fn unsendable_messages_are_dropped_themselves() {
        let mut q = OutQueue::new(100, 1000);
        assert_eq!(q.push(numbered(0, 10)), 0);
        assert_eq!(q.push(Vec::new()), 1);
        assert_eq!(q.push(numbered(1, 101)), 1);
        assert_eq!(drain(&mut q), vec![0]);
    }

    #[test]
    fn batches_are_bounded_and_keep_order() {
        let mut q = OutQueue::new(64 << 20, MAX_QUEUED_MESSAGES);
        let sizes = [1_000_000, MAX_MESSAGE_BYTES, 10, 3_000_000, 2_000_000, 5];
        for (i, &len) in sizes.iter().enumerate() {
            assert_eq!(q.push(numbered(u32::try_from(i).unwrap(), len)), 0);
        }
        let mut seen = Vec::new();
        let mut batches = 0;
        while let Some(batch) = q.take_batch() {
            assert!(batch.body().len() <= MAX_BATCH_BYTES);
            batches += 1;
            seen.extend(batch.messages().map(number));
        }
        // [1 MB] [4 MiB] [10 B, 3 MB] [2 MB, 5 B]
        assert_eq!(batches, 4);
        assert_eq!(seen, vec![0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn clear_counts_what_it_drops() {
        let mut q = OutQueue::new(1000, 1000);
        for i in 0..3 {
            q.push(numbered(i, 10));
        }
        assert_eq!(q.clear(), 3);
        assert!(q.is_empty());
        assert!(q.take_batch().is_none());
    }
}
