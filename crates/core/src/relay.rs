//! Relay trees: which neighbours a member forwards another member's votes to, learnt from its
//! neighbours alone.
//!
//! Flooding every vote to every neighbour delivers it to each member once per neighbour (about
//! seven times on the paper's overlay), and almost all of those copies arrive within one link
//! latency of each other, so no knowledge of what a neighbour holds can suppress them in time.
//! Relay trees instead forward the votes *cast by* an origin along shortest paths from it: each
//! member takes an origin's votes at once only from its chosen *parents* for that origin, so the
//! first copy arrives as early as flooding would bring it. Votes held back are not lost: the
//! replica offers them again after a grace period (see `Replica::second_chance`) unless the
//! neighbour has meanwhile shown it has them or no longer needs them, which repairs a tree cut
//! by a crashed or withholding relay. Whole states are never thinned.
//!
//! The trees are built by distance vectors, so no member needs a map of the whole overlay: each
//! member tells each neighbour, in a [`crate::wire::SyncMessage::Routes`] advert, its hop count
//! to every origin and the origins it wants from that neighbour. A member's hop count to an
//! origin is one more than its nearest neighbour's; its parents for the origin are up to
//! `parents` of the neighbours that are one hop closer, those with the lowest tie-break hash of
//! (origin, member, neighbour), which spreads the relaying over the candidates. A member that
//! knows no parent for an origin (at start, or after a link broke) wants that origin from every
//! neighbour: flooding is the fallback, never silence.
//!
//! What a neighbour says is believed only about itself: a neighbour that claims to be close to
//! everyone is chosen as a parent and can then withhold, which costs the grace period, as a
//! crashed relay does; one that asks for everything gets what flooding would send it.

use crate::types::MemberIndex;
use std::collections::{BTreeMap, BTreeSet};

/// The hop count that means "no route known".
pub const UNREACHABLE: u8 = u8::MAX;

/// Longest route believed: a longer claimed route counts as none, which ends a count to
/// infinity after a member crashes or a link breaks. Far above the overlay's diameter (about 5 at
/// n = 2048 with 7 neighbours); a member a longer route away is flooded, as one without a route
/// is. It was 254: routes to a crashed member then counted up for seconds (each step one advert
/// and one link latency), and a key whose tree was rooted there waited for its fallback in the
/// meantime (docs/PROTOCOL.md §11.2).
const MAX_HOPS: u8 = 15;

/// How many roots a key's tree may try in one view (docs/PROTOCOL.md §11.2.1): the first one
/// not lost (see [`RelayTrees::key_tree`]) is taken, so a crashed root costs the time routes take
/// to show it gone.
pub const ROOT_CANDIDATES: u64 = 4;

/// One neighbour as the trees know it.
#[derive(Clone, Debug, Default)]
struct Neighbour {
    /// Its hop count to every origin, once it advertised them.
    hops: Option<Vec<u8>>,
    /// The origins it wants from us at once (a bit per origin), once it said; until then it
    /// gets everything.
    wants: Option<Vec<u8>>,
    /// What we last advertised to it as the origins we want from it.
    told: Option<Vec<u8>>,
}

/// One member's relay trees: its routes to every origin, its parents, and what each neighbour
/// wants from it.
#[derive(Clone, Debug)]
pub struct RelayTrees {
    me: MemberIndex,
    members: usize,
    parents: usize,
    neighbours: BTreeMap<MemberIndex, Neighbour>,
    /// Our hop count to every origin.
    hops: Vec<u8>,
    /// Origins we knew a route to and know none to any more: crashed, or cut off.
    gone: BTreeSet<MemberIndex>,
    /// Our parents for every origin, `parents` slots per origin, [`NO_PARENT`] where there are
    /// fewer: recomputed with the hop counts, since every vote flushed and every advert asks.
    chosen: Vec<MemberIndex>,
    /// Neighbours owed an advert (ours changed, or they are new).
    owed: BTreeSet<MemberIndex>,
}

/// An empty slot in [`RelayTrees`]' table of parents.
const NO_PARENT: MemberIndex = MemberIndex::MAX;

/// A member's links in one key's tree (docs/AGGREGATION.md §3.6): the shortest-path tree
/// towards the key's root, as the relay trees already know it. Pieces of the key's votes travel
/// only along these links, so they stay disjoint and few.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeLinks {
    /// Our next hop towards the root; `None` at the root itself.
    pub parent: Option<MemberIndex>,
    /// The neighbours whose next hop towards the root is us.
    pub children: Vec<MemberIndex>,
}

impl TreeLinks {
    /// Whether `peer` is one of our links in the tree.
    pub fn contains(&self, peer: MemberIndex) -> bool {
        self.parent == Some(peer) || self.children.contains(&peer)
    }

    /// Every link: the parent first, then the children.
    pub fn all(&self) -> impl Iterator<Item = MemberIndex> + '_ {
        self.parent.into_iter().chain(self.children.iter().copied())
    }

    /// Every link but `peer`: the ones we hear from before we tell `peer` what we hold.
    pub fn others(&self, peer: MemberIndex) -> impl Iterator<Item = MemberIndex> + '_ {
        self.all().filter(move |&link| link != peer)
    }
}

/// The root of the tree a key's votes gather on in `view`: a fixed mix of the key's bytes and
/// the view, so every member picks the same root and the load of being root rotates with each
/// decision.
pub fn tree_root(key: &[u8], view: u64, members: usize) -> MemberIndex {
    root_candidate(key, view, members, 0)
}

/// The `attempt`th root a key's tree may take in `view` (0 is [`tree_root`]): a fixed mix, so
/// every member tries the same roots in the same order.
pub fn root_candidate(key: &[u8], view: u64, members: usize, attempt: u64) -> MemberIndex {
    let mut x = view ^ 0x6a09_e667_f3bc_c908;
    for chunk in key.chunks(8) {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        x = mix(x ^ u64::from_le_bytes(word));
    }
    let members = u64::try_from(members.max(1)).unwrap_or(u64::MAX);
    member(usize::try_from(mix(x.wrapping_add(attempt)) % members).unwrap_or(0))
}

/// What a member tells one neighbour (the body of a `Routes` message).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Advert {
    /// The sender's hop count to every origin ([`UNREACHABLE`]: none known).
    pub hops: Vec<u8>,
    /// The origins whose votes the sender wants from the receiver at once, a bit per origin
    /// (bit `o % 8` of byte `o / 8`).
    pub wants: Vec<u8>,
}

impl RelayTrees {
    /// The trees of member `me` in a consortium of `members`, with up to `parents` parents per
    /// origin (at least one).
    pub fn new(me: MemberIndex, members: usize, parents: usize) -> RelayTrees {
        let mut trees = RelayTrees {
            me,
            members,
            parents: parents.max(1),
            neighbours: BTreeMap::new(),
            hops: Vec::new(),
            gone: BTreeSet::new(),
            chosen: Vec::new(),
            owed: BTreeSet::new(),
        };
        trees.recompute();
        trees
    }

    /// A neighbour connected: it is owed our advert, and floods to us until it says otherwise.
    pub fn link_up(&mut self, peer: MemberIndex) {
        if peer == self.me || usize::from(peer) >= self.members {
            return;
        }
        self.neighbours.insert(peer, Neighbour::default());
        self.owed.insert(peer);
        self.recompute();
    }

    /// A neighbour disconnected: it is no longer a parent of anything.
    pub fn link_down(&mut self, peer: MemberIndex) {
        self.neighbours.remove(&peer);
        self.owed.remove(&peer);
        self.recompute();
    }

    /// A neighbour's advert arrived. Lengths are checked when the message is decoded; one of
    /// another length (a caller that skipped the check) is ignored.
    pub fn heard(&mut self, from: MemberIndex, advert: Advert) {
        if advert.hops.len() != self.members || advert.wants.len() != self.members.div_ceil(8) {
            return;
        }
        let Some(neighbour) = self.neighbours.get_mut(&from) else {
            return;
        };
        let mut hops = advert.hops;
        for (origin, hop) in hops.iter_mut().enumerate() {
            // A member is at distance 0 from itself and from nobody else.
            *hop = if origin == usize::from(from) {
                0
            } else {
                (*hop).max(1)
            };
        }
        // Every exchange repeats the advert; one that changes nothing changes no route.
        if neighbour.hops.as_ref() == Some(&hops) && neighbour.wants.as_ref() == Some(&advert.wants)
        {
            return;
        }
        neighbour.hops = Some(hops);
        neighbour.wants = Some(advert.wants);
        self.recompute();
    }

    /// Whether votes cast by `origin` go to `neighbour` at once: it chose us as a parent for
    /// that origin, or it has not told us what it wants.
    pub fn relays(&self, origin: MemberIndex, neighbour: MemberIndex) -> bool {
        let Some(wants) = self
            .neighbours
            .get(&neighbour)
            .and_then(|n| n.wants.as_ref())
        else {
            return true;
        };
        bit(wants, usize::from(origin))
    }

    /// The adverts owed since the last call (a neighbour is new, or what we tell it changed).
    pub fn take_owed(&mut self) -> Vec<(MemberIndex, Advert)> {
        let owed = std::mem::take(&mut self.owed);
        owed.into_iter()
            .filter_map(|peer| Some((peer, self.advert_for(peer)?)))
            .collect()
    }

    /// What we tell `peer` now (sent again with every anti-entropy exchange, so a lost advert
    /// costs at most one exchange period).
    pub fn advert_for(&mut self, peer: MemberIndex) -> Option<Advert> {
        let wants = self.wants_from(peer);
        let neighbour = self.neighbours.get_mut(&peer)?;
        neighbour.told = Some(wants.clone());
        Some(Advert {
            hops: self.hops.clone(),
            wants,
        })
    }

    /// Our hop count to `origin` ([`UNREACHABLE`] if none is known).
    pub fn hops_to(&self, origin: MemberIndex) -> u8 {
        self.hops
            .get(usize::from(origin))
            .copied()
            .unwrap_or(UNREACHABLE)
    }

    /// Whether `neighbour` is further from `origin` than we are (or gave no route to it): what
    /// `origin` sends along its relay tree may reach us before it reaches that neighbour.
    pub fn further(&self, neighbour: MemberIndex, origin: MemberIndex) -> bool {
        let theirs = self
            .neighbours
            .get(&neighbour)
            .and_then(|n| n.hops.as_ref())
            .and_then(|hops| hops.get(usize::from(origin)).copied())
            .unwrap_or(UNREACHABLE);
        theirs > self.hops_to(origin)
    }

    /// Our parents for `origin`: up to `parents` neighbours one hop closer to it, lowest
    /// tie-break first. Empty for ourselves and for origins we know no route to.
    pub fn parents_of(&self, origin: MemberIndex) -> &[MemberIndex] {
        let start = usize::from(origin) * self.parents;
        let Some(slots) = self.chosen.get(start..start + self.parents) else {
            return &[];
        };
        let count = slots.iter().take_while(|&&p| p != NO_PARENT).count();
        &slots[..count]
    }

    /// [`RelayTrees::parents_of`] from the neighbours' adverts and our hop counts, into
    /// `candidates` (cleared first), lowest tie-break first; the caller takes `parents`.
    fn choose_parents(&self, origin: MemberIndex, candidates: &mut Vec<(u64, MemberIndex)>) {
        candidates.clear();
        let depth = self.hops_to(origin);
        if depth == 0 || depth == UNREACHABLE {
            return;
        }
        let o = usize::from(origin);
        candidates.extend(
            self.neighbours
                .iter()
                .filter(|(_, n)| {
                    n.hops
                        .as_ref()
                        .is_some_and(|h| h.get(o) == Some(&(depth - 1)))
                })
                .map(|(&u, _)| (tie_break(origin, self.me, u), u)),
        );
        candidates.sort_unstable();
    }

    /// Our links in the tree `key`'s votes gather on in `view`, or `None` when we know no route
    /// to its root (then pieces go to every neighbour). A root we had a route to and lost is
    /// taken to be gone (crashed, or cut off) and the next of its [`ROOT_CANDIDATES`] is tried;
    /// members that agree on who is gone agree on the root. A member never yet heard of (at
    /// start, while adverts spread) is not skipped: every member still agrees on it then.
    pub fn key_tree(&self, key: &[u8], view: u64) -> Option<TreeLinks> {
        (0..ROOT_CANDIDATES)
            .map(|attempt| root_candidate(key, view, self.members, attempt))
            .find(|root| !self.gone.contains(root))
            .and_then(|root| self.tree_towards(root))
    }

    /// Our links in the tree towards `root`, or `None` when we know no route to it or run more
    /// than one parent per origin (then a neighbour that wants the root from us need not be our
    /// child, and the links would not be symmetric). A neighbour is our child when its advert
    /// puts it one hop further from the root than us and wants the root's votes from us.
    pub fn tree_towards(&self, root: MemberIndex) -> Option<TreeLinks> {
        let depth = self.hops_to(root);
        if self.parents != 1 || depth == UNREACHABLE {
            return None;
        }
        let parent = match self.parents_of(root).first() {
            Some(&parent) => Some(parent),
            None if depth == 0 => None,
            None => return None,
        };
        let r = usize::from(root);
        let children = self
            .neighbours
            .iter()
            .filter(|(_, n)| {
                n.hops.as_ref().and_then(|h| h.get(r)) == Some(&(depth + 1))
                    && n.wants.as_ref().is_some_and(|w| bit(w, r))
            })
            .map(|(&u, _)| u)
            .collect();
        Some(TreeLinks { parent, children })
    }

    /// The origins we want from `peer` at once: those it is our parent for, and those we know
    /// no parent for (flooding is the fallback).
    fn wants_from(&self, peer: MemberIndex) -> Vec<u8> {
        let mut wants = vec![0u8; self.members.div_ceil(8)];
        for origin in 0..self.members {
            let o = member(origin);
            if o == self.me {
                continue;
            }
            let parents = self.parents_of(o);
            if parents.is_empty() || parents.contains(&peer) {
                wants[origin / 8] |= 1 << (origin % 8);
            }
        }
        wants
    }

    /// Recomputes our hop counts and parents from the neighbours' adverts, and owes an advert to
    /// every neighbour when the hop counts changed or what we want from it did.
    fn recompute(&mut self) {
        let hops: Vec<u8> = (0..self.members)
            .map(|origin| {
                if origin == usize::from(self.me) {
                    return 0;
                }
                self.neighbours
                    .values()
                    .filter_map(|n| n.hops.as_ref()?.get(origin).copied())
                    .min()
                    .filter(|&h| h < MAX_HOPS)
                    .map_or(UNREACHABLE, |h| h + 1)
            })
            .collect();
        let changed = hops != self.hops;
        for (origin, (&now, &before)) in hops.iter().zip(&self.hops).enumerate() {
            if now != UNREACHABLE {
                self.gone.remove(&member(origin));
            } else if before != UNREACHABLE {
                self.gone.insert(member(origin));
            }
        }
        self.hops = hops;
        let mut chosen = vec![NO_PARENT; self.members * self.parents];
        let mut candidates = Vec::new();
        for (origin, slots) in chosen.chunks_mut(self.parents).enumerate() {
            self.choose_parents(member(origin), &mut candidates);
            for (slot, &(_, parent)) in slots.iter_mut().zip(&candidates) {
                *slot = parent;
            }
        }
        self.chosen = chosen;
        if changed {
            self.owed.extend(self.neighbours.keys().copied());
            return;
        }
        let peers: Vec<MemberIndex> = self.neighbours.keys().copied().collect();
        for peer in peers {
            let wants = self.wants_from(peer);
            if self.neighbours.get(&peer).and_then(|n| n.told.as_ref()) != Some(&wants) {
                self.owed.insert(peer);
            }
        }
    }
}

fn bit(bits: &[u8], index: usize) -> bool {
    bits.get(index / 8)
        .is_some_and(|byte| byte & (1 << (index % 8)) != 0)
}

/// A fixed mixing function (SplitMix64's finaliser) over the three indices: cheap, the same on
/// every platform, and well spread, so each member's parents differ from origin to origin.
fn tie_break(origin: MemberIndex, child: MemberIndex, candidate: MemberIndex) -> u64 {
    mix((u64::from(origin) << 32) ^ (u64::from(child) << 16) ^ u64::from(candidate))
}

fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn member(i: usize) -> MemberIndex {
    MemberIndex::try_from(i).unwrap_or(MemberIndex::MAX)
}
