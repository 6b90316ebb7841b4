//! Domain-separated BLAKE3 hashing.
//!
//! Every hash in Beaufort goes through [`hash`] with a [`Domain`], so a digest computed for one
//! purpose (a Merkle leaf, a value, a vote message) can never be confused with a digest of the same
//! bytes computed for another purpose.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A 32-byte BLAKE3 digest.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// The all-zero digest, used as the hash of "nothing" (an empty Merkle subtree).
    pub const ZERO: Digest = Digest([0u8; 32]);

    /// The raw bytes, for encoding and signing.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lower-case hex, for logs and file formats.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Eight hex digits are enough to tell digests apart in logs and test failures.
        write!(f, "#{}", &hex::encode(&self.0[..4]))
    }
}

/// What a digest is for. The domain's tag is mixed into the hash as a BLAKE3 derive-key context,
/// which is BLAKE3's own mechanism for domain separation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Domain {
    /// The hash of a register value (what votes refer to).
    Value,
    /// The byte string a vote signature covers.
    VoteMessage,
    /// A Merkle leaf: one key and the digest of its register state.
    MerkleLeaf,
    /// An inner Merkle node.
    MerkleNode,
    /// The digest of a register state, as stored in a Merkle leaf.
    RegisterState,
    /// The per-member BLS coefficient t_i = H1(pk_i).
    BlsCoefficient,
    /// A network identifier derived from a consortium's name and members.
    NetworkId,
    /// The per-group random scalars of a batch signature check, derived from the caller's seed.
    BatchScalar,
    /// The source code of a contract, as its endorsements name it.
    ContractSource,
    /// Random-oracle outputs for anything else a test or tool needs.
    Other,
}

impl Domain {
    fn context(self) -> &'static str {
        match self {
            Domain::Value => "beaufort v1 value",
            Domain::VoteMessage => "beaufort v1 vote message",
            Domain::MerkleLeaf => "beaufort v1 merkle leaf",
            Domain::MerkleNode => "beaufort v1 merkle node",
            Domain::RegisterState => "beaufort v1 register state",
            Domain::BlsCoefficient => "beaufort v1 bls coefficient",
            Domain::NetworkId => "beaufort v1 network id",
            Domain::ContractSource => "beaufort v1 contract source",
            Domain::BatchScalar => "beaufort v1 batch scalar",
            Domain::Other => "beaufort v1 other",
        }
    }
}

/// Hashes `parts` under `domain`. Each part is length-prefixed, so `["ab", "c"]` and `["a", "bc"]`
/// hash differently.
pub fn hash(domain: Domain, parts: &[&[u8]]) -> Digest {
    let mut hasher = blake3::Hasher::new_derive_key(domain.context());
    for part in parts {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    Digest(*hasher.finalize().as_bytes())
}

/// Like [`hash`], but returns `N` bytes of BLAKE3's extendable output (used to derive scalars with
/// negligible modular bias).
pub fn hash_xof<const N: usize>(domain: Domain, parts: &[&[u8]]) -> [u8; N] {
    let mut hasher = blake3::Hasher::new_derive_key(domain.context());
    for part in parts {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    let mut out = [0u8; N];
    hasher.finalize_xof().fill(&mut out);
    out
}

/// Hashes two child digests into their parent (Merkle inner node). Kept separate from [`hash`]
/// because it is the hot path of the Merkle tree and needs no length prefixes.
pub fn hash_pair(left: &Digest, right: &Digest) -> Digest {
    let mut hasher = blake3::Hasher::new_derive_key(Domain::MerkleNode.context());
    hasher.update(&left.0);
    hasher.update(&right.0);
    Digest(*hasher.finalize().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_separate_equal_inputs() {
        let a = hash(Domain::Value, &[b"x"]);
        let b = hash(Domain::MerkleLeaf, &[b"x"]);
        assert_ne!(a, b);
    }

    #[test]
    fn parts_are_length_prefixed() {
        assert_ne!(
            hash(Domain::Value, &[b"ab", b"c"]),
            hash(Domain::Value, &[b"a", b"bc"])
        );
    }

    #[test]
    fn hash_is_deterministic() {
        assert_eq!(hash(Domain::Value, &[b"x"]), hash(Domain::Value, &[b"x"]));
    }
}
