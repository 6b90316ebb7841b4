//! Contracts installed at run time, written in Rhai and run in a sandbox.
//!
//! A script declares its machine in a function `transitions()` returning an array of maps
//! `#{ name: "lend", from: ["Ready"], to: "Offered" }`, and for each transition `t` two functions:
//! `guard_t(state, input, ctx)` returning `true` to allow, or `false` or a reason string to refuse,
//! and `effect_t(state, input, ctx)` returning the next state's data. `state` is
//! `#{ name, value }`, `ctx` is `#{ actor, asset, view }` (see [`TransitionContext`]).
//!
//! The sandbox: the engine has no clock (`no_time`), no floating point, no modules, no `eval`,
//! no printing; every call is cut off after [`MAX_OPERATIONS`] operations and strings, arrays,
//! maps and call depth are bounded, so a hostile or buggy script can only refuse its own
//! transitions, never stall or crash a member. All of these limits count operations, not time,
//! so every member stops a runaway script at the same point and reaches the same verdict.

use crate::machine::{
    check_machine, Contract, ContractError, State, TransitionContext, TransitionSpec,
};
use rhai::{Dynamic, Engine, Scope, AST};
use serde_json::Value as Json;

/// Longest script source.
pub const MAX_SOURCE_LEN: usize = 32 * 1024;
/// Operations one guard or effect call may take.
pub const MAX_OPERATIONS: u64 = 100_000;
/// Longest string a script may build.
pub const MAX_STRING_LEN: usize = 16 * 1024;
/// Most elements of an array a script may build.
pub const MAX_ARRAY_LEN: usize = 1024;
/// Most entries of a map a script may build.
pub const MAX_MAP_LEN: usize = 256;
/// Deepest call chain.
pub const MAX_CALL_DEPTH: usize = 16;

/// A compiled script contract.
pub struct ScriptContract {
    name: String,
    engine: Engine,
    ast: AST,
    specs: Vec<TransitionSpec>,
}

/// The sandboxed engine every script runs in.
fn sandbox() -> Engine {
    let mut engine = Engine::new();
    engine
        .set_max_operations(MAX_OPERATIONS)
        .set_max_string_size(MAX_STRING_LEN)
        .set_max_array_size(MAX_ARRAY_LEN)
        .set_max_map_size(MAX_MAP_LEN)
        .set_max_call_levels(MAX_CALL_DEPTH)
        .set_max_expr_depths(64, 32)
        .set_max_functions(256)
        .set_max_variables(256)
        .set_strict_variables(true)
        .on_print(|_| {})
        .on_debug(|_, _, _| {});
    engine.disable_symbol("eval");
    engine
}

impl ScriptContract {
    /// Compiles `source` and checks its declared machine and that every transition has its
    /// guard and effect.
    pub fn compile(name: &str, source: &str) -> Result<ScriptContract, ContractError> {
        if source.len() > MAX_SOURCE_LEN {
            return Err(ContractError::Invalid(format!(
                "the source is {} bytes, more than {MAX_SOURCE_LEN}",
                source.len()
            )));
        }
        let engine = sandbox();
        let ast = engine
            .compile(source)
            .map_err(|e| ContractError::Invalid(format!("does not compile: {e}")))?;
        let declared: Dynamic = engine
            .call_fn(&mut Scope::new(), &ast, "transitions", ())
            .map_err(|e| ContractError::Invalid(format!("transitions(): {e}")))?;
        let specs: Vec<TransitionSpec> = rhai::serde::from_dynamic(&declared)
            .map_err(|e| ContractError::Invalid(format!("transitions() is malformed: {e}")))?;
        check_machine(&specs)?;
        for spec in &specs {
            for function in [
                format!("guard_{}", spec.name),
                format!("effect_{}", spec.name),
            ] {
                if !ast
                    .iter_functions()
                    .any(|f| f.name == function && f.params.len() == 3)
                {
                    return Err(ContractError::Invalid(format!(
                        "missing fn {function}(state, input, ctx)"
                    )));
                }
            }
        }
        Ok(ScriptContract {
            name: name.to_owned(),
            engine,
            ast,
            specs,
        })
    }

    fn call(
        &self,
        function: String,
        state: &State,
        input: &Json,
        ctx: &TransitionContext,
    ) -> Result<Dynamic, ContractError> {
        let failed = |what: &str, e: &dyn std::fmt::Display| {
            ContractError::Failed(format!("{function}: {what}: {e}"))
        };
        let state = rhai::serde::to_dynamic(state).map_err(|e| failed("state", &e))?;
        let input = rhai::serde::to_dynamic(input).map_err(|e| failed("input", &e))?;
        let ctx = rhai::serde::to_dynamic(ctx).map_err(|e| failed("context", &e))?;
        self.engine
            .call_fn(&mut Scope::new(), &self.ast, &function, (state, input, ctx))
            .map_err(|e| failed("error", &e))
    }
}

impl Contract for ScriptContract {
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
        let verdict = self.call(format!("guard_{}", transition.name), state, input, ctx)?;
        if let Ok(allowed) = verdict.as_bool() {
            return if allowed {
                Ok(())
            } else {
                Err(ContractError::Refused(format!(
                    "the contract does not allow {} here",
                    transition.name
                )))
            };
        }
        match verdict.into_immutable_string() {
            Ok(reason) => Err(ContractError::Refused(reason.to_string())),
            Err(kind) => Err(ContractError::Failed(format!(
                "guard_{} returned a {kind}, not a bool or a reason",
                transition.name
            ))),
        }
    }

    fn effect(
        &self,
        transition: &TransitionSpec,
        state: &State,
        input: &Json,
        ctx: &TransitionContext,
    ) -> Result<Json, ContractError> {
        let value = self.call(format!("effect_{}", transition.name), state, input, ctx)?;
        rhai::serde::from_dynamic(&value).map_err(|e| {
            ContractError::Failed(format!(
                "effect_{} returned a value that is not JSON: {e}",
                transition.name
            ))
        })
    }
}
