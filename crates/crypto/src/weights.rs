//! Signer multisets: who is inside an aggregate signature, and how many times.
//!
//! A BLS aggregate is a sum of signature shares, so it can hold a share more than once: two partial
//! aggregates that travelled different paths and both contain member 5's vote add up to an
//! aggregate with member 5's share twice. It still verifies, against the public keys summed with
//! the same multiplicities (BeauForT's KAgg takes such counts, seed 002 Fig. 4), and under proofs
//! of possession it still proves that every member with a non-zero count signed. Counting the
//! multiplicities is what lets any two aggregates of one message combine, whichever way they
//! overlap; in the common case every count is 1 and the encoding is just the support.
//!
//! On the wire the support is a bitmap, a list of members, or a list of absent members, whichever
//! is smallest for the set at hand (a bitmap is ⌈n/8⌉ bytes; a list costs about a byte per member
//! named), followed by the members whose count exceeds 1.

use crate::error::CryptoError;
use crate::membership::{MemberIndex, MAX_MEMBERS};
use crate::qc::SignerSet;
use serde::{Deserialize, Serialize};

/// A multiset of members of a membership of `n`: each member's count (0 = absent) in some
/// aggregate. Counts are at most `u8::MAX`; adding past it is refused, never wrapped.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(try_from = "WeightsWire", into = "WeightsWire")]
pub struct SignerWeights {
    counts: Vec<u8>,
}

impl SignerWeights {
    /// No member yet, for a membership of `n` (`1..=MAX_MEMBERS`).
    pub fn new(n: usize) -> Result<SignerWeights, CryptoError> {
        if n == 0 || n > MAX_MEMBERS {
            return Err(CryptoError::MemberCount {
                got: n,
                max: MAX_MEMBERS,
            });
        }
        Ok(SignerWeights { counts: vec![0; n] })
    }

    /// Member `index` once: the weights of a single vote.
    pub fn single(n: usize, index: MemberIndex) -> Result<SignerWeights, CryptoError> {
        let mut weights = SignerWeights::new(n)?;
        weights.bump(index)?;
        Ok(weights)
    }

    /// Every member of `signers` once: the weights of a plain certificate.
    pub fn from_signers(signers: &SignerSet) -> Result<SignerWeights, CryptoError> {
        let mut weights = SignerWeights::new(signers.n())?;
        for index in signers.iter() {
            weights.bump(index)?;
        }
        Ok(weights)
    }

    /// The membership size these weights are for.
    pub fn n(&self) -> usize {
        self.counts.len()
    }

    /// How many times member `index` is in the aggregate (0 when absent or out of range).
    pub fn count(&self, index: MemberIndex) -> u8 {
        self.counts.get(usize::from(index)).copied().unwrap_or(0)
    }

    /// Whether member `index` is in the aggregate at least once.
    pub fn contains(&self, index: MemberIndex) -> bool {
        self.count(index) > 0
    }

    /// The number of distinct members in the aggregate: what counts towards a quorum.
    pub fn support_len(&self) -> usize {
        self.counts.iter().filter(|&&c| c > 0).count()
    }

    /// Whether no member is in the aggregate.
    pub fn is_empty(&self) -> bool {
        self.counts.iter().all(|&c| c == 0)
    }

    /// Whether every count is at most 1: the aggregate is a plain multi-signature, and its support
    /// alone describes it (see [`SignerSet`]).
    pub fn is_plain(&self) -> bool {
        self.counts.iter().all(|&c| c <= 1)
    }

    /// The members with a non-zero count and their counts, in increasing index order.
    pub fn members(&self) -> impl Iterator<Item = (MemberIndex, u8)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, &c)| c > 0)
            .map(|(i, &c)| (i as MemberIndex, c))
    }

    /// The distinct members, as a signer set.
    pub fn support(&self) -> SignerSet {
        SignerSet::from_members(self.n(), self.members().map(|(index, _)| index))
    }

    /// Whether every member of `self` is also in `other`: an aggregate with these weights brings
    /// a holder of `other` no new signer.
    pub fn is_covered_by(&self, other: &SignerWeights) -> bool {
        self.members().all(|(index, _)| other.contains(index))
    }

    /// Whether some member is in both.
    pub fn overlaps(&self, other: &SignerWeights) -> bool {
        self.members().any(|(index, _)| other.contains(index))
    }

    /// Adds `other`'s counts to ours: the weights of the sum of two aggregates. Refused, with
    /// nothing changed, when the memberships differ or a count would pass `u8::MAX`.
    pub fn add(&mut self, other: &SignerWeights) -> Result<(), CryptoError> {
        if other.n() != self.n() {
            return Err(CryptoError::BadSignerSet(
                "sized for a different membership",
            ));
        }
        if let Some((index, _)) = self
            .counts
            .iter()
            .zip(&other.counts)
            .enumerate()
            .find(|(_, (a, b))| a.checked_add(**b).is_none())
        {
            return Err(CryptoError::WeightOverflow { index });
        }
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        Ok(())
    }

    /// Checks that these weights were built for a membership of exactly `n`, as received weights
    /// are untrusted.
    pub fn validate(&self, n: usize) -> Result<(), CryptoError> {
        if self.n() != n {
            return Err(CryptoError::BadSignerSet(
                "sized for a different membership",
            ));
        }
        Ok(())
    }

    /// Adds member `index` once.
    fn bump(&mut self, index: MemberIndex) -> Result<(), CryptoError> {
        let n = self.n();
        let count =
            self.counts
                .get_mut(usize::from(index))
                .ok_or(CryptoError::SignerOutOfRange {
                    index: usize::from(index),
                    n,
                })?;
        *count = count.checked_add(1).ok_or(CryptoError::WeightOverflow {
            index: usize::from(index),
        })?;
        Ok(())
    }
}

/// A member whose count exceeds 1, on the wire.
#[derive(Serialize, Deserialize)]
struct Repeat {
    member: u16,
    count: u8,
}

/// The serde shape of [`SignerWeights`]: the support in one of three forms, then the repeats.
/// Gaps list members in increasing order as the distance from the previous one minus one (the first
/// is the index itself), so a dense run costs a byte per member.
#[derive(Serialize, Deserialize)]
enum WeightsWire {
    /// The support as a bitmap of ⌈n/8⌉ bytes, least significant bit first.
    Bitmap {
        n: u16,
        bits: Vec<u8>,
        repeats: Vec<Repeat>,
    },
    /// The members of the support, as gaps.
    Listed {
        n: u16,
        gaps: Vec<u16>,
        repeats: Vec<Repeat>,
    },
    /// The members *not* in the support, as gaps.
    AllBut {
        n: u16,
        gaps: Vec<u16>,
        repeats: Vec<Repeat>,
    },
}

/// Bytes postcard spends on `value` as a varint.
fn varint_len(value: usize) -> usize {
    match value {
        0..=0x7f => 1,
        0x80..=0x3fff => 2,
        _ => 3,
    }
}

/// The gaps that encode the increasing `members`.
fn gaps_of(members: impl Iterator<Item = usize>) -> Vec<u16> {
    let mut gaps = Vec::new();
    let mut next = 0;
    for member in members {
        gaps.push((member - next) as u16);
        next = member + 1;
    }
    gaps
}

/// Bytes of a gap list on the wire, length prefix included.
fn gaps_len(gaps: &[u16]) -> usize {
    varint_len(gaps.len())
        + gaps
            .iter()
            .map(|&g| varint_len(usize::from(g)))
            .sum::<usize>()
}

/// The members the gaps name, checked to lie below `n`.
fn members_of(gaps: &[u16], n: usize) -> Result<Vec<usize>, CryptoError> {
    if gaps.len() > n {
        return Err(CryptoError::BadSignerSet("more members listed than exist"));
    }
    let mut members = Vec::with_capacity(gaps.len());
    let mut next = 0usize;
    for &gap in gaps {
        let member = next + usize::from(gap);
        if member >= n {
            return Err(CryptoError::BadSignerSet("member listed beyond n"));
        }
        members.push(member);
        next = member + 1;
    }
    Ok(members)
}

impl From<SignerWeights> for WeightsWire {
    fn from(weights: SignerWeights) -> WeightsWire {
        let n = weights.n();
        let n16 = n as u16;
        let repeats: Vec<Repeat> = weights
            .members()
            .filter(|&(_, c)| c > 1)
            .map(|(member, count)| Repeat { member, count })
            .collect();
        let present = gaps_of((0..n).filter(|&i| weights.counts[i] > 0));
        let absent = gaps_of((0..n).filter(|&i| weights.counts[i] == 0));
        let bitmap_len = n.div_ceil(8);
        let sizes = [
            varint_len(bitmap_len) + bitmap_len,
            gaps_len(&present),
            gaps_len(&absent),
        ];
        let smallest = sizes
            .iter()
            .enumerate()
            .min_by_key(|(form, size)| (**size, *form))
            .map_or(0, |(form, _)| form);
        match smallest {
            1 => WeightsWire::Listed {
                n: n16,
                gaps: present,
                repeats,
            },
            2 => WeightsWire::AllBut {
                n: n16,
                gaps: absent,
                repeats,
            },
            _ => {
                let mut bits = vec![0u8; bitmap_len];
                for (member, _) in weights.members() {
                    bits[usize::from(member / 8)] |= 1 << (member % 8);
                }
                WeightsWire::Bitmap {
                    n: n16,
                    bits,
                    repeats,
                }
            }
        }
    }
}

impl TryFrom<WeightsWire> for SignerWeights {
    type Error = CryptoError;

    fn try_from(wire: WeightsWire) -> Result<SignerWeights, CryptoError> {
        let (n, repeats) = match &wire {
            WeightsWire::Bitmap { n, repeats, .. }
            | WeightsWire::Listed { n, repeats, .. }
            | WeightsWire::AllBut { n, repeats, .. } => (usize::from(*n), repeats),
        };
        let mut weights = SignerWeights::new(n)?;
        match &wire {
            WeightsWire::Bitmap { bits, .. } => {
                if bits.len() != n.div_ceil(8) {
                    return Err(CryptoError::BadSignerSet("bitmap length does not match n"));
                }
                for (i, count) in weights.counts.iter_mut().enumerate() {
                    *count = (bits[i / 8] >> (i % 8)) & 1;
                }
                let spare = bits.len() * 8 - n;
                if let Some(&last) = bits.last() {
                    if spare > 0 && last >> (8 - spare) != 0 {
                        return Err(CryptoError::BadSignerSet("bit set beyond n"));
                    }
                }
            }
            WeightsWire::Listed { gaps, .. } => {
                for member in members_of(gaps, n)? {
                    weights.counts[member] = 1;
                }
            }
            WeightsWire::AllBut { gaps, .. } => {
                weights.counts.iter_mut().for_each(|c| *c = 1);
                for member in members_of(gaps, n)? {
                    weights.counts[member] = 0;
                }
            }
        }
        let mut previous: Option<u16> = None;
        for repeat in repeats {
            if previous.is_some_and(|p| p >= repeat.member) {
                return Err(CryptoError::BadSignerSet("repeats not in increasing order"));
            }
            previous = Some(repeat.member);
            if repeat.count < 2 {
                return Err(CryptoError::BadSignerSet("a repeat below 2"));
            }
            match weights.counts.get_mut(usize::from(repeat.member)) {
                Some(count) if *count == 1 => *count = repeat.count,
                _ => return Err(CryptoError::BadSignerSet("a repeat outside the support")),
            }
        }
        Ok(weights)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weights(n: usize, members: impl IntoIterator<Item = u16>) -> SignerWeights {
        let mut w = SignerWeights::new(n).unwrap();
        for m in members {
            w.bump(m).unwrap();
        }
        w
    }

    fn wire_len(w: &SignerWeights) -> usize {
        postcard::to_allocvec(w).unwrap().len()
    }

    fn round_trips(w: &SignerWeights) {
        let bytes = postcard::to_allocvec(w).unwrap();
        assert_eq!(&postcard::from_bytes::<SignerWeights>(&bytes).unwrap(), w);
        let json = serde_json::to_string(w).unwrap();
        assert_eq!(&serde_json::from_str::<SignerWeights>(&json).unwrap(), w);
    }

    #[test]
    fn the_smallest_form_is_chosen_at_every_density() {
        // n = 1000: a few members as a list, most members as the absent list, half as a bitmap.
        let few = weights(1000, [3, 500, 999]);
        let most = weights(1000, (0..1000).filter(|i| ![7, 600].contains(i)));
        let half = weights(1000, (0..1000).step_by(2));
        assert!(wire_len(&few) <= 12, "{}", wire_len(&few));
        assert!(wire_len(&most) <= 12, "{}", wire_len(&most));
        // tag, n, length prefix, 125 bytes, no repeats.
        assert_eq!(wire_len(&half), 1 + 2 + 1 + 125 + 1);
        // A quorum of 100 (67 members) in a bitmap: 13 bytes plus framing.
        let quorum = weights(100, 0..67);
        assert_eq!(wire_len(&quorum), 1 + 1 + 1 + 13 + 1);
        for w in [few, most, half, quorum, weights(1, [0]), weights(9, [])] {
            round_trips(&w);
        }
    }

    #[test]
    fn repeats_travel_and_count() {
        let mut a = weights(20, [1, 2, 3]);
        a.add(&weights(20, [3, 4])).unwrap();
        assert_eq!(a.count(3), 2);
        assert_eq!(a.support_len(), 4);
        assert!(!a.is_plain());
        round_trips(&a);
        assert_eq!(
            a.members().collect::<Vec<_>>(),
            vec![(1, 1), (2, 1), (3, 2), (4, 1)]
        );
        assert_eq!(a.support().iter().collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    }

    #[test]
    fn adding_refuses_overflow_and_other_memberships_and_changes_nothing() {
        let mut a = weights(4, [0, 1]);
        let mut big = weights(4, [1]);
        big.counts[1] = u8::MAX;
        let before = a.clone();
        assert!(matches!(
            a.add(&big),
            Err(CryptoError::WeightOverflow { index: 1 })
        ));
        assert!(a.add(&weights(5, [0])).is_err());
        assert_eq!(a, before);
        assert!(weights(4, [1]).is_covered_by(&a));
        assert!(!weights(4, [1, 2]).is_covered_by(&a));
        assert!(weights(4, [1, 2]).overlaps(&a));
        assert!(!weights(4, [2, 3]).overlaps(&a));
    }

    #[test]
    fn hostile_encodings_are_refused() {
        let bad = [
            // n = 0 and n beyond the bound.
            r#"{"Listed":{"n":0,"gaps":[],"repeats":[]}}"#,
            r#"{"Listed":{"n":1025,"gaps":[],"repeats":[]}}"#,
            // A listed member beyond n, and more gaps than members.
            r#"{"Listed":{"n":4,"gaps":[2,1],"repeats":[]}}"#,
            r#"{"AllBut":{"n":2,"gaps":[0,0,0],"repeats":[]}}"#,
            // Bitmap: wrong length, a bit beyond n.
            r#"{"Bitmap":{"n":4,"bits":[1,0],"repeats":[]}}"#,
            r#"{"Bitmap":{"n":4,"bits":[16],"repeats":[]}}"#,
            // Repeats: outside the support, below 2, out of order, twice.
            r#"{"Listed":{"n":4,"gaps":[0],"repeats":[{"member":1,"count":3}]}}"#,
            r#"{"Listed":{"n":4,"gaps":[0],"repeats":[{"member":0,"count":1}]}}"#,
            r#"{"Listed":{"n":4,"gaps":[0,0],"repeats":[{"member":1,"count":2},{"member":0,"count":2}]}}"#,
            r#"{"Listed":{"n":4,"gaps":[0],"repeats":[{"member":0,"count":2},{"member":0,"count":2}]}}"#,
        ];
        for json in bad {
            assert!(
                serde_json::from_str::<SignerWeights>(json).is_err(),
                "accepted {json}"
            );
        }
        // Any form may be decoded, not only the smallest: a dense set listed is the same set.
        let listed = r#"{"Listed":{"n":4,"gaps":[0,0,0,0],"repeats":[]}}"#;
        let decoded: SignerWeights = serde_json::from_str(listed).unwrap();
        assert_eq!(decoded, weights(4, 0..4));
    }
}
