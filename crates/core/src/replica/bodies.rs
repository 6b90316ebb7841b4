//! Which bodies cross a link when votes travel as pieces (docs/PROTOCOL.md §11.2.1, "Bodies").
//!
//! A body is kept only beside a vote that names it (§4), and the key's tree may hold every such
//! vote back, so bodies need a path of their own. Each goes along its proposer's relay tree,
//! beside the proposer's single PRE-COMMIT (the *companion*), which reaches every member about
//! as fast as flooding would and once per member; and across a tree link with the first piece
//! that names it, where the receiver may lack it and could not count the piece without it. On
//! both paths a body stays back from a neighbour that evidently holds it. Before session 17
//! members sent each body about 2.7 times per member per transaction at n = 100: a member that
//! got a body beside a piece passed it on under its own vote to every neighbour, and every
//! piece up the tree carried it though the parent mostly had it already.

use super::link::{sent_slot, Known};
use super::tree_push::{companion, PiecePush};
use crate::register::WireBallot;
use crate::relay::RelayTrees;
use crate::state::RegisterState;
use crate::types::{MemberIndex, ValueHash};

/// One flush to one peer, as the choice of its bodies sees it.
pub(super) struct Relayed<'a, 'b> {
    pub state: &'a RegisterState,
    pub pieces: &'a PiecePush<'b>,
    pub relay: Option<&'a RelayTrees>,
    pub peer: MemberIndex,
    /// The key's tree held this flush's votes back past their time.
    pub released: bool,
}

impl Relayed<'_, '_> {
    /// The bodies to send: of `candidates` (bodies held, or named by another member's single
    /// PRE-COMMIT, since we last looked), those whose companion goes to this peer now, which
    /// joins `votes`; and of `named` (the values of the PRE-COMMIT pieces this flush sends),
    /// those the pieces may need. None the peer evidently holds.
    pub fn bodies(
        &self,
        known: &mut Known,
        candidates: Vec<ValueHash>,
        named: impl Iterator<Item = ValueHash>,
        votes: &mut Vec<WireBallot>,
    ) -> Vec<ValueHash> {
        let mut bodies: Vec<ValueHash> = Vec::new();
        for hash in candidates {
            if known.relayed.contains(&hash) {
                continue;
            }
            let Some(wire) = companion(self.state, hash, self.pieces.me) else {
                continue;
            };
            if self
                .relay
                .is_some_and(|trees| !trees.relays(wire.member, self.peer))
            {
                continue;
            }
            known.relayed.insert(hash);
            known.slots.insert(sent_slot(&wire));
            votes.push(wire);
            if !known.holds_body(&hash) {
                bodies.push(hash);
            }
        }
        for hash in named {
            if !bodies.contains(&hash)
                && !known.holds_body(&hash)
                && self.state.values.contains_key(&hash)
                && self.beside_pieces(hash)
            {
                bodies.push(hash);
            }
        }
        bodies
    }

    /// Whether a body goes beside a piece that names it: always down the key's tree and to a
    /// link the tree held back past its time; up only when the parent is further from the
    /// body's proposer than we are. A nearer or equally near parent has the body from the
    /// proposer's relay tree, or will before our piece arrives (at n = 100 the rare race costs
    /// a whole state now and then; sending it every time was most of the bodies that went up).
    fn beside_pieces(&self, hash: ValueHash) -> bool {
        self.pieces.tree.is_none_or(|tree| {
            self.released
                || tree.links.parent != Some(self.peer)
                || companion(self.state, hash, self.pieces.me).is_none_or(|wire| {
                    self.relay
                        .is_none_or(|trees| trees.further(self.peer, wire.member))
                })
        })
    }
}
