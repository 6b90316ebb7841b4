//! The protocol's vocabulary: keys, values, views, rounds and the bounds on each.
//!
//! Every size here is bounded because every byte of it may come from a hostile peer.

use beaufort_crypto::hash::{hash, Digest, Domain};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

pub use beaufort_crypto::membership::MemberIndex;

/// A consensus instance number for one key. View `v` decides the value that follows the value
/// certified in view `v - 1`; view 0 decides a key's first value.
pub type View = u64;

/// A voting round inside one view. Round 0 holds the proposals; later rounds exist only after a
/// split vote in the round before.
pub type Round = u32;

/// Longest key in bytes. Keys are names, not data.
pub const MAX_KEY_LEN: usize = 256;

/// Largest value in bytes. Registers hold small records (tickets, asset states, contract sources).
pub const MAX_VALUE_LEN: usize = 64 * 1024;

/// Highest round number. Rounds are not a budget: a Byzantine member who keeps splitting the votes
/// while the network keeps an honest member away can push a view through any number of rounds,
/// and the view must still be able to end once the network heals (docs/PROTOCOL.md §6.4). What
/// bounds memory is [`RETAINED_ROUNDS`]; this limit only keeps `round + 1` from overflowing, and
/// reaching it takes four billion rounds, each needing honest votes.
pub const MAX_ROUND: Round = Round::MAX - 1;

/// Most distinct rounds a register's state holds at once: round 0 (the proposals), the highest
/// round with a PRE-COMMIT quorum (what locks and the next vote follow), and the top two rounds
/// (the open round and the split that opened it). A member additionally keeps its own latest
/// PRE-COMMIT and COMMIT rounds, so it never votes twice in a round it forgot, and the round
/// below its latest PRE-COMMIT, so its own state keeps justifying that vote.
pub const RETAINED_ROUNDS: usize = 7;

/// A register's name. Shared, not copied: a replica files every key in several maps (its
/// registers, and what each link owes or was sent), so a clone is a reference count.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Key(Arc<[u8]>);

impl Serialize for Key {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.as_ref().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Key, D::Error> {
        Vec::<u8>::deserialize(deserializer).map(|bytes| Key(bytes.into()))
    }
}

/// Keys are ordered by their bytes, as a byte string is. Every per-key map of a replica is keyed
/// by them and consulted many times per message, so the first eight bytes are compared as one
/// word: most keys are that short or differ within them, and a call to `memcmp` per comparison
/// was the largest single cost of a simulated member.
impl Ord for Key {
    fn cmp(&self, other: &Key) -> Ordering {
        let (a, b) = (self.0.as_ref(), other.0.as_ref());
        match leading_word(a).cmp(&leading_word(b)) {
            Ordering::Equal if a.len() <= 8 && b.len() <= 8 => a.len().cmp(&b.len()),
            Ordering::Equal => a.cmp(b),
            unequal => unequal,
        }
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Key) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The first eight bytes as a big-endian word, zero-padded: words order as their bytes do, and
/// when they tie the shorter key is a prefix of the longer one, as byte order ranks first.
fn leading_word(bytes: &[u8]) -> u64 {
    match bytes.first_chunk::<8>() {
        Some(word) => u64::from_be_bytes(*word),
        None => bytes
            .iter()
            .zip((0..8).rev())
            .fold(0, |word, (&byte, place)| {
                word | u64::from(byte) << (8 * place)
            }),
    }
}

impl Key {
    /// Checks the length bound; the only way to build a key from outside bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Key, BoundError> {
        let bytes = bytes.into();
        if bytes.is_empty() || bytes.len() > MAX_KEY_LEN {
            return Err(BoundError::KeyLength(bytes.len()));
        }
        Ok(Key(bytes.into()))
    }

    /// The raw bytes, for hashing, signing and storage.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Re-checks the bound on a key that arrived through deserialization.
    pub fn validate(&self) -> Result<(), BoundError> {
        if self.0.is_empty() || self.0.len() > MAX_KEY_LEN {
            return Err(BoundError::KeyLength(self.0.len()));
        }
        Ok(())
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match std::str::from_utf8(&self.0) {
            Ok(s) => write!(f, "{s:?}"),
            Err(_) => write!(f, "0x{}", hex_prefix(&self.0)),
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

fn hex_prefix(bytes: &[u8]) -> String {
    bytes.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// What a register holds. A delete is a tombstone that goes through consensus like any write, so a
/// deleted key cannot be resurrected by replaying an older certified value.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Value {
    /// Application bytes.
    Data(Vec<u8>),
    /// The key was deleted.
    Tombstone,
}

impl Value {
    /// Builds a data value, checking the size bound.
    pub fn data(bytes: impl Into<Vec<u8>>) -> Result<Value, BoundError> {
        let value = Value::Data(bytes.into());
        value.validate()?;
        Ok(value)
    }

    /// Re-checks the bound on a value that arrived through deserialization.
    pub fn validate(&self) -> Result<(), BoundError> {
        match self {
            Value::Data(bytes) if bytes.len() > MAX_VALUE_LEN => {
                Err(BoundError::ValueLength(bytes.len()))
            }
            _ => Ok(()),
        }
    }

    /// The hash votes refer to. Data and tombstone hash under different tags, so no data value
    /// can collide with a delete.
    pub fn hash(&self) -> ValueHash {
        match self {
            Value::Data(bytes) => ValueHash(hash(Domain::Value, &[b"data", bytes])),
            Value::Tombstone => ValueHash(hash(Domain::Value, &[b"tombstone"])),
        }
    }

    /// The bytes, or `None` for a tombstone.
    pub fn as_data(&self) -> Option<&[u8]> {
        match self {
            Value::Data(bytes) => Some(bytes),
            Value::Tombstone => None,
        }
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Data(bytes) => match std::str::from_utf8(bytes) {
                Ok(s) if s.len() <= 40 => write!(f, "{s:?}"),
                _ => write!(f, "<{} bytes {:?}>", bytes.len(), self.hash()),
            },
            Value::Tombstone => write!(f, "<tombstone>"),
        }
    }
}

/// The BLAKE3 hash of a [`Value`]; votes sign this, not the value itself, so a vote is small.
/// Ordered, because ties in a split vote go to the highest hash.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ValueHash(pub Digest);

impl fmt::Debug for ValueHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// A size or range bound was exceeded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BoundError {
    /// Keys are 1 to [`MAX_KEY_LEN`] bytes.
    #[error("key length {0} outside 1..={MAX_KEY_LEN}")]
    KeyLength(usize),
    /// Values are at most [`MAX_VALUE_LEN`] bytes.
    #[error("value length {0} exceeds {MAX_VALUE_LEN}")]
    ValueLength(usize),
}

#[cfg(test)]
mod tests {
    use super::Key;

    /// Every key of one to ten bytes over an alphabet with the extremes and zero (the padding
    /// byte), around the eight-byte word: sorted as keys, they come out as their bytes sort.
    #[test]
    fn keys_order_as_their_bytes() {
        let alphabet = [0x00u8, 0x01, 0xff];
        let mut all: Vec<Vec<u8>> = Vec::new();
        let mut layer: Vec<Vec<u8>> = vec![Vec::new()];
        for _ in 0..10 {
            layer = layer
                .iter()
                .flat_map(|prefix| {
                    alphabet.iter().map(move |&b| {
                        let mut next = prefix.clone();
                        next.push(b);
                        next
                    })
                })
                .collect();
            all.extend(layer.iter().cloned());
        }
        let mut keys: Vec<Key> = all
            .iter()
            .filter_map(|b| Key::new(b.clone()).ok())
            .collect();
        assert_eq!(keys.len(), all.len());
        all.sort();
        keys.sort();
        let sorted: Vec<&[u8]> = keys.iter().map(Key::as_bytes).collect();
        assert_eq!(sorted, all.iter().map(Vec::as_slice).collect::<Vec<_>>());
        for pair in keys.windows(2) {
            assert!(pair[0] < pair[1], "{:?} before {:?}", pair[0], pair[1]);
        }
    }
}
