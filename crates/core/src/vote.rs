//! Votes and exactly what their signatures cover.

use crate::types::{Key, MemberIndex, Round, ValueHash, View};
use beaufort_crypto::bls::Signature;
use beaufort_crypto::hash::{hash, Digest, Domain};
use serde::{Deserialize, Serialize};

/// The two kinds of vote in a view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum VoteKind {
    /// Support for a value in a round (Algorithm 1's PRE-COMMIT).
    PreCommit,
    /// "I saw a quorum of PRE-COMMITs for this value in this round" (Algorithm 1's COMMIT);
    /// a quorum of these is the certificate.
    Commit,
}

impl VoteKind {
    fn tag(self) -> u8 {
        match self {
            VoteKind::PreCommit => 1,
            VoteKind::Commit => 2,
        }
    }
}

/// Everything a vote commits to except the signer. Two votes by one member with the same
/// `(view, round, kind)` and different values are an equivocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct VoteSubject {
    /// The consensus instance.
    pub view: View,
    /// The round inside the view.
    pub round: Round,
    /// PRE-COMMIT or COMMIT.
    pub kind: VoteKind,
    /// The value supported.
    pub value: ValueHash,
}

/// Identifies the network a message belongs to; part of every signed message so votes never
/// replay between consortia.
pub type NetworkId = Digest;

/// The 32-byte message a vote signs: network id, key, view, round, kind and value hash, all
/// length-prefixed under the vote-message domain. Nothing less, or a vote could be replayed into
/// another key, view, round, phase or network.
pub fn vote_message(network: &NetworkId, key: &Key, subject: &VoteSubject) -> Digest {
    hash(
        Domain::VoteMessage,
        &[
            network.as_bytes(),
            key.as_bytes(),
            &subject.view.to_le_bytes(),
            &subject.round.to_le_bytes(),
            &[subject.kind.tag()],
            subject.value.0.as_bytes(),
        ],
    )
}

/// One signed vote as it travels and is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SignedVote {
    /// Who signed.
    pub member: MemberIndex,
    /// What was signed.
    pub subject: VoteSubject,
    /// The member's BLS signature share over [`vote_message`].
    pub signature: Signature,
}

/// Proof that a member signed two different values for one view, round and kind. Anyone can check
/// it with the member's public key, so honest members act on it without trusting who sent it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Equivocation {
    /// The key whose register the votes belong to (part of the signed messages).
    pub key: Key,
    /// The first vote (lower value hash).
    pub first: SignedVote,
    /// The second vote (higher value hash).
    pub second: SignedVote,
}

impl Equivocation {
    /// Orders the two votes canonically so equal evidence compares equal.
    pub fn new(key: Key, a: SignedVote, b: SignedVote) -> Equivocation {
        let (first, second) = if a.subject.value <= b.subject.value {
            (a, b)
        } else {
            (b, a)
        };
        Equivocation { key, first, second }
    }

    /// The member the evidence is against.
    pub fn member(&self) -> MemberIndex {
        self.first.member
    }

    /// Structural check (signatures are checked separately): same member, same view, round and
    /// kind, different values.
    pub fn is_well_formed(&self) -> bool {
        let (a, b) = (&self.first.subject, &self.second.subject);
        self.first.member == self.second.member
            && a.view == b.view
            && a.round == b.round
            && a.kind == b.kind
            && a.value < b.value
            && self.key.validate().is_ok()
    }
}
