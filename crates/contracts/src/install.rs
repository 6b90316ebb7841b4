//! Installing a contract at run time through consensus.
//!
//! A contract's source is the value of the reserved key `contract/<name>`. The first value holds
//! the source and at least one endorsement; each later value adds endorsements and changes
//! nothing else. An endorsement is a member's BLS statement over (network, name, hash of the
//! source), so nobody can claim another member's approval. The contract is installed once a
//! quorum of members endorsed it: then at least f + 1 honest members read and accepted the code.
//! Installs are permanent (the key cannot be deleted or its source changed), which is what lets
//! asset validation depend on them deterministically.

use crate::machine::{is_identifier, ContractError};
use crate::script::ScriptContract;
use beaufort_core::types::MemberIndex;
use beaufort_crypto::bls::Signature;
use beaufort_crypto::hash::{hash, Digest, Domain};
use beaufort_crypto::membership::{Membership, Signer};
use serde::{Deserialize, Serialize};

/// Prefix of the keys holding contract sources.
pub const CONTRACT_PREFIX: &str = "contract/";

/// The only contract language installable at run time.
pub const RHAI: &str = "rhai";

/// A contract's source and who endorsed it: the value of `contract/<name>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContractPackage {
    /// The contract's name (the key without the prefix).
    pub name: String,
    /// Always [`RHAI`].
    pub language: String,
    /// The script.
    pub source: String,
    /// Endorsements, in increasing member order.
    pub endorsements: Vec<Endorsement>,
}

/// One member's approval of a contract's source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endorsement {
    /// The endorsing member.
    pub member: MemberIndex,
    /// Its statement over [`endorsement_message`].
    pub signature: Signature,
}

/// The statement an endorsing member signs.
pub fn endorsement_message(network: &Digest, name: &str, source: &str) -> Vec<u8> {
    let source_hash = hash(Domain::ContractSource, &[source.as_bytes()]);
    format!(
        "beaufort contract endorsement v1\nnetwork {}\ncontract {name}\nsource {}\n",
        network.to_hex(),
        source_hash.to_hex()
    )
    .into_bytes()
}

impl ContractPackage {
    /// A new package carrying the proposer's own endorsement. Refuses source that does not
    /// compile or declares a malformed machine, so nobody endorses broken code.
    pub fn propose(
        network: &Digest,
        name: &str,
        source: &str,
        signer: &Signer,
    ) -> Result<ContractPackage, ContractError> {
        check_name(name)?;
        ScriptContract::compile(name, source)?;
        let mut package = ContractPackage {
            name: name.to_owned(),
            language: RHAI.to_owned(),
            source: source.to_owned(),
            endorsements: Vec::new(),
        };
        package.endorse(network, signer);
        Ok(package)
    }

    /// Adds `signer`'s endorsement (no-op if it already endorsed).
    pub fn endorse(&mut self, network: &Digest, signer: &Signer) {
        let member = signer.index();
        if let Err(at) = self
            .endorsements
            .binary_search_by_key(&member, |e| e.member)
        {
            let signature =
                signer.sign_statement(&endorsement_message(network, &self.name, &self.source));
            self.endorsements
                .insert(at, Endorsement { member, signature });
        }
    }

    /// Whether a quorum endorsed it, which makes it usable.
    pub fn is_installed(&self, membership: &Membership) -> bool {
        self.endorsements.len() >= membership.quorum()
    }

    /// Whether `member` endorsed it.
    pub fn endorsed_by(&self, member: MemberIndex) -> bool {
        self.endorsements.iter().any(|e| e.member == member)
    }

    /// Checks a write of `contract/<key_name>` from `old` to `self`: the source compiles, every
    /// endorsement verifies, endorsements are sorted without duplicates, and a change only adds
    /// endorsements.
    pub fn check_write(
        &self,
        membership: &Membership,
        key_name: &str,
        old: Option<&ContractPackage>,
    ) -> Result<(), ContractError> {
        let invalid = |why: String| Err(ContractError::Invalid(why));
        if self.name != key_name {
            return invalid(format!(
                "the package names {}, the key {key_name}",
                self.name
            ));
        }
        if self.language != RHAI {
            return invalid(format!("unsupported language {:?}", self.language));
        }
        if !self
            .endorsements
            .windows(2)
            .all(|w| w[0].member < w[1].member)
        {
            return invalid("endorsements must be in increasing member order, once each".into());
        }
        match old {
            None => {
                check_name(&self.name)?;
                if self.endorsements.is_empty() {
                    return invalid(
                        "a contract is proposed with its proposer's endorsement".into(),
                    );
                }
                ScriptContract::compile(&self.name, &self.source)?;
            }
            Some(old) => {
                if old.source != self.source || old.language != self.language {
                    return invalid(
                        "an installed or proposed contract's source never changes".into(),
                    );
                }
                if self.endorsements.len() <= old.endorsements.len()
                    || !old
                        .endorsements
                        .iter()
                        .all(|e| self.endorsements.contains(e))
                {
                    return invalid("a change may only add endorsements".into());
                }
            }
        }
        let message = endorsement_message(&membership.network_id(), &self.name, &self.source);
        let known = old.map_or(&[][..], |o| &o.endorsements[..]);
        for e in self.endorsements.iter().filter(|e| !known.contains(e)) {
            if !membership.verify_statement(e.member, &message, &e.signature) {
                return invalid(format!("member {}'s endorsement does not verify", e.member));
            }
        }
        Ok(())
    }
}

/// Contract names are identifiers, and may not shadow a compiled-in contract.
fn check_name(name: &str) -> Result<(), ContractError> {
    if !is_identifier(name) {
        return Err(ContractError::Invalid(format!(
            "{name:?} is not a valid contract name (a letter, then letters, digits, _)"
        )));
    }
    if crate::registry::BUILTIN.contains(&name) {
        return Err(ContractError::Invalid(format!(
            "{name} is a compiled-in contract"
        )));
    }
    Ok(())
}
