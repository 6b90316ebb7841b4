//! Quorum certificates: an aggregate signature plus the set of members whose votes it contains.

use crate::aggregate::Aggregate;
use crate::bls::Signature;
use crate::error::CryptoError;
use crate::membership::{MemberIndex, Membership, MAX_MEMBERS};
use crate::weights::SignerWeights;
use serde::{Deserialize, Serialize};

/// A set of member indices, stored as a bitmap sized for a membership of `n`. Certificates carry
/// one instead of a list of keys or indices: `ceil(n / 8)` bytes plus a small header.
///
/// The encoding is canonical (exactly `ceil(n / 8)` bytes, no bit set at or beyond `n`), so two
/// sets with the same `n` and members are equal however they were built or decoded.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(try_from = "SignerSetWire", into = "SignerSetWire")]
pub struct SignerSet {
    n: u16,
    bits: Vec<u8>,
}

/// The serde shape of a [`SignerSet`], checked on the way in.
#[derive(Serialize, Deserialize)]
struct SignerSetWire {
    n: u16,
    bits: Vec<u8>,
}

impl SignerSet {
    /// An empty set for a membership of `n` members (`n <= MAX_MEMBERS`).
    pub fn new(n: usize) -> Result<SignerSet, CryptoError> {
        let n16 =
            u16::try_from(n)
                .ok()
                .filter(|_| n <= MAX_MEMBERS)
                .ok_or(CryptoError::MemberCount {
                    got: n,
                    max: MAX_MEMBERS,
                })?;
        Ok(SignerSet {
            n: n16,
            bits: vec![0; n.div_ceil(8)],
        })
    }

    /// The set of `members` (each below `n`, with `n <= MAX_MEMBERS`): for callers whose sizes
    /// were checked when they were built.
    pub(crate) fn from_members(n: usize, members: impl Iterator<Item = MemberIndex>) -> SignerSet {
        let mut bits = vec![0; n.div_ceil(8)];
        for index in members {
            let (byte, mask) = position(index);
            bits[byte] |= mask;
        }
        SignerSet { n: n as u16, bits }
    }

    /// Adds member `index`; returns whether it was absent. Fails if `index >= n`.
    pub fn insert(&mut self, index: MemberIndex) -> Result<bool, CryptoError> {
        if index >= self.n {
            return Err(CryptoError::SignerOutOfRange {
                index: usize::from(index),
                n: usize::from(self.n),
            });
        }
        let (byte, mask) = position(index);
        let absent = self.bits[byte] & mask == 0;
        self.bits[byte] |= mask;
        Ok(absent)
    }

    /// Whether member `index` is in the set.
    pub fn contains(&self, index: MemberIndex) -> bool {
        let (byte, mask) = position(index);
        self.bits.get(byte).is_some_and(|b| b & mask != 0)
    }

    /// Number of members in the set.
    pub fn len(&self) -> usize {
        self.bits.iter().map(|b| b.count_ones() as usize).sum()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.bits.iter().all(|&b| b == 0)
    }

    /// The membership size this set was built for.
    pub fn n(&self) -> usize {
        usize::from(self.n)
    }

    /// The members in increasing index order.
    pub fn iter(&self) -> impl Iterator<Item = MemberIndex> + '_ {
        self.bits.iter().enumerate().flat_map(|(byte, &bits)| {
            (0..8u16)
                .filter(move |bit| bits & (1 << bit) != 0)
                .map(move |bit| byte as u16 * 8 + bit)
        })
    }

    /// Checks that this set was built for a membership of exactly `n` members, as received sets
    /// are untrusted.
    pub fn validate(&self, n: usize) -> Result<(), CryptoError> {
        if usize::from(self.n) != n {
            return Err(CryptoError::BadSignerSet(
                "sized for a different membership",
            ));
        }
        Ok(())
    }
}

/// Byte offset and bit mask of `index` (least significant bit first).
fn position(index: MemberIndex) -> (usize, u8) {
    (usize::from(index / 8), 1 << (index % 8))
}

impl TryFrom<SignerSetWire> for SignerSet {
    type Error = CryptoError;

    fn try_from(wire: SignerSetWire) -> Result<SignerSet, CryptoError> {
        let n = usize::from(wire.n);
        if n > MAX_MEMBERS {
            return Err(CryptoError::BadSignerSet("more than MAX_MEMBERS members"));
        }
        if wire.bits.len() != n.div_ceil(8) {
            return Err(CryptoError::BadSignerSet("bitmap length does not match n"));
        }
        let spare = wire.bits.len() * 8 - n;
        if let Some(&last) = wire.bits.last() {
            if spare > 0 && last >> (8 - spare) != 0 {
                return Err(CryptoError::BadSignerSet("bit set beyond n"));
            }
        }
        Ok(SignerSet {
            n: wire.n,
            bits: wire.bits,
        })
    }
}

impl From<SignerSet> for SignerSetWire {
    fn from(set: SignerSet) -> SignerSetWire {
        SignerSetWire {
            n: set.n,
            bits: set.bits,
        }
    }
}

/// Proof that a quorum of members voted for a message: their aggregate signature and who they
/// are, each with its multiplicity. Every count is 1 when the certificate was built from single
/// votes or from pieces that did not overlap; pieces that overlapped add up with counts above 1
/// (see [`SignerWeights`]), and the certificate is just as valid. Verified with
/// [`Membership::verify_qc`].
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct QuorumCertificate {
    /// The members whose votes are aggregated, and how many times each.
    pub signers: SignerWeights,
    /// The sum of their vote signatures, each counted as often as its signer.
    pub signature: Signature,
}

impl QuorumCertificate {
    /// Builds a certificate from votes `(member, signature)` on one message, for a membership of
    /// `n`. Rejects an empty list, duplicate or out-of-range members, and signatures that are not
    /// curve points. Does not verify anything, nor check the quorum size.
    pub fn aggregate(
        n: usize,
        shares: &[(MemberIndex, Signature)],
    ) -> Result<QuorumCertificate, CryptoError> {
        let mut signers = SignerSet::new(n)?;
        for &(index, _) in shares {
            if !signers.insert(index)? {
                return Err(CryptoError::DuplicateSigner {
                    index: usize::from(index),
                });
            }
        }
        let sigs: Vec<Signature> = shares.iter().map(|&(_, sig)| sig).collect();
        Ok(QuorumCertificate {
            signers: SignerWeights::from_signers(&signers)?,
            signature: Membership::aggregate_signatures(&sigs)?,
        })
    }

    /// The certificate an aggregate forms (its support is checked against the quorum when the
    /// certificate is verified).
    pub fn from_aggregate(aggregate: Aggregate) -> QuorumCertificate {
        QuorumCertificate {
            signers: aggregate.weights,
            signature: aggregate.signature,
        }
    }

    /// The certificate as a partial aggregate, to be combined or checked like one.
    pub fn to_aggregate(&self) -> Aggregate {
        Aggregate {
            weights: self.signers.clone(),
            signature: self.signature,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::tests::committee;

    #[test]
    fn signer_set_basics() {
        let mut set = SignerSet::new(20).unwrap();
        assert!(set.is_empty());
        assert!(set.insert(3).unwrap());
        assert!(!set.insert(3).unwrap());
        assert!(set.insert(19).unwrap());
        assert!(set.insert(0).unwrap());
        assert!(set.insert(20).is_err());
        assert_eq!(set.len(), 3);
        assert!(set.contains(19) && !set.contains(18) && !set.contains(500));
        assert_eq!(set.iter().collect::<Vec<_>>(), vec![0, 3, 19]);
        assert!(SignerSet::new(MAX_MEMBERS + 1).is_err());
        assert!(set.validate(20).is_ok());
        assert!(set.validate(21).is_err());
    }

    #[test]
    fn signer_set_encoding_is_compact_and_checked() {
        let mut set = SignerSet::new(100).unwrap();
        for i in (0..100).step_by(3) {
            set.insert(i).unwrap();
        }
        let wire = postcard::to_allocvec(&set).unwrap();
        assert_eq!(
            wire.len(),
            1 + 1 + 13,
            "varint n, varint length, 13 bitmap bytes"
        );
        assert_eq!(postcard::from_bytes::<SignerSet>(&wire).unwrap(), set);
        let json = serde_json::to_string(&set).unwrap();
        assert_eq!(serde_json::from_str::<SignerSet>(&json).unwrap(), set);

        // A bit beyond n.
        assert!(serde_json::from_str::<SignerSet>(r#"{"n":4,"bits":[16]}"#).is_err());
        // A bitmap too long for n, or n too large.
        assert!(serde_json::from_str::<SignerSet>(r#"{"n":4,"bits":[1,0]}"#).is_err());
        let huge = format!(r#"{{"n":2000,"bits":[{}]}}"#, vec!["0"; 250].join(","));
        assert!(serde_json::from_str::<SignerSet>(&huge).is_err());
    }

    #[test]
    fn qc_aggregate_rejects_duplicates_and_round_trips() {
        let (m, signers) = committee(4);
        let s0 = signers[0].sign(b"x");
        let s1 = signers[1].sign(b"x");
        assert!(matches!(
            QuorumCertificate::aggregate(4, &[(0, s0), (1, s1), (0, s0)]),
            Err(CryptoError::DuplicateSigner { index: 0 })
        ));
        assert!(matches!(
            QuorumCertificate::aggregate(4, &[(0, s0), (7, s1)]),
            Err(CryptoError::SignerOutOfRange { index: 7, n: 4 })
        ));
        let s2 = signers[2].sign(b"x");
        let qc = QuorumCertificate::aggregate(4, &[(2, s2), (0, s0), (1, s1)]).unwrap();
        m.verify_qc(&qc, b"x").unwrap();
        let wire = postcard::to_allocvec(&qc).unwrap();
        assert_eq!(
            wire.len(),
            1 + 1 + 1 + 1 + 1 + 48,
            "form, n, length, 1 bitmap byte, no repeats, signature"
        );
        let back: QuorumCertificate = postcard::from_bytes(&wire).unwrap();
        assert_eq!(back, qc);
        m.verify_qc(&back, b"x").unwrap();
    }

    #[test]
    fn a_certificate_from_overlapping_pieces_verifies_and_counts_distinct_signers() {
        let (m, signers) = committee(7);
        let share = |i: usize| Aggregate::single(7, i as u16, signers[i].sign(b"x")).unwrap();
        // Members 0..3 and 2..5: five distinct signers (the quorum of 7), two of them twice.
        let mut sum = share(0);
        for i in [1, 2, 3] {
            sum.combine(&share(i)).unwrap();
        }
        let mut other = share(2);
        for i in [3, 4] {
            other.combine(&share(i)).unwrap();
        }
        sum.combine(&other).unwrap();
        let qc = QuorumCertificate::from_aggregate(sum);
        m.verify_qc(&qc, b"x").unwrap();
        assert_eq!(qc.to_aggregate().weights.count(3), 2);
        // Four distinct signers are not a quorum, however many times they are counted.
        let mut short = share(0);
        for i in [1, 2, 3, 3, 3] {
            short.combine(&share(i)).unwrap();
        }
        assert!(matches!(
            m.verify_qc(&QuorumCertificate::from_aggregate(short), b"x"),
            Err(CryptoError::NotEnoughSigners { have: 4, need: 5 })
        ));
    }
}
