//! The applications on Beaufort registers and the validation hook that enforces them.
//!
//! [`loyalty`] keeps loyalty points as signed tickets; assets governed by contracts and contract
//! installs come from `beaufort-contracts`; [`hook::AppHook`] routes every key to the rules of its
//! application, and is what each member's replica runs before it votes. An application of its
//! own adds its rules with [`AppHook::with_rule`] and its compiled-in contracts with
//! `Registry::with_contract`.

pub mod hook;
pub mod loyalty;

pub use hook::{AppHook, RuleError};
