//! Upgrading a store written by an older build in place, so that an upgrade never costs a
//! member its state (docs/OPERATING.md, "Upgrading").
//!
//! Schema 1 → 2: register states gained their held pieces (none in a schema-1 state), and a
//! certificate's signers became a multiset (every count 1 in a schema-1 certificate). The vote
//! slots and the equivocation proofs encode the same in both.

use crate::{db_error, StoreError, REGISTERS};
use beaufort_core::state::{Certified, RegisterState, RoundBallots};
use beaufort_core::types::{Round, Value, ValueHash, View};
use beaufort_crypto::bls::Signature;
use beaufort_crypto::qc::{QuorumCertificate, SignerSet};
use beaufort_crypto::weights::SignerWeights;
use redb::{ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A register state as schema 1 stored it.
#[derive(Serialize, Deserialize)]
pub(crate) struct StateV1 {
    pub(crate) view: View,
    pub(crate) accepted: Option<CertifiedV1>,
    pub(crate) values: BTreeMap<ValueHash, Value>,
    pub(crate) precommits: BTreeMap<Round, RoundBallots>,
    pub(crate) commits: BTreeMap<Round, RoundBallots>,
}

/// A decided value as schema 1 stored it.
#[derive(Serialize, Deserialize)]
pub(crate) struct CertifiedV1 {
    pub(crate) view: View,
    pub(crate) round: Round,
    pub(crate) value: Value,
    pub(crate) qc: CertificateV1,
}

/// A certificate as schema 1 stored it: each signer once.
#[derive(Serialize, Deserialize)]
pub(crate) struct CertificateV1 {
    pub(crate) signers: SignerSet,
    pub(crate) signature: Signature,
}

impl StateV1 {
    fn upgrade(self) -> Result<RegisterState, StoreError> {
        let accepted = match self.accepted {
            None => None,
            Some(cert) => Some(Certified {
                view: cert.view,
                round: cert.round,
                value: cert.value,
                qc: QuorumCertificate {
                    signers: SignerWeights::from_signers(&cert.qc.signers).map_err(|e| {
                        StoreError::Corrupt {
                            table: "registers",
                            error: e.to_string(),
                        }
                    })?,
                    signature: cert.qc.signature,
                },
            }),
        };
        Ok(RegisterState {
            view: self.view,
            accepted,
            values: self.values,
            precommits: self.precommits,
            commits: self.commits,
            pieces: Vec::new(),
        })
    }
}

/// Rewrites every register state of a schema-1 store as schema 2, inside `txn` (the caller
/// commits it together with the new schema number, so a crash leaves either store whole).
pub(crate) fn from_v1(txn: &WriteTransaction) -> Result<u64, StoreError> {
    let mut registers = txn.open_table(REGISTERS).map_err(db_error)?;
    let mut upgraded = Vec::new();
    for entry in registers.iter().map_err(db_error)? {
        let (key, bytes) = entry.map_err(db_error)?;
        let old: StateV1 =
            postcard::from_bytes(bytes.value()).map_err(|e| StoreError::Corrupt {
                table: "registers",
                error: format!("a schema-1 state that does not decode: {e}"),
            })?;
        let new =
            postcard::to_stdvec(&old.upgrade()?).map_err(|e| StoreError::Encode(e.to_string()))?;
        upgraded.push((key.value().to_vec(), new));
    }
    for (key, bytes) in &upgraded {
        registers
            .insert(key.as_slice(), bytes.as_slice())
            .map_err(db_error)?;
    }
    Ok(upgraded.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Store, DB_FILE, META};
    use beaufort_core::state::Ballot;
    use beaufort_core::types::Key;
    use beaufort_crypto::hash::{hash, Domain};
    use redb::Database;

    #[test]
    fn a_schema_1_store_opens_upgraded_with_nothing_lost() {
        let dir = tempfile::tempdir().expect("tempdir");
        let network = hash(Domain::NetworkId, &[b"migration"]);
        let mut signers = SignerSet::new(4).expect("4 members");
        for member in [0, 1, 3] {
            signers.insert(member).expect("in range");
        }
        let signature = Signature::from_bytes(&[7; 48]).expect("48 bytes");
        let vote = Ballot::Vote {
            value: Value::Data(b"next".to_vec()).hash(),
            signature,
        };
        let old = StateV1 {
            view: 3,
            accepted: Some(CertifiedV1 {
                view: 2,
                round: 1,
                value: Value::Data(b"decided".to_vec()),
                qc: CertificateV1 {
                    signers: signers.clone(),
                    signature,
                },
            }),
            values: BTreeMap::new(),
            precommits: BTreeMap::from([(0, RoundBallots::from_iter([(2, vote)]))]),
            commits: BTreeMap::new(),
        };
        {
            let db = Database::create(dir.path().join(DB_FILE)).expect("create");
            let txn = db.begin_write().expect("write");
            {
                let mut meta = txn.open_table(META).expect("meta");
                meta.insert("network", network.as_bytes().as_slice())
                    .expect("network");
                meta.insert("schema", 1u16.to_le_bytes().as_slice())
                    .expect("schema");
                let mut registers = txn.open_table(REGISTERS).expect("registers");
                let bytes = postcard::to_stdvec(&old).expect("encode");
                registers
                    .insert(b"points/alice".as_slice(), bytes.as_slice())
                    .expect("insert");
            }
            txn.commit().expect("commit");
        }
        for _ in 0..2 {
            // The second open finds schema 2 and leaves it alone.
            let store = Store::open(dir.path(), network).expect("open upgrades");
            let loaded = store.load().expect("load");
            let (key, state) = &loaded.states[0];
            assert_eq!(key, &Key::new("points/alice").expect("key"));
            assert_eq!(state.view, 3);
            let cert = state.accepted.as_ref().expect("certificate kept");
            assert_eq!(cert.value, Value::Data(b"decided".to_vec()));
            assert_eq!(cert.qc.signers.support(), signers);
            assert!(cert.qc.signers.is_plain());
            assert_eq!(
                state.ballot(beaufort_core::vote::VoteKind::PreCommit, 0, 2),
                Some(&vote)
            );
            assert!(state.pieces.is_empty());
        }
    }
}
