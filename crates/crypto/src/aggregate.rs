//! Partial aggregates: a sum of vote signatures on one message with the multiset of its signers.
//!
//! What travels when votes are combined in the network instead of relayed one by one. Any two
//! aggregates of one message add up (their weights add, see [`SignerWeights`]); a single vote is
//! an aggregate with one signer. Verification sums the signers' effective public keys with the
//! same multiplicities, so an aggregate proves that every member in its support signed, and a
//! forged signer set or one bad share makes the whole aggregate fail.

use crate::bls::Signature;
use crate::curve::G1Sum;
use crate::error::CryptoError;
use crate::membership::MemberIndex;
use crate::weights::SignerWeights;
use serde::{Deserialize, Serialize};

/// Signature shares on one message, summed, and who is inside how many times.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct Aggregate {
    /// The signers and their multiplicities.
    pub weights: SignerWeights,
    /// The sum of their signatures, each share counted as often as its signer's weight.
    pub signature: Signature,
}

impl Aggregate {
    /// One member's vote as an aggregate of one, for a membership of `n`.
    pub fn single(
        n: usize,
        member: MemberIndex,
        signature: Signature,
    ) -> Result<Aggregate, CryptoError> {
        Ok(Aggregate {
            weights: SignerWeights::single(n, member)?,
            signature,
        })
    }

    /// Adds `other` (an aggregate of the same message) into this one: weights add, signatures
    /// add. Only point additions, no verification: the sum is checked when it is used, and an
    /// invalid part makes it fail then. Refused, with nothing changed, for another membership,
    /// a count past 255, a signature that is not a curve point, or a sum that is the identity
    /// (only a share and its negation cancel, which no honest member sends).
    pub fn combine(&mut self, other: &Aggregate) -> Result<(), CryptoError> {
        let mut weights = self.weights.clone();
        weights.add(&other.weights)?;
        let mut sum = G1Sum::default();
        sum.add(&self.signature.to_point()?);
        sum.add(&other.signature.to_point()?);
        // A sum of two curve points is a curve point: only the identity needs refusing, and
        // asking the projective sum costs nothing where decompressing the result again cost a
        // square root in the field on every combine.
        if sum.is_identity() {
            return Err(CryptoError::InvalidAggregate);
        }
        self.weights = weights;
        self.signature = Signature::from_array(sum.compress());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::tests::committee;

    #[test]
    fn overlapping_aggregates_combine_and_verify_with_multiplicities() {
        let (m, signers) = committee(7);
        let msg = b"vote";
        let share = |i: usize| Aggregate::single(7, i as u16, signers[i].sign(msg)).unwrap();
        let mut left = share(0);
        left.combine(&share(1)).unwrap();
        left.combine(&share(2)).unwrap();
        let mut right = share(2);
        right.combine(&share(3)).unwrap();
        assert!(m.verify_weighted(&left, msg));
        assert!(m.verify_weighted(&right, msg));
        // Member 2 is in both: the sum holds its share twice and still verifies.
        left.combine(&right).unwrap();
        assert_eq!(left.weights.count(2), 2);
        assert_eq!(left.weights.support_len(), 4);
        assert!(m.verify_weighted(&left, msg));
        // The same signature with member 2 counted once does not.
        let mut plain = left.clone();
        plain.weights = SignerWeights::from_signers(&left.weights.support()).unwrap();
        assert!(!m.verify_weighted(&plain, msg));
        // Neither does a claim of a member who did not sign, nor another message.
        let mut forged = right.clone();
        forged
            .weights
            .add(&SignerWeights::single(7, 5).unwrap())
            .unwrap();
        assert!(!m.verify_weighted(&forged, msg));
        assert!(!m.verify_weighted(&right, b"other"));
    }

    #[test]
    fn one_bad_share_spoils_the_aggregate_that_holds_it() {
        let (m, signers) = committee(4);
        let mut agg = Aggregate::single(4, 0, signers[0].sign(b"a")).unwrap();
        agg.combine(&Aggregate::single(4, 1, signers[1].sign(b"b")).unwrap())
            .unwrap();
        assert!(!m.verify_weighted(&agg, b"a"));
        assert!(!m.verify_weighted(&agg, b"b"));
    }

    #[test]
    fn combining_is_refused_without_side_effects() {
        let (_, signers) = committee(4);
        let sig = signers[0].sign(b"x");
        let mut agg = Aggregate::single(4, 0, sig).unwrap();
        let before = agg.clone();
        // Another membership.
        assert!(agg.combine(&Aggregate::single(5, 1, sig).unwrap()).is_err());
        // A share and its negation cancel to the identity.
        let mut negated = *sig.as_bytes();
        negated[0] ^= 0x20;
        let minus = Aggregate::single(4, 1, Signature::from_bytes(&negated).unwrap()).unwrap();
        assert!(matches!(
            agg.combine(&minus),
            Err(CryptoError::InvalidAggregate)
        ));
        assert_eq!(agg, before);
    }
}
