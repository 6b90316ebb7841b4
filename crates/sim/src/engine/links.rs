//! The engine's network: sending over access links and the wire, connections and their epochs,
//! partitions, crash and restart, bans and re-wiring of the overlay.
//!
//! A connection has an epoch that changes whenever it breaks (an end crashes, the link is
//! dropped or re-made, a partition cuts it, a lost stream message kills it), so messages of an
//! earlier connection are lost. As in the node, a member keeps its neighbours when one of them
//! is down and reconnects when it is back; only a ban or the core's stall rule re-wires.

use super::path::Path;
use super::{Engine, Event, Member, Topology};
use crate::config::{Micros, Transport};
use crate::network::{index, Partition};
use beaufort_core::types::MemberIndex;
use rand::seq::SliceRandom;
use rand::Rng;
use std::collections::BTreeSet;
use std::time::Instant;

/// A link's name, whichever end names it: (lower index, higher index).
fn link(a: MemberIndex, b: MemberIndex) -> (MemberIndex, MemberIndex) {
    (a.min(b), a.max(b))
}

impl<M: Member> Engine<'_, M> {
    /// Puts `bytes` on the link from `from` to `to` at `at`: the sender's upload link, the wire,
    /// the receiver's download link.
    pub(super) fn transmit(
        &mut self,
        from: MemberIndex,
        to: MemberIndex,
        bytes: Vec<u8>,
        at: Micros,
        path: Path,
    ) {
        let (f, t) = (usize::from(from), usize::from(to));
        if from == to || t >= self.members.len() || !self.overlay.linked(from, to) {
            return;
        }
        let len = bytes.len() as u64;
        let bits = (len * 8) as f64;
        let upload = (bits / self.cfg.upload_mbit).ceil() as Micros;
        let start = at.max(self.up_free[f]);
        let left = start + upload;
        self.up_free[f] = left;
        if left <= self.cfg.measure_until {
            self.result.members[f].sent += len;
        }
        self.result.stats.messages_sent += 1;
        if !self.reachable(from, to) {
            self.lose(len);
            return;
        }
        let net = &self.cfg.network;
        if self.rng.gen_bool(net.loss.clamp(0.0, 1.0)) {
            self.lose(len);
            self.connection_failed(from, to);
            return;
        }
        let jitter = net.delay_jitter.min(net.delay_mean);
        let wire = self
            .rng
            .gen_range(net.delay_mean - jitter..=net.delay_mean + jitter)
            .max(1);
        let epoch = self.link_epoch(from, to);
        let mut arrive = left + wire;
        if self.cfg.network.transport == Transport::Stream {
            // A connection is FIFO per direction.
            if let Some(&(e, last)) = self.last_arrival.get(&(from, to)) {
                if e == epoch {
                    arrive = arrive.max(last);
                }
            }
            self.last_arrival.insert((from, to), (epoch, arrive));
        }
        let download = (bits / self.cfg.download_mbit).ceil() as Micros;
        let start_down = arrive.max(self.down_free[t]);
        let delivered = start_down + download;
        self.down_free[t] = delivered;
        let mut path = path;
        path.propagation += (arrive - left) as f64;
        path.link += ((left - at) + (delivered - arrive)) as f64;
        self.schedule(
            delivered,
            Event::Arrive {
                from,
                to,
                epoch,
                bytes,
                path,
            },
        );
    }

    pub(super) fn link_epoch(&self, a: MemberIndex, b: MemberIndex) -> u64 {
        let n = self.members.len();
        let (x, y) = link(a, b);
        self.epochs[usize::from(x) * n + usize::from(y)]
    }

    fn break_link(&mut self, a: MemberIndex, b: MemberIndex) {
        let n = self.members.len();
        let (x, y) = link(a, b);
        self.epochs[usize::from(x) * n + usize::from(y)] += 1;
    }

    pub(super) fn reachable(&self, a: MemberIndex, b: MemberIndex) -> bool {
        self.partition.as_ref().is_none_or(|p| p.reachable(a, b))
    }

    /// Both ends of a link learn about each other (each charged for its handler).
    fn link_up(&mut self, a: MemberIndex, b: MemberIndex) {
        if !self.up[usize::from(a)] || !self.up[usize::from(b)] {
            return;
        }
        for (x, y) in [(a, b), (b, a)] {
            let mut ctx = self.ctx();
            self.members[usize::from(x)].link_up(&mut ctx, y);
            let started = Instant::now();
            let path = self.last_path[usize::from(x)].1;
            self.charge_and_finish(x, ctx, started, path);
        }
    }

    /// The connection breaks; both ends that are running see it go.
    fn link_down(&mut self, a: MemberIndex, b: MemberIndex) {
        self.break_link(a, b);
        for (x, y) in [(a, b), (b, a)] {
            if self.up[usize::from(x)] {
                self.members[usize::from(x)].link_down(y);
            }
        }
    }

    /// With [`Transport::Stream`], a lost message kills the connection: both ends see the peer
    /// go, and it is re-made after a reconnection delay.
    fn connection_failed(&mut self, a: MemberIndex, b: MemberIndex) {
        if self.cfg.network.transport != Transport::Stream {
            return;
        }
        self.link_down(a, b);
        self.schedule_reconnect(a, b);
    }

    fn schedule_reconnect(&mut self, a: MemberIndex, b: MemberIndex) {
        let (lo, hi) = self.cfg.network.reconnect_after;
        let delay = self.rng.gen_range(lo.min(hi)..=hi.max(lo)).max(1);
        self.schedule(self.now + delay, Event::Reconnect(a, b));
    }

    /// A broken connection is re-made, unless the link was dropped meanwhile; while the two
    /// ends are partitioned the attempt fails and is retried.
    pub(super) fn reconnect(&mut self, a: MemberIndex, b: MemberIndex) {
        if !self.overlay.linked(a, b) {
            return;
        }
        if !self.reachable(a, b) {
            self.schedule_reconnect(a, b);
            return;
        }
        self.break_link(a, b);
        self.link_up(a, b);
    }

    /// The process dies: its connections break, its neighbours keep it as a neighbour (they
    /// reconnect when it is back, as the node's peer manager keeps dialling its targets).
    pub(super) fn crash(&mut self, m: MemberIndex) {
        let i = usize::from(m);
        if !std::mem::replace(&mut self.up[i], false) {
            return;
        }
        self.incarnation[i] += 1;
        self.members[i].crash();
        let peers: Vec<MemberIndex> = self.overlay.neighbours(m).collect();
        for p in peers {
            self.link_down(m, p);
        }
    }

    /// The process starts again from its disk and reconnects to its neighbours.
    pub(super) fn restart(&mut self, m: MemberIndex) {
        let i = usize::from(m);
        if std::mem::replace(&mut self.up[i], true) {
            return;
        }
        self.incarnation[i] += 1;
        self.busy_until[i] = self.now;
        let mut ctx = self.ctx();
        let started = Instant::now();
        self.members[i].restart(&mut ctx);
        self.charge_and_finish(m, ctx, started, Path::default());
        let peers: Vec<MemberIndex> = self.overlay.neighbours(m).collect();
        for p in peers {
            if self.reachable(m, p) {
                self.break_link(m, p);
                self.link_up(m, p);
            }
        }
    }

    /// Replaces the partition (`None` heals it). Links it newly cuts go down at once (in-flight
    /// messages on them are lost); links it no longer cuts come back up.
    pub(super) fn repartition(&mut self, partition: Option<Partition>) {
        let n = self.members.len();
        let cut = |p: &Option<Partition>, a: MemberIndex, b: MemberIndex| {
            p.as_ref().is_some_and(|p| !p.reachable(a, b))
        };
        let mut newly_cut = Vec::new();
        let mut healed = Vec::new();
        for a in 0..n {
            for b in self.overlay.neighbours(index(a)) {
                let a = index(a);
                if a >= b {
                    continue;
                }
                match (cut(&self.partition, a, b), cut(&partition, a, b)) {
                    (false, true) => newly_cut.push((a, b)),
                    (true, false) => healed.push((a, b)),
                    _ => {}
                }
            }
        }
        for (a, b) in newly_cut {
            self.link_down(a, b);
        }
        self.partition = partition;
        for (a, b) in healed {
            self.break_link(a, b);
            self.link_up(a, b);
        }
    }

    /// `m` caught `peer` misbehaving: their link closes and never comes back, and `m` gets a
    /// new neighbour in its place.
    pub(super) fn ban(&mut self, m: MemberIndex, peer: MemberIndex) {
        if !self.banned.insert(link(m, peer)) {
            return;
        }
        if self.overlay.disconnect(m, peer) {
            self.result.stats.links_dropped += 1;
            self.link_down(m, peer);
            self.rewire(m);
            self.ensure_connected();
        }
    }

    /// Connects `m` to a random running, reachable member it is not linked to and has not
    /// banned.
    pub(super) fn rewire(&mut self, m: MemberIndex) {
        if self.cfg.topology != Topology::Overlay || !self.up[usize::from(m)] {
            return;
        }
        let candidates: Vec<MemberIndex> = (0..self.members.len())
            .map(index)
            .filter(|&c| c != m && self.up[usize::from(c)] && !self.overlay.linked(m, c))
            .filter(|&c| !self.banned.contains(&link(m, c)))
            .filter(|&c| self.reachable(m, c))
            .collect();
        if let Some(&c) = candidates.choose(&mut self.rng) {
            self.connect(m, c);
        }
    }

    fn connect(&mut self, a: MemberIndex, b: MemberIndex) {
        if self.overlay.connect(a, b) {
            self.result.stats.rewires += 1;
            self.break_link(a, b);
            self.link_up(a, b);
        }
    }

    /// Joins the honest members' components with random links, if the configuration asks for
    /// it (a checker's assumption: the honest members are connected).
    pub(super) fn ensure_connected(&mut self) {
        if !self.cfg.network.ensure_honest_connected {
            return;
        }
        let honest: BTreeSet<MemberIndex> = (0..self.members.len())
            .map(index)
            .filter(|m| !self.byzantine.contains(m))
            .collect();
        loop {
            let components = self.overlay.components(&honest);
            if components.len() <= 1 {
                return;
            }
            let (Some(&a), Some(&b)) = (
                components[0].choose(&mut self.rng),
                components[1].choose(&mut self.rng),
            ) else {
                return;
            };
            self.banned.remove(&link(a, b));
            self.connect(a, b);
        }
    }
}
