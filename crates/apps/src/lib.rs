//! The applications on Beaufort registers and the validation hook that enforces them.
//!
//! [`loyalty`] keeps loyalty points as signed tickets; assets governed by contracts and contract
//! installs come from `beaufort-contracts`; [`hook::AppHook`] routes every key to the rules of its
//! application, and is what each member's replica runs before it votes.

pub mod hook;
pub mod loyalty;

pub use hook::AppHook;
