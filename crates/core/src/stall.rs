//! When to re-wire: the paper's eclipse defence. If this member's own writes stop committing,
//! its neighbours may be withholding votes; replacing some of them with other members gives it a
//! path to the honest majority. A pure decision on the runtime's clock (milliseconds, as given to
//! [`crate::replica::Replica::tick`]); the replica turns it into [`crate::replica::Step::rewire`],
//! so the node and the simulators re-wire by one rule.

/// A write pending this long (ms) with no own commit meanwhile counts as stalled.
pub const STALL_AFTER: u64 = 3_000;
/// Least time (ms) between two re-wirings, so a consortium that cannot commit at all (more than f
/// members down) churns its connections slowly.
pub const REWIRE_COOLDOWN: u64 = 10_000;

/// Tracks own commits and re-wirings.
#[derive(Clone, Debug, Default)]
pub struct StallWatch {
    last_commit: u64,
    last_rewire: Option<u64>,
}

impl StallWatch {
    /// A watch started at `now` (as if something had just committed: no re-wiring at start-up).
    pub fn new(now: u64) -> StallWatch {
        StallWatch {
            last_commit: now,
            last_rewire: None,
        }
    }

    /// One of this member's writes committed.
    pub fn committed(&mut self, now: u64) {
        self.last_commit = now;
    }

    /// Whether to re-wire now, given when the oldest pending own write was submitted. Records
    /// the re-wiring when it says yes.
    pub fn should_rewire(&mut self, now: u64, oldest_pending: Option<u64>) -> bool {
        let Some(oldest) = oldest_pending else {
            return false;
        };
        let stalled = now.saturating_sub(oldest) >= STALL_AFTER
            && now.saturating_sub(self.last_commit) >= STALL_AFTER;
        let cooled = self
            .last_rewire
            .is_none_or(|at| now.saturating_sub(at) >= REWIRE_COOLDOWN);
        if stalled && cooled {
            self.last_rewire = Some(now);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewires_only_when_own_writes_stall_and_not_too_often() {
        let t0 = 1_000;
        let at = |s: u64| t0 + s * 1_000;
        let mut watch = StallWatch::new(t0);
        assert!(!watch.should_rewire(at(60), None), "nothing pending");
        assert!(
            !watch.should_rewire(at(2), Some(t0)),
            "not pending long enough"
        );
        watch.committed(at(4));
        assert!(
            !watch.should_rewire(at(5), Some(t0)),
            "another write committed recently"
        );
        assert!(
            watch.should_rewire(at(7), Some(t0)),
            "pending 7 s, last commit 3 s ago"
        );
        assert!(!watch.should_rewire(at(12), Some(t0)), "cooling down");
        assert!(
            watch.should_rewire(at(17), Some(t0)),
            "cooled down, still stalled"
        );
        watch.committed(at(18));
        assert!(
            !watch.should_rewire(at(30), Some(at(29))),
            "the pending write is new"
        );
    }
}
