//! What a handler did, counted for a cost model: [`OpCounts`], and the decorators that count the
//! cryptographic operations real BLS would perform while a member runs cheap stand-in signatures
//! ([`CountingVerifier`], [`CountingSigner`], draining into one [`CryptoCounter`] per member).

use beaufort_core::auth::{PieceCheck, SignatureCheck, Verifier, VoteSigner};
use beaufort_core::types::MemberIndex;
use beaufort_core::vote::NetworkId;
use beaufort_crypto::aggregate::Aggregate;
use beaufort_crypto::bls::Signature;
use beaufort_crypto::hash::Digest;
use beaufort_crypto::qc::QuorumCertificate;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Counts of charged operations, per handler.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpCounts {
    /// BLS signatures made.
    pub signs: u64,
    /// Signatures parsed (and added into aggregates).
    pub parsed: u64,
    /// Multi-pairing checks.
    pub pairing_checks: u64,
    /// Extra message groups in those checks.
    pub pairing_groups: u64,
    /// Certificates verified.
    pub certificates: u64,
    /// End-user P-256 signatures verified.
    pub user_signatures: u64,
    /// MACs computed or checked.
    pub macs: u64,
    /// Ed25519 signatures made.
    pub ed25519_signs: u64,
    /// Ed25519 signatures verified.
    pub ed25519_verifies: u64,
    /// Bytes encoded or decoded.
    pub codec_bytes: u64,
    /// Vote slots merged.
    pub votes_merged: u64,
    /// Events handled.
    pub events: u64,
}

impl OpCounts {
    /// Adds another count.
    pub fn add(&mut self, other: &OpCounts) {
        self.signs += other.signs;
        self.parsed += other.parsed;
        self.pairing_checks += other.pairing_checks;
        self.pairing_groups += other.pairing_groups;
        self.certificates += other.certificates;
        self.user_signatures += other.user_signatures;
        self.macs += other.macs;
        self.ed25519_signs += other.ed25519_signs;
        self.ed25519_verifies += other.ed25519_verifies;
        self.codec_bytes += other.codec_bytes;
        self.votes_merged += other.votes_merged;
        self.events += other.events;
    }
}

/// The crypto counters one member's [`CountingVerifier`] and [`CountingSigner`] share; the
/// engine drains them after every handler.
#[derive(Debug, Default)]
pub struct CryptoCounter {
    signs: AtomicU64,
    parsed: AtomicU64,
    pairing_checks: AtomicU64,
    pairing_groups: AtomicU64,
    certificates: AtomicU64,
}

impl CryptoCounter {
    /// Returns the counts so far and resets them.
    pub fn drain(&self) -> OpCounts {
        OpCounts {
            signs: self.signs.swap(0, Ordering::Relaxed),
            parsed: self.parsed.swap(0, Ordering::Relaxed),
            pairing_checks: self.pairing_checks.swap(0, Ordering::Relaxed),
            pairing_groups: self.pairing_groups.swap(0, Ordering::Relaxed),
            certificates: self.certificates.swap(0, Ordering::Relaxed),
            ..OpCounts::default()
        }
    }

    fn bump(counter: &AtomicU64, by: u64) {
        counter.fetch_add(by, Ordering::Relaxed);
    }
}

/// A [`Verifier`] decorator that counts the operations real BLS would perform and delegates the
/// verdicts to the wrapped (stand-in) verifier.
pub struct CountingVerifier {
    inner: Arc<dyn Verifier>,
    counter: Arc<CryptoCounter>,
}

impl CountingVerifier {
    /// Wraps `inner`, counting into `counter`.
    pub fn new(inner: Arc<dyn Verifier>, counter: Arc<CryptoCounter>) -> CountingVerifier {
        CountingVerifier { inner, counter }
    }
}

impl Verifier for CountingVerifier {
    fn network_id(&self) -> NetworkId {
        self.inner.network_id()
    }

    fn members(&self) -> usize {
        self.inner.members()
    }

    /// Charges what `beaufort_crypto::batch::verify_batch_report` does: parse every signature,
    /// one pairing check over all message groups, and, for each group holding invalid
    /// signatures, a check of that group alone plus a bisection (two checks per level).
    fn verify_batch(&self, checks: &[SignatureCheck]) -> Vec<usize> {
        let bad = self.inner.verify_batch(checks);
        if checks.is_empty() {
            return bad;
        }
        let mut groups: BTreeMap<&[u8; 32], (u64, u64)> = BTreeMap::new();
        for (i, check) in checks.iter().enumerate() {
            let entry = groups.entry(&check.message.0).or_default();
            entry.0 += 1;
            if bad.binary_search(&i).is_ok() {
                entry.1 += 1;
            }
        }
        let c = &self.counter;
        CryptoCounter::bump(&c.parsed, checks.len() as u64);
        CryptoCounter::bump(&c.pairing_checks, 1);
        CryptoCounter::bump(&c.pairing_groups, groups.len() as u64 - 1);
        if !bad.is_empty() {
            for &(size, invalid) in groups.values() {
                let mut checks = 1;
                if invalid > 0 && size > 1 {
                    let depth = 64 - u64::leading_zeros(size.saturating_sub(1));
                    checks += 2 * invalid * u64::from(depth);
                }
                CryptoCounter::bump(&c.pairing_checks, checks);
            }
        }
        bad
    }

    /// Charges what `beaufort_crypto::batch::verify_aggregates_report` does: parse every
    /// piece's signature, one pairing check over all message groups, and one check per piece
    /// when something is invalid (each piece is then checked alone). The G2 additions that sum a
    /// piece's keys are not in the cost table yet (about a microsecond per signer).
    fn verify_pieces(&self, checks: &[PieceCheck<'_>]) -> Vec<usize> {
        let bad = self.inner.verify_pieces(checks);
        if checks.is_empty() {
            return bad;
        }
        let messages: std::collections::BTreeSet<&[u8; 32]> =
            checks.iter().map(|check| &check.message.0).collect();
        let c = &self.counter;
        CryptoCounter::bump(&c.parsed, checks.len() as u64);
        CryptoCounter::bump(&c.pairing_checks, 1);
        CryptoCounter::bump(&c.pairing_groups, messages.len() as u64 - 1);
        if !bad.is_empty() {
            CryptoCounter::bump(&c.pairing_checks, checks.len() as u64);
        }
        bad
    }

    fn combine(&self, sum: &mut Aggregate, piece: &Aggregate) -> bool {
        CryptoCounter::bump(&self.counter.parsed, 2);
        self.inner.combine(sum, piece)
    }

    fn certify(
        &self,
        message: &Digest,
        shares: &[(MemberIndex, Signature)],
        pieces: &[&Aggregate],
    ) -> Option<QuorumCertificate> {
        let parsed = shares.len() + pieces.len();
        CryptoCounter::bump(&self.counter.parsed, parsed as u64);
        self.inner.certify(message, shares, pieces)
    }

    fn verify_certificate(&self, qc: &QuorumCertificate, message: &Digest) -> bool {
        CryptoCounter::bump(&self.counter.certificates, 1);
        self.inner.verify_certificate(qc, message)
    }
}

/// A [`VoteSigner`] decorator that counts signatures.
pub struct CountingSigner {
    inner: Box<dyn VoteSigner>,
    counter: Arc<CryptoCounter>,
}

impl CountingSigner {
    /// Wraps `inner`, counting into `counter`.
    pub fn new(inner: Box<dyn VoteSigner>, counter: Arc<CryptoCounter>) -> CountingSigner {
        CountingSigner { inner, counter }
    }
}

impl VoteSigner for CountingSigner {
    fn member(&self) -> MemberIndex {
        self.inner.member()
    }

    fn sign(&self, message: &Digest) -> Signature {
        CryptoCounter::bump(&self.counter.signs, 1);
        self.inner.sign(message)
    }
}
