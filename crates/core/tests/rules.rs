//! One test (at least) per protocol rule settled in docs/PROTOCOL.md.

mod common;

use beaufort_core::auth::{StandInCrypto, Verifier};
use beaufort_core::cadence::Cadence;
use beaufort_core::hook::{AcceptAll, HookError};
use beaufort_core::register::{
    Context, InvalidState, KeyUpdate, MergeOutcome, Register, UpdateCertificate, WireBallot,
};
use beaufort_core::replica::{FaultReason, Replica, Step};
use beaufort_core::state::{Ballot, Certified};
use beaufort_core::types::{Key, MemberIndex, Value, MAX_ROUND};
use beaufort_core::vote::{vote_message, VoteKind, VoteSubject};
use beaufort_core::wire::{
    decode, encode, SyncMessage, WireError, MAX_MESSAGE_BYTES, WIRE_VERSION,
};
use beaufort_crypto::bls::Signature;
use beaufort_crypto::hash::{hash, Domain};
use common::{crypto, data, key, learn_relay_trees, pushed, update, vote, Cluster};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

struct Member {
    crypto: StandInCrypto,
    signer: beaufort_core::auth::StandInSigner,
    excluded: BTreeSet<MemberIndex>,
    register: Register,
    key: Key,
}

impl Member {
    fn new(n: usize, me: MemberIndex) -> Member {
        let crypto = crypto(n);
        Member {
            signer: crypto.signer(me),
            crypto,
            excluded: BTreeSet::new(),
            register: Register::default(),
            key: key(),
        }
    }

    fn merge(&mut self, update: KeyUpdate) -> Result<(), InvalidState> {
        self.step(update, true).map(|_| ())
    }

    /// Merges without advancing.
    fn merge_outcome(&mut self, update: KeyUpdate) -> Result<MergeOutcome, InvalidState> {
        self.step(update, false)
    }

    fn step(&mut self, update: KeyUpdate, advance: bool) -> Result<MergeOutcome, InvalidState> {
        let ctx = Context {
            key: &self.key,
            signer: &self.signer,
            verifier: &self.crypto,
            hook: &AcceptAll,
            excluded: &self.excluded,
            now: u64::MAX,
        };
        let outcome = self.register.merge(&ctx, update, false)?;
        if advance {
            let _advanced = self.register.advance(&ctx);
        }
        Ok(outcome)
    }
}

// Point 1: a signature covers network, key, view, round, kind and value hash.
#[test]
fn vote_message_covers_every_field() {
    let net = hash(Domain::NetworkId, &[b"a"]);
    let other_net = hash(Domain::NetworkId, &[b"b"]);
    let base = VoteSubject {
        view: 1,
        round: 2,
        kind: VoteKind::PreCommit,
        value: data("x").hash(),
    };
    let m = vote_message(&net, &key(), &base);
    let variants = [
        vote_message(&other_net, &key(), &base),
        vote_message(&net, &Key::new("k2").unwrap(), &base),
        vote_message(&net, &key(), &VoteSubject { view: 2, ..base }),
        vote_message(&net, &key(), &VoteSubject { round: 3, ..base }),
        vote_message(
            &net,
            &key(),
            &VoteSubject {
                kind: VoteKind::Commit,
                ..base
            },
        ),
        vote_message(
            &net,
            &key(),
            &VoteSubject {
                value: data("y").hash(),
                ..base
            },
        ),
    ];
    for v in variants {
        assert_ne!(m, v);
    }
}

#[test]
fn a_vote_replayed_into_another_key_is_dropped_at_verification() {
    // Member 1's genuine vote for key "other" is presented as a vote for key "k".
    let c = crypto(4);
    let value = data("x");
    let subject = VoteSubject {
        view: 0,
        round: 0,
        kind: VoteKind::PreCommit,
        value: value.hash(),
    };
    let foreign = c.share(
        1,
        &vote_message(&c.network_id(), &Key::new("other").unwrap(), &subject),
    );
    let mut m = Member::new(4, 0);
    let replayed = WireBallot {
        kind: VoteKind::PreCommit,
        round: 0,
        member: 1,
        ballot: Ballot::Vote {
            value: value.hash(),
            signature: foreign,
        },
    };
    m.merge(update(
        vec![value.clone()],
        vec![replayed, vote(&c, 2, VoteKind::PreCommit, 0, &value)],
        false,
    ))
    .unwrap();
    // We voted in round 0 (fast path) and, seeing what looks like a quorum, verified before
    // committing: the replayed vote was found invalid and removed.
    assert!(m.register.state.ballot(VoteKind::PreCommit, 0, 1).is_none());
    assert!(m.register.is_strict());
    assert!(m.register.state.commits.is_empty());
}

// Point 2: which states are valid.
#[test]
fn round_one_needs_a_split_quorum_in_round_zero() {
    let c = crypto(4);
    let (x, y) = (data("x"), data("y"));
    let mut m = Member::new(4, 3);
    // Round 1 vote with only two round-0 votes: unjustified in a complete state.
    let err = m
        .merge(update(
            vec![x.clone()],
            vec![
                vote(&c, 0, VoteKind::PreCommit, 0, &x),
                vote(&c, 1, VoteKind::PreCommit, 0, &x),
                vote(&c, 0, VoteKind::PreCommit, 1, &x),
            ],
            true,
        ))
        .unwrap_err();
    assert_eq!(err, InvalidState::Unjustified(VoteKind::PreCommit, 1, 0));
    // Three signers holding two values justify round 1.
    let mut m = Member::new(4, 3);
    m.merge(update(
        vec![x.clone(), y.clone()],
        vec![
            vote(&c, 0, VoteKind::PreCommit, 0, &x),
            vote(&c, 1, VoteKind::PreCommit, 0, &y),
            vote(&c, 2, VoteKind::PreCommit, 0, &x),
            vote(&c, 0, VoteKind::PreCommit, 1, &x),
        ],
        true,
    ))
    .unwrap();
    assert!(m.register.state.ballot(VoteKind::PreCommit, 1, 0).is_some());
}

/// A PRE-COMMIT in a later round is justified only with its value's body: here a whole state
/// votes for z in round 1 and does not carry z, so its sender is at fault.
#[test]
fn a_later_round_vote_needs_its_values_body() {
    let c = crypto(4);
    let (x, y, z) = (data("x"), data("y"), data("z"));
    let mut m = Member::new(4, 3);
    let err = m
        .merge(update(
            vec![x.clone(), y.clone()],
            vec![
                vote(&c, 0, VoteKind::PreCommit, 0, &x),
                vote(&c, 1, VoteKind::PreCommit, 0, &y),
                vote(&c, 2, VoteKind::PreCommit, 0, &x),
                vote(&c, 0, VoteKind::PreCommit, 1, &z),
            ],
            true,
        ))
        .unwrap_err();
    assert_eq!(err, InvalidState::Unjustified(VoteKind::PreCommit, 1, 0));
}

#[test]
fn a_commit_needs_a_quorum_of_precommits() {
    let c = crypto(4);
    let x = data("x");
    let mut m = Member::new(4, 3);
    let err = m
        .merge(update(
            vec![x.clone()],
            vec![
                vote(&c, 0, VoteKind::PreCommit, 0, &x),
                vote(&c, 1, VoteKind::PreCommit, 0, &x),
                vote(&c, 0, VoteKind::Commit, 0, &x),
            ],
            true,
        ))
        .unwrap_err();
    assert_eq!(err, InvalidState::Unjustified(VoteKind::Commit, 0, 0));
}

/// A COMMIT that arrives in a delta before the PRE-COMMIT quorum it stands on (relay trees bring
/// each member's votes by its own path) is not merged and not answered with a request for the
/// whole state: it waits aside and enters the state as soon as the quorum does.
#[test]
fn an_incomplete_delta_missing_context_waits_for_it() {
    let c = crypto(4); // quorum 3
    let x = data("x");
    let mut m = Member::new(4, 3);
    let early = m.merge_outcome(update(
        vec![],
        vec![vote(&c, 0, VoteKind::Commit, 0, &x)],
        false,
    ));
    let early = early.unwrap();
    assert!(!early.need_full_state, "no whole-state round trip");
    assert!(!early.changed);
    assert_eq!(m.register.state.vote_count(), 0, "not merged yet");
    let precommits = (0..3)
        .map(|i| vote(&c, i, VoteKind::PreCommit, 0, &x))
        .collect();
    let late = m
        .merge_outcome(update(vec![x.clone()], precommits, false))
        .unwrap();
    assert!(late.changed);
    assert!(
        m.register.state.ballot(VoteKind::Commit, 0, 0).is_some(),
        "the waiting COMMIT is justified now and entered the state"
    );
    assert!(
        m.register
            .slots_since(0)
            .contains(&(VoteKind::Commit, 0, 0)),
        "and is logged for the push"
    );
}

/// A COMMIT still waiting for its justification one anti-entropy exchange later (what it waits
/// for was lost) makes the replica ask its sender for the whole state then; a PRE-COMMIT for a
/// value whose body we lack asks at once, since nothing else brings the body.
#[test]
fn a_waiting_commit_asks_for_the_whole_state_at_the_second_exchange() {
    let c = crypto(4);
    let x = data("x");
    let mut a = linked(&c, 3, &[0]);
    let asks = |step: &Step| {
        step.outgoing()
            .filter(|(to, m)| *to == 0 && matches!(m, SyncMessage::NeedState { .. }))
            .count()
    };
    let early = SyncMessage::Updates {
        verified: false,
        updates: vec![update(
            vec![x.clone()],
            vec![vote(&c, 0, VoteKind::Commit, 0, &x)],
            false,
        )],
    };
    assert_eq!(asks(&a.receive(0, early)), 0, "it waits");
    assert_eq!(
        asks(&a.start_anti_entropy(0)),
        0,
        "parked since this exchange"
    );
    assert_eq!(asks(&a.start_anti_entropy(0)), 1, "still waiting: ask");
    assert_eq!(asks(&a.start_anti_entropy(0)), 0, "asked once");
    let bodiless = SyncMessage::Updates {
        verified: false,
        updates: vec![update(
            vec![],
            vec![vote(&c, 1, VoteKind::PreCommit, 0, &data("y"))],
            false,
        )],
    };
    assert_eq!(asks(&a.receive(0, bodiless)), 1, "no body: ask at once");
}

/// A delta that assumes a view we have not reached still asks for the whole state.
#[test]
fn a_delta_from_a_later_view_without_its_certificate_asks_for_the_whole_state() {
    let c = crypto(4);
    let x = data("x");
    let mut m = Member::new(4, 3);
    let outcome = m
        .merge_outcome(KeyUpdate {
            view: 1,
            ..update(vec![], vec![vote(&c, 0, VoteKind::Commit, 0, &x)], false)
        })
        .unwrap();
    assert!(outcome.need_full_state);
    assert_eq!(m.register.state.vote_count(), 0);
}

#[test]
fn rounds_beyond_the_bound_are_malformed() {
    let c = crypto(4);
    let x = data("x");
    let mut m = Member::new(4, 3);
    let err = m
        .merge(update(
            vec![],
            vec![vote(&c, 0, VoteKind::PreCommit, MAX_ROUND + 1, &x)],
            false,
        ))
        .unwrap_err();
    assert!(matches!(err, InvalidState::Malformed(_)));
}

// Point 3: the validation hook.
#[test]
fn hook_rejections_block_proposals_and_peer_states() {
    let hook: Arc<dyn beaufort_core::hook::ValidationHook> = Arc::new(
        |_: &Key, _: Option<&Certified>, new: &Value| match new.as_data() {
            Some(b) if b.starts_with(b"forbidden") => {
                Err(HookError::Rejected("forbidden prefix".to_string()))
            }
            _ => Ok(()),
        },
    );
    let mut cluster = Cluster::with_hook(4, hook.clone());
    let err = cluster.replicas[0]
        .propose(key(), data("forbidden!"))
        .unwrap_err();
    assert!(err.to_string().contains("forbidden prefix"));

    let c = crypto(4);
    let bad = data("forbidden!");
    let mut replica = Replica::new(Box::new(c.signer(0)), Arc::new(c.clone()), hook);
    replica.add_peer(3);
    let step = replica.receive(
        3,
        SyncMessage::Updates {
            verified: false,
            updates: vec![update(
                vec![bad.clone()],
                vec![vote(&c, 3, VoteKind::PreCommit, 0, &bad)],
                false,
            )],
        },
    );
    assert_eq!(step.faults.len(), 1);
    assert!(matches!(
        &step.faults[0].reason,
        FaultReason::InvalidState {
            error: InvalidState::HookRejected(_),
            ..
        }
    ));
    assert!(
        step.outgoing().next().is_none(),
        "an honest member never votes for a rejected value"
    );
}

#[test]
fn a_value_the_hook_cannot_judge_yet_is_set_aside_without_blame_and_merged_later() {
    let available = Arc::new(AtomicBool::new(false));
    let gate = available.clone();
    let hook: Arc<dyn beaufort_core::hook::ValidationHook> =
        Arc::new(move |_: &Key, _: Option<&Certified>, _: &Value| {
            if gate.load(Ordering::SeqCst) {
                Ok(())
            } else {
                Err(HookError::Unavailable("contract not installed here".into()))
            }
        });
    let c = crypto(4);
    let x = data("x");
    let mut replica = Replica::new(Box::new(c.signer(0)), Arc::new(c.clone()), hook);
    replica.add_peer(3);
    let message = || SyncMessage::Updates {
        verified: false,
        updates: vec![update(
            vec![x.clone()],
            vec![vote(&c, 3, VoteKind::PreCommit, 0, &x)],
            false,
        )],
    };
    let step = replica.receive(3, message());
    assert!(step.faults.is_empty(), "an honest sender is not blamed");
    assert_eq!(step.stats.deferred_updates, 1);
    assert!(step.persist.is_empty() && step.outgoing().next().is_none());
    assert!(replica.state(&key()).is_none(), "nothing was merged");

    available.store(true, Ordering::SeqCst);
    let step = replica.receive(3, message());
    assert!(step.faults.is_empty());
    assert_eq!(step.stats.deferred_updates, 0);
    assert!(
        step.persist.contains(&key()),
        "merged once the hook can judge"
    );
}

// Point 4: equivocation.
#[test]
fn equivocation_is_proven_gossiped_and_discounted() {
    let c = crypto(4);
    let (x, y) = (data("x"), data("y"));
    let mut replica = Replica::new(
        Box::new(c.signer(0)),
        Arc::new(c.clone()),
        Arc::new(AcceptAll),
    );
    replica.add_peer(1);
    replica.add_peer(3);
    let first = replica.receive(
        3,
        SyncMessage::Updates {
            verified: false,
            updates: vec![update(
                vec![x.clone()],
                vec![vote(&c, 3, VoteKind::PreCommit, 0, &x)],
                false,
            )],
        },
    );
    assert!(first.faults.is_empty());
    let second = replica.receive(
        1,
        SyncMessage::Updates {
            verified: false,
            updates: vec![update(
                vec![y.clone()],
                vec![vote(&c, 3, VoteKind::PreCommit, 0, &y)],
                false,
            )],
        },
    );
    assert!(
        second.faults.is_empty(),
        "forwarding a conflicting vote is not the forwarder's fault"
    );
    assert_eq!(second.evidence.len(), 1);
    assert!(replica.excluded().contains_key(&3));
    let gossiped = second
        .outgoing()
        .filter(|(_, m)| matches!(m, SyncMessage::Evidence { .. }))
        .count();
    assert_eq!(gossiped, 2, "the proof goes to every neighbour");
}

#[test]
fn forged_evidence_is_a_fault() {
    let c = crypto(4);
    let (x, y) = (data("x"), data("y"));
    let mut replica = Replica::new(
        Box::new(c.signer(0)),
        Arc::new(c.clone()),
        Arc::new(AcceptAll),
    );
    replica.add_peer(3);
    let bogus = Signature::from_bytes(&[7u8; 48]).unwrap();
    let genuine = vote(&c, 1, VoteKind::PreCommit, 0, &x);
    let (first, second) = if x.hash() < y.hash() {
        (
            (
                x.hash(),
                match genuine.ballot {
                    Ballot::Vote { signature, .. } => signature,
                    _ => unreachable!(),
                },
            ),
            (y.hash(), bogus),
        )
    } else {
        (
            (y.hash(), bogus),
            (
                x.hash(),
                match genuine.ballot {
                    Ballot::Vote { signature, .. } => signature,
                    _ => unreachable!(),
                },
            ),
        )
    };
    let forged = WireBallot {
        kind: VoteKind::PreCommit,
        round: 0,
        member: 1,
        ballot: Ballot::Equivocated { first, second },
    };
    let step = replica.receive(
        3,
        SyncMessage::Updates {
            verified: false,
            updates: vec![update(vec![x, y], vec![forged], false)],
        },
    );
    assert_eq!(step.faults.len(), 1);
    assert!(
        replica.excluded().is_empty(),
        "an honest member is never excluded on forged evidence"
    );
}

// Point 6: deletes are tombstones that go through consensus.
#[test]
fn delete_is_a_certified_tombstone() {
    let mut cluster = Cluster::new(4);
    cluster.propose(0, "k", "v1");
    cluster.run();
    let (step, _) = cluster.replicas[1]
        .propose(key(), Value::Tombstone)
        .unwrap();
    cluster.apply(1, step);
    cluster.run();
    for i in 0..4 {
        let cert = cluster.replicas[i].get(&key()).unwrap();
        assert_eq!(cert.value, Value::Tombstone);
        assert_eq!(cert.view, 1);
    }
}

#[test]
fn an_older_certified_state_does_not_resurrect_a_deleted_key() {
    let mut cluster = Cluster::new(4);
    cluster.propose(0, "k", "v1");
    cluster.run();
    let old = cluster.replicas[2].state(&key()).unwrap().clone();
    let (step, _) = cluster.replicas[1]
        .propose(key(), Value::Tombstone)
        .unwrap();
    cluster.apply(1, step);
    cluster.run();
    let step = cluster.replicas[0].receive(
        2,
        SyncMessage::Updates {
            verified: false,
            updates: vec![KeyUpdate::whole(&key(), &old)],
        },
    );
    assert!(step.faults.is_empty());
    assert_eq!(
        cluster.replicas[0].get(&key()).unwrap().value,
        Value::Tombstone
    );
}

// Point 7: a restarted member never votes twice in a view and round.
#[test]
fn restart_from_persisted_state_keeps_own_votes() {
    let c = crypto(4);
    let (x, y) = (data("x"), data("y"));
    let mut replica = Replica::new(
        Box::new(c.signer(0)),
        Arc::new(c.clone()),
        Arc::new(AcceptAll),
    );
    replica.add_peer(1);
    let step = replica.receive(
        1,
        SyncMessage::Updates {
            verified: false,
            updates: vec![update(
                vec![x.clone()],
                vec![vote(&c, 1, VoteKind::PreCommit, 0, &x)],
                false,
            )],
        },
    );
    assert_eq!(step.stats.votes_cast, 1);
    let persisted: Vec<_> = step
        .persist
        .iter()
        .map(|k| (k.clone(), replica.state(k).unwrap().clone()))
        .collect();
    // Crash, restart from disk, then see a competing proposal that would win round 0 on a fresh
    // member (y's hash order aside, two votes beat one).
    let mut restarted = Replica::restore(
        Box::new(c.signer(0)),
        Arc::new(c.clone()),
        Arc::new(AcceptAll),
        persisted,
        vec![],
    );
    restarted.add_peer(2);
    let step = restarted.receive(
        2,
        SyncMessage::Updates {
            verified: false,
            updates: vec![update(
                vec![y.clone()],
                vec![
                    vote(&c, 2, VoteKind::PreCommit, 0, &y),
                    vote(&c, 3, VoteKind::PreCommit, 0, &y),
                ],
                false,
            )],
        },
    );
    // Round 0 is now split, so once its patience is over the member moves on to round 1 — but
    // its round-0 slot still holds the vote it cast before the crash, and it cast nothing else
    // in round 0.
    assert_eq!(
        step.stats.votes_cast, 0,
        "it waits before leaving a split round"
    );
    let step = restarted.tick(60_000);
    assert_eq!(step.stats.votes_cast, 1);
    let state = restarted.state(&key()).unwrap();
    let ballot = state.ballot(VoteKind::PreCommit, 0, 0).copied();
    assert_eq!(ballot.and_then(|b| b.vote_value()), Some(x.hash()));
    assert!(state.ballot(VoteKind::PreCommit, 1, 0).is_some());
}

// Point 8: deferred verification.
#[test]
fn invalid_signatures_are_found_at_the_decision_and_switch_to_strict() {
    let c = crypto(4);
    let x = data("x");
    let mut replica = Replica::new(
        Box::new(c.signer(0)),
        Arc::new(c.clone()),
        Arc::new(AcceptAll),
    );
    replica.add_peer(3);
    let mut forged = vote(&c, 2, VoteKind::PreCommit, 0, &x);
    forged.ballot = Ballot::Vote {
        value: x.hash(),
        signature: Signature::from_bytes(&[9u8; 48]).unwrap(),
    };
    let step = replica.receive(
        3,
        SyncMessage::Updates {
            verified: false,
            updates: vec![update(
                vec![x.clone()],
                vec![vote(&c, 1, VoteKind::PreCommit, 0, &x), forged],
                false,
            )],
        },
    );
    // Fast path: accepted unverified, our round-0 vote cast; at the commit decision the batch
    // check found the forged share, removed it, and no commit vote was cast.
    assert!(
        step.faults.is_empty(),
        "unverified forwarding is not blamed"
    );
    assert_eq!(step.stats.invalid_signatures, 1);
    assert!(replica.is_strict(&key()));
    assert!(replica.state(&key()).unwrap().commits.is_empty());
    // Now a peer that claims to have verified sends an invalid share: that peer is at fault.
    let mut forged = vote(&c, 3, VoteKind::PreCommit, 0, &x);
    forged.ballot = Ballot::Vote {
        value: x.hash(),
        signature: Signature::from_bytes(&[5u8; 48]).unwrap(),
    };
    let step = replica.receive(
        3,
        SyncMessage::Updates {
            verified: true,
            updates: vec![update(vec![], vec![forged], false)],
        },
    );
    assert_eq!(step.faults.len(), 1);
    assert!(matches!(
        &step.faults[0].reason,
        FaultReason::InvalidState {
            error: InvalidState::InvalidSignatures(1),
            ..
        }
    ));
}

#[test]
fn a_higher_view_needs_a_valid_certificate() {
    let mut cluster = Cluster::new(4);
    cluster.propose(0, "k", "v1");
    cluster.run();
    let mut state = cluster.replicas[0].state(&key()).unwrap().clone();
    if let Some(cert) = state.accepted.as_mut() {
        cert.value = data("forged");
    }
    let mut fresh = Replica::new(
        Box::new(crypto(4).signer(3)),
        Arc::new(crypto(4)),
        Arc::new(AcceptAll),
    );
    fresh.add_peer(0);
    let step = fresh.receive(
        0,
        SyncMessage::Updates {
            verified: false,
            updates: vec![KeyUpdate::whole(&key(), &state)],
        },
    );
    assert!(matches!(
        &step.faults[0].reason,
        FaultReason::InvalidState {
            error: InvalidState::InvalidCertificate(0),
            ..
        }
    ));
    assert!(fresh.get(&key()).is_none());
}

// The wire format is versioned and bounded.
#[test]
fn decoding_rejects_oversized_foreign_and_garbage_messages() {
    let big = vec![0u8; MAX_MESSAGE_BYTES + 1];
    assert!(matches!(decode(&big, 4), Err(WireError::TooLarge(_))));
    let mut bytes = encode(&SyncMessage::MerkleRoot {
        root: hash(Domain::Other, &[]),
    })
    .unwrap();
    assert!(decode(&bytes, 4).is_ok());
    bytes[0] = 9;
    assert!(matches!(decode(&bytes, 4), Err(WireError::Version(9))));
    assert!(matches!(
        decode(&[WIRE_VERSION as u8, 0, 200, 200, 200], 4),
        Err(WireError::Decode(_))
    ));
    let keys = (0..300)
        .map(|i| Key::new(format!("k{i}")).unwrap())
        .collect();
    let bytes = encode(&SyncMessage::NeedState { keys }).unwrap();
    assert!(matches!(decode(&bytes, 4), Err(WireError::Bounds(_))));
}

#[test]
fn votes_travel_grouped_by_kind_round_and_value_and_come_back_whole() {
    let c = crypto(7);
    let (x, y) = (data("x"), data("y"));
    let mut votes: Vec<WireBallot> = (0..7)
        .map(|m| {
            vote(
                &c,
                m,
                VoteKind::PreCommit,
                0,
                if m % 3 == 0 { &y } else { &x },
            )
        })
        .chain((0..5).map(|m| vote(&c, m, VoteKind::Commit, 1, &x)))
        .collect();
    let a = vote(&c, 6, VoteKind::Commit, 1, &x);
    let b = vote(&c, 6, VoteKind::Commit, 1, &y);
    let (
        Ballot::Vote {
            value: va,
            signature: sa,
        },
        Ballot::Vote {
            value: vb,
            signature: sb,
        },
    ) = (a.ballot, b.ballot)
    else {
        panic!("single votes");
    };
    let (first, second) = if va < vb {
        ((va, sa), (vb, sb))
    } else {
        ((vb, sb), (va, sa))
    };
    votes.push(WireBallot {
        ballot: Ballot::Equivocated { first, second },
        ..a
    });
    let message = SyncMessage::Updates {
        verified: false,
        updates: vec![update(vec![x.clone(), y.clone()], votes.clone(), true)],
    };
    let bytes = encode(&message).unwrap();
    let SyncMessage::Updates { updates, .. } = decode(&bytes, 7).unwrap() else {
        panic!("updates");
    };
    let key_of = |w: &WireBallot| (w.kind, w.round, w.member, format!("{:?}", w.ballot));
    let mut sent: Vec<_> = votes.iter().map(key_of).collect();
    let mut got: Vec<_> = updates[0].votes.iter().map(key_of).collect();
    sent.sort();
    got.sort();
    assert_eq!(
        sent, got,
        "every slot comes back, equivocation proof included"
    );
    // 13 single votes in 3 groups: one value hash per group, not per vote.
    let ungrouped_per_vote = 1 + 1 + 1 + 1 + 32 + 48;
    assert!(
        bytes.len() < 13 * ungrouped_per_vote,
        "{} bytes for 13 votes",
        bytes.len()
    );
}

/// A vote group names a value the link has already carried by 8 bytes of its hash instead of 32;
/// the receiver resolves the name against what the link carried and merges the votes as if they
/// had come whole.
#[test]
fn votes_for_a_value_the_link_carried_name_it_short_and_resolve_at_the_receiver() {
    let c = crypto(4);
    let replica = |i: MemberIndex| linked(&c, i, &[0, 1, 2, 3]);
    let (mut a, mut b) = (replica(0), replica(1));
    let x = data("x");
    let (step, _) = a.propose(key(), x.clone()).unwrap();
    let first: Vec<SyncMessage> = step
        .into_outgoing()
        .into_iter()
        .chain(a.flush().into_outgoing())
        .filter(|(to, _)| *to == 1)
        .map(|(_, m)| m)
        .collect();
    let first_updates: Vec<KeyUpdate> = first
        .iter()
        .flat_map(|m| match m {
            SyncMessage::Updates { updates, .. } => updates.clone(),
            _ => vec![],
        })
        .collect();
    assert!(
        first_updates
            .iter()
            .all(|u| u.short_refs && u.values == vec![x.clone()]),
        "the body crosses in the same update, so the proposer's vote already names it short"
    );
    for message in first {
        let _ = b.receive(0, message);
    }
    // b's own PRE-COMMIT goes back to a, naming x, which this link carried, by a short name.
    let back: Vec<KeyUpdate> = pushed(&b.flush(), Some(0));
    assert!(!back.is_empty() && back.iter().all(|u| u.short_refs && u.values.is_empty()));
    let message = SyncMessage::Updates {
        verified: false,
        updates: back.clone(),
    };
    let short = encode(&message).unwrap();
    let whole = encode(&SyncMessage::Updates {
        verified: false,
        updates: back
            .iter()
            .map(|u| KeyUpdate {
                short_refs: false,
                ..u.clone()
            })
            .collect(),
    })
    .unwrap();
    assert_eq!(whole.len() - short.len(), 24, "24 bytes saved per group");
    let decoded = decode(&short, 4).unwrap();
    let SyncMessage::Updates { updates, .. } = &decoded else {
        panic!("updates");
    };
    assert!(updates[0].short_refs);
    let step = a.receive(1, decoded);
    assert!(step.faults.is_empty());
    let state = a.state(&key()).unwrap();
    assert_eq!(
        state
            .ballot(VoteKind::PreCommit, 0, 1)
            .and_then(|b| b.vote_value()),
        Some(x.hash()),
        "b's vote, resolved to the whole hash of x"
    );
}

/// A short name the link never carried cannot be read: the receiver asks for the whole state and
/// blames nobody, and it never resolves the name against a value that reached it some other way.
#[test]
fn a_short_name_the_link_never_carried_asks_for_the_whole_state_without_blame() {
    let c = crypto(4);
    let mut a = pusher(&c, &[1, 2]);
    let x = data("x");
    // a holds x (from member 2), but its link with member 1 never carried it.
    let from_two = SyncMessage::Updates {
        verified: false,
        updates: vec![update(
            vec![x.clone()],
            vec![vote(&c, 2, VoteKind::PreCommit, 0, &x)],
            false,
        )],
    };
    assert!(a.receive(2, from_two).faults.is_empty());
    let named = SyncMessage::Updates {
        verified: false,
        updates: vec![KeyUpdate {
            short_refs: true,
            ..update(vec![], vec![vote(&c, 1, VoteKind::PreCommit, 0, &x)], false)
        }],
    };
    let step = a.receive(1, decode(&encode(&named).unwrap(), 4).unwrap());
    assert!(step.faults.is_empty(), "not the sender's fault");
    assert!(
        step.outgoing()
            .any(|(to, m)| *to == 1 && matches!(m, SyncMessage::NeedState { .. })),
        "asks member 1 for its whole state"
    );
    assert!(
        a.state(&key())
            .unwrap()
            .ballot(VoteKind::PreCommit, 0, 1)
            .is_none(),
        "the unreadable vote is not merged"
    );
}

/// The core lets a step's messages leave before the write (`Step::early`) only when no own vote
/// is waiting for it, and it knows that from `votes_cast`: the count must cover every own vote a
/// step's messages carry.
#[test]
fn messages_carrying_an_own_vote_not_yet_durable_never_leave_early() {
    let c = crypto(4);
    let mut a = Replica::new(
        Box::new(c.signer(0)),
        Arc::new(c.clone()),
        Arc::new(AcceptAll),
    );
    a.add_peer(1);
    let (proposed, _) = a.propose(key(), data("x")).unwrap();
    assert_eq!(proposed.stats.votes_cast, 1);
    assert!(
        proposed.early.is_empty(),
        "the step that cast a vote waits for its write"
    );
    // A flush before the runtime confirmed the write carries that vote: it waits too.
    let flushed = a.flush();
    assert!(!flushed.messages.is_empty());
    assert!(
        flushed.early.is_empty(),
        "a flush batched behind an undurable vote waits"
    );
    a.mark_durable();
    // Now a step that casts nothing (an anti-entropy opening) may leave before its write.
    let opened = a.start_anti_entropy(1);
    assert!(opened.messages.is_empty());
    assert!(
        !opened.early.is_empty(),
        "nothing in it can be an undurable own vote"
    );
}

#[test]
fn a_step_counts_the_own_votes_its_messages_carry() {
    let c = crypto(4);
    let replica = |i: MemberIndex| linked(&c, i, &[0, 1, 2, 3]);
    let (mut a, mut b) = (replica(0), replica(1));
    let (step, _) = a.propose(key(), data("x")).unwrap();
    assert_eq!(step.stats.votes_cast, 1, "the proposer's PRE-COMMIT");
    let flushed = a.flush();
    let to_b: Vec<SyncMessage> = step
        .into_outgoing()
        .into_iter()
        .chain(flushed.into_outgoing())
        .filter(|(to, _)| *to == 1)
        .map(|(_, m)| m)
        .collect();
    assert!(!to_b.is_empty());
    let mut cast = 0;
    for message in to_b.clone() {
        cast += b.receive(0, message).stats.votes_cast;
    }
    assert_eq!(cast, 1, "b PRE-COMMITs the value it learnt");
    for message in to_b {
        let again = b.receive(0, message);
        assert_eq!(again.stats.votes_cast, 0, "nothing new: no own vote");
    }
}

/// Member `me`'s replica with neighbours `peers` (itself among them is ignored).
fn linked(c: &StandInCrypto, me: MemberIndex, peers: &[MemberIndex]) -> Replica {
    let mut replica = Replica::new(
        Box::new(c.signer(me)),
        Arc::new(c.clone()),
        Arc::new(AcceptAll),
    );
    for &peer in peers {
        replica.add_peer(peer);
    }
    replica
}

/// Member 0's replica with neighbours `peers`, for the push tests.
fn pusher(c: &StandInCrypto, peers: &[MemberIndex]) -> Replica {
    linked(c, 0, peers)
}

/// Once a neighbour is known to hold a PRE-COMMIT quorum for a value, the eager push stops
/// sending it more PRE-COMMITs of that group (they cannot change what it does), while our own
/// COMMIT and everything a neighbour without a quorum lacks still go out.
#[test]
fn the_push_leaves_out_votes_a_neighbour_with_a_quorum_cannot_use() {
    let n = 7; // quorum 5
    let c = crypto(n);
    let mut a = pusher(&c, &[1, 2]);
    let x = data("x");
    let precommit = |m| vote(&c, m, VoteKind::PreCommit, 0, &x);
    let message = |update| SyncMessage::Updates {
        verified: false,
        updates: vec![update],
    };
    // Peer 1 holds a quorum of PRE-COMMITs (its own and 2..=5); peer 2 sent only its own.
    let from_1 = (1..=5).map(precommit).collect();
    let step = a.receive(1, message(update(vec![x.clone()], from_1, false)));
    assert!(step.faults.is_empty() && step.outgoing().next().is_none());
    let step = a.receive(2, message(update(vec![], vec![precommit(2)], false)));
    assert!(step.faults.is_empty() && step.outgoing().next().is_none());
    let first = a.flush();
    // A late PRE-COMMIT from member 6 arrives through peer 2.
    let step = a.receive(2, message(update(vec![], vec![precommit(6)], false)));
    assert!(step.faults.is_empty() && step.outgoing().next().is_none());
    let second = a.flush();
    let slots_to = |step: &Step, peer| -> Vec<(VoteKind, MemberIndex)> {
        pushed(step, Some(peer))
            .into_iter()
            .flat_map(|u| u.votes)
            .map(|w| (w.kind, w.member))
            .collect()
    };
    let to_1: Vec<_> = [slots_to(&first, 1), slots_to(&second, 1)].concat();
    assert!(
        to_1.contains(&(VoteKind::Commit, 0)),
        "our COMMIT reaches peer 1: {to_1:?}"
    );
    assert!(
        !to_1
            .iter()
            .any(|&(kind, m)| kind == VoteKind::PreCommit && m == 6),
        "peer 1 already has a quorum, member 6's PRE-COMMIT is left out: {to_1:?}"
    );
    let to_2: Vec<_> = [slots_to(&first, 2), slots_to(&second, 2)].concat();
    let precommits_to_2: BTreeSet<MemberIndex> = to_2
        .iter()
        .filter(|(kind, _)| *kind == VoteKind::PreCommit)
        .map(|&(_, m)| m)
        .collect();
    assert!(
        !precommits_to_2.contains(&2) && precommits_to_2.len() + 1 >= 5,
        "peer 2 is topped up to a quorum (it had only its own vote): {to_2:?}"
    );
    assert!(
        to_2.contains(&(VoteKind::Commit, 0)),
        "our COMMIT reaches peer 2: {to_2:?}"
    );
}

/// Runs `a`'s own schedule ([`Replica::tick`] at [`Replica::next_tick`]) for one flush period
/// from `clock`, so at least one eager push runs, and gathers what it sends.
fn run_schedule(a: &mut Replica, clock: &mut u64) -> Step {
    let until = *clock + Cadence::default().flush_every;
    let mut step = Step::default();
    while a.next_tick() <= until {
        *clock = a.next_tick().max(*clock);
        step.absorb(a.tick(*clock));
    }
    *clock = until;
    step
}

/// A neighbour whose link the runtime calls busy gets nothing from the scheduled push and, once
/// its link is ready, one delta with everything that changed meanwhile; the other neighbours are
/// pushed to at once.
#[test]
fn a_busy_link_is_held_back_and_then_gets_everything_at_once() {
    let n = 4;
    let c = crypto(n);
    let mut a = pusher(&c, &[1, 2]);
    let votes_to = |step: &Step, peer| -> Vec<WireBallot> {
        pushed(step, Some(peer))
            .into_iter()
            .flat_map(|u| u.votes)
            .collect()
    };
    let (proposed, _) = a.propose(key(), data("x")).unwrap();
    assert!(
        proposed.outgoing().next().is_none(),
        "the push waits for a flush"
    );
    let mut clock = 0;
    a.set_link_ready(1, false);
    let busy = run_schedule(&mut a, &mut clock);
    assert!(pushed(&busy, Some(1)).is_empty(), "peer 1's link is busy");
    assert_eq!(
        votes_to(&busy, 2).len(),
        1,
        "peer 2 gets our PRE-COMMIT now"
    );
    // Member 3's PRE-COMMIT arrives while peer 1's link is still busy.
    let x = data("x");
    let late = SyncMessage::Updates {
        verified: false,
        updates: vec![update(
            vec![],
            vec![vote(&c, 3, VoteKind::PreCommit, 0, &x)],
            false,
        )],
    };
    let step = a.receive(2, late);
    assert!(step.faults.is_empty());
    let still_busy = run_schedule(&mut a, &mut clock);
    assert!(pushed(&still_busy, Some(1)).is_empty());
    a.set_link_ready(1, true);
    let free = run_schedule(&mut a, &mut clock);
    let members: BTreeSet<MemberIndex> = votes_to(&free, 1).iter().map(|w| w.member).collect();
    assert_eq!(
        members,
        BTreeSet::from([0, 3]),
        "peer 1 gets both PRE-COMMITs in one flush"
    );
    assert!(votes_to(&free, 2).is_empty(), "peer 2 already had both");
}

/// Round-0 PRE-COMMIT and COMMIT votes of `members` for `value`.
fn round_zero_votes(c: &StandInCrypto, members: &[MemberIndex], value: &Value) -> Vec<WireBallot> {
    members
        .iter()
        .flat_map(|&m| {
            [VoteKind::PreCommit, VoteKind::Commit].map(|kind| vote(c, m, kind, 0, value))
        })
        .collect()
}

/// A decision's certificate crosses each link once: a neighbour's older messages still in
/// flight when our new view's whole state left do not make us send that whole state again.
#[test]
fn the_certificate_is_pushed_once_per_neighbour() {
    let n = 4; // quorum 3
    let c = crypto(n);
    let mut a = pusher(&c, &[1]);
    let x = data("x");
    let (_, _) = a.propose(key(), x.clone()).unwrap();
    let from_1 = |votes: Vec<WireBallot>| SyncMessage::Updates {
        verified: false,
        updates: vec![update(vec![x.clone()], votes, false)],
    };
    let votes = round_zero_votes(&c, &[1, 2], &x);
    let step = a.receive(1, from_1(votes));
    assert_eq!(step.decisions.len(), 1, "own votes complete both quorums");
    let certificates = |step: &Step| {
        pushed(step, None)
            .iter()
            .filter(|u| u.accepted.is_some())
            .count()
    };
    assert_eq!(certificates(&a.flush()), 1, "the new view goes whole");
    // Peer 1's view-0 messages sent before ours arrived.
    for late in 0..3 {
        let step = a.receive(1, from_1(vec![vote(&c, 3, VoteKind::PreCommit, 0, &x)]));
        assert!(step.faults.is_empty(), "late message {late}");
        assert_eq!(certificates(&step), 0);
        assert_eq!(certificates(&a.flush()), 0, "no second copy ({late})");
    }
}

/// A neighbour that holds the decided value's body (the link carried it in the closing view) gets
/// the certificate naming the value by its hash, and decides from it; one that never saw the body
/// gets it whole.
#[test]
fn a_certificate_names_a_value_the_neighbour_holds_and_sends_it_whole_otherwise() {
    let n = 4; // quorum 3
    let c = crypto(n);
    let mut a = pusher(&c, &[1]);
    let mut b = linked(&c, 1, &[0]);
    let x = data("x");
    let (step, _) = a.propose(key(), x.clone()).unwrap();
    // b learns x from a (so the link 0-1 carried it) and PRE-COMMITs it.
    for (_, message) in step
        .into_outgoing()
        .into_iter()
        .chain(a.flush().into_outgoing())
        .filter(|(to, _)| *to == 1)
    {
        let _ = b.receive(0, message);
    }
    // a gets the votes it needs to decide from members 1 and 3 by way of member 1.
    let votes = round_zero_votes(&c, &[1, 3], &x);
    let step = a.receive(
        1,
        SyncMessage::Updates {
            verified: false,
            updates: vec![update(vec![], votes, false)],
        },
    );
    assert_eq!(step.decisions.len(), 1);
    // Member 2 connects only now: its link never carried x.
    a.add_peer(2);
    let flushed = a.flush();
    let certificate = |peer| {
        pushed(&flushed, Some(peer))
            .into_iter()
            .find_map(|u| u.accepted)
            .expect("the new view carries the certificate")
    };
    assert!(matches!(certificate(1), UpdateCertificate::Named { .. }));
    assert!(matches!(certificate(2), UpdateCertificate::Whole(_)));
    let to_b: Vec<SyncMessage> = flushed
        .into_outgoing()
        .into_iter()
        .filter(|(to, _)| *to == 1)
        .map(|(_, m)| decode(&encode(&m).unwrap(), n).unwrap())
        .collect();
    let mut decided = Vec::new();
    for message in to_b {
        let step = b.receive(0, message);
        assert!(step.faults.is_empty());
        assert!(!step
            .outgoing()
            .any(|(_, m)| matches!(m, SyncMessage::NeedState { .. })));
        decided.extend(step.decisions);
    }
    assert_eq!(decided.len(), 1, "b decides from the named certificate");
    assert_eq!(b.get(&key()).map(|cert| &cert.value), Some(&x));
}

/// A named certificate whose value the receiver lacks makes it ask for the whole state.
#[test]
fn a_named_certificate_for_a_body_we_lack_asks_for_the_whole_state() {
    let n = 4;
    let c = crypto(n);
    let mut a = pusher(&c, &[1]);
    let mut b = linked(&c, 1, &[0]);
    let x = data("x");
    let _ = a.propose(key(), x.clone()).unwrap();
    let votes = round_zero_votes(&c, &[1, 2], &x);
    let step = a.receive(
        1,
        SyncMessage::Updates {
            verified: false,
            updates: vec![update(vec![x.clone()], votes, false)],
        },
    );
    assert_eq!(step.decisions.len(), 1);
    let mut named = pushed(&a.flush(), Some(1));
    assert!(matches!(
        named[0].accepted,
        Some(UpdateCertificate::Named { .. })
    ));
    named.truncate(1);
    let step = b.receive(
        0,
        SyncMessage::Updates {
            verified: false,
            updates: named,
        },
    );
    assert!(step.faults.is_empty());
    assert!(step.decisions.is_empty());
    assert!(step
        .outgoing()
        .any(|(to, m)| *to == 0 && matches!(m, SyncMessage::NeedState { .. })));
}

/// The overlay of the relay tests: member 0's neighbours are 1, 2 and 4; member 1 reaches
/// member 4 only through 0, while member 2 is linked to 4 directly.
/// With relay trees, a vote goes at once only to the neighbours whose tree for the vote's
/// origin runs through us; the others get it after the grace period (two `second_chance` calls
/// at most), unless they have shown they hold it meanwhile.
#[test]
fn relay_trees_hold_a_vote_back_until_its_grace_period_ends() {
    let n = 10; // quorum 7: the five PRE-COMMITs below never make one
    let c = crypto(n);
    let x = data("x");
    let precommit = |m| vote(&c, m, VoteKind::PreCommit, 0, &x);
    let message = |update| SyncMessage::Updates {
        verified: false,
        updates: vec![update],
    };
    let precommits_to = |step: &Step, peer| -> BTreeSet<MemberIndex> {
        pushed(step, Some(peer))
            .into_iter()
            .flat_map(|u| u.votes)
            .filter(|w| w.kind == VoteKind::PreCommit)
            .map(|w| w.member)
            .collect()
    };
    for two_already_has_it in [false, true] {
        let mut a = pusher(&c, &[1, 2, 4]);
        learn_relay_trees(&mut a, n);
        // Every neighbour has spoken in this view, so what follows travels as deltas.
        let opening = [(1, 1, vec![x.clone()]), (2, 2, vec![]), (4, 6, vec![])];
        for (peer, voter, values) in opening {
            let step = a.receive(peer, message(update(values, vec![precommit(voter)], false)));
            assert!(step.faults.is_empty());
        }
        let _ = a.flush();
        let step = a.receive(4, message(update(vec![], vec![precommit(4)], false)));
        assert!(step.faults.is_empty());
        let now = a.flush();
        assert!(
            precommits_to(&now, 1).contains(&4),
            "1 counts on us for 4's votes"
        );
        assert!(
            !precommits_to(&now, 2).contains(&4),
            "2 gets 4's votes from 4 itself"
        );
        if two_already_has_it {
            let step = a.receive(2, message(update(vec![], vec![precommit(4)], false)));
            assert!(step.faults.is_empty());
        }
        a.second_chance();
        let early = a.flush();
        assert!(
            !precommits_to(&early, 2).contains(&4),
            "still in its grace period"
        );
        a.second_chance();
        let late = a.flush();
        assert_eq!(
            precommits_to(&late, 2).contains(&4),
            !two_already_has_it,
            "after the grace period 2 gets 4's vote unless it showed it has it"
        );
        assert!(
            !precommits_to(&late, 1).contains(&4),
            "nothing is sent twice"
        );
    }
}

/// Runs one Merkle exchange opened by `b`'s root: `a` diffs against `b` (queries and answers go
/// straight through); what it decides to send is left for `a`'s next flush.
fn anti_entropy_from(b: &mut Replica, a: &mut Replica) {
    let (ai, bi) = (a.me(), b.me());
    let mut to_a: Vec<SyncMessage> = vec![SyncMessage::MerkleRoot {
        root: b.merkle_root(),
    }];
    for _ in 0..100 {
        let mut to_b = Vec::new();
        for message in to_a.drain(..) {
            let step = a.receive(bi, message);
            assert!(step.faults.is_empty());
            to_b.extend(step.into_outgoing().into_iter().filter(|(to, _)| *to == bi));
        }
        for (_, message) in to_b {
            let step = b.receive(ai, message);
            assert!(step.faults.is_empty());
            to_a.extend(
                step.into_outgoing()
                    .into_iter()
                    .filter(|(to, m)| *to == ai && !matches!(m, SyncMessage::Updates { .. }))
                    .map(|(_, m)| m),
            );
        }
        if to_a.is_empty() {
            return;
        }
    }
    panic!("the exchange did not end");
}

/// Each anti-entropy period opens one exchange (a Merkle root), with the neighbours in turn; a
/// new neighbour gets one at once. Every neighbour took part in every period before, and in a
/// busy system each exchange descends to the keys a moment apart on its two sides
/// (docs/PROTOCOL.md §11.3).
#[test]
fn anti_entropy_takes_turns_one_neighbour_per_period() {
    let c = crypto(5);
    let mut a = linked(&c, 0, &[1, 2, 3]);
    let roots = |step: Step| -> Vec<MemberIndex> {
        step.into_outgoing()
            .into_iter()
            .filter(|(_, m)| matches!(m, SyncMessage::MerkleRoot { .. }))
            .map(|(to, _)| to)
            .collect()
    };
    assert_eq!(roots(a.tick(0)), vec![1, 2, 3], "new neighbours: at once");
    let mut turns = Vec::new();
    let mut now = 0;
    while now < 20_000 {
        now = a.next_tick().max(now + 1);
        let opened = roots(a.tick(now));
        assert!(opened.len() <= 1, "one exchange per period: {opened:?}");
        turns.extend(opened);
    }
    // 20 s of periods of 0.5 to 1 s.
    assert!(
        (20..=40).contains(&turns.len()),
        "{} exchanges",
        turns.len()
    );
    for (i, pair) in turns.windows(2).enumerate() {
        let next = if pair[0] == 3 { 1 } else { pair[0] + 1 };
        assert_eq!(pair[1], next, "turn {i}: {turns:?}");
    }
    // A neighbour that connects meanwhile is greeted at the next tick, and joins the turns.
    a.add_peer(4);
    assert_eq!(roots(a.tick(now + 1)), vec![4]);
    let mut later = Vec::new();
    while later.len() < 4 {
        now = a.next_tick().max(now + 2);
        later.extend(roots(a.tick(now)));
    }
    let mut seen = later.clone();
    seen.sort_unstable();
    assert_eq!(
        seen,
        vec![1, 2, 3, 4],
        "four periods, four neighbours: {later:?}"
    );
}

/// Anti-entropy repairs a key the neighbour lacks once we have left it alone for the longest
/// exchange period, with our complete state; a key we changed within it is still being pushed,
/// so repair leaves it to the push (no complete state for it).
#[test]
fn anti_entropy_leaves_keys_the_push_is_still_syncing_alone() {
    let c = crypto(4);
    let mut a = pusher(&c, &[1]);
    let mut b = Replica::new(
        Box::new(c.signer(1)),
        Arc::new(c.clone()),
        Arc::new(AcceptAll),
    );
    let old = Key::new("old").unwrap();
    let new = Key::new("new").unwrap();
    let (step, _) = a.propose(old.clone(), data("x")).unwrap();
    assert!(step.faults.is_empty());
    let _lost = a.flush();
    anti_entropy_from(&mut b, &mut a);
    let first = a.flush();
    assert!(
        pushed(&first, Some(1)).is_empty(),
        "'old' changed since the connection: the push is taken to be bringing it"
    );
    // Time passes: 'old' has been quiet for longer than any anti-entropy period, so its leaf
    // now holds its votes. 'new', proposed now, is left out of the index until it settles.
    let _periodic = a.tick(5_000);
    let (step, _) = a.propose(new.clone(), data("y")).unwrap();
    assert!(step.faults.is_empty());
    anti_entropy_from(&mut b, &mut a);
    let second = pushed(&a.flush(), Some(1));
    let update = |key: &Key| second.iter().find(|u| u.key == *key).cloned();
    let repaired = update(&old).expect("'old' went quiet a period ago: repaired");
    assert!(repaired.complete && !repaired.votes.is_empty());
    let pushed_new = update(&new).expect("'new' goes out with the eager push");
    assert!(!pushed_new.complete, "repair left 'new' to the push");
}

/// While a key's open view is still changing, its Merkle leaf holds only what was decided (a
/// key in its first view has no leaf yet), so members that hold different parts of its votes
/// agree on the root and anti-entropy leaves it to the push; once it has been quiet for the
/// longest anti-entropy period, the leaf holds the votes and a difference shows.
#[test]
fn a_key_still_being_voted_on_is_compared_by_what_was_decided_until_it_goes_quiet() {
    let c = crypto(4);
    let mut a = pusher(&c, &[1]);
    let mut b = linked(&c, 1, &[0]);
    let _ = a.tick(1_000);
    let _ = b.tick(1_000);
    let (step, _) = a.propose(key(), data("x")).unwrap();
    assert!(step.faults.is_empty());
    assert_eq!(
        a.merkle_root(),
        b.merkle_root(),
        "the open view's votes are left to the push"
    );
    let _ = a.tick(1_999);
    assert_eq!(
        a.merkle_root(),
        b.merkle_root(),
        "not quiet for a period yet"
    );
    let _ = a.tick(2_000);
    let _ = b.tick(2_000);
    assert_ne!(
        a.merkle_root(),
        b.merkle_root(),
        "quiet for a period: the difference is anti-entropy's to repair"
    );
}

/// A decision made while its key is still being synced shows in the Merkle leaf only once that
/// window ends: a member that decided and a neighbour a moment behind it compare equal, so
/// anti-entropy does not descend to the key the push is still bringing; after the window the
/// difference shows.
#[test]
fn a_decision_shows_in_the_merkle_leaf_once_its_window_ends() {
    let c = crypto(4);
    let x = data("x");
    let mut a = pusher(&c, &[1]);
    let mut b = linked(&c, 1, &[0]);
    let _ = a.tick(1_000);
    let _ = b.tick(1_000);
    let votes = |kind, members: std::ops::Range<MemberIndex>| -> Vec<WireBallot> {
        members.map(|m| vote(&c, m, kind, 0, &x)).collect()
    };
    let mut quorum = votes(VoteKind::PreCommit, 1..4);
    quorum.extend(votes(VoteKind::Commit, 1..4));
    let step = a.receive(
        1,
        SyncMessage::Updates {
            verified: false,
            updates: vec![update(vec![x.clone()], quorum, false)],
        },
    );
    assert!(step.faults.is_empty());
    assert!(
        a.state(&key()).is_some_and(|s| s.accepted.is_some()),
        "a decided"
    );
    let step = b.receive(
        0,
        SyncMessage::Updates {
            verified: false,
            updates: vec![update(
                vec![x.clone()],
                votes(VoteKind::PreCommit, 2..3),
                false,
            )],
        },
    );
    assert!(step.faults.is_empty());
    assert!(
        b.state(&key()).is_some_and(|s| s.accepted.is_none()),
        "b has not"
    );
    assert_eq!(
        a.merkle_root(),
        b.merkle_root(),
        "a decision a moment old is left to the push"
    );
    let _ = a.tick(2_000);
    let _ = b.tick(2_000);
    assert_ne!(
        a.merkle_root(),
        b.merkle_root(),
        "the window is over: the decision shows"
    );
}

/// A neighbour's first update in a view is thinned like any delta (it is not marked complete);
/// a neighbour that asks for the state gets all of it, complete.
#[test]
fn only_an_asked_for_state_goes_whole() {
    let n = 10;
    let c = crypto(n);
    let x = data("x");
    let precommit = |m| vote(&c, m, VoteKind::PreCommit, 0, &x);
    let mut a = pusher(&c, &[1, 2, 4]);
    learn_relay_trees(&mut a, n);
    let step = a.receive(
        4,
        SyncMessage::Updates {
            verified: false,
            updates: vec![update(vec![x.clone()], vec![precommit(4)], false)],
        },
    );
    assert!(step.faults.is_empty());
    let first = pushed(&a.flush(), Some(2));
    assert_eq!(first.len(), 1);
    assert!(!first[0].complete && first[0].values == vec![x.clone()]);
    let members: BTreeSet<MemberIndex> = first[0].votes.iter().map(|w| w.member).collect();
    assert!(members.contains(&0) && !members.contains(&4), "{members:?}");
    let step = a.receive(2, SyncMessage::NeedState { keys: vec![key()] });
    assert!(step.faults.is_empty());
    let asked = pushed(&a.flush(), Some(2));
    assert_eq!(asked.len(), 1);
    assert!(asked[0].complete);
    let members: BTreeSet<MemberIndex> = asked[0].votes.iter().map(|w| w.member).collect();
    assert_eq!(members, BTreeSet::from([0, 4]));
}
