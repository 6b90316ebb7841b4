//! End-user (customer) signatures: ECDSA over P-256 with SHA-256, because that is what browsers
//! offer through WebCrypto.
//!
//! Formats are exactly WebCrypto's:
//! - public keys are SEC1 *uncompressed* points, 65 bytes starting with `0x04`
//!   (`crypto.subtle.exportKey("raw", key)`); serialized as lower-case hex in human-readable
//!   formats (like every other key in Beaufort) and as 65 raw bytes otherwise;
//! - signatures are the 64-byte IEEE P1363 concatenation `r || s` that `crypto.subtle.sign`
//!   returns. ASN.1 DER signatures are *not* accepted, so each signature has one encoding.

use crate::encoding;
use crate::error::CryptoError;
use ring::agreement;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Length of an uncompressed SEC1 P-256 point.
pub const USER_PUBLIC_KEY_LEN: usize = 65;

/// Length of a P1363 P-256 signature.
pub const USER_SIGNATURE_LEN: usize = 64;

/// An end user's P-256 public key: always a valid point on the curve.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserPublicKey([u8; USER_PUBLIC_KEY_LEN]);

impl UserPublicKey {
    /// Parses an uncompressed SEC1 point and checks it is on the curve (by letting ring validate
    /// it as an ECDH peer key, which performs full public-key validation). Costs about one P-256
    /// scalar multiplication.
    pub fn from_bytes(bytes: &[u8]) -> Result<UserPublicKey, CryptoError> {
        let array: [u8; USER_PUBLIC_KEY_LEN] = bytes
            .try_into()
            .map_err(|_| CryptoError::BadUserKey("must be 65 bytes"))?;
        if array[0] != 0x04 {
            return Err(CryptoError::BadUserKey(
                "must be an uncompressed point (starting with 0x04)",
            ));
        }
        let rng = SystemRandom::new();
        let ephemeral = agreement::EphemeralPrivateKey::generate(&agreement::ECDH_P256, &rng)
            .map_err(|_| CryptoError::Randomness)?;
        let peer = agreement::UnparsedPublicKey::new(&agreement::ECDH_P256, &array);
        agreement::agree_ephemeral(ephemeral, &peer, |_| ())
            .map_err(|_| CryptoError::BadUserKey("not a point on the P-256 curve"))?;
        Ok(UserPublicKey(array))
    }

    /// The 65-byte encoding.
    pub fn as_bytes(&self) -> &[u8; USER_PUBLIC_KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for UserPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserPublicKey({}..)", hex::encode(&self.0[1..7]))
    }
}

impl Serialize for UserPublicKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        encoding::serialize(&self.0, serializer)
    }
}

impl<'de> Deserialize<'de> for UserPublicKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let bytes: [u8; USER_PUBLIC_KEY_LEN] = encoding::deserialize(deserializer)?;
        UserPublicKey::from_bytes(&bytes).map_err(serde::de::Error::custom)
    }
}

/// Checks an end user's signature of `message`: ECDSA P-256 SHA-256, 64-byte `r || s`.
pub fn verify_user_signature(
    public_key: &UserPublicKey,
    message: &[u8],
    signature: &[u8],
) -> Result<(), CryptoError> {
    signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, &public_key.0)
        .verify(message, signature)
        .map_err(|_| CryptoError::UserSignatureInvalid)
}

/// A P-256 key pair that signs like a browser does, for tests and tools that play the customer.
pub struct UserKeyPair {
    key_pair: EcdsaKeyPair,
    public_key: UserPublicKey,
    rng: SystemRandom,
}

impl UserKeyPair {
    /// A fresh key pair from the system random generator.
    pub fn generate() -> Result<UserKeyPair, CryptoError> {
        let rng = SystemRandom::new();
        let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).map_err(|_| CryptoError::Randomness)?;
        let key_pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng)
            .map_err(|_| CryptoError::BadUserKey("ring rejected its own key"))?;
        let public_key = UserPublicKey::from_bytes(key_pair.public_key().as_ref())?;
        Ok(UserKeyPair {
            key_pair,
            public_key,
            rng,
        })
    }

    /// The public key, as a browser would export it.
    pub fn public_key(&self) -> UserPublicKey {
        self.public_key
    }

    /// Signs `message` (64-byte `r || s`; ECDSA is randomized, so signatures differ each call).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.key_pair
            .sign(&self.rng, message)
            .map(|sig| sig.as_ref().to_vec())
            .map_err(|_| CryptoError::Randomness)
    }
}

impl fmt::Debug for UserKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserKeyPair")
            .field("public_key", &self.public_key)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify() {
        let pair = UserKeyPair::generate().unwrap();
        let sig = pair.sign(b"transfer 10 points").unwrap();
        assert_eq!(sig.len(), USER_SIGNATURE_LEN);
        verify_user_signature(&pair.public_key(), b"transfer 10 points", &sig).unwrap();
        assert!(matches!(
            verify_user_signature(&pair.public_key(), b"transfer 11 points", &sig),
            Err(CryptoError::UserSignatureInvalid)
        ));
    }

    #[test]
    fn flipped_bit_and_wrong_key_fail() {
        let pair = UserKeyPair::generate().unwrap();
        let other = UserKeyPair::generate().unwrap();
        let sig = pair.sign(b"m").unwrap();
        for bit in [0usize, 100, 300, 511] {
            let mut bad = sig.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(verify_user_signature(&pair.public_key(), b"m", &bad).is_err());
        }
        assert!(verify_user_signature(&other.public_key(), b"m", &sig).is_err());
        assert!(verify_user_signature(&pair.public_key(), b"m", &sig[..63]).is_err());
    }

    #[test]
    fn public_key_validation_and_serde() {
        let pk = UserKeyPair::generate().unwrap().public_key();
        assert_eq!(UserPublicKey::from_bytes(pk.as_bytes()).unwrap(), pk);
        let mut off_curve = *pk.as_bytes();
        off_curve[64] ^= 1;
        assert!(UserPublicKey::from_bytes(&off_curve).is_err());
        let mut compressed_tag = *pk.as_bytes();
        compressed_tag[0] = 0x02;
        assert!(UserPublicKey::from_bytes(&compressed_tag).is_err());
        assert!(UserPublicKey::from_bytes(&pk.as_bytes()[..33]).is_err());

        let json = serde_json::to_string(&pk).unwrap();
        assert_eq!(json, format!("\"{}\"", hex::encode(pk.as_bytes())));
        assert_eq!(serde_json::from_str::<UserPublicKey>(&json).unwrap(), pk);
        let wire = postcard::to_allocvec(&pk).unwrap();
        assert_eq!(wire.len(), USER_PUBLIC_KEY_LEN);
        assert_eq!(postcard::from_bytes::<UserPublicKey>(&wire).unwrap(), pk);
        let bad_json = format!("\"{}\"", hex::encode(off_curve));
        assert!(serde_json::from_str::<UserPublicKey>(&bad_json).is_err());
    }

    #[test]
    fn der_signatures_are_not_accepted() {
        let pair = UserKeyPair::generate().unwrap();
        let sig = pair.sign(b"m").unwrap();
        // Re-encode r || s as DER: SEQUENCE { INTEGER r, INTEGER s }.
        let int = |v: &[u8]| {
            let mut v = v.to_vec();
            while v.len() > 1 && v[0] == 0 && v[1] < 0x80 {
                v.remove(0);
            }
            if v[0] >= 0x80 {
                v.insert(0, 0);
            }
            let mut out = vec![0x02, v.len() as u8];
            out.extend(v);
            out
        };
        let mut body = int(&sig[..32]);
        body.extend(int(&sig[32..]));
        let mut der = vec![0x30, body.len() as u8];
        der.extend(body);
        assert!(verify_user_signature(&pair.public_key(), b"m", &der).is_err());
        // Sanity: the DER encoding is what ring's ASN.1 verifier accepts.
        signature::UnparsedPublicKey::new(
            &signature::ECDSA_P256_SHA256_ASN1,
            pair.public_key().as_bytes(),
        )
        .verify(b"m", &der)
        .unwrap();
    }
}
