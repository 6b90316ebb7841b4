//! The sync protocol's messages and their versioned, size-limited binary encoding (postcard).

use crate::merkle::{NodePath, NodeSummary, MAX_LEAF_ENTRIES, MAX_PATHS_PER_REQUEST};
use crate::register::{KeyUpdate, UpdateCertificate};
use crate::state::{max_values, max_votes};
use crate::types::{Key, ValueHash};
use crate::vote::Equivocation;
use beaufort_crypto::hash::Digest;
use serde::{Deserialize, Serialize};

/// The encoding version this build speaks. Bumped on any incompatible change (2: votes grouped
/// by kind, round and value; 3: groups may name their value by a short prefix of its hash; 4:
/// relay-tree adverts; 5: pieces (partial aggregates) and certificates with signer
/// multiplicities).
pub const WIRE_VERSION: u16 = 5;

/// The oldest encoding version this build still reads (and can be told to write, see
/// [`encode_as`]). A consortium upgrades member by member when the new build's range covers the
/// old build's version: every member first runs the new build while writing the old version,
/// then, once all read the new one, switches to writing it. Versions 4 and 5 share no layout of
/// their updates, so this build reads only 5.
pub const MIN_WIRE_VERSION: u16 = 5;

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
    /// Relay trees: the sender's hop counts and the origins it wants from the receiver at once
    /// ([`crate::relay`]).
    Routes {
        /// The sender's hop count to every member (n bytes; 255: no route known).
        hops: Vec<u8>,
        /// A bit per member, set for the origins whose votes the sender wants from the receiver
        /// at once (⌈n / 8⌉ bytes).
        wants: Vec<u8>,
    },
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    version: u16,
    message: SyncMessage,
}

/// [`Envelope`] for encoding, borrowing the message (the same bytes, without a copy of it).
#[derive(Serialize)]
struct EnvelopeRef<'a> {
    version: u16,
    message: &'a SyncMessage,
}

/// Where a message's encoded bytes go, by part: what a study of bytes per transaction needs
/// to know to tell which part to shrink.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct WireParts {
    /// Values (bodies) in updates.
    pub bodies: u64,
    /// Single votes in updates.
    pub votes: u64,
    /// Pieces (signer sets with one aggregate) in updates.
    pub pieces: u64,
    /// Certificates of accepted values in updates.
    pub certificates: u64,
    /// Keys, views, flags and framing of updates, and the envelope.
    pub framing: u64,
    /// Anti-entropy: Merkle roots, queries and answers, and requests for whole states.
    pub repair: u64,
    /// Relay-tree adverts.
    pub routes: u64,
    /// Equivocation proofs.
    pub evidence: u64,
}

impl WireParts {
    /// Adds another message's parts.
    pub fn add(&mut self, other: &WireParts) {
        self.bodies += other.bodies;
        self.votes += other.votes;
        self.pieces += other.pieces;
        self.certificates += other.certificates;
        self.framing += other.framing;
        self.repair += other.repair;
        self.routes += other.routes;
        self.evidence += other.evidence;
    }

    /// All bytes.
    pub fn total(&self) -> u64 {
        self.bodies
            + self.votes
            + self.pieces
            + self.certificates
            + self.framing
            + self.repair
            + self.routes
            + self.evidence
    }
}

/// The parts of `message` as [`encode`] would put it on the wire (`encoded` bytes in all).
pub fn parts(message: &SyncMessage, encoded: u64) -> WireParts {
    let mut parts = WireParts::default();
    match message {
        SyncMessage::Updates { updates, .. } => {
            for update in updates {
                parts.bodies += size(&update.values);
                parts.votes += size(&update.votes);
                parts.pieces += size(&update.pieces);
                parts.certificates += size(&update.accepted);
            }
        }
        SyncMessage::NeedState { .. }
        | SyncMessage::MerkleRoot { .. }
        | SyncMessage::MerkleQuery { .. }
        | SyncMessage::MerkleNodes { .. } => parts.repair = encoded,
        SyncMessage::Routes { .. } => parts.routes = encoded,
        SyncMessage::Evidence { .. } => parts.evidence = encoded,
    }
    parts.framing = encoded.saturating_sub(parts.total());
    parts
}

/// The encoded length of one part of a message.
fn size(part: &impl Serialize) -> u64 {
    postcard::to_stdvec(part).map_or(0, |bytes| bytes.len() as u64)
}

/// Why bytes from a peer could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Larger than [`MAX_MESSAGE_BYTES`].
    #[error("message of {0} bytes exceeds the limit of {MAX_MESSAGE_BYTES}")]
    TooLarge(usize),
    /// Not a message this build understands.
    #[error(
        "unsupported wire version {0} (this build reads {MIN_WIRE_VERSION} to {WIRE_VERSION})"
    )]
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
    encode_as(message, WIRE_VERSION)
}

/// Encodes a message in an encoding version this build reads
/// ([`MIN_WIRE_VERSION`]`..=`[`WIRE_VERSION`]), for neighbours that do not read the newest yet.
pub fn encode_as(message: &SyncMessage, version: u16) -> Result<Vec<u8>, WireError> {
    if !(MIN_WIRE_VERSION..=WIRE_VERSION).contains(&version) {
        return Err(WireError::Version(version));
    }
    let bytes = postcard::to_stdvec(&EnvelopeRef { version, message })
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
    if !(MIN_WIRE_VERSION..=WIRE_VERSION).contains(&version) {
        return Err(WireError::Version(version));
    }
    let envelope: Envelope =
        postcard::from_bytes(bytes).map_err(|e| WireError::Decode(e.to_string()))?;
    validate(&envelope.message, members)?;
    Ok(envelope.message)
}

/// Checks every count and length in a message against its bound.
pub fn validate(message: &SyncMessage, members: usize) -> Result<(), WireError> {
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
                if update.values.len() > max_values(members) {
                    return Err(WireError::Bounds("too many values"));
                }
                if update.votes.len() > max_votes(members) {
                    return Err(WireError::Bounds("too many votes"));
                }
                // A register keeps a piece only while it covers a slot, so a whole state never
                // holds more pieces than slots.
                if update.pieces.len() > max_votes(members) {
                    return Err(WireError::Bounds("too many pieces"));
                }
                for piece in &update.pieces {
                    let weights = &piece.aggregate.weights;
                    if weights.validate(members).is_err() || weights.is_empty() {
                        return Err(WireError::Bounds("piece signers"));
                    }
                }
                for value in &update.values {
                    value.validate().map_err(|_| WireError::Bounds("value"))?;
                }
                if let Some(cert) = &update.accepted {
                    if let UpdateCertificate::Whole(cert) = cert {
                        cert.value
                            .validate()
                            .map_err(|_| WireError::Bounds("value"))?;
                    }
                    cert.qc()
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
        SyncMessage::Routes { hops, wants } => {
            if hops.len() != members || wants.len() != members.div_ceil(8) {
                return Err(WireError::Bounds("route advert of the wrong length"));
            }
        }
    }
    Ok(())
}

/// How many leading bytes of a value hash name the value in a vote group of a
/// [`KeyUpdate::short_refs`] update.
pub const SHORT_REF_BYTES: usize = 8;

/// Key updates as they travel. Single votes are grouped by (kind, round, value), so the value and
/// the slot header go once per group instead of once per vote; equivocation proofs travel as they
/// are. A group names its value by the whole 32-byte hash, or, in a [`KeyUpdate::short_refs`]
/// update, by its first [`SHORT_REF_BYTES`] bytes (the receiver resolves them against the values
/// the link has carried: docs/PROTOCOL.md §11.4). In memory a [`KeyUpdate`] keeps its flat list
/// of slots; only the encoding differs.
mod update_encoding {
    use super::SHORT_REF_BYTES;
    use crate::register::{KeyUpdate, UpdateCertificate, WireBallot};
    use crate::state::{Ballot, Piece};
    use crate::types::{Key, MemberIndex, Round, Value, ValueHash, View};
    use crate::vote::VoteKind;
    use beaufort_crypto::aggregate::Aggregate;
    use beaufort_crypto::bls::Signature;
    use beaufort_crypto::hash::Digest;
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeMap;

    /// How a group names its value.
    #[derive(Serialize, Deserialize)]
    enum ValueRef {
        /// The whole hash.
        Hash(ValueHash),
        /// Its first bytes, for the receiver to resolve.
        Short([u8; SHORT_REF_BYTES]),
    }

    /// One group on the wire.
    #[derive(Serialize, Deserialize)]
    enum Group {
        /// Single votes of several members for one value in one round.
        Votes {
            kind: VoteKind,
            round: Round,
            value: ValueRef,
            shares: Vec<(MemberIndex, Signature)>,
        },
        /// Any other slot (an equivocation proof).
        Slot(WireBallot),
        /// A partial aggregate of one value in one round.
        Piece {
            kind: VoteKind,
            round: Round,
            value: ValueRef,
            aggregate: Aggregate,
        },
    }

    fn value_ref(value: ValueHash, short: bool) -> ValueRef {
        if short {
            ValueRef::Short(super::short_ref(value))
        } else {
            ValueRef::Hash(value)
        }
    }

    /// A value name as a hash, and whether it was short (the rest of the hash then zero until the
    /// replica resolves it).
    fn resolve(value: ValueRef) -> (ValueHash, bool) {
        match value {
            ValueRef::Hash(hash) => (hash, false),
            ValueRef::Short(prefix) => {
                let mut bytes = [0u8; 32];
                bytes[..SHORT_REF_BYTES].copy_from_slice(&prefix);
                (ValueHash(Digest(bytes)), true)
            }
        }
    }

    /// The fields in their wire order (postcard encodes a tuple like a struct).
    type Fields = (
        Key,
        View,
        Option<UpdateCertificate>,
        Vec<Value>,
        Vec<Group>,
        bool,
    );

    fn groups(votes: &[WireBallot], pieces: &[Piece], short: bool) -> Vec<Group> {
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
                // Never in an update: the signatures are in its pieces.
                Ballot::Covered { .. } | Ballot::Conflicted { .. } => {}
            }
        }
        groups
            .into_iter()
            .map(|((kind, round, value), shares)| Group::Votes {
                kind,
                round,
                value: value_ref(value, short),
                shares,
            })
            .chain(others)
            .chain(pieces.iter().map(|piece| Group::Piece {
                kind: piece.kind,
                round: piece.round,
                value: value_ref(piece.value, short),
                aggregate: piece.aggregate.clone(),
            }))
            .collect()
    }

    impl Serialize for KeyUpdate {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            (
                &self.key,
                self.view,
                &self.accepted,
                &self.values,
                groups(&self.votes, &self.pieces, self.short_refs),
                self.complete,
            )
                .serialize(serializer)
        }
    }

    /// Decodes the groups back into slots. A short name becomes a hash whose remaining bytes are
    /// zero until the replica resolves it. An update names either all its groups in full or all
    /// of them short. The message size bound caps the group count; the update's vote bound is
    /// checked after decoding ([`super::validate`]).
    impl<'de> Deserialize<'de> for KeyUpdate {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<KeyUpdate, D::Error> {
            let (key, view, accepted, values, groups, complete) =
                Fields::deserialize(deserializer)?;
            let mut votes = Vec::new();
            let mut pieces = Vec::new();
            let mut short_refs = None;
            for group in groups {
                match group {
                    Group::Votes {
                        kind,
                        round,
                        value,
                        shares,
                    } => {
                        let (value, short) = resolve(value);
                        if *short_refs.get_or_insert(short) != short {
                            return Err(D::Error::custom("short and whole value names mixed"));
                        }
                        votes.extend(shares.into_iter().map(|(member, signature)| WireBallot {
                            kind,
                            round,
                            member,
                            ballot: Ballot::Vote { value, signature },
                        }));
                    }
                    Group::Slot(wire) => {
                        if wire.ballot.travels_in_pieces() {
                            return Err(D::Error::custom("a slot that travels as pieces"));
                        }
                        votes.push(wire)
                    }
                    Group::Piece {
                        kind,
                        round,
                        value,
                        aggregate,
                    } => {
                        let (value, short) = resolve(value);
                        if *short_refs.get_or_insert(short) != short {
                            return Err(D::Error::custom("short and whole value names mixed"));
                        }
                        pieces.push(Piece {
                            kind,
                            round,
                            value,
                            aggregate,
                        });
                    }
                }
            }
            Ok(KeyUpdate {
                key,
                view,
                accepted,
                values,
                votes,
                pieces,
                complete,
                short_refs: short_refs.unwrap_or(false),
            })
        }
    }
    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn an_update_mixing_short_and_whole_names_does_not_decode() {
            let hash = ValueHash(Digest([7; 32]));
            let group = |value| Group::Votes {
                kind: VoteKind::PreCommit,
                round: 0,
                value,
                shares: vec![(1, Signature::from_bytes(&[1; 48]).unwrap())],
            };
            let encoded = |groups: Vec<Group>| {
                let fields = (
                    Key::new("k").unwrap(),
                    0u64,
                    None::<UpdateCertificate>,
                    Vec::<Value>::new(),
                    groups,
                    false,
                );
                postcard::to_stdvec(&fields).unwrap()
            };
            let short = || group(ValueRef::Short(super::super::short_ref(hash)));
            let mixed = encoded(vec![short(), group(ValueRef::Hash(hash))]);
            assert!(postcard::from_bytes::<KeyUpdate>(&mixed).is_err());
            let update: KeyUpdate = postcard::from_bytes(&encoded(vec![short(), short()])).unwrap();
            assert!(update.short_refs);
            assert_eq!(update.votes.len(), 2);
        }
    }
}

/// The short name of a value: the first [`SHORT_REF_BYTES`] bytes of its hash.
pub fn short_ref(value: ValueHash) -> [u8; SHORT_REF_BYTES] {
    let mut prefix = [0u8; SHORT_REF_BYTES];
    prefix.copy_from_slice(&value.0 .0[..SHORT_REF_BYTES]);
    prefix
}
