//! Fuzz target `replica_receive`: a consortium of four with real BLS keys, three honest replicas
//! running the real core (`Replica::propose`, `Replica::receive`, `Replica::flush`,
//! `Replica::start_anti_entropy`, crash-restart through `Replica::restore`) and one Byzantine
//! member, member 3, played by the fuzzer.
//!
//! The fuzzer holds member 3's secret key, so the votes it makes carry valid signatures: it can
//! vote for anything in any view, round and kind, equivocate, attach or withhold value bodies,
//! claim a state is complete or verified, replay or forge certificates, send equivocation proofs,
//! relay or bit-flip the messages honest members sent it, answer their Merkle queries with lies,
//! and send raw bytes through the wire decoder. It also schedules the honest network: which
//! member proposes what, which link delivers or loses its next message, who flushes, who runs
//! anti-entropy with whom, who crashes and restarts. Links between honest members are FIFO, as
//! the node's are; messages to member 3 land in its inbox. Time passes 50 ms per action and a
//! second per round of a settle; a member ticks its replica (`Replica::tick`) before each flush.
//!
//! The input is a bounded sequence of such actions (decoded with `arbitrary`): three keys, small
//! values, at most [`MAX_ACTIONS`] actions, bounded deliveries. After every action it asserts:
//!
//! * no panic anywhere in the core;
//! * agreement: no two honest replicas ever hold or report different certified values for one
//!   key and view, and every certificate they hold or report verifies under real BLS;
//! * an honest replica's state has a certificate exactly when its view is above 0, for the view
//!   before;
//! * no honest member signs two values in one (key, view, kind, round) slot, and no honest member
//!   is ever excluded as an equivocator, by its own replica or another;
//! * every message an honest replica sends encodes and passes the wire bounds its peers decode
//!   with (a node drops a peer whose bytes do not decode);
//! * no honest replica reports another honest one as faulty (docs/PROTOCOL.md: every rule is
//!   monotone, so an honest state is valid everywhere).
//!
//! `BEAUFORT_FUZZ_STATS=1` prints what each input reached (decisions, votes, faults against
//! member 3), to judge a corpus. Liveness is not asserted: the fuzzer owns the schedule.

#![no_main]

use arbitrary::Arbitrary;
use beaufort_core::auth::{BlsSigner, BlsVerifier, Verifier, VoteSigner};
use beaufort_core::hook::{HookError, ValidationHook};
use beaufort_core::merkle::{NodePath, NodeSummary};
use beaufort_core::register::{KeyUpdate, UpdateCertificate, WireBallot};
use beaufort_core::replica::{Replica, Step};
use beaufort_core::state::{Ballot, Certified};
use beaufort_core::types::{Key, MemberIndex, Round, Value, ValueHash, View};
use beaufort_core::vote::{
    vote_message, Equivocation, NetworkId, SignedVote, VoteKind, VoteSubject,
};
use beaufort_core::wire::{decode, encode, SyncMessage, SHORT_REF_BYTES};
use beaufort_crypto::bls::{SecretKey, Signature};
use beaufort_crypto::hash::{hash, Digest, Domain};
use beaufort_crypto::membership::{MemberKey, Membership, Signer};
use libfuzzer_sys::fuzz_target;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, OnceLock};

/// Members of the consortium.
const N: usize = 4;
/// The Byzantine member, whose key the fuzzer holds.
const BYZ: MemberIndex = 3;
/// The honest members.
const HONEST: [MemberIndex; 3] = [0, 1, 2];
/// The keys the consortium writes.
const KEYS: [&str; 3] = ["a", "b", "c"];
/// Most actions taken from one input.
const MAX_ACTIONS: usize = 48;
/// Most votes, dropped slots, flips or lies in one action.
const MAX_PARTS: usize = 6;
/// Messages kept in the Byzantine member's inbox (oldest dropped).
const INBOX: usize = 64;
/// Rounds of "every honest member flushes, every link delivers" in one settle.
const SETTLE_ROUNDS: usize = 12;
/// Values the hook refuses start with this.
const FORBIDDEN: &[u8] = b"bad";

/// The consortium's keys, made once per process.
struct World {
    network: NetworkId,
    verifier: Arc<BlsVerifier>,
    signers: Vec<Arc<BlsSigner>>,
    stats: bool,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let network = hash(Domain::NetworkId, &[b"beaufort-fuzz replica_receive"]);
        let secrets: Vec<SecretKey> = (0..N as u64)
            .map(|i| {
                let ikm = hash(Domain::Other, &[b"beaufort-fuzz key", &i.to_le_bytes()]);
                SecretKey::generate(&ikm.0)
            })
            .collect();
        let keys = secrets.iter().map(MemberKey::from_secret).collect();
        let membership = Membership::new(network, keys).expect("a valid membership");
        let signers = secrets
            .into_iter()
            .enumerate()
            .map(|(i, secret)| Arc::new(BlsSigner::new(Signer::new(i as MemberIndex, secret))))
            .collect();
        World {
            network,
            verifier: Arc::new(BlsVerifier::new(membership)),
            signers,
            stats: std::env::var_os("BEAUFORT_FUZZ_STATS").is_some_and(|v| v == "1"),
        }
    })
}

/// A member's signer shared across the replicas of one process (a replica wants its own box).
struct SharedSigner(Arc<BlsSigner>);

impl VoteSigner for SharedSigner {
    fn member(&self) -> MemberIndex {
        self.0.member()
    }

    fn sign(&self, message: &Digest) -> Signature {
        self.0.sign(message)
    }
}

/// Every value is allowed except data starting with [`FORBIDDEN`]. Deterministic, as the core
/// requires.
struct Hook;

impl ValidationHook for Hook {
    fn validate(&self, _key: &Key, _old: Option<&Certified>, new: &Value) -> Result<(), HookError> {
        match new.as_data() {
            Some(bytes) if bytes.starts_with(FORBIDDEN) => {
                Err(HookError::Rejected("forbidden prefix".to_owned()))
            }
            _ => Ok(()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The input.

#[derive(Arbitrary, Debug)]
enum ValueChoice {
    X,
    Y,
    Z,
    Tombstone,
    /// Refused by the hook.
    Forbidden,
    /// Up to eight bytes.
    Bytes(Vec<u8>),
}

impl ValueChoice {
    fn value(&self) -> Value {
        match self {
            ValueChoice::X => Value::Data(b"x".to_vec()),
            ValueChoice::Y => Value::Data(b"y".to_vec()),
            ValueChoice::Z => Value::Data(b"z".to_vec()),
            ValueChoice::Tombstone => Value::Tombstone,
            ValueChoice::Forbidden => Value::Data(b"bad!".to_vec()),
            ValueChoice::Bytes(bytes) => Value::Data(bytes.iter().copied().take(8).collect()),
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum RoundChoice {
    /// Rounds 0 to 3.
    Low(u8),
    /// Rounds 60 to 67 (around the round bound of the committed core).
    High(u8),
    /// Any round.
    Any(u32),
}

impl RoundChoice {
    fn round(self) -> Round {
        match self {
            RoundChoice::Low(r) => Round::from(r % 4),
            RoundChoice::High(r) => 60 + Round::from(r % 8),
            RoundChoice::Any(r) => r,
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum ViewChoice {
    /// The receiver's open view for the key.
    Current,
    /// The view after it.
    Next,
    /// The view before it.
    Previous,
    /// A small view number.
    Raw(u8),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum CertChoice {
    None,
    /// The certificate honest member `i` holds for the key, with its value's body.
    Whole(u8),
    /// The same, naming its value by hash.
    Named(u8),
    /// A certificate aggregated from member 3's own COMMIT only (not a quorum).
    Own,
}

#[derive(Arbitrary, Debug)]
struct ByzVote {
    commit: bool,
    round: RoundChoice,
    value: ValueChoice,
    /// Sign a second value too and send the slot as an equivocation proof.
    equivocate: Option<ValueChoice>,
    /// Put the vote in this member's slot (with member 3's signature, so it is invalid).
    impersonate: Option<u8>,
    /// Flip these bits of the signature.
    corrupt: Option<u8>,
    /// Attach the value's body.
    body: bool,
}

#[derive(Arbitrary, Debug)]
enum Lie {
    Empty,
    Inner([u8; 4]),
    Leaf { keys: u8, seed: u8 },
    Drop,
}

#[derive(Arbitrary, Debug)]
enum Action {
    /// An honest member proposes a value.
    Propose {
        member: u8,
        key: u8,
        value: ValueChoice,
    },
    /// An honest member pushes its changes.
    Flush { member: u8 },
    /// An honest link delivers its next messages.
    Deliver { link: u8, count: u8 },
    /// An honest link loses its next message.
    Lose { link: u8 },
    /// Every honest member flushes and every honest link delivers, until quiet (bounded).
    Settle,
    /// An honest member opens anti-entropy with a neighbour (member 3 included).
    AntiEntropy { member: u8, peer: u8 },
    /// An honest member crashes and restarts from what it persisted.
    Restart { member: u8 },
    /// Member 3 sends an update made of its own (signed) votes.
    Update {
        to: u8,
        key: u8,
        view: ViewChoice,
        cert: CertChoice,
        votes: Vec<ByzVote>,
        complete: bool,
        verified: bool,
        short_refs: bool,
    },
    /// Member 3 sends an honest member's whole state for a key, edited.
    Whole {
        source: u8,
        to: u8,
        key: u8,
        drop: Vec<u8>,
        extra: Vec<ByzVote>,
        complete: bool,
        verified: bool,
    },
    /// Member 3 sends a proof of its own equivocation (or a forged one against someone else).
    Evidence {
        to: u8,
        key: u8,
        view: ViewChoice,
        round: RoundChoice,
        commit: bool,
        a: ValueChoice,
        b: ValueChoice,
        against: Option<u8>,
    },
    /// Member 3 sends proposal bodies without votes for them.
    Bodies {
        to: u8,
        key: u8,
        count: u8,
        seed: u8,
    },
    /// Member 3 asks for whole states.
    NeedState { to: u8, keys: u8 },
    /// Member 3 forwards a message from its inbox.
    Relay { pick: u8, to: u8 },
    /// Member 3 forwards a message from its inbox with bits flipped.
    Mutate {
        pick: u8,
        to: u8,
        flips: Vec<(u16, u8)>,
    },
    /// Member 3 sends bytes through the decoder.
    Raw { to: u8, bytes: Vec<u8> },
    /// Member 3 opens anti-entropy with a root.
    MerkleRoot { to: u8, root: Option<u8> },
    /// Member 3 answers the last Merkle query it got from `to`, honestly (with the answers of
    /// honest member `via`) or with lies.
    MerkleAnswer { to: u8, via: u8, lies: Vec<Lie> },
}

// ---------------------------------------------------------------------------------------------
// The harness.

fn key(index: u8) -> Key {
    Key::new(KEYS[usize::from(index) % KEYS.len()]).expect("a valid key")
}

fn honest(index: u8) -> MemberIndex {
    HONEST[usize::from(index) % HONEST.len()]
}

fn new_replica(member: MemberIndex) -> Replica {
    let world = world();
    let mut replica = Replica::new(
        Box::new(SharedSigner(world.signers[usize::from(member)].clone())),
        world.verifier.clone(),
        Arc::new(Hook),
    );
    for peer in 0..N as MemberIndex {
        replica.add_peer(peer);
    }
    replica
}

struct Harness {
    replicas: Vec<Replica>,
    /// FIFO links between honest members.
    links: BTreeMap<(MemberIndex, MemberIndex), VecDeque<SyncMessage>>,
    /// What honest members sent member 3.
    inbox: VecDeque<(MemberIndex, SyncMessage)>,
    /// Every certified value seen, by key and view.
    decided: BTreeMap<(Key, View), Certified>,
    /// Every vote an honest member cast: (member, key, view, kind, round) → value.
    own_votes: BTreeMap<(MemberIndex, Key, View, VoteKind, Round), ValueHash>,
    /// Faults honest members reported against member 3.
    faults: usize,
    /// The honest members' clock in milliseconds (`Replica::tick`): each action takes 50 ms, each
    /// round of a settle a second.
    now: u64,
}

impl Harness {
    fn new() -> Harness {
        let mut links = BTreeMap::new();
        for a in HONEST {
            for b in HONEST {
                if a != b {
                    links.insert((a, b), VecDeque::new());
                }
            }
        }
        Harness {
            replicas: HONEST.iter().map(|&m| new_replica(m)).collect(),
            links,
            inbox: VecDeque::new(),
            decided: BTreeMap::new(),
            own_votes: BTreeMap::new(),
            faults: 0,
            now: 0,
        }
    }

    fn link(index: u8) -> (MemberIndex, MemberIndex) {
        let i = usize::from(index) % 6;
        let from = HONEST[i / 2];
        let others: Vec<MemberIndex> = HONEST.iter().copied().filter(|&m| m != from).collect();
        (from, others[i % 2])
    }

    /// Takes the effects of a step of honest member `member`: checks them, routes its messages.
    fn apply(&mut self, member: MemberIndex, step: Step) {
        for decision in &step.decisions {
            self.record_certificate(&decision.key, &decision.certified);
        }
        for proof in &step.evidence {
            assert_eq!(
                proof.member(),
                BYZ,
                "evidence against honest member {}",
                proof.member()
            );
        }
        for fault in &step.faults {
            assert_eq!(
                fault.peer, BYZ,
                "member {member} blames honest member: {fault:?}"
            );
            self.faults += 1;
        }
        for (to, message) in step.into_outgoing() {
            // Every message goes through the real encoding and its bounds.
            let bytes = match encode(&message) {
                Ok(bytes) => bytes,
                Err(e) => panic!("member {member} sent a message that does not encode: {e}"),
            };
            let message = match decode(&bytes, N) {
                Ok(message) => message,
                Err(e) => panic!("member {member} sent a message its peers cannot decode: {e}"),
            };
            if to == BYZ {
                if self.inbox.len() >= INBOX {
                    self.inbox.pop_front();
                }
                self.inbox.push_back((member, message));
            } else if let Some(link) = self.links.get_mut(&(member, to)) {
                link.push_back(message);
            }
        }
        self.check_replica(member);
    }

    fn record_certificate(&mut self, key: &Key, cert: &Certified) {
        match self.decided.get(&(key.clone(), cert.view)) {
            Some(known) => assert_eq!(
                known.value, cert.value,
                "agreement violated for key {key} in view {}",
                cert.view
            ),
            None => {
                let world = world();
                let message = vote_message(&world.network, key, &cert.subject());
                assert!(
                    world.verifier.verify_certificate(&cert.qc, &message),
                    "an honest member holds an invalid certificate for {key} view {}",
                    cert.view
                );
                self.decided.insert((key.clone(), cert.view), cert.clone());
            }
        }
    }

    fn check_replica(&mut self, member: MemberIndex) {
        let replica = &self.replicas[usize::from(member)];
        for excluded in replica.excluded().keys() {
            assert_eq!(
                *excluded, BYZ,
                "member {member} excluded honest member {excluded}"
            );
        }
        let mut certs = Vec::new();
        for (key, state) in replica.states() {
            assert_eq!(
                state.accepted.is_some(),
                state.view > 0,
                "member {member}: key {key} in view {} with certificate {:?}",
                state.view,
                state.accepted.as_ref().map(|c| c.view)
            );
            if let Some(cert) = &state.accepted {
                assert_eq!(
                    cert.view + 1,
                    state.view,
                    "member {member}: certificate view"
                );
                certs.push((key.clone(), cert.clone()));
            }
            for kind in [VoteKind::PreCommit, VoteKind::Commit] {
                for (round, ballots) in state.ballots(kind) {
                    let Some(ballot) = ballots.get(&member) else {
                        continue;
                    };
                    let Ballot::Vote { value, .. } = ballot else {
                        panic!("member {member} holds proof that it equivocated: {key} {kind:?} {round}");
                    };
                    let slot = (member, key.clone(), state.view, kind, *round);
                    let previous = *self.own_votes.entry(slot).or_insert(*value);
                    assert_eq!(
                        previous, *value,
                        "member {member} voted twice in {key} view {} {kind:?} round {round}",
                        state.view
                    );
                }
            }
        }
        for (key, cert) in certs {
            self.record_certificate(&key, &cert);
        }
    }

    fn receive(&mut self, to: MemberIndex, from: MemberIndex, message: SyncMessage) {
        let step = self.replicas[usize::from(to)].receive(from, message);
        self.apply(to, step);
    }

    /// A member's runtime ticks its replica, then pushes its changes.
    fn flush(&mut self, member: MemberIndex) {
        let step = self.replicas[usize::from(member)].tick(self.now);
        self.apply(member, step);
        let step = self.replicas[usize::from(member)].flush();
        self.apply(member, step);
    }

    fn deliver(&mut self, link: (MemberIndex, MemberIndex), count: usize) {
        for _ in 0..count {
            let Some(message) = self.links.get_mut(&link).and_then(VecDeque::pop_front) else {
                return;
            };
            self.receive(link.1, link.0, message);
        }
    }

    fn settle(&mut self) {
        for _ in 0..SETTLE_ROUNDS {
            self.now += 1000;
            for member in HONEST {
                self.flush(member);
            }
            if self.links.values().all(VecDeque::is_empty) {
                return;
            }
            let links: Vec<_> = self.links.keys().copied().collect();
            for link in links {
                let pending = self.links[&link].len();
                self.deliver(link, pending);
            }
        }
    }

    fn restart(&mut self, member: MemberIndex) {
        let old = &self.replicas[usize::from(member)];
        let states: Vec<_> = old.states().map(|(k, s)| (k.clone(), s.clone())).collect();
        let evidence: Vec<_> = old.excluded().values().cloned().collect();
        let world = world();
        let mut replica = Replica::restore(
            Box::new(SharedSigner(world.signers[usize::from(member)].clone())),
            world.verifier.clone(),
            Arc::new(Hook),
            states,
            evidence,
        );
        for peer in 0..N as MemberIndex {
            replica.add_peer(peer);
        }
        self.replicas[usize::from(member)] = replica;
        self.check_replica(member);
    }

    fn view_of(&self, member: MemberIndex, key: &Key) -> View {
        self.replicas[usize::from(member)]
            .state(key)
            .map_or(0, |state| state.view)
    }

    fn view(&self, member: MemberIndex, key: &Key, choice: ViewChoice) -> View {
        let current = self.view_of(member, key);
        match choice {
            ViewChoice::Current => current,
            ViewChoice::Next => current + 1,
            ViewChoice::Previous => current.saturating_sub(1),
            ViewChoice::Raw(v) => View::from(v % 8),
        }
    }

    fn certificate(&self, key: &Key, view: View, choice: CertChoice) -> Option<UpdateCertificate> {
        let held = |i: u8| {
            self.replicas[usize::from(honest(i))]
                .state(key)
                .and_then(|state| state.accepted.clone())
        };
        match choice {
            CertChoice::None => None,
            CertChoice::Whole(i) => held(i).map(UpdateCertificate::Whole),
            CertChoice::Named(i) => held(i).map(|cert| UpdateCertificate::Named {
                view: cert.view,
                round: cert.round,
                value: cert.value.hash(),
                qc: cert.qc,
            }),
            CertChoice::Own => {
                let value = Value::Data(b"x".to_vec());
                let cert_view = view.checked_sub(1)?;
                let subject = VoteSubject {
                    view: cert_view,
                    round: 0,
                    kind: VoteKind::Commit,
                    value: value.hash(),
                };
                let signature = sign(key, &subject);
                let qc = world()
                    .verifier
                    .certify(&Digest::ZERO, &[(BYZ, signature)], &[])?;
                Some(UpdateCertificate::Whole(Certified {
                    view: cert_view,
                    round: 0,
                    value,
                    qc,
                }))
            }
        }
    }
}

/// Member 3's signature on a vote.
fn sign(key: &Key, subject: &VoteSubject) -> Signature {
    let world = world();
    world.signers[usize::from(BYZ)].sign(&vote_message(&world.network, key, subject))
}

/// Member 3's vote slots and bodies for `votes` in `view` of `key`.
fn byzantine_votes(
    key: &Key,
    view: View,
    votes: &[ByzVote],
    short_refs: bool,
) -> (Vec<WireBallot>, Vec<Value>) {
    let mut slots = Vec::new();
    let mut bodies = Vec::new();
    for vote in votes.iter().take(MAX_PARTS) {
        let kind = if vote.commit {
            VoteKind::Commit
        } else {
            VoteKind::PreCommit
        };
        let round = vote.round.round();
        let value = vote.value.value();
        let subject = |value: ValueHash| VoteSubject {
            view,
            round,
            kind,
            value,
        };
        let mut signature = sign(key, &subject(value.hash()));
        if let Some(bits) = vote.corrupt {
            let mut bytes = *signature.as_bytes();
            bytes[usize::from(bits) % bytes.len()] ^= bits | 1;
            signature = Signature::from_bytes(&bytes).expect("48 bytes");
        }
        let member = vote
            .impersonate
            .map_or(BYZ, |m| MemberIndex::from(m) % N as MemberIndex);
        let ballot = match &vote.equivocate {
            Some(other) => {
                let other = other.value();
                let other_sig = sign(key, &subject(other.hash()));
                let mut pair = [(value.hash(), signature), (other.hash(), other_sig)];
                pair.sort_by_key(|(hash, _)| *hash);
                if vote.body {
                    bodies.push(other);
                }
                Ballot::Equivocated {
                    first: pair[0],
                    second: pair[1],
                }
            }
            None => {
                let mut hash = value.hash();
                if short_refs {
                    // What the wire carries for a short name: the prefix, then zeros.
                    let mut bytes = [0u8; 32];
                    bytes[..SHORT_REF_BYTES].copy_from_slice(&hash.0 .0[..SHORT_REF_BYTES]);
                    hash = ValueHash(Digest(bytes));
                }
                Ballot::Vote {
                    value: hash,
                    signature,
                }
            }
        };
        if vote.body {
            bodies.push(value);
        }
        slots.push(WireBallot {
            kind,
            round,
            member,
            ballot,
        });
    }
    (slots, bodies)
}

fn merkle_lie(lie: &Lie) -> Option<NodeSummary> {
    let digest = |seed: u8| hash(Domain::Other, &[b"merkle lie", &[seed]]);
    Some(match lie {
        Lie::Empty => NodeSummary::Empty,
        Lie::Inner(seeds) => NodeSummary::Inner {
            children: Box::new(std::array::from_fn(|i| {
                let seed = seeds[i % seeds.len()];
                if seed == 0 {
                    Digest::ZERO
                } else {
                    digest(seed.wrapping_add(i as u8))
                }
            })),
        },
        Lie::Leaf { keys, seed } => NodeSummary::Leaf {
            entries: (0..KEYS.len())
                .filter(|i| keys & (1 << i) != 0)
                .map(|i| (KEYS[i].as_bytes().to_vec(), digest(*seed)))
                .collect(),
        },
        Lie::Drop => return None,
    })
}

impl Harness {
    fn act(&mut self, action: Action) {
        self.now += 50;
        match action {
            Action::Propose {
                member,
                key: k,
                value,
            } => {
                let member = honest(member);
                let result = self.replicas[usize::from(member)].propose(key(k), value.value());
                // The hook refusing a value is a normal outcome.
                if let Ok((step, _)) = result {
                    self.apply(member, step);
                }
            }
            Action::Flush { member } => self.flush(honest(member)),
            Action::Deliver { link, count } => {
                self.deliver(Harness::link(link), usize::from(count % 8) + 1)
            }
            Action::Lose { link } => {
                if let Some(queue) = self.links.get_mut(&Harness::link(link)) {
                    queue.pop_front();
                }
            }
            Action::Settle => self.settle(),
            Action::AntiEntropy { member, peer } => {
                let member = honest(member);
                let peer = MemberIndex::from(peer) % N as MemberIndex;
                let step = self.replicas[usize::from(member)].start_anti_entropy(peer);
                self.apply(member, step);
            }
            Action::Restart { member } => self.restart(honest(member)),
            Action::Update {
                to,
                key: k,
                view,
                cert,
                votes,
                complete,
                verified,
                short_refs,
            } => {
                let to = honest(to);
                let key = key(k);
                let view = self.view(to, &key, view);
                let accepted = self.certificate(&key, view, cert);
                let (votes, values) = byzantine_votes(&key, view, &votes, short_refs);
                let update = KeyUpdate {
                    key,
                    view,
                    accepted,
                    values,
                    votes,
                    pieces: Vec::new(),
                    complete,
                    short_refs,
                };
                self.send(
                    to,
                    SyncMessage::Updates {
                        verified,
                        updates: vec![update],
                    },
                );
            }
            Action::Whole {
                source,
                to,
                key: k,
                drop,
                extra,
                complete,
                verified,
            } => {
                let to = honest(to);
                let key = key(k);
                let Some(state) = self.replicas[usize::from(honest(source))].state(&key) else {
                    return;
                };
                let mut update = KeyUpdate::whole(&key, state);
                for index in drop.iter().take(MAX_PARTS) {
                    if !update.votes.is_empty() {
                        let i = usize::from(*index) % update.votes.len();
                        update.votes.remove(i);
                    }
                }
                let (votes, values) = byzantine_votes(&key, update.view, &extra, false);
                update.votes.extend(votes);
                update.values.extend(values);
                update.complete = complete;
                self.send(
                    to,
                    SyncMessage::Updates {
                        verified,
                        updates: vec![update],
                    },
                );
            }
            Action::Evidence {
                to,
                key: k,
                view,
                round,
                commit,
                a,
                b,
                against,
            } => {
                let to = honest(to);
                let key = key(k);
                let subject = |value: &ValueChoice| VoteSubject {
                    view: self.view(to, &key, view),
                    round: round.round(),
                    kind: if commit {
                        VoteKind::Commit
                    } else {
                        VoteKind::PreCommit
                    },
                    value: value.value().hash(),
                };
                let member = against.map_or(BYZ, |m| MemberIndex::from(m) % N as MemberIndex);
                let vote = |value: &ValueChoice| {
                    let subject = subject(value);
                    SignedVote {
                        member,
                        subject,
                        signature: sign(&key, &subject),
                    }
                };
                let proof = Equivocation::new(key.clone(), vote(&a), vote(&b));
                self.send(
                    to,
                    SyncMessage::Evidence {
                        proofs: vec![proof],
                    },
                );
            }
            Action::Bodies {
                to,
                key: k,
                count,
                seed,
            } => {
                let to = honest(to);
                let key = key(k);
                let view = self.view_of(to, &key);
                let values = (0..count % 24 + 1)
                    .map(|i| Value::Data(vec![seed, i]))
                    .collect();
                let update = KeyUpdate {
                    key,
                    view,
                    accepted: None,
                    values,
                    votes: Vec::new(),
                    pieces: Vec::new(),
                    complete: false,
                    short_refs: false,
                };
                self.send(
                    to,
                    SyncMessage::Updates {
                        verified: false,
                        updates: vec![update],
                    },
                );
            }
            Action::NeedState { to, keys } => {
                let keys = (0..KEYS.len() as u8)
                    .filter(|i| keys & (1 << i) != 0)
                    .map(key)
                    .collect();
                self.send(honest(to), SyncMessage::NeedState { keys });
            }
            Action::Relay { pick, to } => {
                if let Some(message) = self.pick(pick) {
                    self.send(honest(to), message);
                }
            }
            Action::Mutate { pick, to, flips } => {
                let Some(message) = self.pick(pick) else {
                    return;
                };
                let Ok(mut bytes) = encode(&message) else {
                    return;
                };
                for (at, bits) in flips.iter().take(MAX_PARTS) {
                    let i = usize::from(*at) % bytes.len();
                    bytes[i] ^= bits;
                }
                self.send_bytes(honest(to), &bytes);
            }
            Action::Raw { to, bytes } => {
                let bytes: Vec<u8> = bytes.into_iter().take(1024).collect();
                self.send_bytes(honest(to), &bytes);
            }
            Action::MerkleRoot { to, root } => {
                let root = match root {
                    None => Digest::ZERO,
                    Some(seed) if seed < 3 => self.replicas[usize::from(seed)].merkle_root(),
                    Some(seed) => hash(Domain::Other, &[b"merkle root", &[seed]]),
                };
                self.send(honest(to), SyncMessage::MerkleRoot { root });
            }
            Action::MerkleAnswer { to, via, lies } => {
                let to = honest(to);
                let Some((session, paths)) =
                    self.inbox.iter().rev().find_map(|(from, m)| match m {
                        SyncMessage::MerkleQuery { session, paths } if *from == to => {
                            Some((*session, paths.clone()))
                        }
                        _ => None,
                    })
                else {
                    return;
                };
                let mut nodes = self.ask(honest(via), paths);
                for (i, lie) in lies.iter().take(MAX_PARTS).enumerate() {
                    if nodes.is_empty() {
                        break;
                    }
                    let at = i % nodes.len();
                    match merkle_lie(lie) {
                        Some(summary) => nodes[at].1 = summary,
                        None => {
                            nodes.remove(at);
                        }
                    }
                }
                self.send(to, SyncMessage::MerkleNodes { session, nodes });
            }
        }
    }

    /// What honest member `via` answers about `paths` (member 3 asking it on the side).
    fn ask(&mut self, via: MemberIndex, paths: Vec<NodePath>) -> Vec<(NodePath, NodeSummary)> {
        let step = self.replicas[usize::from(via)]
            .receive(BYZ, SyncMessage::MerkleQuery { session: 0, paths });
        let nodes = step
            .outgoing()
            .find_map(|(to, message)| match message {
                SyncMessage::MerkleNodes { nodes, .. } if *to == BYZ => Some(nodes.clone()),
                _ => None,
            })
            .unwrap_or_default();
        self.apply(via, step);
        nodes
    }

    fn pick(&self, pick: u8) -> Option<SyncMessage> {
        if self.inbox.is_empty() {
            return None;
        }
        let i = usize::from(pick) % self.inbox.len();
        Some(self.inbox[self.inbox.len() - 1 - i].1.clone())
    }

    /// Member 3 sends a message; it crosses the wire like any other.
    fn send(&mut self, to: MemberIndex, message: SyncMessage) {
        // A message the wire refuses never reaches the replica.
        let Ok(bytes) = encode(&message) else {
            return;
        };
        self.send_bytes(to, &bytes);
    }

    fn send_bytes(&mut self, to: MemberIndex, bytes: &[u8]) {
        // Undecodable bytes are dropped by the node (and count against the sender).
        if let Ok(message) = decode(bytes, N) {
            self.receive(to, BYZ, message);
        }
    }
}

fuzz_target!(|actions: Vec<Action>| {
    let mut harness = Harness::new();
    let count = actions.len().min(MAX_ACTIONS);
    for action in actions.into_iter().take(MAX_ACTIONS) {
        harness.act(action);
    }
    // Whatever happened, the honest members then talk among themselves.
    harness.settle();
    for member in HONEST {
        harness.check_replica(member);
    }
    if world().stats {
        // What the input reached, to judge a corpus (BEAUFORT_FUZZ_STATS=1).
        let top_view = harness.decided.keys().map(|(_, view)| view + 1).max();
        let own_votes = harness.own_votes.len();
        eprintln!(
            "stats: actions {count} decisions {} top_view {top_view:?} honest_votes {own_votes} faults_byzantine {}",
            harness.decided.len(),
            harness.faults
        );
    }
});
