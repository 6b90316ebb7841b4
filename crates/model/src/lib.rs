//! Exhaustive, depth-bounded model checking of the real register code.
//!
//! The world is one key and four members: honest A, B, C (indices 0–2) running the production
//! [`Register`] with stand-in signatures, and a Byzantine D (index 3) that can sign any vote of its
//! own — PRE-COMMIT or COMMIT, any round up to a bound, for either value, equivocating at will —
//! and deliver it alone to any honest member at any moment. A proposes `x`, B proposes `y`, each at
//! any moment. Honest members exchange whole states (the paper's state-based gossip); the
//! Byzantine member supplies the partial views.
//!
//! [`Model::over_pieces`] restates the model over pieces (docs/AGGREGATION.md): honest whole
//! states travel with every group's single votes combined into one partial aggregate, and D may
//! also deliver pieces — its own vote combined with an honest member's vote it has seen, or a
//! forged piece that claims an honest member without holding its share.
//!
//! Every reachable world up to the depth bound is visited once (breadth-first, deduplicated by a
//! fingerprint of the three register states and of every honest COMMIT vote ever cast). In each
//! world two properties are checked:
//!
//! * **agreement** — no two honest members accept different values, and D cannot assemble COMMIT
//!   quorums for two different values from the honest COMMIT votes that exist plus its own;
//! * **termination after stabilisation** — if D falls silent and the honest members then exchange
//!   their states, every honest member decides, the same value, within a bounded number of
//!   exchanges.

use beaufort_core::auth::{StandInCrypto, StandInSigner, Verifier};
use beaufort_core::hook::AcceptAll;
use beaufort_core::register::{Context, KeyUpdate, Register, WireBallot};
use beaufort_core::state::{Ballot, Piece, RegisterState};
use beaufort_core::types::{Key, MemberIndex, Round, Value, ValueHash};
use beaufort_core::vote::{vote_message, VoteKind, VoteSubject};
use beaufort_crypto::aggregate::Aggregate;
use beaufort_crypto::hash::{hash, Digest, Domain};
use std::collections::{BTreeSet, HashSet, VecDeque};

/// Index of the Byzantine member.
pub const BYZANTINE: MemberIndex = 3;
const HONEST: [MemberIndex; 3] = [0, 1, 2];

/// What to explore.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    /// Longest schedule explored (number of actions).
    pub depth: usize,
    /// Highest round in which the Byzantine member signs votes.
    pub byzantine_rounds: Round,
    /// Stop after this many distinct worlds (a guard for the time budget).
    pub max_worlds: usize,
    /// Let the Byzantine member also forward any single honest vote it has seen to any honest
    /// member (partial views of honest votes, as lost or reordered deltas produce).
    pub relay: bool,
}

/// One step of a schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Member 0 proposes x, or member 1 proposes y.
    Propose(MemberIndex),
    /// An honest member's whole state reaches another honest member.
    Transfer {
        /// Sender.
        from: MemberIndex,
        /// Receiver.
        to: MemberIndex,
    },
    /// The Byzantine member forwards one honest member's vote, alone.
    Relay {
        /// Receiver.
        to: MemberIndex,
        /// Vote kind.
        kind: VoteKind,
        /// Round.
        round: Round,
        /// Whose vote.
        member: MemberIndex,
    },
    /// The Byzantine member signs one vote and delivers only it.
    Byzantine {
        /// Receiver.
        to: MemberIndex,
        /// Vote kind.
        kind: VoteKind,
        /// Round.
        round: Round,
        /// True for y, false for x.
        y: bool,
    },
    /// The Byzantine member delivers a piece: its own vote plus `with`'s vote for the same value
    /// (which `with` has cast), or, when `forged`, a piece that claims `with` but holds only the
    /// Byzantine share.
    ByzantinePiece {
        /// Receiver.
        to: MemberIndex,
        /// Vote kind.
        kind: VoteKind,
        /// Round.
        round: Round,
        /// True for y, false for x.
        y: bool,
        /// The honest member inside.
        with: MemberIndex,
        /// Whether `with`'s share is missing from the sum.
        forged: bool,
    },
}

/// A property that failed, with the schedule that leads there.
#[derive(Clone, Debug)]
pub struct Counterexample {
    /// What failed.
    pub property: &'static str,
    /// The schedule from the initial world.
    pub schedule: Vec<Action>,
}

/// The outcome of an exploration.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Distinct worlds visited.
    pub worlds: usize,
    /// Transitions taken (including those leading to already-seen worlds).
    pub transitions: usize,
    /// Deepest level fully explored.
    pub depth_reached: usize,
    /// Worlds in which at least one honest member had decided.
    pub decided_worlds: usize,
    /// Whether `max_worlds` cut the search short.
    pub truncated: bool,
    /// The first violation found, if any.
    pub counterexample: Option<Counterexample>,
}

/// The fixed model: crypto, key and the two contending values.
pub struct Model {
    crypto: StandInCrypto,
    signers: Vec<StandInSigner>,
    key: Key,
    x: Value,
    y: Value,
    /// Whether votes travel as pieces ([`Model::over_pieces`]).
    pieces: bool,
}

#[derive(Clone)]
struct World {
    registers: [Register; 3],
    /// Every honest COMMIT vote ever cast (round, value, member): certificates outlive the state
    /// that held them, so the Byzantine certificate check needs the history.
    commits: BTreeSet<(Round, ValueHash, MemberIndex)>,
}

impl Default for Model {
    fn default() -> Model {
        Model::new()
    }
}

impl Model {
    /// The n = 4, f = 1 model with values whose hashes order y above x (ties go to y).
    pub fn new() -> Model {
        let crypto = StandInCrypto::new(hash(Domain::NetworkId, &[b"model check"]), 4);
        let signers = (0..4).map(|m| crypto.signer(m)).collect();
        let (mut x, mut y) = (Value::Data(b"x".to_vec()), Value::Data(b"y".to_vec()));
        if x.hash() > y.hash() {
            std::mem::swap(&mut x, &mut y);
        }
        Model {
            crypto,
            signers,
            key: Key::new(b"k".to_vec()).expect("a one-byte key is within bounds"),
            x,
            y,
            pieces: false,
        }
    }

    /// The same model with votes travelling as pieces.
    pub fn over_pieces() -> Model {
        Model {
            pieces: true,
            ..Model::new()
        }
    }

    /// What an honest member sends another: its whole state, with each group's single votes
    /// combined into one piece when the model runs over pieces.
    fn transfer(&self, state: &RegisterState) -> KeyUpdate {
        let mut update = KeyUpdate::whole(&self.key, state);
        if !self.pieces {
            return update;
        }
        let mut kept = Vec::new();
        let mut groups: Vec<Piece> = Vec::new();
        for wire in update.votes {
            let Ballot::Vote { value, signature } = wire.ballot else {
                kept.push(wire);
                continue;
            };
            let Ok(single) = Aggregate::single(4, wire.member, signature) else {
                continue;
            };
            match groups
                .iter_mut()
                .find(|p| p.is_of(wire.kind, wire.round, value))
            {
                Some(piece) => {
                    let _ = self.crypto.combine(&mut piece.aggregate, &single);
                }
                None => groups.push(Piece {
                    kind: wire.kind,
                    round: wire.round,
                    value,
                    aggregate: single,
                }),
            }
        }
        update.votes = kept;
        update.pieces.extend(groups);
        update
    }

    /// What the Byzantine member delivers alone: its votes or pieces, with the value's body when
    /// they are round-0 PRE-COMMITs.
    fn byzantine_update(
        &self,
        kind: VoteKind,
        round: Round,
        value: &Value,
        votes: Vec<WireBallot>,
        pieces: Vec<Piece>,
    ) -> KeyUpdate {
        KeyUpdate {
            key: self.key.clone(),
            view: 0,
            accepted: None,
            values: if round == 0 && kind == VoteKind::PreCommit {
                vec![value.clone()]
            } else {
                Vec::new()
            },
            votes,
            pieces,
            complete: false,
            short_refs: false,
        }
    }

    /// The Byzantine piece of an action, if `with` has cast the vote it needs.
    fn byzantine_piece(
        &self,
        world: &World,
        kind: VoteKind,
        round: Round,
        value: &Value,
        with: MemberIndex,
        forged: bool,
    ) -> Option<Piece> {
        let subject = VoteSubject {
            view: 0,
            round,
            kind,
            value: value.hash(),
        };
        let message = vote_message(&self.crypto.network_id(), &self.key, &subject);
        let cast = matches!(
            world.registers[usize::from(with)].state.ballot(kind, round, with),
            Some(Ballot::Vote { value: v, .. }) if *v == value.hash()
        ) && world.registers[usize::from(with)].state.view == 0;
        if !forged && !cast {
            return None;
        }
        let mut aggregate =
            Aggregate::single(4, BYZANTINE, self.crypto.share(BYZANTINE, &message)).ok()?;
        let claimed = Aggregate::single(4, with, self.crypto.share(with, &message)).ok()?;
        if forged {
            aggregate.weights.add(&claimed.weights).ok()?;
        } else if !self.crypto.combine(&mut aggregate, &claimed) {
            return None;
        }
        Some(Piece {
            kind,
            round,
            value: value.hash(),
            aggregate,
        })
    }

    /// The value the Byzantine-tie-break favours (higher hash).
    pub fn y(&self) -> &Value {
        &self.y
    }

    /// The other value.
    pub fn x(&self) -> &Value {
        &self.x
    }

    fn ctx<'a>(&'a self, member: MemberIndex, excluded: &'a BTreeSet<MemberIndex>) -> Context<'a> {
        Context {
            key: &self.key,
            signer: &self.signers[usize::from(member)],
            verifier: &self.crypto,
            hook: &AcceptAll,
            excluded,
            now: u64::MAX,
        }
    }

    fn actions(&self, bounds: &Bounds, world: &World) -> Vec<Action> {
        let mut out = Vec::new();
        for proposer in [0, 1] {
            let register = &world.registers[usize::from(proposer)];
            if register.state.view == 0 && register.my_round(proposer).is_none() {
                out.push(Action::Propose(proposer));
            }
        }
        for from in HONEST {
            for to in HONEST {
                if from != to {
                    out.push(Action::Transfer { from, to });
                }
            }
        }
        for to in HONEST {
            for kind in [VoteKind::PreCommit, VoteKind::Commit] {
                for round in 0..=bounds.byzantine_rounds {
                    for y in [false, true] {
                        out.push(Action::Byzantine { to, kind, round, y });
                    }
                }
            }
        }
        if self.pieces {
            for to in HONEST {
                for with in HONEST.into_iter().filter(|&w| w != to) {
                    for kind in [VoteKind::PreCommit, VoteKind::Commit] {
                        for round in 0..=bounds.byzantine_rounds {
                            for y in [false, true] {
                                for forged in [false, true] {
                                    out.push(Action::ByzantinePiece {
                                        to,
                                        kind,
                                        round,
                                        y,
                                        with,
                                        forged,
                                    });
                                }
                            }
                        }
                    }
                }
            }
        }
        if bounds.relay {
            let mut seen: BTreeSet<(VoteKind, Round, MemberIndex)> = BTreeSet::new();
            for register in world.registers.iter().filter(|r| r.state.view == 0) {
                for vote in register.state.signed_votes() {
                    if vote.member != BYZANTINE {
                        seen.insert((vote.subject.kind, vote.subject.round, vote.member));
                    }
                }
            }
            for (kind, round, member) in seen {
                for to in HONEST {
                    let holds = world.registers[usize::from(to)]
                        .state
                        .ballot(kind, round, member)
                        .is_some();
                    if to != member && !holds {
                        out.push(Action::Relay {
                            to,
                            kind,
                            round,
                            member,
                        });
                    }
                }
            }
        }
        out
    }

    /// Applies one action; `None` if it changes nothing (pruned).
    fn apply(&self, world: &World, action: &Action) -> Option<World> {
        let mut next = world.clone();
        let none = BTreeSet::new();
        match *action {
            Action::Propose(member) => {
                let value = if member == 0 { &self.x } else { &self.y };
                let ctx = self.ctx(member, &none);
                let register = &mut next.registers[usize::from(member)];
                let (_, outcome) = register.propose(&ctx, value.clone()).ok()?;
                record(&mut next.commits, &outcome.cast);
            }
            Action::Transfer { from, to } => {
                let update = self.transfer(&world.registers[usize::from(from)].state);
                self.deliver(&mut next, to, update)?;
            }
            Action::ByzantinePiece {
                to,
                kind,
                round,
                y,
                with,
                forged,
            } => {
                if world.registers[usize::from(to)].state.view > 0 {
                    return None;
                }
                let value = if y { &self.y } else { &self.x };
                let piece = self.byzantine_piece(world, kind, round, value, with, forged)?;
                let update = self.byzantine_update(kind, round, value, Vec::new(), vec![piece]);
                self.deliver(&mut next, to, update)?;
            }
            Action::Relay {
                to,
                kind,
                round,
                member,
            } => {
                let (ballot, value) = world.registers.iter().find_map(|r| {
                    let ballot = *r.state.ballot(kind, round, member)?;
                    let value = ballot
                        .vote_value()
                        .and_then(|hash| r.state.values.get(&hash).cloned());
                    (r.state.view == 0).then_some((ballot, value))
                })?;
                let update = KeyUpdate {
                    key: self.key.clone(),
                    view: 0,
                    accepted: None,
                    values: value.into_iter().collect(),
                    votes: vec![WireBallot {
                        kind,
                        round,
                        member,
                        ballot,
                    }],
                    pieces: Vec::new(),
                    complete: false,
                    short_refs: false,
                };
                self.deliver(&mut next, to, update)?;
            }
            Action::Byzantine { to, kind, round, y } => {
                let target = &world.registers[usize::from(to)].state;
                if target.view > 0 {
                    return None;
                }
                let value = if y { &self.y } else { &self.x };
                let subject = VoteSubject {
                    view: 0,
                    round,
                    kind,
                    value: value.hash(),
                };
                let message = vote_message(&self.crypto.network_id(), &self.key, &subject);
                let vote = vec![WireBallot {
                    kind,
                    round,
                    member: BYZANTINE,
                    ballot: Ballot::Vote {
                        value: value.hash(),
                        signature: self.crypto.share(BYZANTINE, &message),
                    },
                }];
                let update = self.byzantine_update(kind, round, value, vote, Vec::new());
                self.deliver(&mut next, to, update)?;
            }
        }
        let changed = next
            .registers
            .iter()
            .zip(world.registers.iter())
            .any(|(a, b)| a.state != b.state);
        changed.then_some(next)
    }

    fn deliver(&self, world: &mut World, to: MemberIndex, update: KeyUpdate) -> Option<()> {
        // Exclusion is per member in the real replica; the model keeps it per register.
        let excluded = excluded_in(&world.registers[usize::from(to)].state);
        let ctx = self.ctx(to, &excluded);
        let register = &mut world.registers[usize::from(to)];
        let _merged = register.merge(&ctx, update, false).ok()?;
        let excluded = excluded_in(&register.state);
        let ctx = self.ctx(to, &excluded);
        let outcome = register.advance(&ctx);
        record(&mut world.commits, &outcome.cast);
        Some(())
    }

    fn fingerprint(world: &World) -> Digest {
        let mut parts: Vec<Vec<u8>> = world
            .registers
            .iter()
            .map(|r| r.state.digest().0.to_vec())
            .collect();
        for (round, value, member) in &world.commits {
            let mut bytes = round.to_le_bytes().to_vec();
            bytes.extend_from_slice(value.0.as_bytes());
            bytes.extend_from_slice(&member.to_le_bytes());
            parts.push(bytes);
        }
        let refs: Vec<&[u8]> = parts.iter().map(|p| p.as_slice()).collect();
        hash(Domain::Other, &refs)
    }

    /// Agreement: honest decisions match and D cannot complete two conflicting certificates.
    fn agreement(&self, world: &World) -> bool {
        let decided: BTreeSet<ValueHash> = world
            .registers
            .iter()
            .filter_map(|r| r.state.accepted.as_ref())
            .filter(|c| c.view == 0)
            .map(|c| c.value.hash())
            .collect();
        if decided.len() > 1 {
            return false;
        }
        let q = self.crypto.quorum();
        let mut certifiable = BTreeSet::new();
        let rounds: BTreeSet<Round> = world.commits.iter().map(|(r, _, _)| *r).collect();
        for round in rounds {
            for value in [self.x.hash(), self.y.hash()] {
                let honest = world
                    .commits
                    .iter()
                    .filter(|(r, v, _)| *r == round && *v == value)
                    .count();
                if honest + 1 >= q {
                    certifiable.insert(value);
                }
            }
        }
        certifiable.len() <= 1
            && decided
                .iter()
                .all(|d| certifiable.is_empty() || certifiable.contains(d))
    }

    /// Termination after stabilisation: D goes silent, honest members exchange whole states
    /// round-robin; within a bound, all decide one value.
    fn terminates(&self, world: &World) -> bool {
        let started = world
            .registers
            .iter()
            .any(|r| r.state.view > 0 || !r.state.precommits.is_empty());
        if !started {
            return true;
        }
        let mut world = world.clone();
        for _ in 0..(4 * usize::from(beaufort_core::types::MAX_ROUND as u16)) {
            let decided: BTreeSet<Option<ValueHash>> = world
                .registers
                .iter()
                .map(|r| r.state.accepted.as_ref().map(|c| c.value.hash()))
                .collect();
            if decided.len() == 1 && !decided.contains(&None) {
                return true;
            }
            for from in HONEST {
                for to in HONEST {
                    if from != to {
                        let update = self.transfer(&world.registers[usize::from(from)].state);
                        let _ = self.deliver(&mut world, to, update);
                    }
                }
            }
        }
        false
    }

    /// Runs one scripted schedule, checking both properties after every action. Actions that
    /// change nothing are skipped, as in the search.
    pub fn check_schedule(
        &self,
        schedule: &[Action],
    ) -> Result<Vec<Option<Value>>, Counterexample> {
        let mut world = World {
            registers: Default::default(),
            commits: BTreeSet::new(),
        };
        for (i, action) in schedule.iter().enumerate() {
            if let Some(next) = self.apply(&world, action) {
                world = next;
            }
            let failed = if !self.agreement(&world) {
                Some("agreement")
            } else if !self.terminates(&world) {
                Some("termination after stabilisation")
            } else {
                None
            };
            if let Some(property) = failed {
                return Err(Counterexample {
                    property,
                    schedule: schedule[..=i].to_vec(),
                });
            }
        }
        Ok(world
            .registers
            .iter()
            .map(|r| r.state.accepted.as_ref().map(|c| c.value.clone()))
            .collect())
    }

    /// Explores every schedule up to the bounds.
    pub fn explore(&self, bounds: Bounds) -> Report {
        let mut report = Report::default();
        let initial = World {
            registers: Default::default(),
            commits: BTreeSet::new(),
        };
        let mut seen: HashSet<Digest> = HashSet::new();
        seen.insert(Model::fingerprint(&initial));
        let mut frontier: VecDeque<(World, Vec<Action>)> = VecDeque::new();
        frontier.push_back((initial, Vec::new()));
        let mut depth = 0;
        while depth < bounds.depth && !frontier.is_empty() {
            let mut next_frontier = VecDeque::new();
            for (world, schedule) in frontier {
                for action in self.actions(&bounds, &world) {
                    report.transitions += 1;
                    let Some(next) = self.apply(&world, &action) else {
                        continue;
                    };
                    if !seen.insert(Model::fingerprint(&next)) {
                        continue;
                    }
                    report.worlds += 1;
                    let mut path = schedule.clone();
                    path.push(action);
                    if next.registers.iter().any(|r| r.state.view > 0) {
                        report.decided_worlds += 1;
                    }
                    if !self.agreement(&next) {
                        report.counterexample = Some(Counterexample {
                            property: "agreement",
                            schedule: path,
                        });
                        return report;
                    }
                    if !self.terminates(&next) {
                        report.counterexample = Some(Counterexample {
                            property: "termination after stabilisation",
                            schedule: path,
                        });
                        return report;
                    }
                    if report.worlds >= bounds.max_worlds {
                        report.truncated = true;
                        return report;
                    }
                    next_frontier.push_back((next, path));
                }
            }
            frontier = next_frontier;
            depth += 1;
            report.depth_reached = depth;
        }
        report
    }
}

fn excluded_in(state: &RegisterState) -> BTreeSet<MemberIndex> {
    state
        .precommits
        .values()
        .chain(state.commits.values())
        .flat_map(|round| round.iter())
        .filter(|(_, b)| b.is_proof())
        .map(|(m, _)| m)
        .collect()
}

fn record(
    commits: &mut BTreeSet<(Round, ValueHash, MemberIndex)>,
    cast: &[beaufort_core::vote::SignedVote],
) {
    for vote in cast {
        if vote.subject.kind == VoteKind::Commit {
            commits.insert((vote.subject.round, vote.subject.value, vote.member));
        }
    }
}
