//! Byzantine strategies, as rewriters of a member's outgoing messages.
//!
//! A Byzantine member runs an ordinary [`Replica`] to track the protocol (so it knows views,
//! values and votes) and then its [`Adversary`] rewrites, adds to or drops what that replica sends.
//! It holds only its own signing key: every signature it produces for itself is valid, and any
//! "signature" it puts in another member's name is random bytes, which honest members must catch.

use crate::keys::{Keyring, FORBIDDEN_PREFIX};
use beaufort_core::auth::{Verifier, VoteSigner};
use beaufort_core::register::{KeyUpdate, WireBallot};
use beaufort_core::replica::Replica;
use beaufort_core::state::Ballot;
use beaufort_core::types::{Key, MemberIndex, Round, Value, ValueHash, View};
use beaufort_core::vote::{
    vote_message, Equivocation, NetworkId, SignedVote, VoteKind, VoteSubject,
};
use beaufort_core::wire::SyncMessage;
use beaufort_crypto::bls::Signature;
use beaufort_crypto::hash::Digest;
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

mod liveness;
mod pieces;

/// What a Byzantine member does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Signs two different values for its own votes in one round and tells different neighbours
    /// different ones.
    Equivocate,
    /// Sends its own votes with corrupted signature bytes, and forged votes (and forged
    /// equivocation proofs) in other members' names.
    InvalidSignatures,
    /// Votes for values the validation hook rejects.
    HookViolation,
    /// Votes in rounds that do not exist yet, for values never proposed, and COMMITs without a
    /// quorum.
    UnjustifiedRounds,
    /// Never votes and never forwards: sends nothing at all.
    Withhold,
    /// Re-sends states captured earlier, from older views.
    ReplayStale,
    /// Floods every cap it can reach: junk round-0 PRE-COMMITs with their bodies (many values
    /// in its own slot), junk single votes with bodies in the top round, and bodies no vote names.
    FloodBodies,
    /// Keeps splitting rounds without being caught: its PRE-COMMITs (the same to everyone) go to
    /// a value other than the one it would honestly vote, and it never sends its COMMITs.
    DriveRounds,
    /// Spreads conflicting round-0 votes: each neighbour gets a round-0 vote for a different
    /// known value, to split the honest members from the start.
    SplitRoundZero,
    /// Holds back its own votes and reveals them once the round they belong to is over, when a
    /// late vote can flip a round-0 winner or reopen a split.
    WithholdReveal,
    /// Proposes on many junk keys and sends updates claiming views far ahead of the real ones.
    JunkKeys,
    /// Relays votes as pieces: genuine ones, poisoned ones (one bad share inside), ones that
    /// claim a signer without its share, overlapping and repeated ones, and ones that hide its
    /// own vote for another value among honest votes.
    Pieces,
}

impl Strategy {
    /// Every strategy, for the mixed adversary.
    pub const ALL: [Strategy; 12] = [
        Strategy::Equivocate,
        Strategy::InvalidSignatures,
        Strategy::HookViolation,
        Strategy::UnjustifiedRounds,
        Strategy::Withhold,
        Strategy::ReplayStale,
        Strategy::FloodBodies,
        Strategy::DriveRounds,
        Strategy::SplitRoundZero,
        Strategy::WithholdReveal,
        Strategy::JunkKeys,
        Strategy::Pieces,
    ];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Equivocate => "equivocate",
            Strategy::InvalidSignatures => "invalid-signatures",
            Strategy::HookViolation => "hook-violation",
            Strategy::UnjustifiedRounds => "unjustified-rounds",
            Strategy::Withhold => "withhold",
            Strategy::ReplayStale => "replay-stale",
            Strategy::FloodBodies => "flood-bodies",
            Strategy::DriveRounds => "drive-rounds",
            Strategy::SplitRoundZero => "split-round-zero",
            Strategy::WithholdReveal => "withhold-reveal",
            Strategy::JunkKeys => "junk-keys",
            Strategy::Pieces => "pieces",
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Strategy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Strategy::ALL
            .into_iter()
            .find(|strategy| strategy.name() == s)
            .ok_or_else(|| format!("unknown strategy {s:?}"))
    }
}

/// What the adversaries did, for the summary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AdversaryStats {
    /// Own votes re-signed for a different value than the honest one.
    pub equivocating_votes: u64,
    /// Own votes sent with corrupted signatures.
    pub corrupted_signatures: u64,
    /// Votes (and equivocation proofs) sent in other members' names with invalid signatures.
    pub forged_votes: u64,
    /// Votes for values the hook rejects.
    pub hook_violations: u64,
    /// Votes in rounds that do not exist, for unknown values, or COMMITs without a quorum.
    pub unjustified_votes: u64,
    /// Messages withheld.
    pub withheld_messages: u64,
    /// Old states re-sent.
    pub stale_replays: u64,
    /// Junk votes and bodies sent to fill caps.
    pub flooded: u64,
    /// Own votes rewritten to keep rounds split, or to split round 0.
    pub splitting_votes: u64,
    /// Own votes held back and revealed late.
    pub revealed_late: u64,
    /// Updates for junk keys or views far ahead.
    pub junk_updates: u64,
    /// Strategy switches in mixed mode.
    pub switches: u64,
    /// Pieces sent in place of single votes.
    pub pieces: u64,
    /// Of those, poisoned or claiming a signer without its share.
    pub bad_pieces: u64,
}

impl AdversaryStats {
    /// Adds another run's counters.
    pub fn add(&mut self, other: &AdversaryStats) {
        self.equivocating_votes += other.equivocating_votes;
        self.corrupted_signatures += other.corrupted_signatures;
        self.forged_votes += other.forged_votes;
        self.hook_violations += other.hook_violations;
        self.unjustified_votes += other.unjustified_votes;
        self.withheld_messages += other.withheld_messages;
        self.stale_replays += other.stale_replays;
        self.flooded += other.flooded;
        self.splitting_votes += other.splitting_votes;
        self.revealed_late += other.revealed_late;
        self.junk_updates += other.junk_updates;
        self.switches += other.switches;
        self.pieces += other.pieces;
        self.bad_pieces += other.bad_pieces;
    }
}

/// Most captured updates a [`Strategy::ReplayStale`] member keeps.
const MAX_CAPTURED: usize = 32;

/// One Byzantine member's behaviour.
pub struct Adversary {
    member: MemberIndex,
    strategy: Strategy,
    signer: Box<dyn VoteSigner>,
    /// Adds shares into pieces, as the consortium's crypto does.
    verifier: Arc<dyn Verifier>,
    network: NetworkId,
    members: usize,
    captured: VecDeque<KeyUpdate>,
    /// The second value signed for each own vote slot, so an equivocation is exactly two values.
    alternatives: BTreeMap<(Key, View, VoteKind, Round), ValueHash>,
    /// Own votes a [`Strategy::WithholdReveal`] member holds back (at most [`MAX_CAPTURED`]).
    held: VecDeque<KeyUpdate>,
    counter: u64,
    stats: AdversaryStats,
}

impl Adversary {
    /// A Byzantine `member` following `strategy`, signing with its own key only.
    pub fn new(member: MemberIndex, strategy: Strategy, keyring: &Keyring) -> Adversary {
        Adversary {
            member,
            strategy,
            signer: keyring.signer(member),
            verifier: keyring.verifier(),
            network: keyring.network(),
            members: keyring.members(),
            captured: VecDeque::new(),
            alternatives: BTreeMap::new(),
            held: VecDeque::new(),
            counter: 0,
            stats: AdversaryStats::default(),
        }
    }

    /// The current strategy.
    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    /// Switches strategy (mixed mode).
    pub fn switch(&mut self, strategy: Strategy) {
        if strategy != self.strategy {
            self.strategy = strategy;
            self.stats.switches += 1;
        }
    }

    /// What it did so far.
    pub fn stats(&self) -> AdversaryStats {
        self.stats
    }

    /// Rewrites one message its replica wants to send to `to`; `None` drops it.
    pub fn outgoing(
        &mut self,
        replica: &Replica,
        to: MemberIndex,
        message: SyncMessage,
        rng: &mut impl Rng,
    ) -> Option<SyncMessage> {
        if self.strategy == Strategy::Withhold {
            self.stats.withheld_messages += 1;
            return None;
        }
        let SyncMessage::Updates {
            mut verified,
            mut updates,
        } = message
        else {
            // A member hiding a strategy does not gossip proofs against itself, which its own
            // replica makes when its rewritten votes come back to it.
            let hiding = matches!(
                self.strategy,
                Strategy::DriveRounds | Strategy::WithholdReveal
            );
            if let (true, SyncMessage::Evidence { proofs }) = (hiding, &message) {
                let proofs: Vec<Equivocation> = proofs
                    .iter()
                    .filter(|p| p.member() != self.member)
                    .cloned()
                    .collect();
                if proofs.is_empty() {
                    return None;
                }
                return Some(SyncMessage::Evidence { proofs });
            }
            if self.strategy == Strategy::InvalidSignatures && rng.gen_bool(0.2) {
                if let Some(proof) = self.forged_proof(replica, rng) {
                    self.stats.forged_votes += 1;
                    return Some(SyncMessage::Evidence {
                        proofs: vec![proof],
                    });
                }
            }
            return Some(message);
        };
        match self.strategy {
            Strategy::Equivocate => {
                for update in &mut updates {
                    self.equivocate(replica, to, update);
                }
            }
            Strategy::InvalidSignatures => {
                verified = rng.gen_bool(0.25);
                for update in &mut updates {
                    self.corrupt(update, rng);
                }
            }
            Strategy::HookViolation => {
                if let Some(update) = updates.first_mut() {
                    self.forbidden_vote(update);
                }
            }
            Strategy::UnjustifiedRounds => {
                if let Some(update) = updates.first_mut() {
                    self.unjustified(replica, update, rng);
                }
            }
            Strategy::ReplayStale => self.replay_stale(replica, &mut updates, rng),
            Strategy::FloodBodies => {
                if let Some(update) = updates.first_mut() {
                    self.flood_bodies(replica, update);
                }
            }
            Strategy::DriveRounds => {
                for update in &mut updates {
                    self.drive_rounds(replica, update);
                }
            }
            Strategy::SplitRoundZero => {
                for update in &mut updates {
                    self.split_round_zero(replica, to, update);
                }
            }
            Strategy::WithholdReveal => self.withhold_reveal(replica, &mut updates),
            Strategy::JunkKeys => self.junk_keys(replica, &mut updates),
            Strategy::Pieces => {
                for update in &mut updates {
                    self.send_pieces(replica, update, rng);
                }
            }
            Strategy::Withhold => {}
        }
        Some(SyncMessage::Updates { verified, updates })
    }

    fn sign(
        &self,
        key: &Key,
        view: View,
        round: Round,
        kind: VoteKind,
        value: ValueHash,
    ) -> Ballot {
        let subject = VoteSubject {
            view,
            round,
            kind,
            value,
        };
        Ballot::Vote {
            value,
            signature: self
                .signer
                .sign(&vote_message(&self.network, key, &subject)),
        }
    }

    fn set_own(&self, update: &mut KeyUpdate, kind: VoteKind, round: Round, ballot: Ballot) {
        update
            .votes
            .retain(|w| !(w.member == self.member && w.kind == kind && w.round == round));
        update.votes.push(WireBallot {
            kind,
            round,
            member: self.member,
            ballot,
        });
    }

    /// Re-signs its own votes for another value when talking to "odd" neighbours. Each slot gets
    /// one alternative, chosen once: the member signs exactly two values per slot.
    fn equivocate(&mut self, replica: &Replica, to: MemberIndex, update: &mut KeyUpdate) {
        if (u64::from(to) + update.view) % 2 == 0 {
            return;
        }
        let known: Vec<ValueHash> = replica
            .state(&update.key)
            .filter(|s| s.view == update.view)
            .map(|s| s.values.keys().copied().collect())
            .unwrap_or_default();
        for (wire, value) in self.own_single_votes(update) {
            let slot = (update.key.clone(), update.view, wire.kind, wire.round);
            let alternative = match self.alternatives.get(&slot) {
                Some(v) if *v == value => continue,
                Some(v) => *v,
                None => {
                    let chosen = match known.iter().find(|v| **v != value) {
                        Some(v) => *v,
                        None if wire.kind == VoteKind::PreCommit && wire.round == 0 => {
                            self.invented(update.view).hash()
                        }
                        None => continue,
                    };
                    self.alternatives.insert(slot, chosen);
                    chosen
                }
            };
            if wire.kind == VoteKind::PreCommit && wire.round == 0 {
                let body = self.invented(update.view);
                if body.hash() == alternative && !update.values.contains(&body) {
                    update.values.push(body);
                }
            }
            let ballot = self.sign(&update.key, update.view, wire.round, wire.kind, alternative);
            self.set_own(update, wire.kind, wire.round, ballot);
            self.stats.equivocating_votes += 1;
        }
    }

    /// Its own single votes in `update`, with their values.
    fn own_single_votes(&self, update: &KeyUpdate) -> Vec<(WireBallot, ValueHash)> {
        update
            .votes
            .iter()
            .filter(|w| w.member == self.member)
            .filter_map(|w| w.ballot.vote_value().map(|value| (*w, value)))
            .collect()
    }

    /// The value it makes up to equivocate with when nobody else proposed one.
    fn invented(&self, view: View) -> Value {
        Value::Data(format!("byz-{}-{view}", self.member).into_bytes())
    }

    /// Corrupts its own signatures and adds votes forged in other members' names.
    fn corrupt(&mut self, update: &mut KeyUpdate, rng: &mut impl Rng) {
        for wire in &mut update.votes {
            if wire.member != self.member || !rng.gen_bool(0.5) {
                continue;
            }
            if let Ballot::Vote { value, signature } = wire.ballot {
                let mut bytes = *signature.as_bytes();
                bytes[rng.gen_range(0..bytes.len())] ^= 1 << rng.gen_range(0..8);
                if let Ok(signature) = Signature::from_bytes(&bytes) {
                    wire.ballot = Ballot::Vote { value, signature };
                    self.stats.corrupted_signatures += 1;
                }
            }
        }
        let values: Vec<ValueHash> = update.values.iter().map(Value::hash).collect();
        let voted: Vec<(VoteKind, Round, ValueHash)> = update
            .votes
            .iter()
            .filter_map(|w| w.ballot.vote_value().map(|v| (w.kind, w.round, v)))
            .collect();
        let pick = if !voted.is_empty() && rng.gen_bool(0.5) {
            Some(voted[rng.gen_range(0..voted.len())])
        } else if !values.is_empty() {
            Some((
                VoteKind::PreCommit,
                0,
                values[rng.gen_range(0..values.len())],
            ))
        } else {
            None
        };
        if let Some((kind, round, value)) = pick {
            let victim = self.other_member(rng);
            update
                .votes
                .retain(|w| !(w.member == victim && w.kind == kind && w.round == round));
            update.votes.push(WireBallot {
                kind,
                round,
                member: victim,
                ballot: Ballot::Vote {
                    value,
                    signature: random_signature(rng),
                },
            });
            self.stats.forged_votes += 1;
        }
    }

    fn other_member(&self, rng: &mut impl Rng) -> MemberIndex {
        let members = u16::try_from(self.members).unwrap_or(u16::MAX).max(2);
        let offset = rng.gen_range(1..members);
        (self.member + offset) % members
    }

    /// An equivocation "proof" against an honest member, with invalid signatures.
    fn forged_proof(&mut self, replica: &Replica, rng: &mut impl Rng) -> Option<Equivocation> {
        let (key, state) = replica.states().next()?;
        let victim = self.other_member(rng);
        let vote = |value: ValueHash, rng: &mut _| SignedVote {
            member: victim,
            subject: VoteSubject {
                view: state.view,
                round: 0,
                kind: VoteKind::PreCommit,
                value,
            },
            signature: random_signature(rng),
        };
        let a = vote(Value::Data(b"forged-a".to_vec()).hash(), rng);
        let b = vote(Value::Data(b"forged-b".to_vec()).hash(), rng);
        Some(Equivocation::new(key.clone(), a, b))
    }

    /// A valid own round-0 vote for a value the hook rejects, body included.
    fn forbidden_vote(&mut self, update: &mut KeyUpdate) {
        self.counter += 1;
        let mut bytes = FORBIDDEN_PREFIX.to_vec();
        bytes.extend_from_slice(format!("-{}-{}", self.member, self.counter).as_bytes());
        let body = Value::Data(bytes);
        let hash = body.hash();
        update.values.push(body);
        let ballot = self.sign(&update.key, update.view, 0, VoteKind::PreCommit, hash);
        self.set_own(update, VoteKind::PreCommit, 0, ballot);
        self.stats.hook_violations += 1;
    }

    /// A validly signed vote that the state cannot justify.
    fn unjustified(&mut self, replica: &Replica, update: &mut KeyUpdate, rng: &mut impl Rng) {
        let state = replica.state(&update.key).filter(|s| s.view == update.view);
        let values: Vec<ValueHash> = state
            .map(|s| s.values.keys().copied().collect())
            .unwrap_or_default();
        let top = state.and_then(|s| s.top_round()).unwrap_or(0);
        let (kind, round, value) = match (rng.gen_range(0..3), values.first()) {
            (0, Some(&value)) => (
                VoteKind::PreCommit,
                (top + 1 + rng.gen_range(0..3)).min(beaufort_core::types::MAX_ROUND),
                value,
            ),
            (1, Some(&value)) => (VoteKind::Commit, top + 1, value),
            _ => {
                let mut bytes = [0u8; 32];
                rng.fill(&mut bytes);
                (VoteKind::PreCommit, 0, ValueHash(Digest(bytes)))
            }
        };
        let ballot = self.sign(&update.key, update.view, round, kind, value);
        self.set_own(update, kind, round, ballot);
        if rng.gen_bool(0.3) {
            update.complete = true;
        }
        self.stats.unjustified_votes += 1;
    }

    /// Captures what it sends and mixes in older captured states.
    fn replay_stale(
        &mut self,
        replica: &Replica,
        updates: &mut Vec<KeyUpdate>,
        rng: &mut impl Rng,
    ) {
        for update in updates.iter() {
            if self.captured.len() >= MAX_CAPTURED {
                self.captured.pop_front();
            }
            self.captured.push_back(update.clone());
        }
        let stale: Vec<&KeyUpdate> = self
            .captured
            .iter()
            .filter(|u| replica.state(&u.key).is_some_and(|s| s.view > u.view))
            .collect();
        let chosen = if stale.is_empty() || rng.gen_bool(0.3) {
            self.captured
                .get(rng.gen_range(0..self.captured.len().max(1)))
        } else {
            Some(stale[rng.gen_range(0..stale.len())])
        };
        if let Some(old) = chosen {
            updates.push(old.clone());
            self.stats.stale_replays += 1;
        }
    }
}

fn random_signature(rng: &mut impl Rng) -> Signature {
    let mut bytes = [0u8; 48];
    rng.fill(&mut bytes[..]);
    match Signature::from_bytes(&bytes) {
        Ok(signature) => signature,
        Err(_) => unreachable!("48 bytes always form a storable signature"),
    }
}
