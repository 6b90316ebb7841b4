//! SCEW-style smart contracts over Beaufort registers.
//!
//! A contract is a finite-state machine ([`machine`]); an asset is one register holding its
//! contract's name and current state ([`asset`]); a transition is proposed as the register's next
//! value and every member re-runs the guard and effect before voting, through the node's
//! validation hook. Contracts are compiled-in Rust ([`native`], [`builtin`]: eShare and eLoan) or
//! Rhai scripts ([`script`]) installed at run time once a quorum of members endorsed their source
//! ([`install`]); [`registry`] holds both.

pub mod asset;
pub mod builtin;
pub mod install;
pub mod machine;
pub mod native;
pub mod registry;
pub mod script;

pub use machine::{Contract, ContractError, State, TransitionContext, TransitionSpec};
pub use native::NativeContract;
pub use registry::Registry;
pub use script::ScriptContract;

/// The eShare contract as a Rhai script: the same machine as [`builtin::eshare`], shipped to
/// show (and measure) installing a contract at run time.
pub const ESHARE_SCRIPT: &str = include_str!("../scripts/eshare.rhai");
