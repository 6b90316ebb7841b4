//! The application's say over which writes are allowed.

use crate::state::Certified;
use crate::types::{Key, Value};

/// Why the hook did not accept a value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HookError {
    /// The value breaks the application's rules; an honest member never votes for it, so a peer
    /// that sends a vote for it is faulty.
    #[error("{0}")]
    Rejected(String),
    /// The hook cannot decide yet: the value depends on committed state this member does not hold
    /// (for instance a contract installed under another key that has not reached it). An honest
    /// sender may hold that state, so the update is set aside without blame and is repaired by
    /// anti-entropy once the dependency arrives. Dependencies must be permanent once committed,
    /// so that every member eventually gives the same answer.
    #[error("cannot decide yet: {0}")]
    Unavailable(String),
}

/// Decides whether a register may move from `old` to `new`.
///
/// Every honest member runs the same hook before it votes for a value, and a state carrying a
/// round-0 vote for a value the hook rejects is invalid, so a value can only win if at least one
/// honest member's hook accepted it. The hook must therefore be deterministic: the same inputs
/// give the same answer on every member, with no clock, randomness or local state other than
/// permanent committed facts (see [`HookError::Unavailable`]).
pub trait ValidationHook: Send + Sync {
    /// `old` is the value certified in the previous view with that view's number (`None` for a
    /// key's first value); binding user signatures to `old.view` makes them single-use.
    fn validate(&self, key: &Key, old: Option<&Certified>, new: &Value) -> Result<(), HookError>;
}

/// Accepts every write; for plain key-value use and tests.
#[derive(Clone, Copy, Debug, Default)]
pub struct AcceptAll;

impl ValidationHook for AcceptAll {
    fn validate(
        &self,
        _key: &Key,
        _old: Option<&Certified>,
        _new: &Value,
    ) -> Result<(), HookError> {
        Ok(())
    }
}

impl<F> ValidationHook for F
where
    F: Fn(&Key, Option<&Certified>, &Value) -> Result<(), HookError> + Send + Sync,
{
    fn validate(&self, key: &Key, old: Option<&Certified>, new: &Value) -> Result<(), HookError> {
        self(key, old, new)
    }
}
