//! Cryptography for Beaufort.
//!
//! Everything a replica signs or hashes goes through this crate, so the protocol core never touches
//! a curve or a hash function directly.
//!
//! - [`hash`]: domain-separated BLAKE3.
//! - [`bls`], [`membership`], [`qc`], [`batch`]: the BeauForT multi-signature (paper §4.2, Fig. 4)
//!   over BLS12-381: members sign votes with an effective key `t_i * sk_i` where `t_i = H1(pk_i)`,
//!   so votes aggregate by point addition and verifiers only add precomputed effective public keys;
//!   quorum certificates; deferred batch verification with bisection.
//! - [`weights`], [`aggregate`]: partial aggregates whose signers may repeat, so that any two
//!   aggregates of one message add up however they overlap.
//! - [`user`]: end-user ECDSA P-256 signatures in the format browsers produce.
//! - [`keyfile`]: member key files.
//!
//! # Why min_sig
//!
//! BLS12-381 is used in its "min_sig" arrangement: signatures in G1 (48 bytes compressed), public
//! keys in G2 (96 bytes). Votes carry signatures and dominate gossip bandwidth, so 48-byte
//! signatures halve vote size; signing is about twice as fast; verification costs about the same;
//! and public keys appear only in the configuration, where their size does not matter. Adding
//! effective public keys is slower in G2, but that is a few microseconds per signer against a
//! pairing check of hundreds (see `benches/bls.rs`).

#![warn(missing_docs)]

pub mod aggregate;
pub mod batch;
pub mod bls;
mod curve;
mod encoding;
pub mod error;
pub mod hash;
pub mod keyfile;
pub mod membership;
pub mod qc;
pub mod user;
pub mod weights;

pub use aggregate::Aggregate;
pub use batch::{
    verify_aggregates_report, verify_batch, verify_batch_report, AggregateItem, BatchItem,
    BatchOutcome, BatchReport,
};
pub use bls::{ProofOfPossession, PublicKey, SecretKey, Signature, STATEMENT_DST, VOTE_DST};
pub use error::CryptoError;
pub use hash::{Digest, Domain};
pub use membership::{MemberIndex, MemberKey, Membership, Signer, MAX_MEMBERS};
pub use qc::{QuorumCertificate, SignerSet};
pub use user::{verify_user_signature, UserKeyPair, UserPublicKey};
pub use weights::SignerWeights;
