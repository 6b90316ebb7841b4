//! The contracts a member can run: the compiled-in ones and those installed through consensus.

use crate::builtin;
use crate::install::ContractPackage;
use crate::machine::{Contract, ContractError};
use crate::script::ScriptContract;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

/// Names of the compiled-in contracts (installed contracts may not take them).
pub const BUILTIN: &[&str] = &[builtin::ESHARE, builtin::ELOAN];

/// Most contracts installed at run time a member keeps compiled.
pub const MAX_INSTALLED: usize = 1024;

/// Where a contract came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// Compiled into every member.
    Builtin,
    /// Installed at run time through endorsements.
    Installed,
}

/// Compiled-in plus installed contracts, shared between the validation hook (which runs them)
/// and the node (which installs them when their package commits with a quorum of
/// endorsements). Only grows, which keeps the hook's answers stable.
pub struct Registry {
    builtin: BTreeMap<String, Arc<dyn Contract>>,
    installed: RwLock<BTreeMap<String, Arc<dyn Contract>>>,
}

impl Default for Registry {
    fn default() -> Registry {
        Registry::new()
    }
}

impl Registry {
    /// A registry holding the compiled-in contracts.
    pub fn new() -> Registry {
        let builtin: [Arc<dyn Contract>; 2] =
            [Arc::new(builtin::eshare()), Arc::new(builtin::eloan())];
        Registry {
            builtin: builtin
                .into_iter()
                .map(|c| (c.name().to_owned(), c))
                .collect(),
            installed: RwLock::new(BTreeMap::new()),
        }
    }

    /// Adds an application's own compiled-in contract (every member of the network must add the
    /// same ones). A name already taken by another compiled-in contract is refused.
    pub fn with_contract(mut self, contract: Arc<dyn Contract>) -> Result<Registry, ContractError> {
        let name = contract.name().to_owned();
        if self.builtin.contains_key(&name) {
            return Err(ContractError::Invalid(format!(
                "a compiled-in contract is already called {name}"
            )));
        }
        self.builtin.insert(name, contract);
        Ok(self)
    }

    /// The contract called `name`, if this member can run it.
    pub fn get(&self, name: &str) -> Option<Arc<dyn Contract>> {
        self.builtin.get(name).cloned().or_else(|| {
            self.installed
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(name)
                .cloned()
        })
    }

    /// Compiles and adds an installed contract (idempotent). The caller checked that the package
    /// committed with a quorum of endorsements.
    pub fn install(&self, package: &ContractPackage) -> Result<(), ContractError> {
        let mut installed = self
            .installed
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if installed.contains_key(&package.name) {
            return Ok(());
        }
        if installed.len() >= MAX_INSTALLED {
            return Err(ContractError::Invalid(format!(
                "this member keeps at most {MAX_INSTALLED} installed contracts"
            )));
        }
        let contract = ScriptContract::compile(&package.name, &package.source)?;
        installed.insert(package.name.clone(), Arc::new(contract));
        Ok(())
    }

    /// Every contract with its origin, in name order.
    pub fn list(&self) -> Vec<(Origin, Arc<dyn Contract>)> {
        let installed = self
            .installed
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.builtin
            .values()
            .map(|c| (Origin::Builtin, c.clone()))
            .chain(installed.values().map(|c| (Origin::Installed, c.clone())))
            .collect()
    }
}
