//! A member's store as one portable, self-checking file, and a store rebuilt from one.
//!
//! **Taking a backup** ([`Store::backup`]) reads every table inside one redb read transaction:
//! redb's readers see one committed version of the whole database while the runtime keeps
//! committing, so a backup of a running member is consistent (every state as of one step) without
//! pausing it. The file is written as a stream of records, so neither side holds the whole store
//! in memory.
//!
//! **Restoring** ([`restore`]) must keep the member from ever voting twice: the backup lacks the
//! votes the member cast after it was taken, and a member that signs a second value in a view and
//! round it already voted in is excluded for good. So a restored store holds only what is
//! certified (each key's accepted value and the view it opens, none of the open view's votes or
//! proposals), and it carries a **fence**: per key, the highest view open anywhere the restore
//! could see (the backup and every member asked, see `beaufort restore`). The node passes its
//! replica nothing of a fenced key's views up to the fence and refuses writes to it there; the
//! member rejoins a key only once a certificate moves it past its fence, that is once every view
//! it could have voted in after the backup is closed.
//!
//! Format (all integers little-endian): [`MAGIC`], format `u16` ([`FORMAT`]), schema `u16`,
//! network id (32 bytes); then records `tag u8, key length u32, key, value length u32, value`
//! (tag 1: a register, key bytes → its stored state; tag 2: evidence, member `u16` → its stored
//! proof); then tag 0, the record count `u64` and the BLAKE3 hash of every byte before it.

use crate::{db_error, encode, StoreError, DB_FILE, EVIDENCE, FENCE, META, REGISTERS};
use crate::{Store, SCHEMA_VERSION};
use beaufort_core::state::RegisterState;
use beaufort_core::types::{Key, View, MAX_KEY_LEN};
use beaufort_crypto::hash::Digest;
use redb::{Database, ReadableTable};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;

/// The first bytes of every backup file.
pub const MAGIC: &[u8; 16] = b"beaufort-backup\n";
/// The version of the backup file's layout.
pub const FORMAT: u16 = 1;
/// Largest record value accepted when reading (a stored state is far smaller); bounds what a
/// damaged file can make the reader allocate.
const MAX_RECORD: usize = 64 * 1024 * 1024;

const TAG_END: u8 = 0;
const TAG_REGISTER: u8 = 1;
const TAG_EVIDENCE: u8 = 2;

/// What a backup file holds, as its header and trailer state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupInfo {
    /// The store schema its records are encoded in.
    pub schema: u16,
    /// The network the store belongs to.
    pub network: Digest,
    /// Register states in it.
    pub keys: u64,
    /// Equivocation proofs in it.
    pub evidence: u64,
}

/// What [`restore`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restored {
    /// The backup's contents.
    pub info: BackupInfo,
    /// Keys the restored member sits out until a certificate moves them past their fence.
    pub fenced: u64,
}

/// A writer that hashes what passes through, so the trailer can name the hash of every byte.
struct Hashing<W> {
    inner: W,
    hasher: blake3::Hasher,
}

impl<W: Write> Hashing<W> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.hasher.update(bytes);
        self.inner.write_all(bytes).map_err(io_error)
    }

    fn record(&mut self, tag: u8, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.put(&[tag])?;
        self.put(&length(key.len())?)?;
        self.put(key)?;
        self.put(&length(value.len())?)?;
        self.put(value)
    }
}

fn length(n: usize) -> Result<[u8; 4], StoreError> {
    u32::try_from(n)
        .map(u32::to_le_bytes)
        .map_err(|_| StoreError::Encode("a record over 4 GiB".into()))
}

fn io_error(error: std::io::Error) -> StoreError {
    StoreError::Backup(format!("I/O: {error}"))
}

fn bad(why: impl Into<String>) -> StoreError {
    StoreError::Backup(why.into())
}

impl Store {
    /// Writes a consistent backup of the whole store to `out` (see the module documentation);
    /// safe while the member runs.
    pub fn backup(&self, out: impl Write) -> Result<BackupInfo, StoreError> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let meta = txn.open_table(META).map_err(db_error)?;
        let network = meta
            .get("network")
            .map_err(db_error)?
            .and_then(|v| <[u8; 32]>::try_from(v.value()).ok())
            .map(Digest)
            .ok_or_else(|| StoreError::Corrupt {
                table: "meta",
                error: "no network id".into(),
            })?;
        let mut out = Hashing {
            inner: out,
            hasher: blake3::Hasher::new(),
        };
        out.put(MAGIC)?;
        out.put(&FORMAT.to_le_bytes())?;
        out.put(&SCHEMA_VERSION.to_le_bytes())?;
        out.put(network.as_bytes())?;
        let mut info = BackupInfo {
            schema: SCHEMA_VERSION,
            network,
            keys: 0,
            evidence: 0,
        };
        let registers = txn.open_table(REGISTERS).map_err(db_error)?;
        for entry in registers.iter().map_err(db_error)? {
            let (key, state) = entry.map_err(db_error)?;
            out.record(TAG_REGISTER, key.value(), state.value())?;
            info.keys += 1;
        }
        let evidence = txn.open_table(EVIDENCE).map_err(db_error)?;
        for entry in evidence.iter().map_err(db_error)? {
            let (member, proof) = entry.map_err(db_error)?;
            out.record(TAG_EVIDENCE, &member.value().to_le_bytes(), proof.value())?;
            info.evidence += 1;
        }
        out.put(&[TAG_END])?;
        out.put(&(info.keys + info.evidence).to_le_bytes())?;
        let hash = *out.hasher.finalize().as_bytes();
        out.inner.write_all(&hash).map_err(io_error)?;
        out.inner.flush().map_err(io_error)?;
        Ok(info)
    }
}

/// One record read from a backup.
enum Record {
    Register(Vec<u8>, Vec<u8>),
    Evidence(u16, Vec<u8>),
}

/// Reads a backup file record by record, checking its framing and, at the end, its hash.
struct Reader<R> {
    inner: R,
    hasher: blake3::Hasher,
    info: BackupInfo,
    records: u64,
}

impl<R: Read> Reader<R> {
    fn open(inner: R) -> Result<Reader<R>, StoreError> {
        let mut reader = Reader {
            inner,
            hasher: blake3::Hasher::new(),
            info: BackupInfo {
                schema: 0,
                network: Digest([0; 32]),
                keys: 0,
                evidence: 0,
            },
            records: 0,
        };
        let magic: [u8; 16] = reader.take()?;
        if &magic != MAGIC {
            return Err(bad("not a Beaufort backup file"));
        }
        let format = u16::from_le_bytes(reader.take()?);
        if format != FORMAT {
            return Err(bad(format!(
                "backup format {format}; this build reads format {FORMAT}"
            )));
        }
        reader.info.schema = u16::from_le_bytes(reader.take()?);
        reader.info.network = Digest(reader.take()?);
        Ok(reader)
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], StoreError> {
        let mut bytes = [0; N];
        self.inner
            .read_exact(&mut bytes)
            .map_err(|_| bad("the file ends early: an incomplete backup"))?;
        self.hasher.update(&bytes);
        Ok(bytes)
    }

    fn field(&mut self, limit: usize) -> Result<Vec<u8>, StoreError> {
        let len = u32::from_le_bytes(self.take()?) as usize;
        if len > limit {
            return Err(bad("a record longer than any store holds: a damaged file"));
        }
        let mut bytes = vec![0; len];
        self.inner
            .read_exact(&mut bytes)
            .map_err(|_| bad("the file ends early: an incomplete backup"))?;
        self.hasher.update(&bytes);
        Ok(bytes)
    }

    /// The next record, or `None` after the trailer checked out.
    fn next(&mut self) -> Result<Option<Record>, StoreError> {
        let [tag] = self.take()?;
        match tag {
            TAG_REGISTER => {
                let key = self.field(MAX_KEY_LEN)?;
                let state = self.field(MAX_RECORD)?;
                self.records += 1;
                self.info.keys += 1;
                Ok(Some(Record::Register(key, state)))
            }
            TAG_EVIDENCE => {
                let member: [u8; 2] = self
                    .field(2)?
                    .try_into()
                    .map_err(|_| bad("an evidence record without its member"))?;
                let proof = self.field(MAX_RECORD)?;
                self.records += 1;
                self.info.evidence += 1;
                Ok(Some(Record::Evidence(u16::from_le_bytes(member), proof)))
            }
            TAG_END => {
                let count = u64::from_le_bytes(self.take()?);
                let expected = *self.hasher.finalize().as_bytes();
                let mut hash = [0; 32];
                self.inner
                    .read_exact(&mut hash)
                    .map_err(|_| bad("the file ends early: an incomplete backup"))?;
                if hash != expected || count != self.records {
                    return Err(bad("the backup's checksum does not match: a damaged file"));
                }
                let mut rest = [0; 1];
                if self.inner.read(&mut rest).map_err(io_error)? != 0 {
                    return Err(bad("bytes after the end of the backup"));
                }
                Ok(None)
            }
            other => Err(bad(format!("unknown record type {other}: a damaged file"))),
        }
    }
}

/// Reads a whole backup and checks it (framing, count, hash) without writing anything.
pub fn check(input: impl Read) -> Result<BackupInfo, StoreError> {
    let mut reader = Reader::open(input)?;
    while reader.next()?.is_some() {}
    Ok(reader.info)
}

/// The network id a backup belongs to, from its header alone.
pub fn network_of(input: impl Read) -> Result<Digest, StoreError> {
    Ok(Reader::open(input)?.info.network)
}

/// A register state reduced to what is certified: the accepted value and the view it opens, none
/// of the open view's votes, pieces or proposals (the member sits that view out).
fn certified_only(state: RegisterState) -> RegisterState {
    RegisterState {
        view: state.view,
        accepted: state.accepted,
        values: BTreeMap::new(),
        precommits: BTreeMap::new(),
        commits: BTreeMap::new(),
        pieces: Vec::new(),
    }
}

/// Builds a fresh store in `dir` from a backup of the network `network_id`, reduced to
/// certified state and fenced (see the module documentation): each key's fence is the highest of
/// its view in the backup and its view in `open_views` (what the other members reported open).
/// Refuses a directory that already holds a store, a backup of another network or schema, and a
/// damaged or incomplete file; on any refusal nothing is left behind.
pub fn restore(
    dir: &Path,
    network_id: Digest,
    input: impl Read,
    open_views: &BTreeMap<Key, View>,
) -> Result<Restored, StoreError> {
    let path = dir.join(DB_FILE);
    if path.exists() {
        return Err(bad(format!(
            "{} already holds a store; move it aside first",
            dir.display()
        )));
    }
    let mut reader = Reader::open(input)?;
    if reader.info.network != network_id {
        return Err(StoreError::WrongNetwork {
            expected: network_id.to_hex(),
            found: reader.info.network.to_hex(),
        });
    }
    if reader.info.schema != SCHEMA_VERSION {
        return Err(bad(format!(
            "the backup has store schema {}; restore it with the build that took it, which \
             upgrades it when it next starts (this build writes schema {SCHEMA_VERSION})",
            reader.info.schema
        )));
    }
    std::fs::create_dir_all(dir).map_err(|source| StoreError::Directory {
        path: dir.to_path_buf(),
        source,
    })?;
    let written = write_restored(&path, network_id, &mut reader, open_views);
    if written.is_err() {
        let _ = std::fs::remove_file(&path);
    }
    let fenced = written?;
    Ok(Restored {
        info: reader.info,
        fenced,
    })
}

/// The store file of [`restore`], written in one transaction that commits only after the
/// backup's trailer checked out. Returns the number of fenced keys.
fn write_restored<R: Read>(
    path: &Path,
    network_id: Digest,
    reader: &mut Reader<R>,
    open_views: &BTreeMap<Key, View>,
) -> Result<u64, StoreError> {
    let db = Database::create(path).map_err(db_error)?;
    let mut txn = db.begin_write().map_err(db_error)?;
    txn.set_durability(redb::Durability::Immediate);
    let mut fences: BTreeMap<Key, View> = open_views.clone();
    {
        let mut meta = txn.open_table(META).map_err(db_error)?;
        meta.insert("network", network_id.as_bytes().as_slice())
            .map_err(db_error)?;
        meta.insert("schema", SCHEMA_VERSION.to_le_bytes().as_slice())
            .map_err(db_error)?;
        let mut registers = txn.open_table(REGISTERS).map_err(db_error)?;
        let mut evidence = txn.open_table(EVIDENCE).map_err(db_error)?;
        while let Some(record) = reader.next()? {
            match record {
                Record::Register(key, bytes) => {
                    let corrupt = |error: String| StoreError::Corrupt {
                        table: "registers",
                        error,
                    };
                    let key = Key::new(key).map_err(|e| corrupt(e.to_string()))?;
                    let state: RegisterState =
                        postcard::from_bytes(&bytes).map_err(|e| corrupt(e.to_string()))?;
                    let fence = fences.entry(key.clone()).or_insert(state.view);
                    *fence = (*fence).max(state.view);
                    // A key with nothing certified yet keeps only its fence.
                    if state.accepted.is_some() {
                        let state = encode(&certified_only(state))?;
                        registers
                            .insert(key.as_bytes(), state.as_slice())
                            .map_err(db_error)?;
                    }
                }
                Record::Evidence(member, proof) => {
                    evidence
                        .insert(member, proof.as_slice())
                        .map_err(db_error)?;
                }
            }
        }
        let mut fence = txn.open_table(FENCE).map_err(db_error)?;
        for (key, view) in &fences {
            fence.insert(key.as_bytes(), *view).map_err(db_error)?;
        }
    }
    txn.commit().map_err(db_error)?;
    Ok(fences.len() as u64)
}
