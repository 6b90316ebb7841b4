//! The Beaufort protocol core.
//!
//! A leaderless Byzantine-fault-tolerant register per key (Algorithm 1 of the BeauForT paper, with
//! the locking rule that makes it safe), its state-based CRDT merge and monotone validity rules,
//! equivocation evidence, the Merkle index over all keys, and the sync protocol between two
//! neighbours. Everything here is pure: no I/O, no clock, no threads, no randomness. The node
//! runtime and the simulator drive the same [`replica::Replica`].

pub mod auth;
pub mod cadence;
pub mod changelog;
pub mod hook;
pub mod input;
pub mod merkle;
pub mod register;
pub mod relay;
pub mod replica;
pub mod stall;
pub mod state;
pub mod types;
pub mod vote;
pub mod wire;
