//! Liveness rules under one Byzantine member (docs/PROTOCOL.md §4, §4.1, §6.2): no budget an
//! honest vote needs can be filled by junk, a view can go through any number of rounds in bounded
//! memory, and Byzantine votes alone cannot pull an honest member out of a round early.

mod common;

use beaufort_core::auth::StandInCrypto;
use beaufort_core::hook::AcceptAll;
use beaufort_core::register::{patience, KeyUpdate};
use beaufort_core::replica::{Replica, Step};
use beaufort_core::types::{MemberIndex, Value, RETAINED_ROUNDS};
use beaufort_core::vote::VoteKind;
use beaufort_core::wire::SyncMessage;
use common::{crypto, data, key, update, vote};
use std::sync::Arc;

/// The Byzantine member.
const D: MemberIndex = 3;

fn member(c: &StandInCrypto, me: MemberIndex) -> Replica {
    let mut replica = Replica::new(
        Box::new(c.signer(me)),
        Arc::new(c.clone()),
        Arc::new(AcceptAll),
    );
    for peer in 0..4 {
        if peer != me {
            replica.add_peer(peer);
        }
    }
    replica
}

fn send(replica: &mut Replica, from: MemberIndex, update: KeyUpdate) -> Step {
    replica.receive(
        from,
        SyncMessage::Updates {
            verified: false,
            updates: vec![update],
        },
    )
}

/// Brings `from`'s update with round 0 split at A: C votes `x` (as A did), D votes `y` — q = 3
/// signers, two values, no quorum.
fn split_round_zero(
    c: &StandInCrypto,
    a: &mut Replica,
    from: MemberIndex,
    x: &Value,
    y: &Value,
) -> Step {
    let votes = vec![
        vote(c, 2, VoteKind::PreCommit, 0, x),
        vote(c, D, VoteKind::PreCommit, 0, y),
    ];
    send(a, from, update(vec![x.clone(), y.clone()], votes, false))
}

#[test]
fn junk_bodies_from_one_member_cannot_keep_out_the_body_an_honest_vote_needs() {
    let c = crypto(4);
    let mut a = member(&c, 0);
    let (x, y) = (data("x"), data("y"));
    let (_, _) = a.propose(key(), x.clone()).expect("proposal accepted");
    let mut evidence = 0;
    for i in 0..40 {
        let junk = data(&format!("junk-{i}"));
        let step = send(
            &mut a,
            D,
            update(
                vec![junk.clone()],
                vec![vote(&c, D, VoteKind::PreCommit, 0, &junk)],
                false,
            ),
        );
        assert!(
            step.faults.is_empty(),
            "junk from D is not blamed on anyone"
        );
        evidence += step.evidence.len();
    }
    assert_eq!(evidence, 1, "D's second junk vote proves it equivocated");
    let state = a.state(&key()).expect("state");
    assert_eq!(
        state.values.len(),
        1,
        "only our own proposal's body is held: D's slot is a proof and names no body"
    );
    // B's and C's whole states carry their round-1 votes for y: both are justified here.
    let honest = update(
        vec![y.clone()],
        vec![
            vote(&c, 1, VoteKind::PreCommit, 0, &y),
            vote(&c, 2, VoteKind::PreCommit, 0, &y),
            vote(&c, 1, VoteKind::PreCommit, 1, &y),
            vote(&c, 2, VoteKind::PreCommit, 1, &y),
        ],
        true,
    );
    let step = send(&mut a, 1, honest);
    assert!(step.faults.is_empty(), "{:?}", step.faults);
    let state = a.state(&key()).expect("state");
    assert!(state.values.contains_key(&y.hash()));
    assert!(state.ballot(VoteKind::PreCommit, 1, 2).is_some());
}

#[test]
fn a_split_round_is_left_only_after_patience_and_byzantine_votes_alone_cannot_pull_us_out() {
    let c = crypto(4);
    let mut a = member(&c, 0);
    let (x, y) = (data("x"), data("y"));
    let _ = a.tick(1_000);
    let (_, _) = a.propose(key(), x.clone()).expect("proposal accepted");
    // Round 0 at A: A and C for x, D for y — q = 3 signers, two values, no quorum.
    let step = split_round_zero(&c, &mut a, D, &x, &y);
    assert_eq!(
        step.stats.votes_cast, 0,
        "A waits before leaving the split round"
    );
    // D opens round 1 at once: one member there (f = 1) does not pull A along.
    let step = send(
        &mut a,
        D,
        update(vec![], vec![vote(&c, D, VoteKind::PreCommit, 1, &y)], false),
    );
    assert_eq!(
        step.stats.votes_cast, 0,
        "Byzantine votes alone cannot pull A out"
    );
    let step = a.tick(1_000 + patience(0) - 1);
    assert_eq!(step.stats.votes_cast, 0, "the wait is not over");
    let step = a.tick(500);
    assert_eq!(step.stats.votes_cast, 0, "the clock never goes back");
    let step = a.tick(1_000 + patience(0));
    assert_eq!(
        step.stats.votes_cast, 1,
        "the wait is over: A joins round 1"
    );
    let state = a.state(&key()).expect("state");
    assert!(state.ballot(VoteKind::PreCommit, 1, 0).is_some());
}

#[test]
fn f_plus_one_members_in_the_next_round_pull_a_waiting_member_along_at_once() {
    let c = crypto(4);
    let mut a = member(&c, 0);
    let (x, y) = (data("x"), data("y"));
    let (_, _) = a.propose(key(), x.clone()).expect("proposal accepted");
    let _ = split_round_zero(&c, &mut a, 2, &x, &y);
    let step = send(
        &mut a,
        2,
        update(
            vec![],
            vec![
                vote(&c, 2, VoteKind::PreCommit, 1, &x),
                vote(&c, D, VoteKind::PreCommit, 1, &y),
            ],
            false,
        ),
    );
    assert_eq!(
        step.stats.votes_cast, 1,
        "two members (f + 1) are in round 1: A follows"
    );
}

#[test]
fn rounds_have_no_bound_and_a_state_keeps_only_the_rounds_it_needs() {
    // A and C keep voting x; D splits every round with y (B is away). Far beyond the old bound
    // of 64 rounds, A still holds at most RETAINED_ROUNDS rounds.
    let c = crypto(4);
    let mut a = member(&c, 0);
    let (x, y) = (data("x"), data("y"));
    let (_, _) = a.propose(key(), x.clone()).expect("proposal accepted");
    let mut now = 0;
    let _ = split_round_zero(&c, &mut a, 2, &x, &y);
    for round in 1..=200 {
        now += 10_000;
        let step = a.tick(now);
        assert_eq!(step.stats.votes_cast, 1, "A opens round {round}");
        let _ = send(
            &mut a,
            2,
            update(
                vec![],
                vec![
                    vote(&c, 2, VoteKind::PreCommit, round, &x),
                    vote(&c, D, VoteKind::PreCommit, round, &y),
                ],
                false,
            ),
        );
        let state = a.state(&key()).expect("state");
        let rounds = state.precommits.len();
        assert!(
            rounds <= RETAINED_ROUNDS,
            "{rounds} rounds held at round {round}"
        );
        assert_eq!(state.values.len(), 2, "x and y, named by round-0 votes");
    }
    let state = a.state(&key()).expect("state");
    assert_eq!(state.top_round(), Some(200));
    assert!(
        state.ballot(VoteKind::PreCommit, 0, 0).is_some(),
        "round 0 is kept"
    );
}
