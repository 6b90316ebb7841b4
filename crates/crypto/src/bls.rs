//! BLS12-381 keys and signatures (min_sig: signatures in G1, public keys in G2).
//!
//! These types are byte containers with validation where it is cheap and matters: a
//! [`PublicKey`] is always a valid subgroup point (keys are few and come from configuration),
//! while a [`Signature`] is just 48 bytes, because unverified votes are stored and forwarded and
//! their validity is only decided at (batched) verification time.

use crate::curve::{self, G1_LEN, G2_LEN};
use crate::encoding;
use crate::error::CryptoError;
use blst::blst_scalar;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Domain separation tag for vote signatures, so a vote signature can never be replayed as a
/// signature of another protocol or scheme (including the proofs of possession below).
pub const VOTE_DST: &[u8] = b"BEAUFORT-V1-BLS12381G1_XMD:SHA-256_SSWU_RO_NUL_";

/// Domain separation tag for proofs of possession (the IETF BLS draft's PoP tag for min_sig),
/// distinct from [`VOTE_DST`] so a PoP is never a valid vote and vice versa.
pub const POP_DST: &[u8] = b"BLS_POP_BLS12381G1_XMD:SHA-256_SSWU_RO_POP_";

/// Domain separation tag of application statements a member signs outside consensus (issuing a
/// loyalty ticket, endorsing a contract): distinct from [`VOTE_DST`] so no statement is ever a
/// valid vote and no vote is ever a valid statement.
pub const STATEMENT_DST: &[u8] = b"BEAUFORT-V1-STATEMENT-BLS12381G1_XMD:SHA-256_SSWU_RO_NUL_";

/// Length of a compressed public key, for parsers and size accounting.
pub const PUBLIC_KEY_LEN: usize = G2_LEN;

/// Length of a compressed signature, for parsers and size accounting.
pub const SIGNATURE_LEN: usize = G1_LEN;

/// Length of an encoded secret key.
pub const SECRET_KEY_LEN: usize = 32;

/// A member's BLS secret key: the scalar a replica signs votes with. It is wiped from memory when
/// dropped and never printed.
pub struct SecretKey {
    // `blst_scalar` zeroizes itself on drop.
    scalar: blst_scalar,
}

impl SecretKey {
    /// Derives a key from 32 bytes of input key material (IETF BLS KeyGen), so keys can come from
    /// the system RNG or, in tests and simulations, from a deterministic seed.
    pub fn generate(ikm: &[u8; 32]) -> SecretKey {
        SecretKey {
            scalar: curve::keygen(ikm),
        }
    }

    /// Parses a big-endian scalar (as written to key files); it must be in `1..r`.
    pub fn from_bytes(bytes: &[u8]) -> Result<SecretKey, CryptoError> {
        let bytes: &[u8; SECRET_KEY_LEN] = bytes
            .try_into()
            .map_err(|_| CryptoError::BadSecretKey("must be 32 bytes"))?;
        curve::scalar_from_be(bytes)
            .map(|scalar| SecretKey { scalar })
            .ok_or(CryptoError::BadSecretKey(
                "not a non-zero scalar below the group order",
            ))
    }

    /// The big-endian encoding, for writing key files only. The caller should wipe the result.
    pub fn to_bytes(&self) -> [u8; SECRET_KEY_LEN] {
        curve::scalar_to_be(&self.scalar)
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(curve::public_key_of(&self.scalar))
    }

    /// A proof of possession: the plain key's signature of its own compressed public key under
    /// [`POP_DST`]. Checking it when a membership is built stops rogue-key attacks.
    pub fn proof_of_possession(&self) -> ProofOfPossession {
        let public_key = self.public_key();
        ProofOfPossession(Signature(curve::sign(
            &self.scalar,
            public_key.as_bytes(),
            POP_DST,
        )))
    }

    /// The raw scalar, for deriving a member's effective signing key.
    pub(crate) fn scalar(&self) -> &blst_scalar {
        &self.scalar
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

/// A member's BLS public key: a compressed G2 point, always valid (non-identity, in the
/// prime-order subgroup), because every way to build one checks it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey([u8; PUBLIC_KEY_LEN]);

impl PublicKey {
    /// Parses and validates a compressed G2 point.
    pub fn from_bytes(bytes: &[u8]) -> Result<PublicKey, CryptoError> {
        let array: &[u8; PUBLIC_KEY_LEN] = bytes
            .try_into()
            .map_err(|_| CryptoError::BadPublicKey("must be 96 bytes"))?;
        curve::g2_from_bytes(array).map_err(CryptoError::BadPublicKey)?;
        Ok(PublicKey(*array))
    }

    /// The compressed encoding (what proofs of possession and coefficients are computed over).
    pub fn as_bytes(&self) -> &[u8; PUBLIC_KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({}..)", hex::encode(&self.0[..6]))
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        encoding::serialize(&self.0, serializer)
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let bytes: [u8; PUBLIC_KEY_LEN] = encoding::deserialize(deserializer)?;
        PublicKey::from_bytes(&bytes).map_err(serde::de::Error::custom)
    }
}

/// A BLS signature or aggregate signature: 48 bytes that are meant to be a compressed G1 point.
/// Holding one says nothing about its validity; that is decided when it is verified.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Signature([u8; SIGNATURE_LEN]);

impl Signature {
    /// Wraps 48 bytes without checking them (only the length is checked).
    pub fn from_bytes(bytes: &[u8]) -> Result<Signature, CryptoError> {
        let array: [u8; SIGNATURE_LEN] = bytes
            .try_into()
            .map_err(|_| CryptoError::BadSignature("must be 48 bytes"))?;
        Ok(Signature(array))
    }

    /// The 48 bytes, for encoding and hashing.
    pub fn as_bytes(&self) -> &[u8; SIGNATURE_LEN] {
        &self.0
    }

    /// Wraps bytes known to be a compressed point.
    pub(crate) fn from_array(bytes: [u8; SIGNATURE_LEN]) -> Signature {
        Signature(bytes)
    }

    /// Decompresses the point (on the curve, not the identity; subgroup membership is checked by
    /// the pairing check that consumes it).
    pub(crate) fn to_point(self) -> Result<blst::blst_p1_affine, CryptoError> {
        curve::g1_from_bytes(&self.0).map_err(CryptoError::BadSignature)
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({}..)", hex::encode(&self.0[..6]))
    }
}

impl Serialize for Signature {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        encoding::serialize(&self.0, serializer)
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        encoding::deserialize(deserializer).map(Signature)
    }
}

/// A proof that the holder of a public key knows its secret key (a signature of the key itself
/// under [`POP_DST`]). Memberships require one per member, which is what makes plain aggregation
/// of votes safe against rogue keys.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ProofOfPossession(Signature);

impl ProofOfPossession {
    /// Wraps a signature received in a configuration file or message.
    pub fn from_signature(signature: Signature) -> ProofOfPossession {
        ProofOfPossession(signature)
    }

    /// The underlying signature.
    pub fn signature(&self) -> &Signature {
        &self.0
    }

    /// Whether this proves possession of `public_key`'s secret key.
    pub fn verify(&self, public_key: &PublicKey) -> bool {
        let (Ok(pk), Ok(sig)) = (
            curve::g2_from_bytes(public_key.as_bytes()),
            self.0.to_point(),
        ) else {
            return false;
        };
        curve::pairing_check(
            &[curve::Term {
                public_key: pk,
                signature: sig,
                message: public_key.as_bytes(),
                randomizer: None,
            }],
            POP_DST,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SecretKey {
        SecretKey::generate(&[seed; 32])
    }

    #[test]
    fn secret_key_round_trips_and_rejects_bad_bytes() {
        let sk = key(1);
        let again = SecretKey::from_bytes(&sk.to_bytes()).unwrap();
        assert_eq!(sk.public_key(), again.public_key());
        assert!(SecretKey::from_bytes(&[0u8; 32]).is_err(), "zero scalar");
        assert!(SecretKey::from_bytes(&[0xffu8; 32]).is_err(), "scalar >= r");
        assert!(SecretKey::from_bytes(&[1u8; 31]).is_err(), "short");
    }

    #[test]
    fn secret_key_debug_is_redacted() {
        let sk = key(2);
        let shown = format!("{sk:?}");
        assert_eq!(shown, "SecretKey(..)");
        assert!(!shown.contains(&hex::encode(sk.to_bytes())));
    }

    #[test]
    fn public_key_validation() {
        let pk = key(3).public_key();
        assert_eq!(PublicKey::from_bytes(pk.as_bytes()).unwrap(), pk);
        let mut bad = *pk.as_bytes();
        bad[10] ^= 1;
        assert!(PublicKey::from_bytes(&bad).is_err());
        // The compressed identity (0xc0 followed by zeros) is rejected.
        let mut identity = [0u8; PUBLIC_KEY_LEN];
        identity[0] = 0xc0;
        assert!(PublicKey::from_bytes(&identity).is_err());
        assert!(PublicKey::from_bytes(&pk.as_bytes()[..95]).is_err());
    }

    #[test]
    fn proof_of_possession_binds_the_key() {
        let a = key(4);
        let b = key(5);
        assert!(a.proof_of_possession().verify(&a.public_key()));
        assert!(!a.proof_of_possession().verify(&b.public_key()));
        let mut bytes = *a.proof_of_possession().signature().as_bytes();
        bytes[20] ^= 4;
        let tampered = ProofOfPossession::from_signature(Signature::from_bytes(&bytes).unwrap());
        assert!(!tampered.verify(&a.public_key()));
    }

    #[test]
    fn serde_round_trips_in_json_and_postcard() {
        let sk = key(6);
        let pk = sk.public_key();
        let pop = sk.proof_of_possession();

        let json = serde_json::to_string(&pk).unwrap();
        assert_eq!(json, format!("\"{}\"", hex::encode(pk.as_bytes())));
        assert_eq!(serde_json::from_str::<PublicKey>(&json).unwrap(), pk);
        let wire = postcard::to_allocvec(&pk).unwrap();
        assert_eq!(wire.len(), PUBLIC_KEY_LEN);
        assert_eq!(postcard::from_bytes::<PublicKey>(&wire).unwrap(), pk);

        let sig = *pop.signature();
        let wire = postcard::to_allocvec(&sig).unwrap();
        assert_eq!(wire.len(), SIGNATURE_LEN, "no length prefix on the wire");
        assert_eq!(postcard::from_bytes::<Signature>(&wire).unwrap(), sig);
        let json = serde_json::to_string(&pop).unwrap();
        assert_eq!(
            serde_json::from_str::<ProofOfPossession>(&json).unwrap(),
            pop
        );
    }

    #[test]
    fn deserializing_an_invalid_public_key_fails() {
        let mut bad = *key(7).public_key().as_bytes();
        bad[50] ^= 0x10;
        let json = format!("\"{}\"", hex::encode(bad));
        assert!(serde_json::from_str::<PublicKey>(&json).is_err());
        assert!(serde_json::from_str::<PublicKey>("\"abcd\"").is_err());
    }

    #[test]
    fn signatures_are_stored_without_parsing() {
        // Garbage that is not a curve point is still a storable Signature value.
        let garbage = Signature::from_bytes(&[0x5a; SIGNATURE_LEN]).unwrap();
        assert!(garbage.to_point().is_err());
        assert!(Signature::from_bytes(&[0u8; 47]).is_err());
    }
}
