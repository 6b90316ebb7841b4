//! Scripted schedules ("replays"): the script controls every communication, step by step.
//!
//! A replay pins a scenario exactly — a paper example, a known attack, or a failing seed recorded
//! by `beaufort sim check` — and checks the invariants after every step. The format is JSON:
//!
//! ```json
//! {
//!   "description": "optional text",
//!   "members": 4,
//!   "byzantine": [3],
//!   "crypto": "stand-in",
//!   "key_seed": 0,
//!   "steps": [
//!     {"propose": {"member": 0, "key": "k", "value": "x"}},
//!     {"propose": {"member": 1, "key": "k", "tombstone": true}},
//!     {"transfer": {"from": 0, "to": 2, "key": "k"}},
//!     {"byzantine_vote": {"member": 3, "to": 2, "key": "k", "view": 0, "round": 0,
//!                         "kind": "precommit", "value": "y"}},
//!     {"deliver": {"from": 0, "to": 1, "message": {"Updates": {"verified": false, "updates": []}}}},
//!     {"crash": 1},
//!     {"restart": 1},
//!     {"expect_vote": {"member": 2, "key": "k", "view": 0, "round": 1, "kind": "precommit",
//!                      "value": "x"}},
//!     {"expect_decided": {"member": 0, "key": "k", "view": 0, "value": "x"}}
//!   ]
//! }
//! ```
//!
//! * `members` is n; `byzantine` lists the Byzantine members (default none); `crypto` is
//!   `"stand-in"` (default) or `"bls"`; `key_seed` (default 0) derives the network id and keys, so
//!   a recorded run replays with the signatures it was recorded with.
//! * Values are UTF-8 strings taken as data bytes; `"tombstone": true` instead of `"value"` is a
//!   delete.
//! * `propose`: the member's replica proposes (as `Replica::propose`).
//! * `transfer`: the sender's *whole* current state for the key, as one complete `KeyUpdate` in a
//!   `SyncMessage::Updates` (`verified: false`), is encoded, decoded and handled by the receiver at
//!   once. The receiver's resulting step is applied (persisted, decisions recorded) but its
//!   outgoing messages are *not* delivered: only later steps move state.
//! * `byzantine_vote`: a Byzantine member signs that one vote validly (with its own key) and
//!   delivers only it, as an incomplete `KeyUpdate` for view `view`, carrying the value's body when
//!   it is a round-0 PRE-COMMIT. `kind` is `"precommit"` or `"commit"`.
//! * `deliver`: an exact `SyncMessage` in its serde JSON form (as recorded runs write them).
//! * `crash` / `restart`: the member loses everything not persisted / restarts from its disk.
//! * `expect_vote`: asserts the member's current state holds its own vote in that slot for that
//!   value (`"value": null`, or neither `value` nor `tombstone`, asserts it holds *no* vote there).
//!   `view` defaults to the member's open view.
//! * `expect_decided`: asserts the member decided that value in that view.
//!
//! A failed expectation is an error of the script (the scenario did not unfold as written), not
//! an invariant violation. After every step the checkers of [`crate::invariants`] run: agreement,
//! validity, integrity, no double vote, and the Byzantine certificate check, which reports an
//! agreement violation as soon as the Byzantine members could complete COMMIT certificates for two
//! values of one view from the honest COMMIT votes that exist plus their own.
//!
//! Recorded runs contain `propose`, `deliver` (state and evidence messages only: Merkle and
//! state-request messages do not change any register), `crash` and `restart` steps.

use crate::invariants::{Checker, HonestDecision, Violation};
use crate::keys::{CryptoKind, ForbiddenPrefixHook, Keyring};
use crate::network::index;
use crate::node::Node;
use crate::SimError;
use beaufort_core::cadence::Cadence;
use beaufort_core::register::{KeyUpdate, WireBallot};
use beaufort_core::replica::{PeerFault, Step};
use beaufort_core::state::Ballot;
use beaufort_core::types::{Key, MemberIndex, Round, Value, View};
use beaufort_core::vote::{vote_message, VoteKind, VoteSubject};
use beaufort_core::wire::{decode, encode, SyncMessage};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

/// A whole replay file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Script {
    /// What the scenario shows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Number of members, n.
    pub members: usize,
    /// The Byzantine members.
    #[serde(default)]
    pub byzantine: Vec<MemberIndex>,
    /// Signature scheme.
    #[serde(default)]
    pub crypto: CryptoKind,
    /// Seed of the network id and keys.
    #[serde(default)]
    pub key_seed: u64,
    /// Whether votes travelled as pieces on one tree per key, and each member's wait for its
    /// other tree links in milliseconds (`Cadence::aggregate_wait`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregate_wait: Option<u64>,
    /// The schedule.
    pub steps: Vec<ReplayStep>,
}

/// A vote kind as scripts spell it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KindName {
    /// PRE-COMMIT.
    Precommit,
    /// COMMIT.
    Commit,
}

impl From<KindName> for VoteKind {
    fn from(kind: KindName) -> VoteKind {
        match kind {
            KindName::Precommit => VoteKind::PreCommit,
            KindName::Commit => VoteKind::Commit,
        }
    }
}

/// One step of a script (see the module documentation).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplayStep {
    /// A member proposes a value.
    Propose {
        /// Who.
        member: MemberIndex,
        /// The key (UTF-8).
        key: String,
        /// The value (UTF-8 data).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value: Option<String>,
        /// A delete instead of a value.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        tombstone: bool,
    },
    /// The sender's whole state for a key, handled by the receiver at once.
    Transfer {
        /// Sender.
        from: MemberIndex,
        /// Receiver.
        to: MemberIndex,
        /// The key.
        key: String,
    },
    /// A Byzantine member sends one validly signed vote of its own.
    ByzantineVote {
        /// The Byzantine member.
        member: MemberIndex,
        /// Receiver.
        to: MemberIndex,
        /// The key.
        key: String,
        /// The view the vote is for.
        view: View,
        /// The round.
        round: Round,
        /// PRE-COMMIT or COMMIT.
        kind: KindName,
        /// The value voted for (UTF-8 data).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value: Option<String>,
        /// Vote for a delete instead.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        tombstone: bool,
    },
    /// An exact message.
    Deliver {
        /// Sender.
        from: MemberIndex,
        /// Receiver.
        to: MemberIndex,
        /// The message.
        message: SyncMessage,
    },
    /// The member crashes.
    Crash(MemberIndex),
    /// The member restarts from its disk.
    Restart(MemberIndex),
    /// Asserts the member's own vote in a slot.
    ExpectVote {
        /// Whose vote.
        member: MemberIndex,
        /// The key.
        key: String,
        /// The view (default: the member's open view).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        view: Option<View>,
        /// The round.
        round: Round,
        /// PRE-COMMIT or COMMIT.
        kind: KindName,
        /// The value expected; absent (with `tombstone` false) means no vote.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value: Option<String>,
        /// A delete expected.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        tombstone: bool,
    },
    /// Asserts the member decided a value in a view.
    ExpectDecided {
        /// Who decided.
        member: MemberIndex,
        /// The key.
        key: String,
        /// The view.
        view: View,
        /// The value.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value: Option<String>,
        /// A delete.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        tombstone: bool,
    },
}

impl ReplayStep {
    /// A `propose` step for a simulated proposal (keys and values there are UTF-8).
    pub fn propose(member: MemberIndex, key: &Key, value: &Value) -> ReplayStep {
        ReplayStep::Propose {
            member,
            key: String::from_utf8_lossy(key.as_bytes()).into_owned(),
            value: value
                .as_data()
                .map(|bytes| String::from_utf8_lossy(bytes).into_owned()),
            tombstone: value.as_data().is_none(),
        }
    }
}

/// Reads and parses a replay file.
pub fn load(path: &Path) -> Result<Script, SimError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| SimError::Replay(format!("{}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| SimError::Replay(format!("{}: {e}", path.display())))
}

/// Writes a script as pretty JSON.
pub fn save(script: &Script, path: &Path) -> Result<(), SimError> {
    let text =
        serde_json::to_string(script).map_err(|e| SimError::Replay(format!("serializing: {e}")))?;
    std::fs::write(path, text).map_err(|e| SimError::Replay(format!("{}: {e}", path.display())))
}

/// What a replay produced.
#[derive(Clone, Debug)]
pub struct ReplayOutcome {
    /// Broken invariants (empty on success); `at` is the step index.
    pub violations: Vec<Violation>,
    /// Every honest decision in order; `at` is the step index.
    pub decisions: Vec<HonestDecision>,
    /// The honest members.
    pub honest: Vec<MemberIndex>,
    /// Each running honest member's final certified value per key: (open view, value).
    pub final_values: BTreeMap<MemberIndex, BTreeMap<Key, (View, Option<Value>)>>,
    /// Faults an honest member reported against another honest member, with the step index:
    /// an honest member never sends what another must refuse, so each is a defect (in a node it
    /// would drop an honest link).
    pub honest_faults: Vec<(u64, PeerFault)>,
}

impl ReplayOutcome {
    /// Whether every honest member decided at least once.
    pub fn all_honest_decided(&self) -> bool {
        self.honest
            .iter()
            .all(|m| self.decisions.iter().any(|d| d.member == *m))
    }
}

/// Runs a script, checking the invariants after every step.
pub fn run(script: &Script) -> Result<ReplayOutcome, SimError> {
    let mut replay = Replay::new(script)?;
    for (i, step) in script.steps.iter().enumerate() {
        replay
            .step(i, step)
            .map_err(|message| SimError::ReplayStep { step: i, message })?;
        replay.let_time_pass(i as u64);
    }
    Ok(replay.outcome())
}

struct Replay {
    n: usize,
    byzantine: BTreeSet<MemberIndex>,
    keyring: Arc<Keyring>,
    nodes: Vec<Node>,
    checker: Checker,
    honest_faults: Vec<(u64, PeerFault)>,
    /// Virtual milliseconds (see [`Replay::let_time_pass`]).
    clock: u64,
}

fn parse_key(key: &str) -> Result<Key, String> {
    Key::new(key.as_bytes().to_vec()).map_err(|e| e.to_string())
}

fn parse_value(value: &Option<String>, tombstone: bool) -> Result<Option<Value>, String> {
    match (value, tombstone) {
        (Some(_), true) => Err("both a value and a tombstone".to_owned()),
        (Some(s), false) => Value::data(s.as_bytes().to_vec())
            .map(Some)
            .map_err(|e| e.to_string()),
        (None, true) => Ok(Some(Value::Tombstone)),
        (None, false) => Ok(None),
    }
}

fn require_value(value: &Option<String>, tombstone: bool) -> Result<Value, String> {
    parse_value(value, tombstone)?.ok_or_else(|| "a value or tombstone is required".to_owned())
}

impl Replay {
    fn new(script: &Script) -> Result<Replay, SimError> {
        let n = script.members;
        if !(1..=1024).contains(&n) {
            return Err(SimError::Replay(format!(
                "members must be 1..=1024, got {n}"
            )));
        }
        let byzantine: BTreeSet<MemberIndex> = script.byzantine.iter().copied().collect();
        if let Some(bad) = byzantine.iter().find(|m| usize::from(**m) >= n) {
            return Err(SimError::Replay(format!(
                "Byzantine member {bad} out of range"
            )));
        }
        let keyring = Arc::new(Keyring::new(script.crypto, n, script.key_seed)?);
        let hook: Arc<dyn beaufort_core::hook::ValidationHook> = Arc::new(ForbiddenPrefixHook);
        let nodes = (0..n)
            .map(|i| {
                let cadence = Cadence {
                    aggregate_wait: script.aggregate_wait,
                    ..Cadence::default()
                };
                Node::new(index(i), keyring.clone(), hook.clone(), cadence)
            })
            .collect();
        Ok(Replay {
            n,
            checker: Checker::new(n, byzantine.clone()),
            byzantine,
            keyring,
            nodes,
            honest_faults: Vec::new(),
            clock: 0,
        })
    }

    /// A step takes as long as it needs: an hour passes after it, so every member that waits on
    /// a split round ([`beaufort_core::register::patience`]) moves on before the next step.
    fn let_time_pass(&mut self, at: u64) {
        self.clock += 3_600_000;
        for i in 0..self.n {
            let clock = self.clock;
            let Some(replica) = self.nodes[i].replica_mut() else {
                continue;
            };
            let step = replica.tick(clock);
            self.apply(index(i), step, at);
        }
    }

    fn node(&mut self, member: MemberIndex) -> Result<&mut Node, String> {
        self.nodes
            .get_mut(usize::from(member))
            .ok_or_else(|| format!("no member {member}"))
    }

    fn apply(&mut self, member: MemberIndex, step: Step, at: u64) {
        let node = &mut self.nodes[usize::from(member)];
        node.persist(&step);
        if let Some(replica) = node.replica() {
            for key in &step.persist {
                if let Some(state) = replica.state(key) {
                    self.checker.note_state(member, key, state, at);
                }
            }
        }
        for decision in &step.decisions {
            self.checker.note_decision(member, decision, at);
        }
        for fault in step.faults {
            if !self.byzantine.contains(&fault.peer) && !self.byzantine.contains(&member) {
                self.honest_faults.push((at, fault));
            }
        }
    }

    fn deliver(
        &mut self,
        from: MemberIndex,
        to: MemberIndex,
        message: SyncMessage,
        at: u64,
    ) -> Result<(), String> {
        if usize::from(from) >= self.n {
            return Err(format!("no member {from}"));
        }
        if self.byzantine.contains(&from) {
            self.checker.note_byzantine_message(&message);
        }
        let bytes = encode(&message).map_err(|e| e.to_string())?;
        let message = decode(&bytes, self.n).map_err(|e| e.to_string())?;
        let replica = self
            .node(to)?
            .replica_mut()
            .ok_or_else(|| format!("member {to} is crashed"))?;
        let step = replica.receive(from, message);
        self.apply(to, step, at);
        Ok(())
    }

    fn step(&mut self, i: usize, step: &ReplayStep) -> Result<(), String> {
        let at = i as u64;
        match step {
            ReplayStep::Propose {
                member,
                key,
                value,
                tombstone,
            } => {
                let key = parse_key(key)?;
                let value = require_value(value, *tombstone)?;
                let replica = self
                    .node(*member)?
                    .replica_mut()
                    .ok_or_else(|| format!("member {member} is crashed"))?;
                let (step, _) = replica
                    .propose(key, value.clone())
                    .map_err(|e| e.to_string())?;
                self.checker.note_proposal(&value);
                self.apply(*member, step, at);
            }
            ReplayStep::Transfer { from, to, key } => {
                let key = parse_key(key)?;
                let replica = self
                    .node(*from)?
                    .replica()
                    .ok_or_else(|| format!("member {from} is crashed"))?;
                let state = replica
                    .state(&key)
                    .ok_or_else(|| format!("member {from} has no state for {key}"))?;
                let update = KeyUpdate::whole(&key, state);
                let message = SyncMessage::Updates {
                    verified: false,
                    updates: vec![update],
                };
                self.deliver(*from, *to, message, at)?;
            }
            ReplayStep::ByzantineVote {
                member,
                to,
                key,
                view,
                round,
                kind,
                value,
                tombstone,
            } => {
                if !self.byzantine.contains(member) {
                    return Err(format!("member {member} is not Byzantine"));
                }
                let key = parse_key(key)?;
                let value = require_value(value, *tombstone)?;
                let kind = VoteKind::from(*kind);
                let subject = VoteSubject {
                    view: *view,
                    round: *round,
                    kind,
                    value: value.hash(),
                };
                let signature = self.keyring.signer(*member).sign(&vote_message(
                    &self.keyring.network(),
                    &key,
                    &subject,
                ));
                let with_body = kind == VoteKind::PreCommit && *round == 0;
                let update = KeyUpdate {
                    key,
                    view: *view,
                    accepted: None,
                    values: if with_body { vec![value] } else { Vec::new() },
                    votes: vec![WireBallot {
                        kind,
                        round: *round,
                        member: *member,
                        ballot: Ballot::Vote {
                            value: subject.value,
                            signature,
                        },
                    }],
                    pieces: Vec::new(),
                    complete: false,
                    short_refs: false,
                };
                let message = SyncMessage::Updates {
                    verified: false,
                    updates: vec![update],
                };
                self.deliver(*member, *to, message, at)?;
            }
            ReplayStep::Deliver { from, to, message } => {
                self.deliver(*from, *to, message.clone(), at)?;
            }
            ReplayStep::Crash(member) => self.node(*member)?.crash(),
            ReplayStep::Restart(member) => self.node(*member)?.restart(),
            ReplayStep::ExpectVote {
                member,
                key,
                view,
                round,
                kind,
                value,
                tombstone,
            } => {
                let key = parse_key(key)?;
                let expected = parse_value(value, *tombstone)?.map(|v| v.hash());
                let replica = self
                    .node(*member)?
                    .replica()
                    .ok_or_else(|| format!("member {member} is crashed"))?;
                let state = replica.state(&key).cloned().unwrap_or_default();
                if let Some(view) = view {
                    if state.view != *view {
                        return Err(format!(
                            "expected member {member} in view {view} of {key}, it is in view {}",
                            state.view
                        ));
                    }
                }
                let got = state
                    .ballot(VoteKind::from(*kind), *round, *member)
                    .and_then(|b| b.vote_value());
                if got != expected {
                    return Err(format!(
                        "expected member {member}'s {kind:?} vote in round {round} of {key} to be \
                         {expected:?}, it is {got:?}"
                    ));
                }
            }
            ReplayStep::ExpectDecided {
                member,
                key,
                view,
                value,
                tombstone,
            } => {
                let key = parse_key(key)?;
                let expected = require_value(value, *tombstone)?;
                let decided = self.checker.decisions().iter().any(|d| {
                    d.member == *member && d.key == key && d.view == *view && d.value == expected
                });
                if !decided {
                    return Err(format!(
                        "expected member {member} to have decided {expected:?} for {key} view {view}"
                    ));
                }
            }
        }
        Ok(())
    }

    fn outcome(&self) -> ReplayOutcome {
        let honest: Vec<MemberIndex> = (0..self.n)
            .map(index)
            .filter(|m| !self.byzantine.contains(m))
            .collect();
        let final_values = honest
            .iter()
            .filter_map(|m| {
                let replica = self.nodes[usize::from(*m)].replica()?;
                let values = replica
                    .states()
                    .map(|(k, s)| (k.clone(), (s.view, s.current_value().cloned())))
                    .collect();
                Some((*m, values))
            })
            .collect();
        ReplayOutcome {
            violations: self.checker.violations().to_vec(),
            decisions: self.checker.decisions().to_vec(),
            honest,
            final_values,
            honest_faults: self.honest_faults.clone(),
        }
    }
}
