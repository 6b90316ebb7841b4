//! The one error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong in this crate. One enum so callers (the protocol core, the CLI)
/// can propagate any crypto failure with `?` and still match on the cases they handle specially.
///
/// No variant ever carries secret key material: key-file errors say what is wrong and where, never
/// which bytes were read.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// Bytes that should be a compressed BLS12-381 G2 public key are not one.
    #[error("bad BLS public key: {0}")]
    BadPublicKey(&'static str),
    /// Bytes that should be a compressed BLS12-381 G1 signature are not one.
    #[error("bad BLS signature: {0}")]
    BadSignature(&'static str),
    /// Bytes that should be a BLS secret key are not one.
    #[error("bad BLS secret key: {0}")]
    BadSecretKey(&'static str),
    /// A member's proof of possession does not verify, so its key could be a rogue key.
    #[error("proof of possession failed for member {index}")]
    ProofOfPossessionFailed {
        /// Position of the member in the configuration.
        index: usize,
    },
    /// Two members have the same public key.
    #[error("duplicate member key: members {first} and {second} have the same public key")]
    DuplicateMemberKey {
        /// The first member with the key.
        first: usize,
        /// The later member with the same key.
        second: usize,
    },
    /// A membership (or signer set) must have between 1 and `max` members.
    #[error("a membership needs between 1 and {max} members, got {got}")]
    MemberCount {
        /// How many members were given.
        got: usize,
        /// The upper bound, [`crate::membership::MAX_MEMBERS`].
        max: usize,
    },
    /// A member index does not name a member.
    #[error("signer index {index} out of range for {n} members")]
    SignerOutOfRange {
        /// The offending index.
        index: usize,
        /// The number of members.
        n: usize,
    },
    /// The same member appears twice among the shares of an aggregate.
    #[error("signer {index} appears more than once")]
    DuplicateSigner {
        /// The repeated index.
        index: usize,
    },
    /// Adding two aggregates would count a member more than 255 times.
    #[error("member {index} would appear more than 255 times in one aggregate")]
    WeightOverflow {
        /// The member.
        index: usize,
    },
    /// A quorum certificate has fewer signers than a quorum.
    #[error("not enough signers for a quorum: have {have}, need {need}")]
    NotEnoughSigners {
        /// Signers in the certificate.
        have: usize,
        /// The quorum size.
        need: usize,
    },
    /// There was nothing to aggregate.
    #[error("no signatures to aggregate")]
    EmptyAggregate,
    /// An aggregate signature is malformed or does not verify.
    #[error("invalid aggregate signature")]
    InvalidAggregate,
    /// An encoded signer set is malformed.
    #[error("bad signer set: {0}")]
    BadSignerSet(&'static str),
    /// Bytes that should be an uncompressed P-256 public key are not one.
    #[error("bad user public key: {0}")]
    BadUserKey(&'static str),
    /// An end-user ECDSA signature does not verify.
    #[error("user signature invalid")]
    UserSignatureInvalid,
    /// The operating system's random generator failed (user key generation or signing).
    #[error("system randomness unavailable")]
    Randomness,
    /// A key file could not be read or written.
    #[error("key file {}: {source}", path.display())]
    KeyFileIo {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A key file does not exist.
    #[error("key file {} not found", path.display())]
    KeyFileMissing {
        /// The file.
        path: PathBuf,
    },
    /// Refused to replace an existing key file.
    #[error("key file {} already exists; refusing to overwrite it", path.display())]
    KeyFileExists {
        /// The file.
        path: PathBuf,
    },
    /// A key file is larger than any valid key file could be.
    #[error("key file {} is too large ({size} bytes, limit {limit})", path.display())]
    KeyFileTooLarge {
        /// The file.
        path: PathBuf,
        /// Its size (at least; reading stops past the limit).
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A key file's contents are not a valid key file.
    #[error("key file {} is not valid: {reason}", path.display())]
    KeyFileFormat {
        /// The file.
        path: PathBuf,
        /// What is wrong, without any of the file's contents.
        reason: String,
    },
}
