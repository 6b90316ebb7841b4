//! The contract model of SCEW: a finite-state machine whose transitions each have a guard
//! `(state, input, context) -> bool` and an effect `(state, input, context) -> state`.
//!
//! Transitions also declare the states they leave from and the state they lead to, so the
//! machine's shape is visible without running code (the web app shows the moves available) and
//! a contract cannot jump to a state its author did not declare.

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// The state every asset starts in before its first transition.
pub const START: &str = "Start";

/// Longest state or transition name.
pub const MAX_NAME_LEN: usize = 32;

/// Most transitions one contract may declare.
pub const MAX_TRANSITIONS: usize = 32;

/// A state of an asset's machine: the phase it is in and the data it carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// The phase (one of the machine's declared states).
    pub name: String,
    /// The data of the asset in that phase.
    pub value: Json,
}

impl State {
    /// The state before an asset's first transition.
    pub fn start() -> State {
        State {
            name: START.to_owned(),
            value: Json::Null,
        }
    }
}

/// What a transition may know besides the state and the input: facts every member sees alike.
/// No clock and no member identity, so every member computes the same answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransitionContext {
    /// The end user who signed the request (hex of the P-256 public key).
    pub actor: String,
    /// The asset's id (its key without the `asset/` prefix).
    pub asset: String,
    /// The view of the asset's current value (`None` when it is being created).
    pub view: Option<u64>,
}

/// A transition's declared shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransitionSpec {
    /// Its name, as requests give it.
    pub name: String,
    /// States it may leave from.
    pub from: Vec<String>,
    /// The state it leads to.
    pub to: String,
}

/// Why a contract refused or could not run a transition.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ContractError {
    /// The contract declares no transition of that name.
    #[error("contract {contract} has no transition {transition:?}")]
    UnknownTransition {
        /// The contract.
        contract: String,
        /// The transition asked for.
        transition: String,
    },
    /// The transition does not leave from the asset's current state.
    #[error("{transition} is not possible from state {state}")]
    WrongState {
        /// The transition asked for.
        transition: String,
        /// The asset's current state.
        state: String,
    },
    /// The guard said no.
    #[error("{0}")]
    Refused(String),
    /// The contract's code failed or hit a sandbox limit; the transition is refused.
    #[error("contract failed: {0}")]
    Failed(String),
    /// The contract itself is unusable (does not compile, declares a malformed machine).
    #[error("invalid contract: {0}")]
    Invalid(String),
}

/// A contract: the finite-state machine that governs every asset created under it. Implemented
/// by compiled-in Rust machines ([`crate::NativeContract`]) and by sandboxed scripts installed
/// at run time ([`crate::ScriptContract`]). Must be deterministic: every member re-runs the
/// guard and effect of each proposed transition before it votes.
pub trait Contract: Send + Sync {
    /// The name assets refer to it by.
    fn name(&self) -> &str;

    /// The declared transitions.
    fn transitions(&self) -> &[TransitionSpec];

    /// Whether `transition` may happen: `Err(Refused(why))` if not.
    fn guard(
        &self,
        transition: &TransitionSpec,
        state: &State,
        input: &Json,
        ctx: &TransitionContext,
    ) -> Result<(), ContractError>;

    /// The data of the state `transition` leads to.
    fn effect(
        &self,
        transition: &TransitionSpec,
        state: &State,
        input: &Json,
        ctx: &TransitionContext,
    ) -> Result<Json, ContractError>;

    /// Runs `transition` from `state`: checks it is declared and leaves from the current state,
    /// runs the guard, then the effect.
    fn apply(
        &self,
        state: &State,
        transition: &str,
        input: &Json,
        ctx: &TransitionContext,
    ) -> Result<State, ContractError> {
        let spec = self
            .transitions()
            .iter()
            .find(|t| t.name == transition)
            .ok_or_else(|| ContractError::UnknownTransition {
                contract: self.name().to_owned(),
                transition: transition.to_owned(),
            })?;
        if !spec.from.contains(&state.name) {
            return Err(ContractError::WrongState {
                transition: transition.to_owned(),
                state: state.name.clone(),
            });
        }
        self.guard(spec, state, input, ctx)?;
        let value = self.effect(spec, state, input, ctx)?;
        Ok(State {
            name: spec.to.clone(),
            value,
        })
    }
}

/// Checks a declared machine: names are short identifiers, no transition is declared twice,
/// none leads back to [`START`], and there is a way out of [`START`].
pub fn check_machine(transitions: &[TransitionSpec]) -> Result<(), ContractError> {
    let invalid = |why: String| Err(ContractError::Invalid(why));
    if transitions.is_empty() || transitions.len() > MAX_TRANSITIONS {
        return invalid(format!(
            "a contract declares 1 to {MAX_TRANSITIONS} transitions, not {}",
            transitions.len()
        ));
    }
    for (i, t) in transitions.iter().enumerate() {
        for name in std::iter::once(&t.name)
            .chain(t.from.iter())
            .chain(std::iter::once(&t.to))
        {
            if !is_identifier(name) {
                return invalid(format!("{name:?} is not a valid state or transition name"));
            }
        }
        if t.from.is_empty() {
            return invalid(format!("transition {} leaves from no state", t.name));
        }
        if t.to == START {
            return invalid(format!("transition {} leads back to {START}", t.name));
        }
        if transitions[..i].iter().any(|u| u.name == t.name) {
            return invalid(format!("transition {} is declared twice", t.name));
        }
    }
    if !transitions
        .iter()
        .any(|t| t.from.iter().any(|s| s == START))
    {
        return invalid(format!(
            "no transition leaves {START}: assets could never be created"
        ));
    }
    Ok(())
}

/// Names are ASCII letters, digits and underscores, starting with a letter.
pub fn is_identifier(name: &str) -> bool {
    name.len() <= MAX_NAME_LEN
        && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, from: &[&str], to: &str) -> TransitionSpec {
        TransitionSpec {
            name: name.into(),
            from: from.iter().map(|s| s.to_string()).collect(),
            to: to.into(),
        }
    }

    #[test]
    fn malformed_machines_are_refused() {
        assert!(check_machine(&[spec("make", &["Start"], "Ready")]).is_ok());
        assert!(check_machine(&[]).is_err());
        assert!(check_machine(&[spec("make", &["Ready"], "Done")]).is_err());
        assert!(check_machine(&[spec("make", &["Start"], "Start")]).is_err());
        assert!(check_machine(&[spec("make", &[], "Ready")]).is_err());
        assert!(check_machine(&[spec("make!", &["Start"], "Ready")]).is_err());
        assert!(check_machine(&[
            spec("make", &["Start"], "Ready"),
            spec("make", &["Ready"], "Done")
        ])
        .is_err());
    }
}
