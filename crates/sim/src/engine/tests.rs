//! The engine's links and bans, on toy members.

use super::*;
use crate::config::{MS, SECOND};

/// Four fully connected members with `upload_mbit` access links, 60 ms links, free CPU, for 1 s.
fn world(upload_mbit: f64) -> EngineConfig {
    EngineConfig {
        seed: 1,
        network: NetworkConfig {
            delay_mean: 60 * MS,
            delay_jitter: 10 * MS,
            ensure_honest_connected: false,
            ..NetworkConfig::default()
        },
        upload_mbit,
        download_mbit: 20.0,
        host_cores: None,
        measure_until: SECOND,
        topology: Topology::Full,
    }
}

/// Runs `members` for a second.
fn run<M: Member>(cfg: EngineConfig, members: Vec<M>) -> EngineResult {
    let mut engine = Engine::new(
        cfg,
        Box::new(Free),
        members,
        Vec::new(),
        Vec::new(),
        BTreeSet::new(),
    );
    let stop = Stop {
        first_check: SECOND,
        every: SECOND,
        deadline: SECOND,
    };
    engine.run(&stop, |_| false);
    engine.into_result()
}

/// Sends one fixed-size message to every neighbour at start and records what arrives.
struct Echo {
    got: std::rc::Rc<std::cell::RefCell<Vec<(Micros, MemberIndex, usize)>>>,
    me: MemberIndex,
}

impl Member for Echo {
    fn start(&mut self, _: &mut Ctx) {}
    fn submit(&mut self, _: &mut Ctx, _: &Tx) {}
    fn receive(&mut self, ctx: &mut Ctx, from: MemberIndex, bytes: &[u8]) {
        self.got.borrow_mut().push((ctx.now, from, bytes.len()));
    }
    fn timer(&mut self, _: &mut Ctx, _: u64) {}
    fn link_up(&mut self, ctx: &mut Ctx, peer: MemberIndex) {
        if self.me == 0 {
            ctx.send(peer, vec![0; 12_500]);
        }
    }
    fn link_down(&mut self, _: MemberIndex) {}
    fn switch_strategy(&mut self, _: Strategy) {}
    fn crash(&mut self) {}
    fn restart(&mut self, _: &mut Ctx) {}
    fn drain_crypto(&mut self) -> OpCounts {
        OpCounts::default()
    }
}

/// Sends a small message to each neighbour every 100 ms; member 1 bans member 0 the first
/// time it hears from it.
struct Chatty {
    got: std::rc::Rc<std::cell::RefCell<Vec<(Micros, MemberIndex, MemberIndex)>>>,
    me: MemberIndex,
    peers: BTreeSet<MemberIndex>,
}

impl Member for Chatty {
    fn start(&mut self, ctx: &mut Ctx) {
        ctx.timers.push((100_000, 0));
    }
    fn submit(&mut self, _: &mut Ctx, _: &Tx) {}
    fn receive(&mut self, ctx: &mut Ctx, from: MemberIndex, _: &[u8]) {
        self.got.borrow_mut().push((ctx.now, from, self.me));
        if self.me == 1 && from == 0 {
            ctx.drop_links.push(0);
        }
    }
    fn timer(&mut self, ctx: &mut Ctx, _: u64) {
        for &peer in &self.peers {
            ctx.send(peer, vec![0; 100]);
        }
        ctx.timers.push((100_000, 0));
    }
    fn link_up(&mut self, _: &mut Ctx, peer: MemberIndex) {
        self.peers.insert(peer);
    }
    fn link_down(&mut self, peer: MemberIndex) {
        self.peers.remove(&peer);
    }
    fn switch_strategy(&mut self, _: Strategy) {}
    fn crash(&mut self) {}
    fn restart(&mut self, _: &mut Ctx) {}
    fn drain_crypto(&mut self) -> OpCounts {
        OpCounts::default()
    }
}

#[test]
fn a_banned_neighbour_is_never_heard_from_again() {
    let cfg = world(20.0);
    let got = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let members: Vec<Box<dyn Member>> = (0..4)
        .map(|i| {
            Box::new(Chatty {
                got: got.clone(),
                me: index(i),
                peers: BTreeSet::new(),
            }) as Box<dyn Member>
        })
        .collect();
    run(cfg, members);
    let got = got.borrow();
    let from_0_at_1: Vec<Micros> = got
        .iter()
        .filter(|(_, from, to)| (*from, *to) == (0, 1))
        .map(|(t, _, _)| *t)
        .collect();
    assert_eq!(from_0_at_1.len(), 1, "one message, then the link is gone");
    let from_1_at_0 = got
        .iter()
        .filter(|(_, from, to)| (*from, *to) == (1, 0))
        .count();
    assert!(
        from_1_at_0 <= 1,
        "closed both ways: at most 1's first tick, sent before the ban"
    );
    let later_from_2 = got
        .iter()
        .filter(|(t, from, to)| (*from, *to) == (2, 1) && *t > from_0_at_1[0])
        .count();
    assert!(later_from_2 >= 5, "the other links stay up: {later_from_2}");
}

#[test]
fn bandwidth_is_accounted_per_direction_and_uploads_queue() {
    let mut cfg = world(1.0);
    cfg.network.delay_jitter = 0;
    cfg.download_mbit = 100.0;
    let latency = cfg.network.delay_mean;
    let got = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let members: Vec<Box<dyn Member>> = (0..4)
        .map(|i| {
            Box::new(Echo {
                got: got.clone(),
                me: index(i),
            }) as Box<dyn Member>
        })
        .collect();
    let result = run(cfg, members);
    // 12,500 bytes = 100 ms at 1 Mbit/s: the three copies leave one after another.
    let mut arrivals: Vec<Micros> = got.borrow().iter().map(|(t, _, _)| *t).collect();
    arrivals.sort_unstable();
    assert_eq!(arrivals.len(), 3);
    let download = 1_000; // 12,500 bytes at 100 Mbit/s
    assert_eq!(arrivals[0], 100_000 + latency + download);
    assert_eq!(arrivals[2], 300_000 + latency + download);
    assert_eq!(result.members[0].sent, 37_500);
    assert_eq!(result.members[0].received, 0);
    assert_eq!(result.members[1].received, 12_500);
    assert_eq!(result.stats.messages_delivered, 3);
}
