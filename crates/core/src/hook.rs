//! The application's say over which writes are allowed.

use crate::types::{Key, Value};

/// Decides whether a register may move from `old` to `new`.
///
/// Every honest member runs the same hook before it votes for a value, and a state carrying a
/// round-0 vote for a value the hook rejects is invalid, so a value can only win if at least one
/// honest member's hook accepted it. The hook must therefore be deterministic: the same inputs
/// give the same answer on every member, with no clock, randomness or local state.
pub trait ValidationHook: Send + Sync {
    /// `old` is the value certified in the previous view (`None` for a key's first value).
    fn validate(&self, key: &Key, old: Option<&Value>, new: &Value) -> Result<(), String>;
}

/// Accepts every write; for plain key-value use and tests.
#[derive(Clone, Copy, Debug, Default)]
pub struct AcceptAll;

impl ValidationHook for AcceptAll {
    fn validate(&self, _key: &Key, _old: Option<&Value>, _new: &Value) -> Result<(), String> {
        Ok(())
    }
}

impl<F> ValidationHook for F
where
    F: Fn(&Key, Option<&Value>, &Value) -> Result<(), String> + Send + Sync,
{
    fn validate(&self, key: &Key, old: Option<&Value>, new: &Value) -> Result<(), String> {
        self(key, old, new)
    }
}
