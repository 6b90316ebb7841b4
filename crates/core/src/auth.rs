//! How the core signs and checks votes, behind two small traits.
//!
//! The core never calls a curve directly: the node and the measured simulator plug in real BLS
//! ([`BlsVerifier`], [`BlsSigner`]); the model checker and the large simulations plug in
//! [`StandInCrypto`], whose "signatures" are keyed hashes that cost nothing. Both obey the same
//! contract, so the protocol logic that runs in the simulator is the logic that runs in the node.

use crate::types::MemberIndex;
use crate::vote::NetworkId;
use beaufort_crypto::batch::{verify_batch, BatchItem, BatchOutcome};
use beaufort_crypto::bls::Signature;
use beaufort_crypto::hash::{hash, Digest, Domain};
use beaufort_crypto::membership::{Membership, Signer};
use beaufort_crypto::qc::{QuorumCertificate, SignerSet};

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

/// Checks signatures of the consortium's members. Shared by every register of a replica.
pub trait Verifier: Send + Sync {
    /// The consortium this verifier knows the keys of.
    fn network_id(&self) -> NetworkId;
    /// Number of members, n.
    fn members(&self) -> usize;
    /// Checks many shares at once (deferred verification); returns the indices of the invalid ones.
    fn verify_batch(&self, checks: &[SignatureCheck]) -> Vec<usize>;
    /// Aggregates shares that all sign `message` into a certificate.
    fn certify(
        &self,
        message: &Digest,
        shares: &[(MemberIndex, Signature)],
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

    fn certify(
        &self,
        _message: &Digest,
        shares: &[(MemberIndex, Signature)],
    ) -> Option<QuorumCertificate> {
        QuorumCertificate::aggregate(self.membership.n(), shares).ok()
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

    /// The stand-in aggregate: a hash of the shares in signer order, so a certificate built from
    /// a wrong share fails verification just as a BLS aggregate would.
    fn aggregate_of<'a>(&self, shares: impl Iterator<Item = &'a Signature>) -> Signature {
        let parts: Vec<&[u8]> = shares.map(|s| s.as_bytes().as_slice()).collect();
        let digest = hash(Domain::Other, &parts);
        let mut bytes = [0u8; 48];
        bytes[..32].copy_from_slice(&digest.0);
        stand_in_signature(bytes)
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

    fn certify(
        &self,
        _message: &Digest,
        shares: &[(MemberIndex, Signature)],
    ) -> Option<QuorumCertificate> {
        let mut sorted: Vec<(MemberIndex, Signature)> = shares.to_vec();
        sorted.sort_by_key(|(member, _)| *member);
        sorted.dedup_by_key(|(member, _)| *member);
        let mut signers = SignerSet::new(self.members).ok()?;
        for (member, _) in &sorted {
            signers.insert(*member).ok()?;
        }
        let signature = self.aggregate_of(sorted.iter().map(|(_, s)| s));
        Some(QuorumCertificate { signers, signature })
    }

    fn verify_certificate(&self, qc: &QuorumCertificate, message: &Digest) -> bool {
        if qc.signers.validate(self.members).is_err() || qc.signers.len() < self.quorum() {
            return false;
        }
        let expected: Vec<Signature> = qc
            .signers
            .iter()
            .map(|member| self.share(member, message))
            .collect();
        qc.signature == self.aggregate_of(expected.iter())
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
