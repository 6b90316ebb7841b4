//! Domain-separated BLAKE3 hashing.
//!
//! Every hash in Beaufort goes through [`hash`] with a [`Domain`], so a digest computed for one
//! purpose (a Merkle leaf, a value, a vote message) can never be confused with a digest of the same
//! bytes computed for another purpose.

use blake3::hazmat::{hash_derive_key_context, ContextKey, HasherExt};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::OnceLock;

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
    /// Every domain, in declaration order (a domain's position is its discriminant).
    const ALL: [Domain; 10] = [
        Domain::Value,
        Domain::VoteMessage,
        Domain::MerkleLeaf,
        Domain::MerkleNode,
        Domain::RegisterState,
        Domain::BlsCoefficient,
        Domain::NetworkId,
        Domain::BatchScalar,
        Domain::ContractSource,
        Domain::Other,
    ];

    /// A hasher in this domain's derive-key mode. The context's key is derived once per process:
    /// deriving it costs a BLAKE3 compression, as much again as hashing a short message, and
    /// the simulator hashes millions of short messages (the same digests either way).
    fn hasher(self) -> blake3::Hasher {
        static KEYS: OnceLock<[ContextKey; Domain::ALL.len()]> = OnceLock::new();
        let keys = KEYS.get_or_init(|| Domain::ALL.map(|d| hash_derive_key_context(d.context())));
        blake3::Hasher::new_from_context_key(&keys[self as usize])
    }

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
    let mut hasher = domain.hasher();
    for part in parts {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    Digest(*hasher.finalize().as_bytes())
}

/// Like [`hash`], but returns `N` bytes of BLAKE3's extendable output (used to derive scalars with
/// negligible modular bias).
pub fn hash_xof<const N: usize>(domain: Domain, parts: &[&[u8]]) -> [u8; N] {
    let mut hasher = domain.hasher();
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
    let mut hasher = Domain::MerkleNode.hasher();
    hasher.update(&left.0);
    hasher.update(&right.0);
    Digest(*hasher.finalize().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_domain_hashes_as_blake3_derive_key_with_its_context() {
        for (position, domain) in Domain::ALL.into_iter().enumerate() {
            assert_eq!(domain as usize, position);
            let mut expected = blake3::Hasher::new_derive_key(domain.context());
            expected.update(&1u64.to_le_bytes());
            expected.update(b"x");
            assert_eq!(hash(domain, &[b"x"]).0, *expected.finalize().as_bytes());
        }
        let (left, right) = (Digest([1; 32]), Digest([2; 32]));
        let mut expected = [0u8; 64];
        expected[..32].copy_from_slice(&left.0);
        expected[32..].copy_from_slice(&right.0);
        assert_eq!(
            hash_pair(&left, &right).0,
            blake3::derive_key(Domain::MerkleNode.context(), &expected)
        );
    }

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
