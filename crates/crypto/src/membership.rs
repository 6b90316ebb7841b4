//! The replica set and its rogue-key-safe multi-signature (BeauForT §4.2, Fig. 4).
//!
//! Each member i has a coefficient `t_i = H1(pk_i)` and signs with the *effective* secret key
//! `t_i * sk_i`, so its signatures verify against the effective public key `t_i * pk_i`. This is
//! the Boneh–Drijvers–Neven defence against rogue keys with the exponentiation moved from the
//! aggregator to the signer: aggregating votes is then plain point addition, and a verifier only
//! adds the precomputed effective keys of the signers before one pairing check.

use crate::aggregate::Aggregate;
use crate::bls::{ProofOfPossession, PublicKey, SecretKey, Signature, STATEMENT_DST, VOTE_DST};
use crate::curve::{self, G1Sum, G2Sum};
use crate::error::CryptoError;
use crate::hash::Digest;
use crate::qc::{QuorumCertificate, SignerSet};
use crate::weights::SignerWeights;
use blst::{blst_p2_affine, blst_scalar};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;

/// Position of a member in the configuration (0..n). Votes and signer sets name members by index,
/// which is far smaller than a public key.
pub type MemberIndex = u16;

/// Upper bound on the number of members, which bounds signer-set sizes and decoding work.
pub const MAX_MEMBERS: usize = 1024;

/// What the configuration lists for each member: its public key and the proof that it holds the
/// secret key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberKey {
    /// The member's (plain) BLS public key.
    pub public_key: PublicKey,
    /// Proof of possession of the matching secret key.
    pub pop: ProofOfPossession,
}

impl MemberKey {
    /// The configuration entry for a member holding `secret`.
    pub fn from_secret(secret: &SecretKey) -> MemberKey {
        MemberKey {
            public_key: secret.public_key(),
            pop: secret.proof_of_possession(),
        }
    }
}

/// The verified replica set: every key has a valid proof of possession and no key repeats. It
/// caches each member's effective public key so verification needs no scalar multiplications.
#[derive(Clone)]
pub struct Membership {
    network_id: Digest,
    members: Vec<MemberKey>,
    effective_keys: Vec<blst_p2_affine>,
}

impl Membership {
    /// Checks and loads a configuration: 1..=[`MAX_MEMBERS`] members, every proof of possession
    /// valid, no duplicate keys. Costs about one pairing check and one G2 scalar multiplication per
    /// member, so build it once and share it.
    pub fn new(network_id: Digest, members: Vec<MemberKey>) -> Result<Membership, CryptoError> {
        if members.is_empty() || members.len() > MAX_MEMBERS {
            return Err(CryptoError::MemberCount {
                got: members.len(),
                max: MAX_MEMBERS,
            });
        }
        let mut seen: HashMap<&PublicKey, usize> = HashMap::with_capacity(members.len());
        for (index, member) in members.iter().enumerate() {
            if let Some(&first) = seen.get(&member.public_key) {
                return Err(CryptoError::DuplicateMemberKey {
                    first,
                    second: index,
                });
            }
            seen.insert(&member.public_key, index);
        }
        let mut effective_keys = Vec::with_capacity(members.len());
        for (index, member) in members.iter().enumerate() {
            if !member.pop.verify(&member.public_key) {
                return Err(CryptoError::ProofOfPossessionFailed { index });
            }
            let point = curve::g2_from_bytes(member.public_key.as_bytes())
                .map_err(CryptoError::BadPublicKey)?;
            let t = curve::coefficient(member.public_key.as_bytes());
            effective_keys.push(curve::g2_mul(&point, &t));
        }
        Ok(Membership {
            network_id,
            members,
            effective_keys,
        })
    }

    /// Number of members.
    pub fn n(&self) -> usize {
        self.members.len()
    }

    /// The number of Byzantine members tolerated, `(n - 1) / 3`.
    pub fn f(&self) -> usize {
        (self.n() - 1) / 3
    }

    /// The quorum size `n - f` (a supermajority), the number of signers a certificate needs.
    pub fn quorum(&self) -> usize {
        self.n() - self.f()
    }

    /// The network this membership belongs to, so messages can be bound to it.
    pub fn network_id(&self) -> Digest {
        self.network_id
    }

    /// Member `index`'s public key, if there is such a member.
    pub fn public_key(&self, index: MemberIndex) -> Option<&PublicKey> {
        self.members.get(usize::from(index)).map(|m| &m.public_key)
    }

    /// The configuration entries, in index order.
    pub fn members(&self) -> &[MemberKey] {
        &self.members
    }

    /// Whether `sig` is member `index`'s vote on `msg`. False for unknown members and malformed
    /// signatures.
    pub fn verify_vote(&self, index: MemberIndex, msg: &[u8], sig: &Signature) -> bool {
        self.verify_single(index, msg, sig, VOTE_DST)
    }

    fn verify_single(&self, index: MemberIndex, msg: &[u8], sig: &Signature, dst: &[u8]) -> bool {
        let (Some(key), Ok(point)) = (self.effective_key(index), sig.to_point()) else {
            return false;
        };
        curve::pairing_check(
            &[curve::Term {
                public_key: *key,
                signature: point,
                message: msg,
                randomizer: None,
            }],
            dst,
        )
    }

    /// Whether `sig` is member `index`'s signature of the application statement `msg` (see
    /// [`Signer::sign_statement`]). False for unknown members and malformed signatures.
    pub fn verify_statement(&self, index: MemberIndex, msg: &[u8], sig: &Signature) -> bool {
        self.verify_single(index, msg, sig, STATEMENT_DST)
    }

    /// Checks a quorum certificate on `msg`: the signers fit this membership, at least a quorum of
    /// them are distinct, and the aggregate signature verifies against the sum of the signers'
    /// effective keys, each as often as it is counted.
    pub fn verify_qc(&self, qc: &QuorumCertificate, msg: &[u8]) -> Result<(), CryptoError> {
        qc.signers.validate(self.n())?;
        let have = qc.signers.support_len();
        if have < self.quorum() {
            return Err(CryptoError::NotEnoughSigners {
                have,
                need: self.quorum(),
            });
        }
        if self.verify_weighted(&qc.to_aggregate(), msg) {
            Ok(())
        } else {
            Err(CryptoError::InvalidAggregate)
        }
    }

    /// Whether `sig` is an aggregate of votes on `msg` by exactly `signers` (any number of them,
    /// at least one). Used for partial aggregates; certificates go through [`Self::verify_qc`].
    pub fn verify_aggregate(&self, signers: &SignerSet, msg: &[u8], sig: &Signature) -> bool {
        if signers.validate(self.n()).is_err() || signers.is_empty() {
            return false;
        }
        match sig.to_point() {
            Ok(point) => self.check_aggregate(signers, msg, point),
            Err(_) => false,
        }
    }

    /// Whether `aggregate` is a sum of votes on `msg` by exactly its weights' members, each as
    /// often as its count (at least one member). How partial aggregates and certificates with
    /// repeated signers are checked.
    pub fn verify_weighted(&self, aggregate: &Aggregate, msg: &[u8]) -> bool {
        let weights = &aggregate.weights;
        if weights.validate(self.n()).is_err() || weights.is_empty() {
            return false;
        }
        let (Some(public_key), Ok(signature)) =
            (self.weighted_key(weights), aggregate.signature.to_point())
        else {
            return false;
        };
        curve::pairing_check(
            &[curve::Term {
                public_key,
                signature,
                message: msg,
                randomizer: None,
            }],
            VOTE_DST,
        )
    }

    /// The sum of the effective keys of `weights`' members, each times its count; `None` if a
    /// member is unknown.
    pub(crate) fn weighted_key(&self, weights: &SignerWeights) -> Option<blst_p2_affine> {
        let mut sum = G2Sum::default();
        for (index, count) in weights.members() {
            let key = self.effective_key(index)?;
            if count == 1 {
                sum.add(key);
            } else {
                sum.add(&curve::g2_mul_small(key, count));
            }
        }
        Some(sum.to_affine())
    }

    /// Adds signatures (votes on the same message by different members) into one aggregate. Only
    /// point additions plus one subgroup check of the sum: callers aggregate shares that were
    /// already verified (or will be, as part of the aggregate), and every verification of the
    /// result checks its subgroup again. Fails if a signature is not a curve point or the sum is
    /// not in G1.
    pub fn aggregate_signatures(sigs: &[Signature]) -> Result<Signature, CryptoError> {
        if sigs.is_empty() {
            return Err(CryptoError::EmptyAggregate);
        }
        let mut sum = G1Sum::default();
        for sig in sigs {
            sum.add(&sig.to_point()?);
        }
        if !sum.in_group() {
            return Err(CryptoError::InvalidAggregate);
        }
        Ok(Signature::from_array(sum.compress()))
    }

    /// Member `index`'s effective public key `t_i * pk_i`.
    pub(crate) fn effective_key(&self, index: MemberIndex) -> Option<&blst_p2_affine> {
        self.effective_keys.get(usize::from(index))
    }

    /// The pairing check of an aggregate against the sum of the signers' effective keys. The
    /// caller has validated `signers` against this membership.
    fn check_aggregate(
        &self,
        signers: &SignerSet,
        msg: &[u8],
        signature: blst::blst_p1_affine,
    ) -> bool {
        let mut key_sum = G2Sum::default();
        for index in signers.iter() {
            match self.effective_key(index) {
                Some(key) => key_sum.add(key),
                None => return false,
            }
        }
        curve::pairing_check(
            &[curve::Term {
                public_key: key_sum.to_affine(),
                signature,
                message: msg,
                randomizer: None,
            }],
            VOTE_DST,
        )
    }
}

impl fmt::Debug for Membership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Membership")
            .field("network_id", &self.network_id)
            .field("n", &self.n())
            .finish_non_exhaustive()
    }
}

/// This replica's signing capability: its member index and its effective secret key
/// `t_i * sk_i`, computed once so that each vote costs one hash-to-curve and one G1 scalar
/// multiplication. Wiped on drop, never printed.
pub struct Signer {
    index: MemberIndex,
    public_key: PublicKey,
    // `blst_scalar` zeroizes itself on drop.
    effective: blst_scalar,
}

impl Signer {
    /// Prepares member `index` to sign with `secret`. The plain secret key is consumed and wiped.
    pub fn new(index: MemberIndex, secret: SecretKey) -> Signer {
        let public_key = secret.public_key();
        let t = curve::coefficient(public_key.as_bytes());
        Signer {
            index,
            public_key,
            effective: curve::scalar_mul(secret.scalar(), &t),
        }
    }

    /// Signs `msg` (a vote message) so that it verifies against this member's effective key and
    /// aggregates with other members' votes on the same message.
    pub fn sign(&self, msg: &[u8]) -> Signature {
        Signature::from_array(curve::sign(&self.effective, msg, VOTE_DST))
    }

    /// Signs an application statement (not a vote): a ticket issue, a contract endorsement.
    /// Verified by [`Membership::verify_statement`].
    pub fn sign_statement(&self, msg: &[u8]) -> Signature {
        Signature::from_array(curve::sign(&self.effective, msg, STATEMENT_DST))
    }

    /// The member index this signer votes as.
    pub fn index(&self) -> MemberIndex {
        self.index
    }

    /// The plain public key, so a replica can check at start-up that its key file matches its
    /// slot in the configuration.
    pub fn public_key(&self) -> &PublicKey {
        &self.public_key
    }
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("index", &self.index)
            .field("public_key", &self.public_key)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::hash::{hash, Domain};

    /// A deterministic test committee of `n` members.
    pub(crate) fn committee(n: usize) -> (Membership, Vec<Signer>) {
        let secrets: Vec<SecretKey> = (0..n)
            .map(|i| {
                let ikm = hash(Domain::Other, &[b"test member", &(i as u64).to_le_bytes()]);
                SecretKey::generate(ikm.as_bytes())
            })
            .collect();
        let keys = secrets.iter().map(MemberKey::from_secret).collect();
        let membership = Membership::new(hash(Domain::NetworkId, &[b"test"]), keys).unwrap();
        let signers = secrets
            .into_iter()
            .enumerate()
            .map(|(i, sk)| Signer::new(i as MemberIndex, sk))
            .collect();
        (membership, signers)
    }

    #[test]
    fn thresholds() {
        let (m, _) = committee(4);
        assert_eq!((m.n(), m.f(), m.quorum()), (4, 1, 3));
        let (m, _) = committee(1);
        assert_eq!((m.n(), m.f(), m.quorum()), (1, 0, 1));
        let (m, _) = committee(7);
        assert_eq!((m.n(), m.f(), m.quorum()), (7, 2, 5));
    }

    #[test]
    fn statements_and_votes_never_stand_in_for_each_other() {
        let (m, signers) = committee(4);
        let statement = signers[2].sign_statement(b"issue ticket");
        assert!(m.verify_statement(2, b"issue ticket", &statement));
        assert!(
            !m.verify_statement(1, b"issue ticket", &statement),
            "other member"
        );
        assert!(
            !m.verify_vote(2, b"issue ticket", &statement),
            "a statement is no vote"
        );
        let vote = signers[2].sign(b"issue ticket");
        assert!(
            !m.verify_statement(2, b"issue ticket", &vote),
            "a vote is no statement"
        );
    }

    #[test]
    fn vote_round_trip_uses_the_coefficient() {
        let (m, signers) = committee(4);
        let sig = signers[1].sign(b"vote");
        assert!(m.verify_vote(1, b"vote", &sig));
        assert!(!m.verify_vote(1, b"vote!", &sig), "tampered message");
        assert!(
            !m.verify_vote(2, b"vote", &sig),
            "member 1's vote is not member 2's"
        );
        assert!(!m.verify_vote(9, b"vote", &sig), "unknown member");

        // The signature is over the effective key, not the plain key: a plain BLS signature by the
        // same secret does not verify as a vote.
        let plain_secret = SecretKey::generate(
            hash(Domain::Other, &[b"test member", &1u64.to_le_bytes()]).as_bytes(),
        );
        let plain = Signature::from_array(curve::sign(plain_secret.scalar(), b"vote", VOTE_DST));
        assert!(!m.verify_vote(1, b"vote", &plain));

        let mut tampered = *sig.as_bytes();
        tampered[47] ^= 1;
        assert!(!m.verify_vote(1, b"vote", &Signature::from_bytes(&tampered).unwrap()));
    }

    #[test]
    fn aggregate_verifies_against_sum_of_effective_keys() {
        let (m, signers) = committee(10);
        let chosen = [0u16, 3, 4, 8];
        let sigs: Vec<Signature> = chosen
            .iter()
            .map(|&i| signers[usize::from(i)].sign(b"m"))
            .collect();
        let agg = Membership::aggregate_signatures(&sigs).unwrap();
        let mut set = SignerSet::new(m.n()).unwrap();
        for &i in &chosen {
            set.insert(i).unwrap();
        }
        assert!(m.verify_aggregate(&set, b"m", &agg));
        assert!(!m.verify_aggregate(&set, b"other", &agg));
        let mut wrong = set.clone();
        wrong.insert(5).unwrap();
        assert!(
            !m.verify_aggregate(&wrong, b"m", &agg),
            "claims an extra signer"
        );
        assert!(!m.verify_aggregate(&SignerSet::new(m.n()).unwrap(), b"m", &agg));
    }

    #[test]
    fn aggregate_signatures_rejects_garbage() {
        assert!(matches!(
            Membership::aggregate_signatures(&[]),
            Err(CryptoError::EmptyAggregate)
        ));
        let garbage = Signature::from_bytes(&[0x5a; 48]).unwrap();
        assert!(matches!(
            Membership::aggregate_signatures(&[garbage]),
            Err(CryptoError::BadSignature(_))
        ));
    }

    #[test]
    fn qc_needs_a_quorum() {
        let (m, signers) = committee(10);
        assert_eq!(m.quorum(), 7);
        let shares: Vec<(MemberIndex, Signature)> = signers
            .iter()
            .map(|s| (s.index(), s.sign(b"decide")))
            .collect();

        let qc = QuorumCertificate::aggregate(m.n(), &shares[..7]).unwrap();
        m.verify_qc(&qc, b"decide").unwrap();
        assert!(matches!(
            m.verify_qc(&qc, b"decide?"),
            Err(CryptoError::InvalidAggregate)
        ));

        let short = QuorumCertificate::aggregate(m.n(), &shares[..6]).unwrap();
        assert!(matches!(
            m.verify_qc(&short, b"decide"),
            Err(CryptoError::NotEnoughSigners { have: 6, need: 7 })
        ));

        // A certificate sized for a bigger membership is rejected, not silently truncated.
        let foreign = QuorumCertificate::aggregate(11, &shares[..7]).unwrap();
        assert!(m.verify_qc(&foreign, b"decide").is_err());
    }

    #[test]
    fn wrong_proof_of_possession_is_rejected() {
        let a = SecretKey::generate(&[1; 32]);
        let b = SecretKey::generate(&[2; 32]);
        let c = SecretKey::generate(&[3; 32]);
        let mut keys = vec![
            MemberKey::from_secret(&a),
            MemberKey::from_secret(&b),
            MemberKey::from_secret(&c),
        ];
        // A rogue member presents someone else's proof with its own key.
        keys[2].pop = keys[1].pop;
        assert!(matches!(
            Membership::new(Digest::ZERO, keys),
            Err(CryptoError::ProofOfPossessionFailed { index: 2 })
        ));
    }

    #[test]
    fn duplicate_keys_and_bad_sizes_are_rejected() {
        let a = MemberKey::from_secret(&SecretKey::generate(&[1; 32]));
        let b = MemberKey::from_secret(&SecretKey::generate(&[2; 32]));
        assert!(matches!(
            Membership::new(Digest::ZERO, vec![a, b, a]),
            Err(CryptoError::DuplicateMemberKey {
                first: 0,
                second: 2
            })
        ));
        assert!(matches!(
            Membership::new(Digest::ZERO, vec![]),
            Err(CryptoError::MemberCount { got: 0, .. })
        ));
        assert!(matches!(
            Membership::new(Digest::ZERO, vec![a; MAX_MEMBERS + 1]),
            Err(CryptoError::MemberCount { .. })
        ));
    }

    #[test]
    fn signer_debug_is_redacted() {
        let secret = SecretKey::generate(&[9; 32]);
        let secret_hex = hex::encode(secret.to_bytes());
        let signer = Signer::new(3, secret);
        let shown = format!("{signer:?}");
        assert!(shown.contains("index: 3"));
        assert!(!shown.contains(&secret_hex));
        assert!(!shown.contains(&hex::encode(signer.effective.b)));
    }
}
