//! Deferred, batched vote verification (BeauForT §3.2.6 and §4.2).
//!
//! Replicas accept votes unverified and check them together just before acting on a decision. A
//! batch is grouped by message; each group's signatures and effective public keys are summed
//! (point additions only), and all groups are checked in one multi-pairing in which each group is
//! weighted by a fresh random 64-bit scalar derived from the caller's seed, so invalid signatures
//! in different groups cannot cancel out. If the check fails, each group is checked alone and a
//! failing group is bisected, which finds every invalid signature.
//!
//! # Residual limitation
//!
//! Within one message group only the *sum* is checked. Two shares `σ_a + δ` and `σ_b − δ` for the
//! same message pass together although each is invalid alone. Producing them requires controlling
//! both shares (a Byzantine member can do it with its own shares or a colluder's, never with an
//! honest member's), and the group aggregate is still exactly the aggregate of genuine signatures
//! on that message, so any certificate built from the whole group is valid. Only a certificate
//! built from a *subset* that separates the pair would fail to verify; the core should then
//! re-verify those shares individually (a bisection over singletons, as here, does so).

use crate::aggregate::Aggregate;
use crate::bls::{Signature, VOTE_DST};
use crate::curve::{self, G1Sum, G2Sum, Term};
use crate::hash::{hash_xof, Domain};
use crate::membership::{MemberIndex, Membership};
use blst::{blst_p1_affine, blst_p2_affine};
use std::collections::HashMap;
use std::sync::Arc;

/// One unverified vote awaiting deferred verification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchItem {
    /// The member that supposedly signed.
    pub signer: MemberIndex,
    /// The signed message. Shared, since many votes sign the same message.
    pub message: Arc<[u8]>,
    /// The signature, possibly malformed.
    pub signature: Signature,
}

/// One unverified partial aggregate awaiting deferred verification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AggregateItem {
    /// The message every share in it signed. Shared, since many aggregates sign one message.
    pub message: Arc<[u8]>,
    /// The aggregate, possibly malformed or poisoned.
    pub aggregate: Aggregate,
}

/// The verdict on a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatchOutcome {
    /// Every signature is valid.
    AllValid,
    /// Indices (into the batch, increasing) of every invalid signature: malformed bytes, unknown
    /// signer, or a signature that does not verify.
    Invalid(Vec<usize>),
}

/// A verdict plus the work it took, so the simulator can charge CPU time for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchReport {
    /// The verdict.
    pub outcome: BatchOutcome,
    /// Multi-pairing checks performed (each ends in one final exponentiation).
    pub pairing_checks: u32,
    /// Message groups checked, summed over all checks: each costs one hash-to-curve and one Miller
    /// loop (plus two 64-bit scalar multiplications when a check has more than one group).
    pub message_groups: u32,
    /// Signatures added into group aggregates, summed over all checks (one G1 and one G2 point
    /// addition each).
    pub signatures_aggregated: u32,
    /// Effective public keys summed to prepare partial aggregates (one G2 point addition each,
    /// plus an 8-bit scalar multiplication for a repeated signer), counted once per item.
    pub keys_summed: u32,
}

/// Verifies `items` as a batch and returns the verdict. `seed` must be unpredictable to whoever
/// produced the votes (a fresh random value per call); the result is deterministic for a seed.
pub fn verify_batch(membership: &Membership, items: &[BatchItem], seed: [u8; 32]) -> BatchOutcome {
    verify_batch_report(membership, items, seed).outcome
}

/// Like [`verify_batch`], and also reports how many pairing checks and aggregations it took.
///
/// Search strategy when the batch check fails: the cost of a check grows with the number of
/// message groups in it (one hash-to-curve and one Miller loop each), so splitting across groups
/// saves nothing. Each group is therefore checked on its own (a single-item group is an individual
/// verification), and only a failing group with several items is bisected; within a group every
/// check costs about the same as one individual verification, whatever its size.
pub fn verify_batch_report(
    membership: &Membership,
    items: &[BatchItem],
    seed: [u8; 32],
) -> BatchReport {
    let prepared = items.iter().map(|item| {
        let key = membership.effective_key(item.signer).copied();
        (&*item.message, key, item.signature)
    });
    check_prepared(prepared, seed, 0)
}

/// Verifies partial aggregates as a batch, as [`verify_batch_report`] does single votes: one
/// multi-pairing when all are valid, and otherwise every invalid aggregate found (malformed, with
/// an unknown or out-of-range signer, empty, or not the sum its weights claim). An aggregate holding
/// one bad share is invalid as a whole; the caller decides what its honest shares are worth.
pub fn verify_aggregates_report(
    membership: &Membership,
    items: &[AggregateItem],
    seed: [u8; 32],
) -> BatchReport {
    let mut keys_summed = 0u32;
    let prepared: Vec<_> = items
        .iter()
        .map(|item| {
            let weights = &item.aggregate.weights;
            let key = (weights.validate(membership.n()).is_ok() && !weights.is_empty())
                .then(|| {
                    keys_summed += weights.support_len() as u32;
                    membership.weighted_key(weights)
                })
                .flatten();
            (&*item.message, key, item.aggregate.signature)
        })
        .collect();
    check_prepared(prepared.into_iter(), seed, keys_summed)
}

/// The shared search of both batch kinds: `items` are (message, summed effective key if the
/// signers are valid, signature), in batch order.
fn check_prepared<'a>(
    items: impl Iterator<Item = (&'a [u8], Option<blst_p2_affine>, Signature)>,
    seed: [u8; 32],
    keys_summed: u32,
) -> BatchReport {
    let mut invalid = Vec::new();
    let mut group_of: HashMap<&[u8], usize> = HashMap::new();
    let mut groups: Vec<Vec<Prepared<'_>>> = Vec::new();
    for (position, (message, key, signature)) in items.enumerate() {
        let (Some(key), Ok(signature)) = (key, signature.to_point()) else {
            invalid.push(position);
            continue;
        };
        let group = *group_of.entry(message).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[group].push(Prepared {
            position,
            message,
            key,
            signature,
        });
    }

    let mut checker = Checker {
        seed,
        report: BatchReport {
            outcome: BatchOutcome::AllValid,
            pairing_checks: 0,
            message_groups: 0,
            signatures_aggregated: 0,
            keys_summed,
        },
    };
    let all: Vec<&[Prepared<'_>]> = groups.iter().map(Vec::as_slice).collect();
    if !all.is_empty() && !checker.check(&all) {
        if let [only] = all.as_slice() {
            checker.bisect(only, &mut invalid);
        } else {
            for group in all {
                if !checker.check(&[group]) {
                    checker.bisect(group, &mut invalid);
                }
            }
        }
    }
    if !invalid.is_empty() {
        invalid.sort_unstable();
        checker.report.outcome = BatchOutcome::Invalid(invalid);
    }
    checker.report
}

/// An item whose signature parsed and whose signers exist, with their summed effective key.
struct Prepared<'a> {
    position: usize,
    message: &'a [u8],
    key: blst_p2_affine,
    signature: blst_p1_affine,
}

struct Checker {
    seed: [u8; 32],
    report: BatchReport,
}

impl Checker {
    /// One multi-pairing check; each slice of `groups` is non-empty and shares one message.
    fn check(&mut self, groups: &[&[Prepared<'_>]]) -> bool {
        let check_number = self.report.pairing_checks;
        self.report.pairing_checks += 1;
        self.report.message_groups += groups.len() as u32;
        // With a single group nothing can cancel across groups, so no randomizer is needed.
        let randomize = groups.len() > 1;
        let mut terms = Vec::with_capacity(groups.len());
        for (number, group) in groups.iter().enumerate() {
            let Some(first) = group.first() else {
                continue;
            };
            self.report.signatures_aggregated += group.len() as u32;
            let mut signatures = G1Sum::default();
            let mut keys = G2Sum::default();
            for item in group.iter() {
                signatures.add(&item.signature);
                keys.add(&item.key);
            }
            terms.push(Term {
                public_key: keys.to_affine(),
                signature: signatures.to_affine(),
                message: first.message,
                randomizer: randomize.then(|| self.randomizer(check_number, number)),
            });
        }
        curve::pairing_check(&terms, VOTE_DST)
    }

    /// A non-zero 64-bit little-endian scalar for group `group` in check number `check`.
    fn randomizer(&self, check: u32, group: usize) -> [u8; 8] {
        let mut r = hash_xof::<8>(
            Domain::BatchScalar,
            &[
                &self.seed,
                &check.to_le_bytes(),
                &(group as u64).to_le_bytes(),
            ],
        );
        r[0] |= 1;
        r
    }

    /// Finds the invalid items of `items` (all on one message), whose check just failed. Every
    /// item reported invalid failed a check on its own.
    fn bisect(&mut self, items: &[Prepared<'_>], invalid: &mut Vec<usize>) {
        if let [single] = items {
            invalid.push(single.position);
            return;
        }
        let (left, right) = items.split_at(items.len() / 2);
        let left_bad = !self.check(&[left]);
        if left_bad {
            self.bisect(left, invalid);
        }
        // If the left half passed, the failure is in the right half: skip its check, unless it is
        // a single item, which is always verified on its own before being reported.
        let right_bad = if left_bad || right.len() == 1 {
            !self.check(&[right])
        } else {
            true
        };
        if right_bad {
            self.bisect(right, invalid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::tests::committee;
    use crate::membership::Signer;

    fn votes(signers: &[Signer], count: usize, messages: &[Arc<[u8]>]) -> Vec<BatchItem> {
        (0..count)
            .map(|i| {
                let signer = &signers[i % signers.len()];
                let message = messages[i % messages.len()].clone();
                BatchItem {
                    signer: signer.index(),
                    signature: signer.sign(&message),
                    message,
                }
            })
            .collect()
    }

    fn messages(k: usize) -> Vec<Arc<[u8]>> {
        (0..k)
            .map(|i| Arc::from(format!("vote message {i}").into_bytes()))
            .collect()
    }

    #[test]
    fn all_valid_takes_one_pairing_check() {
        let (m, signers) = committee(100);
        for groups in [1, 3] {
            let items = votes(&signers, 100, &messages(groups));
            let report = verify_batch_report(&m, &items, [7; 32]);
            assert_eq!(report.outcome, BatchOutcome::AllValid);
            assert_eq!(report.pairing_checks, 1);
            assert_eq!(report.message_groups, groups as u32);
            assert_eq!(report.signatures_aggregated, 100);
        }
        assert_eq!(verify_batch(&m, &[], [0; 32]), BatchOutcome::AllValid);
    }

    #[test]
    fn finds_exactly_the_invalid_signatures_across_groups() {
        let (m, signers) = committee(100);
        let msgs = messages(3);
        let mut items = votes(&signers, 100, &msgs);
        // 5 is in group 2, 42 in group 0, 77 in group 2: a signature for the wrong message, a
        // signature by the wrong member, and a tampered signature.
        items[5].signature = signers[5].sign(b"something else");
        items[42].signature = items[43].signature;
        let mut bytes = *items[77].signature.as_bytes();
        bytes[30] ^= 0x01;
        items[77].signature = Signature::from_bytes(&bytes).unwrap();

        let report = verify_batch_report(&m, &items, [1; 32]);
        assert_eq!(report.outcome, BatchOutcome::Invalid(vec![5, 42, 77]));
        assert!(report.pairing_checks > 1);
        // Deterministic for a seed.
        assert_eq!(verify_batch_report(&m, &items, [1; 32]), report);
    }

    #[test]
    fn bisection_within_one_message_group() {
        let (m, signers) = committee(64);
        let mut items = votes(&signers, 64, &messages(1));
        for bad in [9, 10, 50] {
            items[bad].signature = signers[bad].sign(b"another value");
        }
        let report = verify_batch_report(&m, &items, [4; 32]);
        assert_eq!(report.outcome, BatchOutcome::Invalid(vec![9, 10, 50]));
        assert_eq!(report.message_groups, report.pairing_checks);
        assert!(report.pairing_checks < 30, "{report:?}");
    }

    #[test]
    fn unparseable_signatures_and_unknown_signers_are_invalid() {
        let (m, signers) = committee(4);
        let msgs = messages(2);
        let mut items = votes(&signers, 8, &msgs);
        items[2].signature = Signature::from_bytes(&[0xff; 48]).unwrap();
        items[6].signer = 4;
        let report = verify_batch_report(&m, &items, [2; 32]);
        assert_eq!(report.outcome, BatchOutcome::Invalid(vec![2, 6]));
        // The rest is valid, so one check suffices.
        assert_eq!(report.pairing_checks, 1);
    }

    #[test]
    fn invalid_signatures_in_different_groups_do_not_cancel() {
        // Shift one signature in group A by +d and one in group B by -d: the plain sum over all
        // items is unchanged, but the random per-group weights expose both.
        let (m, signers) = committee(4);
        let msgs = messages(2);
        let mut items = votes(&signers, 4, &msgs);
        let d = signers[3].sign(b"delta");
        let plus = Membership::aggregate_signatures(&[items[0].signature, d]).unwrap();
        items[0].signature = plus;
        let neg_d = negate(&d);
        items[1].signature =
            Membership::aggregate_signatures(&[items[1].signature, neg_d]).unwrap();
        assert_ne!(items[0].message, items[1].message);
        let outcome = verify_batch(&m, &items, [3; 32]);
        assert_eq!(outcome, BatchOutcome::Invalid(vec![0, 1]));
    }

    #[test]
    fn poisoned_and_forged_aggregates_are_found_among_valid_ones() {
        let (m, signers) = committee(10);
        let msgs = messages(2);
        let aggregate = |members: &[usize], msg: &Arc<[u8]>| {
            let mut agg =
                Aggregate::single(10, members[0] as u16, signers[members[0]].sign(msg)).unwrap();
            for &i in &members[1..] {
                agg.combine(&Aggregate::single(10, i as u16, signers[i].sign(msg)).unwrap())
                    .unwrap();
            }
            AggregateItem {
                message: msg.clone(),
                aggregate: agg,
            }
        };
        let mut items = vec![
            aggregate(&[0, 1, 2], &msgs[0]),
            aggregate(&[3, 4, 5], &msgs[0]),
            aggregate(&[2, 6], &msgs[0]),
            aggregate(&[0, 7, 8, 9], &msgs[1]),
        ];
        let report = verify_aggregates_report(&m, &items, [5; 32]);
        assert_eq!(report.outcome, BatchOutcome::AllValid);
        assert_eq!(report.pairing_checks, 1);
        assert_eq!(report.keys_summed, 3 + 3 + 2 + 4);

        // Item 1 holds one share on the wrong message; item 2 claims a signer it lacks; item 3
        // names a member outside the membership.
        let poison = Aggregate::single(10, 4, signers[4].sign(b"elsewhere")).unwrap();
        items[1] = aggregate(&[3, 5], &msgs[0]);
        items[1].aggregate.combine(&poison).unwrap();
        items[2]
            .aggregate
            .weights
            .add(&crate::weights::SignerWeights::single(10, 9).unwrap())
            .unwrap();
        let report = verify_aggregates_report(&m, &items, [6; 32]);
        assert_eq!(report.outcome, BatchOutcome::Invalid(vec![1, 2]));
        let (other, _) = committee(11);
        let report = verify_aggregates_report(&other, &items[..1], [6; 32]);
        assert_eq!(report.outcome, BatchOutcome::Invalid(vec![0]));
    }

    /// The negation of a signature point (flip the sign bit of the compressed encoding).
    fn negate(sig: &Signature) -> Signature {
        let mut bytes = *sig.as_bytes();
        bytes[0] ^= 0x20;
        Signature::from_bytes(&bytes).unwrap()
    }
}
