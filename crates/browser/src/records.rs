//! What a browser member keeps in IndexedDB, as the native store keeps it in redb: register
//! states by key and equivocation proofs by member, each postcard-encoded. The page writes the
//! records one step names in one IndexedDB transaction and tells the member when it has
//! completed; only then do the step's messages leave (`crate::member`).

use beaufort_core::state::RegisterState;
use beaufort_core::types::Key;
use beaufort_core::vote::Equivocation;
use beaufort_crypto::MemberIndex;

/// Most records a browser member restores (bounds what a tampered storage can make it load).
pub const MAX_RECORDS: usize = 1_000_000;

/// The IndexedDB object store a record belongs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    /// Register states, by key bytes.
    Registers,
    /// Equivocation proofs, by the excluded member's index (2 bytes, big-endian).
    Evidence,
}

impl Table {
    /// The object store's name.
    pub fn name(self) -> &'static str {
        match self {
            Table::Registers => "registers",
            Table::Evidence => "evidence",
        }
    }
}

/// One record to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Where it goes.
    pub table: Table,
    /// Its key in that object store.
    pub key: Vec<u8>,
    /// Its postcard bytes.
    pub value: Vec<u8>,
}

impl Record {
    /// A register's state.
    pub fn state(key: &Key, state: &RegisterState) -> Result<Record, postcard::Error> {
        Ok(Record {
            table: Table::Registers,
            key: key.as_bytes().to_vec(),
            value: postcard::to_stdvec(state)?,
        })
    }

    /// A proof against a member.
    pub fn evidence(proof: &Equivocation) -> Result<Record, postcard::Error> {
        Ok(Record {
            table: Table::Evidence,
            key: proof.member().to_be_bytes().to_vec(),
            value: postcard::to_stdvec(proof)?,
        })
    }
}

/// One object store's records as the page read them: (key bytes, value bytes).
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// What a member's storage held, decoded.
#[derive(Debug, Default)]
pub struct Stored {
    /// Register states.
    pub states: Vec<(Key, RegisterState)>,
    /// Proofs against other members.
    pub evidence: Vec<Equivocation>,
}

/// Why stored records cannot be restored. The member then refuses to start rather than run
/// with a state that may have lost an own vote.
#[derive(Debug, thiserror::Error)]
pub enum StoredError {
    /// More records than [`MAX_RECORDS`].
    #[error("more than {MAX_RECORDS} records")]
    TooMany,
    /// A record's key is not a valid register key.
    #[error("a stored key is not a valid key: {0}")]
    Key(String),
    /// A record does not decode.
    #[error("a stored {table} record does not decode: {error}")]
    Corrupt {
        /// The object store.
        table: &'static str,
        /// Why.
        error: postcard::Error,
    },
    /// A proof is stored under another member's index.
    #[error("a stored proof against member {stored_as} is about member {actual}")]
    Misfiled {
        /// The index it was stored under.
        stored_as: MemberIndex,
        /// The member it proves against.
        actual: MemberIndex,
    },
}

impl Stored {
    /// Decodes what the page read from the two object stores.
    pub fn decode(registers: Pairs, evidence: Pairs) -> Result<Stored, StoredError> {
        if registers.len().saturating_add(evidence.len()) > MAX_RECORDS {
            return Err(StoredError::TooMany);
        }
        let mut stored = Stored::default();
        for (key, value) in registers {
            let key = Key::new(key).map_err(|e| StoredError::Key(e.to_string()))?;
            let state = postcard::from_bytes(&value).map_err(|error| StoredError::Corrupt {
                table: Table::Registers.name(),
                error,
            })?;
            stored.states.push((key, state));
        }
        for (key, value) in evidence {
            let proof: Equivocation =
                postcard::from_bytes(&value).map_err(|error| StoredError::Corrupt {
                    table: Table::Evidence.name(),
                    error,
                })?;
            let stored_as = <[u8; 2]>::try_from(key.as_slice())
                .map(MemberIndex::from_be_bytes)
                .unwrap_or(MemberIndex::MAX);
            if stored_as != proof.member() {
                return Err(StoredError::Misfiled {
                    stored_as,
                    actual: proof.member(),
                });
            }
            stored.evidence.push(proof);
        }
        Ok(stored)
    }
}
