//! Contracts written in Rust and compiled into every member.

use crate::machine::{
    check_machine, Contract, ContractError, State, TransitionContext, TransitionSpec,
};
use serde_json::Value as Json;

/// A guard written in Rust: `Err(reason)` refuses the transition.
pub type NativeGuard = fn(&State, &Json, &TransitionContext) -> Result<(), String>;

/// An effect written in Rust: the data of the next state.
pub type NativeEffect = fn(&State, &Json, &TransitionContext) -> Result<Json, String>;

/// A machine built from Rust functions. Plain function pointers (no closures) keep it free of
/// captured local state, which is what makes it deterministic across members.
pub struct NativeContract {
    name: String,
    specs: Vec<TransitionSpec>,
    rules: Vec<(NativeGuard, NativeEffect)>,
}

impl NativeContract {
    /// An empty machine; add transitions with [`NativeContract::transition`], then
    /// [`NativeContract::build`].
    pub fn new(name: &str) -> NativeContract {
        NativeContract {
            name: name.to_owned(),
            specs: Vec::new(),
            rules: Vec::new(),
        }
    }

    /// Declares a transition.
    pub fn transition(
        mut self,
        name: &str,
        from: &[&str],
        to: &str,
        guard: NativeGuard,
        effect: NativeEffect,
    ) -> NativeContract {
        self.specs.push(TransitionSpec {
            name: name.to_owned(),
            from: from.iter().map(|s| (*s).to_owned()).collect(),
            to: to.to_owned(),
        });
        self.rules.push((guard, effect));
        self
    }

    /// Checks the declared machine.
    pub fn build(self) -> Result<NativeContract, ContractError> {
        check_machine(&self.specs)?;
        Ok(self)
    }

    fn rule(&self, spec: &TransitionSpec) -> Result<&(NativeGuard, NativeEffect), ContractError> {
        self.specs
            .iter()
            .position(|s| s.name == spec.name)
            .and_then(|i| self.rules.get(i))
            .ok_or_else(|| ContractError::UnknownTransition {
                contract: self.name.clone(),
                transition: spec.name.clone(),
            })
    }
}

impl Contract for NativeContract {
    fn name(&self) -> &str {
        &self.name
    }

    fn transitions(&self) -> &[TransitionSpec] {
        &self.specs
    }

    fn guard(
        &self,
        transition: &TransitionSpec,
        state: &State,
        input: &Json,
        ctx: &TransitionContext,
    ) -> Result<(), ContractError> {
        let (guard, _) = self.rule(transition)?;
        guard(state, input, ctx).map_err(ContractError::Refused)
    }

    fn effect(
        &self,
        transition: &TransitionSpec,
        state: &State,
        input: &Json,
        ctx: &TransitionContext,
    ) -> Result<Json, ContractError> {
        let (_, effect) = self.rule(transition)?;
        effect(state, input, ctx).map_err(ContractError::Failed)
    }
}
