//! Critical-path attribution: each message and commit carries a [`Path`] that splits the time
//! since its causal chain began into propagation, link (transmission and queueing on the access
//! links), CPU wait, CPU work and batching (waiting for a timer). The engine follows, for each
//! input, the chain of the input that triggered it, so a commit's path is the chain of events
//! that completed it.

use crate::config::Micros;
use serde::Serialize;

/// Where the time of a causal chain went, in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Path {
    /// When the chain began.
    #[serde(skip)]
    pub origin: Micros,
    /// On the wire (one-way link latency).
    pub propagation: f64,
    /// Serialising onto and off the access links, including waiting behind other messages.
    pub link: f64,
    /// Waiting for the member's CPU.
    pub cpu_wait: f64,
    /// The member's CPU working.
    pub cpu: f64,
    /// Waiting for a timer (flush batching, timeouts).
    pub timer: f64,
}

impl Path {
    pub(crate) fn total(&self) -> f64 {
        self.propagation + self.link + self.cpu_wait + self.cpu + self.timer
    }

    pub(crate) fn scaled(&self, factor: f64) -> Path {
        Path {
            origin: self.origin,
            propagation: self.propagation * factor,
            link: self.link * factor,
            cpu_wait: self.cpu_wait * factor,
            cpu: self.cpu * factor,
            timer: self.timer * factor,
        }
    }

    pub(crate) fn add(&mut self, other: &Path) {
        self.propagation += other.propagation;
        self.link += other.link;
        self.cpu_wait += other.cpu_wait;
        self.cpu += other.cpu;
        self.timer += other.timer;
    }
}

/// Mean of the path components over `paths`, in ms.
pub fn mean_path(paths: &[Path]) -> Path {
    let mut sum = Path::default();
    for p in paths {
        sum.add(p);
    }
    let k = paths.len().max(1) as f64;
    sum.scaled(1.0 / k / 1_000.0)
}

/// Scales `path` so that its components add up to `latency` (the chain may have begun before
/// the submission, when a timer or an earlier message carried it).
pub fn attribute(path: &Path, latency: Micros) -> Path {
    let total = path.total();
    if total <= 0.0 {
        return Path::default();
    }
    path.scaled(latency as f64 / total)
}
