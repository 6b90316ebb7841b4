//! The browser member's side of the core's contract, without I/O: every input becomes a
//! [`Step`], and a step is carried out in the order the node follows (docs/ARCHITECTURE.md,
//! "Persist before send, as data"):
//!
//! 1. [`Member::plan`]: the messages the core put in `early` leave at once; the records of every
//!    state and proof the step names go to IndexedDB;
//! 2. once the page reports the IndexedDB transaction complete, [`Member::durable`]: the core
//!    learns its votes are durable, and only now do the other messages leave; faults, decisions
//!    and the outcome of own writes follow.
//!
//! So a tab closed between 1 and 2 loses only messages, never an own vote that others saw: the
//! reopened member restores the state that holds it and cannot vote otherwise in that view and
//! round. The runtime in `crate::runtime` only moves bytes between this and libp2p and the page.

use crate::records::Record;
use beaufort_apps::AppHook;
use beaufort_core::input::Input;
use beaufort_core::replica::{Decision, ProposeError, Replica, Step};
use beaufort_core::state::Certified;
use beaufort_core::types::{Key, Value, ValueHash};
use beaufort_core::wire::{decode, encode, SyncMessage, WireError};
use beaufort_crypto::MemberIndex;
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

/// Most own writes waiting for their decision at once; more are refused as busy.
pub const MAX_PENDING_WRITES: usize = 1_000;
/// How many recent decisions the status keeps for the page.
const RECENT: usize = 20;

/// The page's handle on one own write.
pub type WriteId = u64;

/// How an own write ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Decided with this member's value.
    Committed(Certified),
    /// Another value won the key's view (the winner, when known).
    Lost(Option<Certified>),
}

/// Why an own write was not started.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Too many own writes wait already.
    #[error("{MAX_PENDING_WRITES} writes are waiting already")]
    Busy,
    /// The key or value is out of bounds.
    #[error("{0}")]
    Bounds(String),
    /// The applications' hook refused the value.
    #[error(transparent)]
    Refused(#[from] ProposeError),
}

/// What the runtime carries out before the step's records are durable.
#[must_use = "send `early`, write `records`, then hand `after` to `Member::durable`"]
pub struct Plan {
    /// Encoded messages that may leave now (none carries an own vote that is not durable).
    pub early: Vec<(MemberIndex, Vec<u8>)>,
    /// What to write to IndexedDB, in one transaction.
    pub records: Vec<Record>,
    /// The rest of the step, for [`Member::durable`].
    pub after: After,
}

/// The part of a step that waits for its records.
pub struct After {
    messages: Vec<(MemberIndex, SyncMessage)>,
    step: Step,
}

/// What the runtime carries out once the records are durable.
#[must_use = "send `messages`, drop `faults`, resolve `writes`"]
#[derive(Debug, Default)]
pub struct Done {
    /// Encoded messages to send now.
    pub messages: Vec<(MemberIndex, Vec<u8>)>,
    /// Members that sent invalid data: disconnect and back off.
    pub faults: Vec<MemberIndex>,
    /// Own writes that ended.
    pub writes: Vec<(WriteId, WriteOutcome)>,
    /// Every decision of the step.
    pub decisions: Vec<Decision>,
    /// The core asks for other neighbours (own writes stalled).
    pub rewire: bool,
}

/// What the page shows about this member.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Status {
    /// This member's index.
    pub member: MemberIndex,
    /// Number of members.
    pub members: usize,
    /// Members it is connected to.
    pub neighbours: Vec<MemberIndex>,
    /// Members it holds equivocation proofs against.
    pub excluded: Vec<MemberIndex>,
    /// Keys it holds state for.
    pub keys: usize,
    /// Keys restored from the browser's storage when it started.
    pub restored_keys: usize,
    /// Own votes cast since it started.
    pub votes_cast: u64,
    /// Decisions learnt since it started.
    pub decisions: u64,
    /// Own writes waiting for their decision.
    pub pending_writes: usize,
    /// Messages sent and received since it started.
    pub messages_sent: u64,
    /// Messages received.
    pub messages_received: u64,
    /// The Merkle root of its state (hex): equal roots at two members mean they hold the same.
    pub merkle_root: String,
    /// The latest decisions, newest first.
    pub recent: Vec<RecentDecision>,
}

/// One recent decision as the page lists it.
#[derive(Clone, Debug, Serialize)]
pub struct RecentDecision {
    /// The key (text when it is UTF-8, else hex).
    pub key: String,
    /// The view it was decided in.
    pub view: u64,
    /// Whether this member's own write was decided.
    pub mine: bool,
}

/// A member's replica with its own writes and counters.
pub struct Member {
    replica: Replica,
    apps: Arc<AppHook>,
    members: usize,
    waiters: BTreeMap<Key, Vec<(ValueHash, WriteId)>>,
    pending: usize,
    status: Status,
    recent: VecDeque<RecentDecision>,
}

/// A key as text for people.
fn key_text(key: &Key) -> String {
    match std::str::from_utf8(key.as_bytes()) {
        Ok(text) => text.to_owned(),
        Err(_) => hex::encode(key.as_bytes()),
    }
}

impl Member {
    /// A member around a restored replica.
    pub fn new(replica: Replica, apps: Arc<AppHook>, members: usize) -> Member {
        let restored_keys = replica.states().count();
        Member {
            status: Status {
                member: replica.me(),
                members,
                restored_keys,
                ..Status::default()
            },
            replica,
            apps,
            members,
            waiters: BTreeMap::new(),
            pending: 0,
            recent: VecDeque::with_capacity(RECENT),
        }
    }

    /// When the core next wants a tick (milliseconds on the member's clock).
    pub fn next_tick(&self) -> u64 {
        self.replica.next_tick()
    }

    /// The core's schedule: each link's readiness, then the time.
    pub fn tick(&mut self, now: u64, link_ready: impl Fn(MemberIndex) -> bool) -> Step {
        let peers: Vec<MemberIndex> = self.replica.peers().collect();
        let mut step = Step::default();
        for peer in peers {
            let ready = link_ready(peer);
            step.absorb(self.input(Input::LinkReady { peer, ready }));
        }
        step.absorb(self.input(Input::Tick { now }));
        step
    }

    /// A connection to `peer` is up (true) or its last one closed.
    pub fn link(&mut self, peer: MemberIndex, up: bool) -> Step {
        if up {
            self.input(Input::PeerUp(peer))
        } else {
            self.input(Input::PeerDown(peer))
        }
    }

    /// A message arrived; an undecodable one is the sender's fault (the caller drops it).
    pub fn receive(&mut self, from: MemberIndex, bytes: &[u8]) -> Result<Step, WireError> {
        let message = decode(bytes, self.members)?;
        self.status.messages_received += 1;
        Ok(self.input(Input::Receive { from, message }))
    }

    /// Proposes an own write; its outcome comes back in a later [`Done::writes`] under `id`.
    pub fn write(&mut self, key: &str, value: &[u8], id: WriteId) -> Result<Step, WriteError> {
        if self.pending >= MAX_PENDING_WRITES {
            return Err(WriteError::Busy);
        }
        let key = Key::new(key.as_bytes()).map_err(|e| WriteError::Bounds(e.to_string()))?;
        let value = Value::data(value).map_err(|e| WriteError::Bounds(e.to_string()))?;
        let hash = value.hash();
        let step = self.replica.apply(Input::Propose {
            key: key.clone(),
            value,
        })?;
        self.pending += 1;
        self.waiters.entry(key).or_default().push((hash, id));
        Ok(step)
    }

    /// The inputs that cannot fail.
    fn input(&mut self, input: Input) -> Step {
        self.replica.apply(input).unwrap_or_default()
    }

    /// Encodes messages; one that cannot be encoded is a bug in the core, logged by the caller
    /// through its absence (the core repairs what is missing by anti-entropy).
    fn encoded(
        &mut self,
        messages: Vec<(MemberIndex, SyncMessage)>,
    ) -> Vec<(MemberIndex, Vec<u8>)> {
        let encoded: Vec<_> = messages
            .into_iter()
            .filter_map(|(to, m)| encode(&m).ok().map(|bytes| (to, bytes)))
            .collect();
        self.status.messages_sent += encoded.len() as u64;
        encoded
    }

    /// Step 1 of the contract (module docs).
    pub fn plan(&mut self, mut step: Step) -> Plan {
        let early = self.encoded(std::mem::take(&mut step.early));
        let mut records: Vec<Record> = step
            .persist
            .iter()
            .filter_map(|key| self.replica.state(key).map(|state| (key, state)))
            .filter_map(|(key, state)| Record::state(key, state).ok())
            .collect();
        records.extend(
            step.evidence
                .iter()
                .filter_map(|p| Record::evidence(p).ok()),
        );
        Plan {
            early,
            records,
            after: After {
                messages: std::mem::take(&mut step.messages),
                step,
            },
        }
    }

    /// Step 2 of the contract: the records of `after`'s step are durable.
    pub fn durable(&mut self, after: After) -> Done {
        let _ = self.input(Input::Durable);
        let After { messages, step } = after;
        let mut done = Done {
            messages: self.encoded(messages),
            faults: step.faults.iter().map(|f| f.peer).collect(),
            rewire: step.rewire,
            ..Done::default()
        };
        for &peer in &done.faults {
            let _ = self.input(Input::PeerDown(peer));
        }
        self.status.votes_cast += step.stats.votes_cast as u64;
        for decision in &step.decisions {
            self.status.decisions += 1;
            if self.recent.len() == RECENT {
                self.recent.pop_back();
            }
            self.recent.push_front(RecentDecision {
                key: key_text(&decision.key),
                view: decision.certified.view,
                mine: decision.mine,
            });
            // Contracts installed on the network are learnt as the node learns them.
            let _ = self.apps.learn(&decision.key, &decision.certified);
            let won = decision.certified.value.hash();
            self.settle(
                &decision.key,
                won,
                |_| WriteOutcome::Committed(decision.certified.clone()),
                &mut done.writes,
            );
        }
        for (key, value) in &step.dropped_proposals {
            let winner = self.replica.get(key).cloned();
            self.settle(
                key,
                value.hash(),
                |_| WriteOutcome::Lost(winner.clone()),
                &mut done.writes,
            );
        }
        done.decisions = step.decisions;
        done
    }

    /// Resolves the own writes of `value` at `key`.
    fn settle(
        &mut self,
        key: &Key,
        value: ValueHash,
        outcome: impl Fn(WriteId) -> WriteOutcome,
        out: &mut Vec<(WriteId, WriteOutcome)>,
    ) {
        let Some(waiters) = self.waiters.get_mut(key) else {
            return;
        };
        waiters.retain(|&(hash, id)| {
            if hash == value {
                out.push((id, outcome(id)));
                false
            } else {
                true
            }
        });
        if waiters.is_empty() {
            self.waiters.remove(key);
        }
        self.pending = self.waiters.values().map(Vec::len).sum();
    }

    /// What the page shows.
    pub fn status(&mut self) -> Status {
        let mut status = self.status.clone();
        status.neighbours = self.replica.peers().collect();
        status.excluded = self.replica.excluded().keys().copied().collect();
        status.keys = self.replica.states().count();
        status.pending_writes = self.pending;
        status.merkle_root = self.replica.merkle_root().to_hex();
        status.recent = self.recent.iter().cloned().collect();
        status
    }

    /// The certified value of a key, if any.
    pub fn get(&self, key: &Key) -> Option<&Certified> {
        self.replica.get(key)
    }
}
