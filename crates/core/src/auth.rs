//! How the core signs and checks votes, behind two small traits.
//!
//! The core never calls a curve directly: the node and the measured simulator plug in real BLS
//! ([`BlsVerifier`], [`BlsSigner`]); the model checker and the large simulations plug in
//! [`StandInCrypto`], whose "signatures" are keyed hashes that cost nothing. Both obey the same
//! contract, so the protocol logic that runs in the simulator is the logic that runs in the node.

use crate::types::MemberIndex;
use crate::vote::NetworkId;
use beaufort_crypto::aggregate::Aggregate;
use beaufort_crypto::batch::{
    verify_aggregates_report, verify_batch, AggregateItem, BatchItem, BatchOutcome,
};
use beaufort_crypto::bls::Signature;
use beaufort_crypto::hash::{hash, Digest, Domain};
use beaufort_crypto::membership::{Membership, Signer};
use beaufort_crypto::qc::QuorumCertificate;
use beaufort_crypto::weights::SignerWeights;

/// One vote signature to check: who claims to have signed which 32-byte message.
#[derive(Clone, Copy, Debug)]
pub struct SignatureCheck {
    /// The claimed signer.
    pub member: MemberIndex,
    /// The signed message (see [`crate::vote::vote_message`]).
    pub message: Digest,
    /// The signature share.
    pub signature: Signature,
}

/// One piece (partial aggregate) to check: the message every share in it signed.
#[derive(Clone, Copy, Debug)]
pub struct PieceCheck<'a> {
    /// The signed message (see [`crate::vote::vote_message`]).
    pub message: Digest,
    /// The piece.
    pub piece: &'a Aggregate,
}

/// Checks signatures of the consortium's members. Shared by every register of a replica.
pub trait Verifier: Send + Sync {
    /// The consortium this verifier knows the keys of.
    fn network_id(&self) -> NetworkId;
    /// Number of members, n.
    fn members(&self) -> usize;
    /// Checks many shares at once (deferred verification); returns the indices of the invalid ones.
    fn verify_batch(&self, checks: &[SignatureCheck]) -> Vec<usize>;
    /// Checks many pieces at once (deferred verification); returns the indices of the invalid
    /// ones (malformed, with unknown signers, or not the sum their weights claim).
    fn verify_pieces(&self, checks: &[PieceCheck<'_>]) -> Vec<usize>;
    /// Adds `piece` into `sum` (both of one message), or leaves `sum` as it was and returns false
    /// when they cannot add (a count past 255, a malformed signature).
    fn combine(&self, sum: &mut Aggregate, piece: &Aggregate) -> bool;
    /// Aggregates single shares and pieces that all sign `message` into a certificate.
    fn certify(
        &self,
        message: &Digest,
        shares: &[(MemberIndex, Signature)],
        pieces: &[&Aggregate],
    ) -> Option<QuorumCertificate>;
    /// Checks a certificate: enough distinct signers, one valid aggregate.
    fn verify_certificate(&self, qc: &QuorumCertificate, message: &Digest) -> bool;

    /// The tolerated number of Byzantine members, f = ⌊(n − 1) / 3⌋.
    fn max_faulty(&self) -> usize {
        (self.members().saturating_sub(1)) / 3
    }
    /// The quorum, q = n − f.
    fn quorum(&self) -> usize {
        self.members() - self.max_faulty()
    }
}

/// Signs votes for the local member.
pub trait VoteSigner: Send + Sync {
    /// Which member this is.
    fn member(&self) -> MemberIndex;
    /// Signs a vote message.
    fn sign(&self, message: &Digest) -> Signature;
}

/// Real BLS verification over a loaded [`Membership`].
pub struct BlsVerifier {
    membership: Membership,
}

impl BlsVerifier {
    /// Wraps a membership whose proofs of possession were checked when it was built.
    pub fn new(membership: Membership) -> BlsVerifier {
        BlsVerifier { membership }
    }

    /// The underlying membership (keys, n, f).
    pub fn membership(&self) -> &Membership {
        &self.membership
    }
}

impl Verifier for BlsVerifier {
    fn network_id(&self) -> NetworkId {
        self.membership.network_id()
    }

    fn members(&self) -> usize {
        self.membership.n()
    }

    fn verify_batch(&self, checks: &[SignatureCheck]) -> Vec<usize> {
        let items: Vec<BatchItem> = checks
            .iter()
            .map(|c| BatchItem {
                signer: c.member,
                message: std::sync::Arc::from(c.message.0.as_slice()),
                signature: c.signature,
            })
            .collect();
        // The batch's random scalars come from a hash of everything in it (Fiat–Shamir), so no
        // one choosing the shares can predict them, and the core stays deterministic.
        let mut parts: Vec<&[u8]> = Vec::with_capacity(checks.len() * 2);
        for item in &items {
            parts.push(&item.message);
            parts.push(item.signature.as_bytes());
        }
        let seed = hash(Domain::Other, &parts).0;
        match verify_batch(&self.membership, &items, seed) {
            BatchOutcome::AllValid => Vec::new(),
            BatchOutcome::Invalid(bad) => bad,
        }
    }

    fn verify_pieces(&self, checks: &[PieceCheck<'_>]) -> Vec<usize> {
        let items: Vec<AggregateItem> = checks
            .iter()
            .map(|c| AggregateItem {
                message: std::sync::Arc::from(c.message.0.as_slice()),
                aggregate: c.piece.clone(),
            })
            .collect();
        // Fiat–Shamir over everything in the batch, as for single votes.
        let weights: Vec<Vec<u8>> = checks
            .iter()
            .map(|c| {
                c.piece
                    .weights
                    .members()
                    .flat_map(|(member, count)| {
                        let [low, high] = member.to_le_bytes();
                        [low, high, count]
                    })
                    .collect()
            })
            .collect();
        let mut parts: Vec<&[u8]> = Vec::with_capacity(checks.len() * 3);
        for (item, weights) in items.iter().zip(&weights) {
            parts.push(&item.message);
            parts.push(item.aggregate.signature.as_bytes());
            parts.push(weights);
        }
        let seed = hash(Domain::Other, &parts).0;
        match verify_aggregates_report(&self.membership, &items, seed).outcome {
            BatchOutcome::AllValid => Vec::new(),
            BatchOutcome::Invalid(bad) => bad,
        }
    }

    fn combine(&self, sum: &mut Aggregate, piece: &Aggregate) -> bool {
        sum.combine(piece).is_ok()
    }

    fn certify(
        &self,
        _message: &Digest,
        shares: &[(MemberIndex, Signature)],
        pieces: &[&Aggregate],
    ) -> Option<QuorumCertificate> {
        let (mut sum, rest) = match shares {
            [] => ((*pieces.first()?).clone(), &pieces[1..]),
            _ => (
                QuorumCertificate::aggregate(self.membership.n(), shares)
                    .ok()?
                    .to_aggregate(),
                pieces,
            ),
        };
        for piece in rest {
            sum.combine(piece).ok()?;
        }
        Some(QuorumCertificate::from_aggregate(sum))
    }

    fn verify_certificate(&self, qc: &QuorumCertificate, message: &Digest) -> bool {
        self.membership.verify_qc(qc, &message.0).is_ok()
    }
}

/// Signs with the member's coefficient-adjusted BLS key.
pub struct BlsSigner {
    signer: Signer,
}

impl BlsSigner {
    /// Wraps a signer built from the member's secret key.
    pub fn new(signer: Signer) -> BlsSigner {
        BlsSigner { signer }
    }
}

impl VoteSigner for BlsSigner {
    fn member(&self) -> MemberIndex {
        self.signer.index()
    }

    fn sign(&self, message: &Digest) -> Signature {
        self.signer.sign(&message.0)
    }
}

/// Keyed-hash stand-in signatures for the model checker and large simulations.
///
/// Not secure: whoever holds a `StandInCrypto` can sign for every member. It exists so that
/// thousands of simulated members and millions of model-checked states cost microseconds, while
/// invalid signatures (a flipped byte) are still caught exactly as BLS would catch them.
#[derive(Clone, Debug)]
pub struct StandInCrypto {
    network: NetworkId,
    members: usize,
}

impl StandInCrypto {
    /// A stand-in consortium of `members` members.
    pub fn new(network: NetworkId, members: usize) -> StandInCrypto {
        StandInCrypto { network, members }
    }

    /// The stand-in signature of `member` over `message`.
    pub fn share(&self, member: MemberIndex, message: &Digest) -> Signature {
        let digest = hash(
            Domain::Other,
            &[
                b"stand-in share",
                self.network.as_bytes(),
                &member.to_le_bytes(),
                message.as_bytes(),
            ],
        );
        let mut bytes = [0u8; 48];
        bytes[..32].copy_from_slice(&digest.0);
        stand_in_signature(bytes)
    }

    /// A signer for one member.
    pub fn signer(&self, member: MemberIndex) -> StandInSigner {
        StandInSigner {
            crypto: self.clone(),
            member,
        }
    }

    /// The stand-in aggregate of `weights` on `message`: the sum, modulo 2^256, of each signer's
    /// stand-in share times its count. Additive like a BLS aggregate, so pieces combine by adding
    /// and a piece holding one wrong share, or claiming a signer it lacks, fails verification.
    fn aggregate_of(&self, weights: &SignerWeights, message: &Digest) -> Signature {
        let mut sum = [0u8; 48];
        for (member, count) in weights.members() {
            add_scaled(&mut sum, self.share(member, message).as_bytes(), count);
        }
        stand_in_signature(sum)
    }
}

/// `sum += times * share` on the first 32 bytes, little-endian, modulo 2^256.
fn add_scaled(sum: &mut [u8; 48], share: &[u8; 48], times: u8) {
    for _ in 0..times {
        let mut carry = 0u16;
        for (s, &b) in sum[..32].iter_mut().zip(&share[..32]) {
            let total = u16::from(*s) + u16::from(b) + carry;
            *s = total as u8;
            carry = total >> 8;
        }
    }
}

impl Verifier for StandInCrypto {
    fn network_id(&self) -> NetworkId {
        self.network
    }

    fn members(&self) -> usize {
        self.members
    }

    fn verify_batch(&self, checks: &[SignatureCheck]) -> Vec<usize> {
        checks
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                usize::from(c.member) >= self.members
                    || self.share(c.member, &c.message) != c.signature
            })
            .map(|(i, _)| i)
            .collect()
    }

    fn verify_pieces(&self, checks: &[PieceCheck<'_>]) -> Vec<usize> {
        checks
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                let weights = &c.piece.weights;
                weights.validate(self.members).is_err()
                    || weights.is_empty()
                    || self.aggregate_of(weights, &c.message) != c.piece.signature
            })
            .map(|(i, _)| i)
            .collect()
    }

    fn combine(&self, sum: &mut Aggregate, piece: &Aggregate) -> bool {
        let mut weights = sum.weights.clone();
        if weights.add(&piece.weights).is_err() {
            return false;
        }
        let mut signature = *sum.signature.as_bytes();
        add_scaled(&mut signature, piece.signature.as_bytes(), 1);
        sum.weights = weights;
        sum.signature = stand_in_signature(signature);
        true
    }

    fn certify(
        &self,
        _message: &Digest,
        shares: &[(MemberIndex, Signature)],
        pieces: &[&Aggregate],
    ) -> Option<QuorumCertificate> {
        let mut sum = Aggregate {
            weights: SignerWeights::new(self.members).ok()?,
            signature: stand_in_signature([0; 48]),
        };
        let mut seen = std::collections::BTreeSet::new();
        for &(member, signature) in shares {
            if !seen.insert(member) {
                continue;
            }
            let single = Aggregate::single(self.members, member, signature).ok()?;
            if !self.combine(&mut sum, &single) {
                return None;
            }
        }
        for piece in pieces {
            if !self.combine(&mut sum, piece) {
                return None;
            }
        }
        (!sum.weights.is_empty()).then(|| QuorumCertificate::from_aggregate(sum))
    }

    fn verify_certificate(&self, qc: &QuorumCertificate, message: &Digest) -> bool {
        qc.signers.validate(self.members).is_ok()
            && qc.signers.support_len() >= self.quorum()
            && qc.signature == self.aggregate_of(&qc.signers, message)
    }
}

/// A stand-in signer for one member.
#[derive(Clone, Debug)]
pub struct StandInSigner {
    crypto: StandInCrypto,
    member: MemberIndex,
}

impl VoteSigner for StandInSigner {
    fn member(&self) -> MemberIndex {
        self.member
    }

    fn sign(&self, message: &Digest) -> Signature {
        self.crypto.share(self.member, message)
    }
}

/// Wraps stand-in bytes as a signature (any 48 bytes are storable; validity is decided when
/// verifying).
fn stand_in_signature(bytes: [u8; 48]) -> Signature {
    match Signature::from_bytes(&bytes) {
        Ok(signature) => signature,
        Err(_) => unreachable!("48 bytes always form a storable signature"),
    }
}
