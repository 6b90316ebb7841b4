//! The sync protocol's messages and their versioned, size-limited binary encoding (postcard).

use crate::merkle::{NodePath, NodeSummary, MAX_LEAF_ENTRIES, MAX_PATHS_PER_REQUEST};
use crate::register::KeyUpdate;
use crate::state::max_values_per_view;
use crate::types::{Key, MAX_ROUNDS};
use crate::vote::Equivocation;
use beaufort_crypto::hash::Digest;
use serde::{Deserialize, Serialize};

/// The encoding version this build speaks. Bumped on any incompatible change (2: votes grouped
/// by kind, round and value).
pub const WIRE_VERSION: u16 = 2;

/// Largest encoded message. A full state of a busy key with 100 members and a few rounds is tens
/// of kilobytes; values are at most 64 KiB each.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// Most key updates or key names in one message; senders split larger batches.
pub const MAX_KEYS_PER_MESSAGE: usize = 256;

/// Most equivocation proofs in one message.
pub const MAX_PROOFS_PER_MESSAGE: usize = 64;

/// Messages two neighbours exchange.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncMessage {
    /// Eager push: what changed in some keys since we last told this peer (or whole states).
    Updates {
        /// The sender checked every signature in this message itself; an invalid one is then
        /// the sender's fault.
        verified: bool,
        /// One entry per key.
        updates: Vec<KeyUpdate>,
    },
    /// "Send me your whole state for these keys" (a delta could not be justified, or Merkle
    /// repair found them different).
    NeedState {
        /// The keys.
        keys: Vec<Key>,
    },
    /// Proofs that members equivocated.
    Evidence {
        /// The proofs.
        proofs: Vec<Equivocation>,
    },
    /// Anti-entropy opener: the sender's Merkle root.
    MerkleRoot {
        /// The root over all the sender's keys.
        root: Digest,
    },
    /// Anti-entropy: "describe these nodes of your tree".
    MerkleQuery {
        /// The asker's session number, echoed in the answer, so answers to an abandoned session
        /// are recognised and ignored.
        session: u32,
        /// The nodes asked about.
        paths: Vec<NodePath>,
    },
    /// Anti-entropy: the answers.
    MerkleNodes {
        /// The session number of the query answered.
        session: u32,
        /// One summary per path asked.
        nodes: Vec<(NodePath, NodeSummary)>,
    },
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    version: u16,
    message: SyncMessage,
}

/// Why bytes from a peer could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Larger than [`MAX_MESSAGE_BYTES`].
    #[error("message of {0} bytes exceeds the limit of {MAX_MESSAGE_BYTES}")]
    TooLarge(usize),
    /// Not a message this build understands.
    #[error("unsupported wire version {0} (this build speaks {WIRE_VERSION})")]
    Version(u16),
    /// The bytes do not decode.
    #[error("undecodable message: {0}")]
    Decode(String),
    /// A field is out of its bounds.
    #[error("message out of bounds: {0}")]
    Bounds(&'static str),
}

/// Encodes a message with its version header.
pub fn encode(message: &SyncMessage) -> Result<Vec<u8>, WireError> {
    let bytes = postcard::to_stdvec(&Envelope {
        version: WIRE_VERSION,
        message: message.clone(),
    })
    .map_err(|e| WireError::Decode(e.to_string()))?;
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(WireError::TooLarge(bytes.len()));
    }
    Ok(bytes)
}

/// Decodes and bounds-checks a message from a peer. `members` is n, to bound vote counts.
pub fn decode(bytes: &[u8], members: usize) -> Result<SyncMessage, WireError> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(WireError::TooLarge(bytes.len()));
    }
    // The version comes first, so an incompatible peer gets a version error, not a decode error.
    let (version, _) =
        postcard::take_from_bytes::<u16>(bytes).map_err(|e| WireError::Decode(e.to_string()))?;
    if version != WIRE_VERSION {
        return Err(WireError::Version(version));
    }
    let envelope: Envelope =
        postcard::from_bytes(bytes).map_err(|e| WireError::Decode(e.to_string()))?;
    validate(&envelope.message, members)?;
    Ok(envelope.message)
}

/// Checks every count and length in a message against its bound.
pub fn validate(message: &SyncMessage, members: usize) -> Result<(), WireError> {
    let max_votes = 2 * members * (MAX_ROUNDS as usize + 1);
    match message {
        SyncMessage::Updates { updates, .. } => {
            if updates.len() > MAX_KEYS_PER_MESSAGE {
                return Err(WireError::Bounds("too many key updates"));
            }
            for update in updates {
                update
                    .key
                    .validate()
                    .map_err(|_| WireError::Bounds("key"))?;
                if update.values.len() > max_values_per_view(members) {
                    return Err(WireError::Bounds("too many values"));
                }
                if update.votes.len() > max_votes {
                    return Err(WireError::Bounds("too many votes"));
                }
                for value in &update.values {
                    value.validate().map_err(|_| WireError::Bounds("value"))?;
                }
                if let Some(cert) = &update.accepted {
                    cert.value
                        .validate()
                        .map_err(|_| WireError::Bounds("value"))?;
                    cert.qc
                        .signers
                        .validate(members)
                        .map_err(|_| WireError::Bounds("certificate signers"))?;
                }
            }
        }
        SyncMessage::NeedState { keys } => {
            if keys.len() > MAX_KEYS_PER_MESSAGE {
                return Err(WireError::Bounds("too many keys"));
            }
            for key in keys {
                key.validate().map_err(|_| WireError::Bounds("key"))?;
            }
        }
        SyncMessage::Evidence { proofs } => {
            if proofs.len() > MAX_PROOFS_PER_MESSAGE {
                return Err(WireError::Bounds("too many proofs"));
            }
        }
        SyncMessage::MerkleRoot { .. } => {}
        SyncMessage::MerkleQuery { paths, .. } => {
            if paths.len() > MAX_PATHS_PER_REQUEST {
                return Err(WireError::Bounds("too many paths"));
            }
        }
        SyncMessage::MerkleNodes { nodes, .. } => {
            if nodes.len() > MAX_PATHS_PER_REQUEST {
                return Err(WireError::Bounds("too many nodes"));
            }
            for (_, summary) in nodes {
                if let NodeSummary::Leaf { entries } = summary {
                    if entries.len() > MAX_LEAF_ENTRIES {
                        return Err(WireError::Bounds("too many leaf entries"));
                    }
                }
            }
        }
    }
    Ok(())
}

/// The votes of a key update as they travel: single votes grouped by (kind, round, value), so the
/// 32-byte value hash and the slot header go once per group instead of once per vote (about 40 %
/// fewer vote bytes). Equivocation proofs travel as they are. In memory a [`KeyUpdate`] keeps its
/// flat list of slots; only the encoding differs.
pub(crate) mod vote_groups {
    use crate::register::WireBallot;
    use crate::state::Ballot;
    use crate::types::{MemberIndex, Round, ValueHash};
    use crate::vote::VoteKind;
    use beaufort_crypto::bls::Signature;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeMap;

    /// One group on the wire.
    #[derive(Serialize, Deserialize)]
    enum Group {
        /// Single votes of several members for one value in one round.
        Votes {
            kind: VoteKind,
            round: Round,
            value: ValueHash,
            shares: Vec<(MemberIndex, Signature)>,
        },
        /// Any other slot (an equivocation proof).
        Slot(WireBallot),
    }

    /// Encodes the slots as groups.
    pub fn serialize<S: Serializer>(
        votes: &[WireBallot],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        type GroupKey = (VoteKind, Round, ValueHash);
        let mut groups: BTreeMap<GroupKey, Vec<(MemberIndex, Signature)>> = BTreeMap::new();
        let mut others = Vec::new();
        for wire in votes {
            match wire.ballot {
                Ballot::Vote { value, signature } => groups
                    .entry((wire.kind, wire.round, value))
                    .or_default()
                    .push((wire.member, signature)),
                Ballot::Equivocated { .. } => others.push(Group::Slot(*wire)),
            }
        }
        let all: Vec<Group> = groups
            .into_iter()
            .map(|((kind, round, value), shares)| Group::Votes {
                kind,
                round,
                value,
                shares,
            })
            .chain(others)
            .collect();
        all.serialize(serializer)
    }

    /// Decodes groups back into slots. The message size bound caps how many there can be; the
    /// update's vote bound is checked after decoding ([`super::validate`]).
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<WireBallot>, D::Error> {
        let groups: Vec<Group> = Vec::deserialize(deserializer)?;
        let mut votes = Vec::new();
        for group in groups {
            match group {
                Group::Votes {
                    kind,
                    round,
                    value,
                    shares,
                } => votes.extend(shares.into_iter().map(|(member, signature)| WireBallot {
                    kind,
                    round,
                    member,
                    ballot: Ballot::Vote { value, signature },
                })),
                Group::Slot(wire) => votes.push(wire),
            }
        }
        Ok(votes)
    }
}
