//! How bodies travel when votes travel as pieces (docs/PROTOCOL.md §11.2.1, "Bodies"): along
//! their proposer's relay tree beside its single vote, once per link, never back to a member
//! that shows it holds them, and not passed on by a member that got one beside a piece.

mod common;

use beaufort_core::auth::StandInCrypto;
use beaufort_core::register::KeyUpdate;
use beaufort_core::relay::{tree_root, RelayTrees, TreeLinks};
use beaufort_core::replica::{Replica, Step};
use beaufort_core::types::{MemberIndex, Value};
use beaufort_core::vote::VoteKind;
use beaufort_core::wire::SyncMessage;
use common::{
    crypto, data, key, learn_relay_trees, piece, pieces_member_waiting, pushed, relay_overlay,
    update, vote,
};

const N: usize = 7;
const WAIT: u64 = 300;

/// Member `me` of [`relay_overlay`], votes as pieces.
fn member(c: &StandInCrypto, me: MemberIndex) -> Replica {
    pieces_member_waiting(c, me, &relay_overlay()[usize::from(me)], WAIT)
}

fn send(a: &mut Replica, from: MemberIndex, update: KeyUpdate) {
    let step = a.receive(
        from,
        SyncMessage::Updates {
            verified: false,
            updates: vec![update],
        },
    );
    assert!(step.faults.is_empty(), "{:?}", step.faults);
}

/// The body of `x` arrives with its proposer's single vote, from our parent on the proposer's
/// relay tree.
fn proposal_arrives(a: &mut Replica, c: &StandInCrypto, s: &Setting, x: &Value) {
    let opening = update(
        vec![x.clone()],
        vec![vote(c, s.proposer, VoteKind::PreCommit, 0, x)],
        false,
    );
    send(a, s.from, opening);
}

/// How often `step` sends `peer` the body of `value`, and `origin`'s single PRE-COMMIT for it.
fn bodies_and_votes_to(
    step: &Step,
    peer: MemberIndex,
    value: &Value,
    origin: MemberIndex,
) -> (usize, usize) {
    let updates = pushed(step, Some(peer));
    let bodies = updates
        .iter()
        .flat_map(|u| &u.values)
        .filter(|v| *v == value)
        .count();
    let votes = updates
        .iter()
        .flat_map(|u| &u.votes)
        .filter(|w| w.member == origin && w.kind == VoteKind::PreCommit)
        .count();
    (bodies, votes)
}

/// A member of the overlay, a proposer, and how the member's neighbours stand to them: the
/// neighbour the proposer's votes come from, those that want them from us, and those that
/// neither want them from us nor are on the key's tree with us (to whom a body goes only at
/// their fallback). The search is over the fixed overlay, so the choice is the same every run.
struct Setting {
    me: MemberIndex,
    proposer: MemberIndex,
    from: MemberIndex,
    relay_children: Vec<MemberIndex>,
    bystanders: Vec<MemberIndex>,
    tree: TreeLinks,
}

fn setting(trees: &[RelayTrees]) -> Setting {
    let overlay = relay_overlay();
    let root = tree_root(key().as_bytes(), 0, N);
    for me in 0..N as MemberIndex {
        let tree = trees[usize::from(me)]
            .tree_towards(root)
            .expect("a settled tree");
        for proposer in 0..N as MemberIndex {
            let Some(&from) = trees[usize::from(me)].parents_of(proposer).first() else {
                continue;
            };
            let neighbours = &overlay[usize::from(me)];
            let (relay_children, rest): (Vec<MemberIndex>, Vec<MemberIndex>) = neighbours
                .iter()
                .filter(|&&n| n != from)
                .partition(|&&n| trees[usize::from(n)].parents_of(proposer) == [me]);
            let bystanders: Vec<MemberIndex> = rest
                .into_iter()
                .filter(|&n| n != proposer && !tree.contains(n))
                .collect();
            if !relay_children.is_empty() && !bystanders.is_empty() && !tree.contains(from) {
                return Setting {
                    me,
                    proposer,
                    from,
                    relay_children,
                    bystanders,
                    tree,
                };
            }
        }
    }
    panic!("the overlay has such a member");
}

/// The crypto, a value, the [`Setting`], and its member with its relay trees learnt.
fn opened() -> (StandInCrypto, Value, Setting, Replica) {
    let c = crypto(N);
    let mut scout = member(&c, 0);
    let s = setting(&learn_relay_trees(&mut scout, N));
    let mut a = member(&c, s.me);
    let _ = learn_relay_trees(&mut a, N);
    let _ = a.tick(0);
    (c, data("x"), s, a)
}

/// A body that comes beside its proposer's vote goes on with it to the neighbours that want
/// the proposer's votes from us, once each, and to nobody else before their fallback; a
/// neighbour that sent us its own PRE-COMMIT for it gets the vote without the body. Fails if
/// bodies go to every neighbour or twice.
#[test]
fn a_body_follows_its_proposers_relay_tree_and_skips_members_that_voted_for_it() {
    let (c, x, s, mut a) = opened();
    proposal_arrives(&mut a, &c, &s, &x);
    // One relay child already voted for x (it had the body some other way), and told us in a
    // piece of its own vote before our flush.
    let voted = s.relay_children[0];
    send(
        &mut a,
        voted,
        KeyUpdate {
            pieces: vec![piece(&c, VoteKind::PreCommit, &[voted], &x)],
            ..update(Vec::new(), Vec::new(), false)
        },
    );
    let mut sent = a.flush();
    sent.absorb(a.tick(WAIT + 1));
    sent.absorb(a.flush());
    for &child in &s.relay_children[1..] {
        assert_eq!(
            bodies_and_votes_to(&sent, child, &x, s.proposer),
            (1, 1),
            "relay child {child} gets the body once, beside the proposer's vote"
        );
    }
    assert_eq!(
        bodies_and_votes_to(&sent, voted, &x, s.proposer),
        (0, 1),
        "the child that voted for x gets the proposer's vote, for its own relay children, \
         without the body"
    );
    for &other in &s.bystanders {
        assert_eq!(
            bodies_and_votes_to(&sent, other, &x, s.proposer),
            (0, 0),
            "neighbour {other} is neither on the key's tree ({:?}) nor a relay child",
            s.tree
        );
    }
}

/// A member that got a body beside a piece, before its proposer's vote, does not pass it on
/// under its own vote (it used to, to every neighbour); once the proposer's vote arrives, the
/// body goes on along the proposer's relay tree. Fails if a bystander gets the body, or if the
/// relay children never do.
#[test]
fn a_body_that_came_beside_a_piece_waits_for_its_proposers_vote_to_go_on() {
    let (c, x, s, mut a) = opened();
    let link = s
        .tree
        .all()
        .next()
        .expect("a member of the tree has a link");
    send(
        &mut a,
        link,
        KeyUpdate {
            pieces: vec![piece(&c, VoteKind::PreCommit, &[link], &x)],
            ..update(vec![x.clone()], Vec::new(), false)
        },
    );
    let mut early = a.flush();
    early.absorb(a.tick(WAIT + 1));
    early.absorb(a.flush());
    for &n in s.relay_children.iter().chain(&s.bystanders) {
        if n == link {
            continue;
        }
        assert_eq!(
            bodies_and_votes_to(&early, n, &x, s.me).0,
            0,
            "neighbour {n} gets no body under our own vote"
        );
    }
    proposal_arrives(&mut a, &c, &s, &x);
    let later = a.flush();
    for &child in &s.relay_children {
        if child == link {
            continue;
        }
        assert_eq!(
            bodies_and_votes_to(&later, child, &x, s.proposer),
            (1, 1),
            "relay child {child} gets the body with the proposer's vote"
        );
    }
    for &other in &s.bystanders {
        assert_eq!(bodies_and_votes_to(&later, other, &x, s.proposer), (0, 0));
    }
}
