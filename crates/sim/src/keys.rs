//! The consortium's key material for a simulated run, and the validation hook the checks use.
//!
//! Large runs use [`StandInCrypto`] (keyed hashes, microseconds per run); small runs can use real
//! BLS ([`BlsVerifier`]/[`BlsSigner`]) to show the same logic holds with the production curve.
//! Either way a Byzantine member can only produce valid signatures for itself: it gets its own
//! signer from [`Keyring::signer`] and nothing else.

use crate::SimError;
use beaufort_core::auth::{BlsSigner, BlsVerifier, StandInCrypto, Verifier, VoteSigner};
use beaufort_core::hook::{HookError, ValidationHook};
use beaufort_core::state::Certified;
use beaufort_core::types::{Key, MemberIndex, Value};
use beaufort_core::vote::NetworkId;
use beaufort_crypto::bls::SecretKey;
use beaufort_crypto::hash::{hash, Domain};
use beaufort_crypto::membership::{MemberKey, Membership, Signer};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Which signature scheme the run uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum CryptoKind {
    /// Keyed-hash stand-in signatures: cheap, for large and many runs.
    #[default]
    StandIn,
    /// Real BLS12-381 multi-signatures: slow, for small runs that pin the real scheme.
    Bls,
}

/// Prefix of the values the check hook refuses; Byzantine members use it to vote for invalid
/// values.
pub const FORBIDDEN_PREFIX: &[u8] = b"forbidden";

/// The validation hook of the checks: every value is allowed except data starting with
/// [`FORBIDDEN_PREFIX`]. Deterministic, as the core requires.
#[derive(Clone, Copy, Debug, Default)]
pub struct ForbiddenPrefixHook;

impl ForbiddenPrefixHook {
    /// Whether the hook accepts `value` (independent of the old value).
    pub fn allows(value: &Value) -> bool {
        !value
            .as_data()
            .is_some_and(|bytes| bytes.starts_with(FORBIDDEN_PREFIX))
    }
}

impl ValidationHook for ForbiddenPrefixHook {
    fn validate(&self, _key: &Key, _old: Option<&Certified>, new: &Value) -> Result<(), HookError> {
        if ForbiddenPrefixHook::allows(new) {
            Ok(())
        } else {
            Err(HookError::Rejected(
                "values starting with \"forbidden\" are not allowed".to_owned(),
            ))
        }
    }
}

enum Scheme {
    StandIn(StandInCrypto),
    Bls {
        verifier: Arc<BlsVerifier>,
        seeds: Vec<[u8; 32]>,
    },
}

/// Keys of one simulated consortium: the shared verifier and a signer per member.
pub struct Keyring {
    network: NetworkId,
    members: usize,
    scheme: Scheme,
}

impl Keyring {
    /// Builds the keys of `members` members, derived from `seed` (so BLS keys are reproducible).
    pub fn new(kind: CryptoKind, members: usize, seed: u64) -> Result<Keyring, SimError> {
        let network = hash(
            Domain::Other,
            &[b"beaufort-sim network", &seed.to_le_bytes()],
        );
        let scheme = match kind {
            CryptoKind::StandIn => Scheme::StandIn(StandInCrypto::new(network, members)),
            CryptoKind::Bls => {
                let seeds: Vec<[u8; 32]> = (0..members as u64)
                    .map(|i| {
                        hash(
                            Domain::Other,
                            &[b"beaufort-sim key", &seed.to_le_bytes(), &i.to_le_bytes()],
                        )
                        .0
                    })
                    .collect();
                let keys = seeds
                    .iter()
                    .map(|ikm| MemberKey::from_secret(&SecretKey::generate(ikm)))
                    .collect();
                let membership =
                    Membership::new(network, keys).map_err(|e| SimError::Keys(e.to_string()))?;
                Scheme::Bls {
                    verifier: Arc::new(BlsVerifier::new(membership)),
                    seeds,
                }
            }
        };
        Ok(Keyring {
            network,
            members,
            scheme,
        })
    }

    /// The network id every vote signs.
    pub fn network(&self) -> NetworkId {
        self.network
    }

    /// Number of members.
    pub fn members(&self) -> usize {
        self.members
    }

    /// The verifier shared by all replicas.
    pub fn verifier(&self) -> Arc<dyn Verifier> {
        match &self.scheme {
            Scheme::StandIn(crypto) => Arc::new(crypto.clone()),
            Scheme::Bls { verifier, .. } => verifier.clone(),
        }
    }

    /// A signer for `member` (a fresh one per call; a restarted member gets a new one).
    pub fn signer(&self, member: MemberIndex) -> Box<dyn VoteSigner> {
        match &self.scheme {
            Scheme::StandIn(crypto) => Box::new(crypto.signer(member)),
            Scheme::Bls { seeds, .. } => {
                let ikm = seeds[usize::from(member) % seeds.len()];
                Box::new(BlsSigner::new(Signer::new(
                    member,
                    SecretKey::generate(&ikm),
                )))
            }
        }
    }
}
