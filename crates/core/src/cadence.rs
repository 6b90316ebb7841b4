//! When a member does its periodic duties: the eager push (flush), the Merkle anti-entropy
//! exchange with every neighbour, and the second chance of votes a relay tree held back. The
//! replica decides these on [`crate::replica::Replica::tick`] from the time the runtime gives it,
//! so the node, the simulators and the browser run one schedule and differ only in their clock.
//!
//! Timers start at a random phase and anti-entropy periods are jittered, from a seeded generator,
//! so members do not act in lockstep; the seed changes only when things happen, never what is
//! safe.

/// The longest wait for pieces a network may configure (milliseconds): the wait is paid on
/// every phase of every decision, so anything longer is a mistake, not a trade-off.
pub const MAX_AGGREGATE_WAIT_MS: u64 = 5_000;

/// How often a member does its periodic duties, in milliseconds of the runtime's clock, and how
/// its relay trees are shaped. The defaults are what a deployed member runs; the simulator takes
/// them too unless a study asks otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cadence {
    /// Period of the eager push: changes wait at most this long to leave.
    pub flush_every: u64,
    /// Least and most time between two anti-entropy exchanges (the period is drawn anew each
    /// time, so exchanges of different members do not line up).
    pub anti_entropy_every: (u64, u64),
    /// Period of the relay trees' second chance: a vote held back from a neighbour is offered
    /// to it after one to two periods.
    pub second_chance_every: u64,
    /// Parents per origin in the relay trees; 0 floods every vote to every neighbour.
    pub relay_parents: usize,
    /// `None`: votes travel as single shares on the per-origin relay trees. `Some(wait)`: votes
    /// travel combined into pieces along one tree per key and view, and a member waits up to
    /// `wait` for its other tree links before it tells one what it holds (docs/AGGREGATION.md
    /// §3.6, §3.8): the knob between latency and bytes.
    pub aggregate_wait: Option<u64>,
    /// With pieces: how long a neighbour off a key's tree waits for the votes the tree should
    /// have brought it before we send ours (§3.7), besides the waits of a view's two phases
    /// ([`Cadence::fallback`]); what a withholding or failed tree member costs at most.
    pub aggregate_fallback: u64,
    /// Seeds the timers' phases and jitter.
    pub seed: u64,
}

impl Cadence {
    /// How long a neighbour off a key's tree waits before we send it our held votes:
    /// `aggregate_fallback` plus the `aggregate_wait` each of a view's two phases may spend on
    /// the tree. Less, and the fallback fires in views the tree was about to finish: at
    /// n = 100 with a 300 ms wait, views take 1.1–1.25 s and a flat 1 s fallback sent every
    /// off-tree neighbour our votes in every view, 28 % of all bytes (docs/PROTOCOL.md §11.2.1).
    pub fn fallback(&self) -> u64 {
        let wait = self.aggregate_wait.unwrap_or(0);
        self.aggregate_fallback
            .saturating_add(wait.saturating_mul(2))
    }
}

impl Cadence {
    /// How long after a key's change it still counts as being synced by the eager push, so its
    /// Merkle leaf shows what was decided before and an exchange leaves it alone
    /// (docs/PROTOCOL.md §11.3): the longest anti-entropy period, and with pieces at least the
    /// [`Cadence::fallback`], the push's own repair of a failed tree. A view takes longer than
    /// one period with pieces (1.1–1.2 s at n = 100), so a shorter window showed keys still in
    /// flight to exchanges, and members whose windows opened a few hops apart disagreed on
    /// decided keys: half of the Merkle bytes.
    pub fn settle(&self) -> u64 {
        let (lo, hi) = self.anti_entropy_every;
        let push_repair = if self.aggregate_wait.is_some() {
            self.fallback()
        } else {
            0
        };
        lo.max(hi).max(push_repair)
    }
}

impl Default for Cadence {
    fn default() -> Cadence {
        Cadence {
            flush_every: 5,
            anti_entropy_every: (500, 1_000),
            second_chance_every: 300,
            relay_parents: 1,
            aggregate_wait: None,
            aggregate_fallback: 1_000,
            seed: 0,
        }
    }
}

/// The duties due at one tick.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Due {
    pub flush: bool,
    pub second_chance: bool,
    pub anti_entropy: bool,
}

/// When each duty is next due.
#[derive(Clone, Debug)]
pub(crate) struct Timers {
    flush: u64,
    second_chance: u64,
    anti_entropy: u64,
    rng: SplitMix,
}

impl Timers {
    /// Timers started at `now`, each at a random phase within its period.
    pub fn start(cadence: &Cadence, now: u64, salt: u64) -> Timers {
        let mut rng = SplitMix(cadence.seed ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let flush = now + rng.between(1, cadence.flush_every.max(1));
        let second_chance = now + rng.between(1, cadence.second_chance_every.max(1));
        let anti_entropy = now + anti_entropy_period(cadence, &mut rng);
        Timers {
            flush,
            second_chance,
            anti_entropy,
            rng,
        }
    }

    /// The duties due at `now`, each rescheduled for its next period.
    pub fn due(&mut self, cadence: &Cadence, now: u64) -> Due {
        let mut due = Due::default();
        if now >= self.flush {
            due.flush = true;
            self.flush = now + cadence.flush_every.max(1);
        }
        if now >= self.second_chance {
            due.second_chance = true;
            self.second_chance = now + cadence.second_chance_every.max(1);
        }
        if now >= self.anti_entropy {
            due.anti_entropy = true;
            self.anti_entropy = now + anti_entropy_period(cadence, &mut self.rng);
        }
        due
    }

    /// When the next duty is due.
    pub fn next(&self) -> u64 {
        self.flush.min(self.second_chance).min(self.anti_entropy)
    }
}

fn anti_entropy_period(cadence: &Cadence, rng: &mut SplitMix) -> u64 {
    let (lo, hi) = cadence.anti_entropy_every;
    rng.between(lo.min(hi).max(1), hi.max(lo).max(1))
}

/// A small deterministic generator (SplitMix64): the same sequence on every platform.
#[derive(Clone, Debug)]
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut x = self.0;
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }

    /// Uniform in `lo..=hi` (`lo <= hi`), up to a negligible modulo bias.
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The off-tree fallback leaves room for the waits of a view's two phases on the tree.
    #[test]
    fn the_fallback_grows_with_the_wait_for_pieces() {
        let single = Cadence::default();
        assert_eq!(single.fallback(), single.aggregate_fallback);
        let pieces = Cadence {
            aggregate_wait: Some(300),
            ..Cadence::default()
        };
        assert_eq!(pieces.fallback(), 1_600);
        let absurd = Cadence {
            aggregate_wait: Some(u64::MAX),
            ..Cadence::default()
        };
        assert_eq!(absurd.fallback(), u64::MAX);
    }

    #[test]
    fn every_duty_comes_due_once_per_period_and_the_next_deadline_says_when() {
        let cadence = Cadence::default();
        let mut timers = Timers::start(&cadence, 1_000, 3);
        let mut flushes = 0;
        let mut exchanges = 0;
        let mut second_chances = 0;
        let mut now = 1_000;
        while now < 11_000 {
            now = timers.next();
            let due = timers.due(&cadence, now);
            assert!(
                due.flush || due.second_chance || due.anti_entropy,
                "woken at {now} with nothing due"
            );
            flushes += usize::from(due.flush);
            exchanges += usize::from(due.anti_entropy);
            second_chances += usize::from(due.second_chance);
        }
        // 10 s: a flush every 5 ms, a second chance every 300 ms, an exchange every 0.5 to 1 s.
        assert!((1_999..=2_001).contains(&flushes), "{flushes} flushes");
        assert!((33..=34).contains(&second_chances), "{second_chances}");
        assert!((10..=20).contains(&exchanges), "{exchanges} exchanges");
    }

    #[test]
    fn one_seed_gives_one_schedule_and_members_are_out_of_phase() {
        let cadence = Cadence {
            seed: 42,
            ..Cadence::default()
        };
        let a = Timers::start(&cadence, 0, 1);
        let b = Timers::start(&cadence, 0, 1);
        let other = Timers::start(&cadence, 0, 2);
        assert_eq!(
            (a.flush, a.second_chance, a.anti_entropy),
            (b.flush, b.second_chance, b.anti_entropy)
        );
        assert_ne!(
            (a.flush, a.second_chance, a.anti_entropy),
            (other.flush, other.second_chance, other.anti_entropy)
        );
    }
}
