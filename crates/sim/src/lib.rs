//! A deterministic discrete-event simulator for Beaufort.
//!
//! The simulator drives the real protocol core ([`beaufort_core::replica::Replica`]) for N members
//! inside one process, in virtual time, with every source of randomness drawn from one seeded
//! ChaCha8 generator: the same [`SimConfig`] and seed always give the same run, event for event.
//! It models what the protocol must survive — per-link delay and jitter (hence reordering), loss,
//! partitions and heal, crash and restart from the persisted state, a re-wiring partial-mesh
//! overlay — and up to f Byzantine members with scripted strategies. Invariant checkers watch
//! every decision and every vote an honest member casts.
//!
//! Modules:
//! * [`config`]: what a run looks like (members, network, faults, adversaries, workload).
//! * [`keys`]: the consortium's signing keys (stand-in or real BLS) and the validation hook.
//! * [`node`]: one member's runtime — replica, durable "disk", crash and restart — shared by the
//!   simulator and the replay runner.
//! * [`byzantine`]: the Byzantine strategies, as rewriters of a member's outgoing messages.
//! * [`invariants`]: agreement, validity, integrity, no honest double vote, the Byzantine
//!   certificate check and liveness.
//! * [`network`]: the overlay graph and partitions.
//! * [`engine`]: the one simulator event loop (links, CPU clocks, faults, overlay, metrics),
//!   shared with the performance engine of `beaufort-perf`.
//! * [`member`]: the real core as a simulated member; [`observe`]: what the checker watches.
//! * [`sim`]: the adversarial checker, a run of the engine with free CPU and unlimited links.
//! * [`scenario`]: seeded adversarial scenarios, as `beaufort sim check` runs them.
//! * [`replay`]: scripted schedules in JSON (see `docs/REPLAY.md`), run step by step.
//! * [`conformance`]: replays a runtime's recorded inputs, to check it decided nothing itself.
//!
//! The cost tables, the PBFT and Tendermint baselines and the performance reports live in
//! `beaufort-perf`, which runs them on this crate's engine.

pub mod byzantine;
pub mod config;
pub mod conformance;
pub mod engine;
pub mod invariants;
pub mod keys;
pub mod member;
pub mod network;
pub mod node;
pub mod observe;
pub mod replay;
pub mod scenario;
pub mod sim;

pub use config::SimConfig;
pub use sim::{RunReport, Simulation};

/// Errors the simulator reports to its caller (bad configuration or replay files).
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The configuration cannot be simulated.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Key material could not be built.
    #[error("key setup failed: {0}")]
    Keys(String),
    /// A replay file could not be read or parsed.
    #[error("replay file: {0}")]
    Replay(String),
    /// A replay step cannot be carried out (bad member, missing state...).
    #[error("replay step {step}: {message}")]
    ReplayStep {
        /// Index of the step in the script.
        step: usize,
        /// What is wrong with it.
        message: String,
    },
}
