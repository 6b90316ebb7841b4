//! Core bugs the simulator found, each kept as a regression test. See docs/PROTOCOL.md §4 and §11
//! for the rules that fixed them (equivocation proofs as wildcards with grow-only proposal bodies,
//! and numbered anti-entropy sessions).

use beaufort_core::auth::{StandInCrypto, Verifier};
use beaufort_core::hook::AcceptAll;
use beaufort_core::register::{KeyUpdate, UpdateCertificate, WireBallot};
use beaufort_core::replica::{Replica, Step};
use beaufort_core::state::Ballot;
use beaufort_core::types::{Key, MemberIndex, Round, Value, View};
use beaufort_core::vote::{vote_message, VoteKind, VoteSubject};
use beaufort_core::wire::SyncMessage;
use beaufort_crypto::hash::{hash, Domain};
use std::sync::Arc;

const N: usize = 4;
const D: MemberIndex = 3;

fn crypto() -> StandInCrypto {
    StandInCrypto::new(hash(Domain::Other, &[b"core-bugs"]), N)
}

fn replica(crypto: &StandInCrypto, member: MemberIndex) -> Replica {
    Replica::new(
        Box::new(crypto.signer(member)),
        Arc::new(crypto.clone()),
        Arc::new(AcceptAll),
    )
}

fn key() -> Key {
    Key::new(b"k".to_vec()).expect("valid key")
}

fn data(s: &str) -> Value {
    Value::data(s.as_bytes().to_vec()).expect("small value")
}

/// The Byzantine member D's own, validly signed PRE-COMMIT, as an incomplete update.
fn byzantine_precommit(
    crypto: &StandInCrypto,
    view: View,
    round: Round,
    value: &Value,
) -> SyncMessage {
    byzantine_vote(crypto, view, round, value, round == 0)
}

/// Like [`byzantine_precommit`], choosing whether the value's body travels with the vote.
fn byzantine_vote(
    crypto: &StandInCrypto,
    view: View,
    round: Round,
    value: &Value,
    with_body: bool,
) -> SyncMessage {
    let subject = VoteSubject {
        view,
        round,
        kind: VoteKind::PreCommit,
        value: value.hash(),
    };
    let signature = crypto.share(D, &vote_message(&crypto.network_id(), &key(), &subject));
    SyncMessage::Updates {
        verified: false,
        updates: vec![KeyUpdate {
            key: key(),
            view,
            accepted: None,
            values: if with_body {
                vec![value.clone()]
            } else {
                Vec::new()
            },
            votes: vec![WireBallot {
                kind: VoteKind::PreCommit,
                round,
                member: D,
                ballot: Ballot::Vote {
                    value: subject.value,
                    signature,
                },
            }],
            pieces: Vec::new(),
            complete: false,
            short_refs: false,
        }],
    }
}

/// The sender's whole state for the key, as a complete update.
fn whole_state(from: &Replica) -> SyncMessage {
    let state = from.state(&key()).expect("sender has state").clone();
    let mut votes = Vec::new();
    for kind in [VoteKind::PreCommit, VoteKind::Commit] {
        for (&round, ballots) in state.ballots(kind) {
            for (member, &ballot) in ballots {
                votes.push(WireBallot {
                    kind,
                    round,
                    member,
                    ballot,
                });
            }
        }
    }
    SyncMessage::Updates {
        verified: false,
        updates: vec![KeyUpdate {
            key: key(),
            view: state.view,
            accepted: state.accepted.clone().map(UpdateCertificate::Whole),
            values: state.values.values().cloned().collect(),
            votes,
            pieces: Vec::new(),
            complete: true,
            short_refs: false,
        }],
    }
}

fn faults(step: &Step) -> Vec<String> {
    step.faults
        .iter()
        .map(|f| format!("{} -> {}", f.peer, f.reason))
        .collect()
}

/// Core bug 1: an equivocation slot keeps only two values, so merging is not monotone when a
/// Byzantine member signs three or more values in one round, and an honest member that forwards
/// its complete state is blamed (and disconnected) by another honest member.
///
/// n = 4, D Byzantine. A proposes x. D signs four different round-0 values c, d (to C) and
/// a, b (to B). C holds D's slot as `Equivocated{c, d}`; round 0 at C has 3 signers and several
/// values, so round 1 exists and D's round-1 PRE-COMMIT for c is justified at C. B holds D's slot
/// as `Equivocated{a, b}`. When C sends B its whole state, B keeps its own equivocation pair for
/// D's slot (`(Some(Equivocated), _) => {}` in `Register::merge`), so c is not among B's round-0
/// values and D's round-1 vote for c is "unjustified" — in a *complete* update, which makes it
/// C's fault. In `beaufort sim check` this shows up as honest members blaming each other for
/// "unjustified vote: PreCommit round 1 by <the Byzantine member>", dropping honest links, and
/// liveness failures.
#[test]
fn honest_complete_state_is_never_blamed_after_triple_equivocation() {
    let crypto = crypto();
    let (mut a, mut b, mut c) = (
        replica(&crypto, 0),
        replica(&crypto, 1),
        replica(&crypto, 2),
    );
    let _ = a.propose(key(), data("x")).expect("proposal accepted");
    let step = c.receive(0, whole_state(&a));
    assert!(faults(&step).is_empty());
    for v in ["c", "d"] {
        let step = c.receive(D, byzantine_precommit(&crypto, 0, 0, &data(v)));
        assert!(faults(&step).is_empty(), "{:?}", faults(&step));
    }
    // c's body left C's state when D's slot became a proof (a body stays only while a single
    // PRE-COMMIT names it), so D's round-1 vote brings it again.
    let step = c.receive(D, byzantine_vote(&crypto, 0, 1, &data("c"), true));
    assert!(faults(&step).is_empty(), "{:?}", faults(&step));
    let c_state = c.state(&key()).expect("state");
    assert!(
        c_state.ballot(VoteKind::PreCommit, 1, D).is_some(),
        "D's round-1 vote is justified at C"
    );
    for v in ["a", "b"] {
        let step = b.receive(D, byzantine_precommit(&crypto, 0, 0, &data(v)));
        assert!(faults(&step).is_empty(), "{:?}", faults(&step));
    }
    let step = b.receive(2, whole_state(&c));
    assert_eq!(
        faults(&step),
        Vec::<String>::new(),
        "B blames honest C for forwarding its own, valid, complete state"
    );
}

/// Core bug 2: a conflicting vote that cannot be justified wipes out a valid slot, leaving the
/// votes it justified — including the member's own — unjustified in its state.
///
/// n = 4, D Byzantine. A proposes x; C votes x in round 0. D sends C a valid round-0 vote for y
/// (with its body): round 0 at C has 3 signers and two values, so C votes x in round 1. D then
/// sends C a second round-0 vote for z *without z's body* in an incomplete update. `merge` turns
/// D's slot into `Equivocated{y, z}`, which is unjustified (z has no body), and the justification
/// loop removes the *whole slot* — D's valid vote for y included. C's round 0 is back to two
/// signers, so C's own round-1 vote (never pruned) is no longer justified by C's own state, and
/// when C sends its whole state to B, B rejects it and blames honest C. (In the simulator:
/// "unjustified vote: PreCommit round 1 by <an honest member>", with the unjustified-rounds
/// strategy, which signs round-0 votes for values never proposed.)
#[test]
fn unjustified_conflicting_vote_does_not_erase_a_valid_slot() {
    let crypto = crypto();
    let (mut a, mut b, mut c) = (
        replica(&crypto, 0),
        replica(&crypto, 1),
        replica(&crypto, 2),
    );
    let _ = a.propose(key(), data("x")).expect("proposal accepted");
    let _ = c.receive(0, whole_state(&a));
    let _ = c.receive(D, byzantine_precommit(&crypto, 0, 0, &data("y")));
    // C leaves the split round 0 once its patience is over.
    let _ = c.tick(60_000);
    let c_state = c.state(&key()).expect("state");
    assert!(
        c_state.ballot(VoteKind::PreCommit, 1, 2).is_some(),
        "C voted in round 1"
    );
    let step = c.receive(D, byzantine_vote(&crypto, 0, 0, &data("z"), false));
    assert!(!step.evidence.is_empty(), "D's double vote is caught");
    let c_state = c.state(&key()).expect("state");
    assert!(
        c_state.ballot(VoteKind::PreCommit, 0, D).is_some(),
        "D's valid round-0 slot (which justified C's round-1 vote) is still in C's state"
    );
    let step = b.receive(2, whole_state(&c));
    assert_eq!(
        faults(&step),
        Vec::<String>::new(),
        "B blames honest C for its complete state"
    );
}

fn messages_to(step: Step, to: MemberIndex) -> Vec<SyncMessage> {
    step.into_outgoing()
        .into_iter()
        .filter(|(peer, _)| *peer == to)
        .map(|(_, m)| m)
        .collect()
}

/// Core bug 3: two anti-entropy sessions on one link overlap, and the answer to the first one is
/// blamed on the honest peer.
///
/// B opens anti-entropy with A twice before A's first question comes back (a periodic timer and a
/// reconnect within one round trip do this). A keeps one `MerkleDiff` per peer, so the second
/// `MerkleRoot` replaces the first session; B answers both questions; the first answer completes
/// A's (second) session and the second answer then finds no session: A reports B for "anti-entropy
/// answer without a question" and the runtime drops an honest link. In `beaufort sim check` this
/// is the most frequent fault against honest members.
#[test]
fn overlapping_anti_entropy_sessions_do_not_blame_the_peer() {
    let crypto = crypto();
    let (mut a, mut b) = (replica(&crypto, 0), replica(&crypto, 1));
    a.add_peer(1);
    b.add_peer(0);
    let _ = a.propose(key(), data("x")).expect("proposal accepted");
    let other = Key::new(b"other".to_vec()).expect("valid key");
    let _ = b.propose(other, data("y")).expect("proposal accepted");
    // Both keys go quiet for longer than an anti-entropy period, so the roots differ by them.
    let _ = a.tick(5_000);
    let _ = b.tick(5_000);
    let roots: Vec<SyncMessage> = (0..2)
        .flat_map(|_| messages_to(b.start_anti_entropy(0), 0))
        .filter(|m| matches!(m, SyncMessage::MerkleRoot { .. }))
        .collect();
    assert_eq!(roots.len(), 2);
    let questions: Vec<SyncMessage> = roots
        .into_iter()
        .flat_map(|root| messages_to(a.receive(1, root), 1))
        .collect();
    assert_eq!(questions.len(), 2, "A asks about each root");
    let answers: Vec<SyncMessage> = questions
        .into_iter()
        .flat_map(|q| messages_to(b.receive(0, q), 0))
        .collect();
    let mut blamed = Vec::new();
    for answer in answers {
        blamed.extend(faults(&a.receive(1, answer)));
    }
    assert_eq!(blamed, Vec::<String>::new(), "A blames honest B");
}

/// Four members in a full mesh with votes as pieces, driven by hand: messages go at once, in
/// order, except those `drop` refuses.
struct Mesh {
    members: Vec<Replica>,
    now: u64,
}

impl Mesh {
    fn new(crypto: &StandInCrypto) -> Mesh {
        let cadence = beaufort_core::cadence::Cadence {
            aggregate_wait: Some(50),
            ..beaufort_core::cadence::Cadence::default()
        };
        let mut members: Vec<Replica> = (0..N)
            .map(|m| {
                replica(crypto, MemberIndex::try_from(m).expect("small")).with_cadence(cadence)
            })
            .collect();
        for (i, r) in members.iter_mut().enumerate() {
            for j in 0..N {
                if i != j {
                    r.add_peer(MemberIndex::try_from(j).expect("small"));
                }
            }
        }
        Mesh { members, now: 0 }
    }

    /// Delivers `step`'s messages from `from`, and what they cause, until nothing is left.
    fn deliver(
        &mut self,
        from: MemberIndex,
        step: Step,
        drop: &dyn Fn(MemberIndex, &SyncMessage) -> bool,
    ) {
        let mut queue: std::collections::VecDeque<(MemberIndex, MemberIndex, SyncMessage)> = step
            .early
            .into_iter()
            .chain(step.messages)
            .map(|(to, m)| (from, to, m))
            .collect();
        let mut budget = 100_000;
        while let Some((from, to, message)) = queue.pop_front() {
            budget -= 1;
            assert!(budget > 0, "the exchange does not end");
            if drop(to, &message) {
                continue;
            }
            let step = self.members[usize::from(to)].receive(from, message);
            assert!(faults(&step).is_empty(), "{:?}", faults(&step));
            queue.extend(
                step.early
                    .into_iter()
                    .chain(step.messages)
                    .map(|(next, m)| (to, next, m)),
            );
        }
    }

    /// Every member ticks at the mesh's clock plus `ms`, its messages delivered.
    fn tick(&mut self, ms: u64, drop: &dyn Fn(MemberIndex, &SyncMessage) -> bool) {
        self.now += ms;
        for m in 0..N {
            let step = self.members[m].tick(self.now);
            self.deliver(MemberIndex::try_from(m).expect("small"), step, drop);
        }
    }
}

/// With votes as pieces a member off a key's tree hears of its decision only through the tree.
/// Found by the 1000-seed check (stream links, n = 10, seed 91): a member the tree had not
/// reached stayed in a closed view while its decided neighbour's anti-entropy put the key off
/// as one the push was still syncing. The first exchange a fallback after the decision now
/// repairs it, and one before leaves it to the tree (docs/PROTOCOL.md §11.2.1, "Decisions").
#[test]
fn a_decision_the_key_tree_did_not_bring_is_repaired_by_the_next_anti_entropy_exchange() {
    let crypto = crypto();
    let mut mesh = Mesh::new(&crypto);
    let keep_all = |_: MemberIndex, _: &SyncMessage| false;
    // The relay trees settle and the first exchanges (empty stores) are done.
    for _ in 0..5 {
        mesh.tick(5, &keep_all);
    }
    // In a full mesh every member but the root is one hop from it, so the links between two
    // other members are off the key's tree.
    let root = beaufort_core::relay::tree_root(key().as_bytes(), 0, N);
    let others: Vec<MemberIndex> = (0..N)
        .map(|m| MemberIndex::try_from(m).expect("small"))
        .filter(|&m| m != root)
        .collect();
    let (proposer, cut) = (others[0], others[1]);
    // `cut` hears nothing of the key (its tree links fail it), and no exchange runs meanwhile.
    let cut_off = move |to: MemberIndex, m: &SyncMessage| {
        to == cut && matches!(m, SyncMessage::Updates { .. })
            || matches!(
                m,
                SyncMessage::MerkleRoot { .. } | SyncMessage::MerkleQuery { .. }
            )
    };
    let (step, _) = mesh.members[usize::from(proposer)]
        .propose(key(), data("v"))
        .expect("proposes");
    mesh.deliver(proposer, step, &cut_off);
    for _ in 0..100 {
        if mesh.members[usize::from(proposer)]
            .state(&key())
            .is_some_and(|s| s.accepted.is_some())
        {
            break;
        }
        mesh.tick(5, &cut_off);
    }
    assert!(
        mesh.members[usize::from(proposer)]
            .state(&key())
            .is_some_and(|s| s.accepted.is_some()),
        "the other three decide"
    );
    assert!(mesh.members[usize::from(cut)].state(&key()).is_none());
    // The proposer's next push tells `cut` nothing: it is off the tree and sent no pieces.
    mesh.tick(5, &cut_off);
    // One exchange: `cut` sends its root to the proposer, and the proposer's next push follows.
    let exchange = |mesh: &mut Mesh| {
        let step = mesh.members[usize::from(cut)].start_anti_entropy(proposer);
        mesh.deliver(cut, step, &keep_all);
        let step = mesh.members[usize::from(proposer)].flush();
        mesh.deliver(proposer, step, &keep_all);
        mesh.members[usize::from(cut)]
            .state(&key())
            .and_then(|s| s.accepted.as_ref())
            .map(|cert| cert.value.clone())
    };
    // Within a fallback of the decision the tree may still bring it: the exchange leaves the
    // key to it, as one still being synced.
    assert_eq!(exchange(&mut mesh), None);
    // The tree has had a fallback's time (1 s plus twice the 50 ms wait), and failed.
    mesh.tick(1_100, &cut_off);
    assert!(mesh.members[usize::from(cut)].state(&key()).is_none());
    assert_eq!(exchange(&mut mesh), Some(data("v")));
}
