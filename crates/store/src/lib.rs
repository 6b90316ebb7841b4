//! Durable storage of one member's replica on redb, in the node's data directory.
//!
//! The protocol's crash-restart rule (docs/PROTOCOL.md §10) is that every register state the core
//! names in `Step::persist` is durable *before* the step's messages leave the process: the state
//! holds the member's own votes, and a restarted member derives its rounds and locks from them, so
//! it never signs a second value in a view and round it already voted in. [`Store::persist`] writes
//! a whole step in one redb write transaction committed with `Durability::Immediate` (fsync), and
//! [`Store::load`] returns what `Replica::restore` needs.
//!
//! The Merkle index is not stored: it is a pure function of the register states and is rebuilt by
//! `Replica::restore` in one pass, which keeps a single source of truth on disk.

use beaufort_core::state::RegisterState;
use beaufort_core::types::{Key, MemberIndex, View};
use beaufort_core::vote::Equivocation;
use beaufort_crypto::hash::Digest;
use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub mod backup;
mod migrate;

/// Register states: key bytes → postcard-encoded [`RegisterState`].
const REGISTERS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("registers");
/// Equivocation proofs: the excluded member's index → postcard-encoded [`Equivocation`].
const EVIDENCE: TableDefinition<u16, &[u8]> = TableDefinition::new("evidence");
/// The fence of a restored store (see [`backup`]): key bytes → the highest view of that key the
/// member may have voted in before the backup was restored, which it therefore sits out.
const FENCE: TableDefinition<&[u8], u64> = TableDefinition::new("fence");
/// Store metadata: the schema version and the network the store belongs to.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// Version of the on-disk layout; a store of a newer version is refused rather than misread, and
/// an older one is upgraded in place when opened (2: register states hold pieces, certificates
/// count signer multiplicities; see `migrate`).
pub const SCHEMA_VERSION: u16 = 2;

/// The file name of the database inside a node's data directory.
pub const DB_FILE: &str = "beaufort.redb";

/// What can go wrong with the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data directory could not be created.
    #[error("creating data directory {path}: {source}")]
    Directory {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// redb failed (I/O, corruption, transaction).
    #[error("database: {0}")]
    Database(String),
    /// A stored record did not decode.
    #[error("corrupt record in table {table}: {error}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// Why.
        error: String,
    },
    /// The store was written by another network's member.
    #[error("the store belongs to network {found}, not {expected}")]
    WrongNetwork {
        /// The network in the configuration.
        expected: String,
        /// The network the store was created for.
        found: String,
    },
    /// The store has a layout this build does not understand.
    #[error("store schema version {0} is not supported (this build uses {SCHEMA_VERSION})")]
    Schema(u16),
    /// A record could not be encoded.
    #[error("encoding a record: {0}")]
    Encode(String),
    /// A backup could not be written, read or restored.
    #[error("backup: {0}")]
    Backup(String),
}

/// Converts any redb error (they are many distinct types) into [`StoreError::Database`].
fn db_error<E: std::fmt::Display>(error: E) -> StoreError {
    StoreError::Database(error.to_string())
}

/// What a member persisted, for `Replica::restore`.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Every register state, in key order.
    pub states: Vec<(Key, RegisterState)>,
    /// Every equivocation proof.
    pub evidence: Vec<Equivocation>,
}

/// Size figures of a store, for metrics and the storage-per-key report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreStats {
    /// Registers stored.
    pub keys: u64,
    /// Bytes of encoded register states (keys plus values, before redb's own overhead).
    pub state_bytes: u64,
    /// Size of the database file on disk.
    pub file_bytes: u64,
}

/// A member's durable store.
pub struct Store {
    db: Database,
    path: PathBuf,
}

impl Store {
    /// Opens (or creates) the store in `dir` for the network `network_id`. Refuses a store that
    /// belongs to another network or has another schema version.
    pub fn open(dir: &Path, network_id: Digest) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Directory {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(DB_FILE);
        let db = Database::create(&path).map_err(db_error)?;
        let txn = db.begin_write().map_err(db_error)?;
        {
            let mut meta = txn.open_table(META).map_err(db_error)?;
            let network = meta
                .get("network")
                .map_err(db_error)?
                .map(|found| found.value().to_vec());
            match network {
                Some(found) if found != network_id.as_bytes() => {
                    return Err(StoreError::WrongNetwork {
                        expected: network_id.to_hex(),
                        found: hex_of(&found),
                    })
                }
                Some(_) => {}
                None => {
                    meta.insert("network", network_id.as_bytes().as_slice())
                        .map_err(db_error)?;
                }
            }
            let version = match meta.get("schema").map_err(db_error)? {
                Some(v) => {
                    let bytes: [u8; 2] = v.value().try_into().map_err(|_| StoreError::Corrupt {
                        table: "meta",
                        error: "schema version is not two bytes".into(),
                    })?;
                    Some(u16::from_le_bytes(bytes))
                }
                None => None,
            };
            match version {
                Some(SCHEMA_VERSION) => {}
                Some(1) => {
                    migrate::from_v1(&txn)?;
                    meta.insert("schema", SCHEMA_VERSION.to_le_bytes().as_slice())
                        .map_err(db_error)?;
                }
                Some(other) => return Err(StoreError::Schema(other)),
                None => {
                    meta.insert("schema", SCHEMA_VERSION.to_le_bytes().as_slice())
                        .map_err(db_error)?;
                }
            }
            txn.open_table(REGISTERS).map_err(db_error)?;
            txn.open_table(EVIDENCE).map_err(db_error)?;
            txn.open_table(FENCE).map_err(db_error)?;
        }
        txn.commit().map_err(db_error)?;
        Ok(Store { db, path })
    }

    /// Reads everything back, for `Replica::restore`.
    pub fn load(&self) -> Result<Loaded, StoreError> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let registers = txn.open_table(REGISTERS).map_err(db_error)?;
        let mut loaded = Loaded::default();
        for entry in registers.iter().map_err(db_error)? {
            let (key, state) = entry.map_err(db_error)?;
            let key = Key::new(key.value().to_vec()).map_err(|e| StoreError::Corrupt {
                table: "registers",
                error: e.to_string(),
            })?;
            let state: RegisterState =
                postcard::from_bytes(state.value()).map_err(|e| StoreError::Corrupt {
                    table: "registers",
                    error: e.to_string(),
                })?;
            loaded.states.push((key, state));
        }
        let evidence = txn.open_table(EVIDENCE).map_err(db_error)?;
        for entry in evidence.iter().map_err(db_error)? {
            let (_, proof) = entry.map_err(db_error)?;
            let proof: Equivocation =
                postcard::from_bytes(proof.value()).map_err(|e| StoreError::Corrupt {
                    table: "evidence",
                    error: e.to_string(),
                })?;
            loaded.evidence.push(proof);
        }
        Ok(loaded)
    }

    /// Writes the given register states and evidence in one transaction and returns only once it
    /// is on disk (fsync'd). Call it with a step's `persist` keys before sending its messages.
    pub fn persist<'a>(
        &self,
        states: impl IntoIterator<Item = (&'a Key, &'a RegisterState)>,
        evidence: &[Equivocation],
    ) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write().map_err(db_error)?;
        txn.set_durability(redb::Durability::Immediate);
        {
            let mut registers = txn.open_table(REGISTERS).map_err(db_error)?;
            for (key, state) in states {
                let bytes = encode(state)?;
                registers
                    .insert(key.as_bytes(), bytes.as_slice())
                    .map_err(db_error)?;
            }
            let mut table = txn.open_table(EVIDENCE).map_err(db_error)?;
            for proof in evidence {
                let member: MemberIndex = proof.member();
                let bytes = encode(proof)?;
                table.insert(member, bytes.as_slice()).map_err(db_error)?;
            }
        }
        txn.commit().map_err(db_error)
    }

    /// The fence left by a restore ([`backup::restore`]): each key with the highest view the
    /// member must sit out. Empty for a store that was never restored, or once every key passed.
    pub fn fence(&self) -> Result<BTreeMap<Key, View>, StoreError> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let table = txn.open_table(FENCE).map_err(db_error)?;
        let mut fence = BTreeMap::new();
        for entry in table.iter().map_err(db_error)? {
            let (key, view) = entry.map_err(db_error)?;
            let key = Key::new(key.value().to_vec()).map_err(|e| StoreError::Corrupt {
                table: "fence",
                error: e.to_string(),
            })?;
            fence.insert(key, view.value());
        }
        Ok(fence)
    }

    /// Removes the fence of keys the member has moved past (a certificate took it beyond the
    /// fenced view), so a later start does not check them again.
    pub fn lift_fence<'a>(
        &self,
        keys: impl IntoIterator<Item = &'a Key>,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(db_error)?;
        {
            let mut table = txn.open_table(FENCE).map_err(db_error)?;
            for key in keys {
                table.remove(key.as_bytes()).map_err(db_error)?;
            }
        }
        txn.commit().map_err(db_error)
    }

    /// The database file's size on disk (0 if it cannot be read): cheap, unlike
    /// [`Store::stats`], which reads every register.
    pub fn file_bytes(&self) -> u64 {
        std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0)
    }

    /// Size figures: keys, encoded bytes and file size.
    pub fn stats(&self) -> Result<StoreStats, StoreError> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let registers = txn.open_table(REGISTERS).map_err(db_error)?;
        let keys = registers.len().map_err(db_error)?;
        let mut state_bytes = 0u64;
        for entry in registers.iter().map_err(db_error)? {
            let (k, v) = entry.map_err(db_error)?;
            state_bytes += (k.value().len() + v.value().len()) as u64;
        }
        Ok(StoreStats {
            keys,
            state_bytes,
            file_bytes: self.file_bytes(),
        })
    }
}

fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    postcard::to_stdvec(value).map_err(|e| StoreError::Encode(e.to_string()))
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
