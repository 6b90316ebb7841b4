//! Honest CPU cost for simulated members.
//!
//! Every handler a member runs is charged to that member's own CPU clock before its outputs
//! leave (see `beaufort_sim::engine`). How much a handler costs comes from one of two modes:
//!
//! * **modelled** ([`CostMode::Modelled`]): the member runs cheap stand-in signatures, wrapped in
//!   [`CountingVerifier`]/[`CountingSigner`] which count every cryptographic operation; the
//!   engine turns the counts into time with a [`CostTable`] (calibrated at start-up by timing
//!   real `blst` and P-256 operations on this host, or the documented reference table). The
//!   result is deterministic for a seed and a table.
//! * **measured** ([`CostMode::Measured`]): the member runs real BLS and the engine times the
//!   handler with the wall clock, times a device factor. Not deterministic (the one documented
//!   exception); it exists to validate the modelled mode.

use beaufort_core::types::MemberIndex;
use beaufort_crypto::batch::{verify_batch_report, BatchItem};
use beaufort_crypto::bls::{SecretKey, Signature};
use beaufort_crypto::hash::{hash, Domain};
use beaufort_crypto::membership::{MemberKey, Membership, Signer};
use beaufort_crypto::qc::QuorumCertificate;
use beaufort_crypto::user::{verify_user_signature, UserKeyPair};
use beaufort_sim::config::Micros;
use beaufort_sim::engine::ops::OpCounts;
use beaufort_sim::engine::CostModel;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Nanoseconds, the unit of the cost table (virtual time is in microseconds).
pub type Nanos = u64;

/// What each operation costs on the simulated device, in nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct CostTable {
    /// One BLS signature (with the signer-side coefficient).
    pub bls_sign: Nanos,
    /// Parsing (decompressing) one 48-byte signature and adding it into an aggregate.
    pub bls_parse: Nanos,
    /// One multi-pairing check over one message group: final exponentiation, two Miller loops and
    /// one hash-to-curve.
    pub pairing_check: Nanos,
    /// Each further message group in the same check: one Miller loop and one hash-to-curve.
    pub pairing_group: Nanos,
    /// Verifying a quorum certificate (aggregate the signers' keys, one pairing check).
    pub certificate_verify: Nanos,
    /// Verifying an end user's ECDSA P-256 signature on a transaction.
    pub p256_verify: Nanos,
    /// A MAC (HMAC-SHA256 over a short message), as PBFT's authenticators use.
    pub mac: Nanos,
    /// One Ed25519 signature (Tendermint's votes and proposals).
    #[serde(default = "reference_ed25519_sign")]
    pub ed25519_sign: Nanos,
    /// Verifying one Ed25519 signature.
    #[serde(default = "reference_ed25519_verify")]
    pub ed25519_verify: Nanos,
    /// Encoding or decoding one byte of a message (each direction is charged).
    pub codec_per_byte: Nanos,
    /// Merging one vote slot into a register (and the bookkeeping around it).
    pub merge_per_vote: Nanos,
    /// Fixed cost of handling any event (dispatch, allocation, a persist write).
    pub per_event: Nanos,
}

impl CostTable {
    /// The table measured on the project's machine (docs/EVALUATION.md §3–4). Tests use it so
    /// that results do not depend on the host.
    pub fn reference() -> CostTable {
        CostTable {
            bls_sign: 170_000,
            bls_parse: 16_000,
            pairing_check: 1_000_000,
            pairing_group: 410_000,
            certificate_verify: 1_243_000,
            p256_verify: 53_000,
            mac: 1_000,
            ed25519_sign: reference_ed25519_sign(),
            ed25519_verify: reference_ed25519_verify(),
            codec_per_byte: 2,
            merge_per_vote: 570,
            per_event: 2_000,
        }
    }

    /// Times the real operations on this host (the fastest of [`CALIBRATION_RUNS`] timings
    /// each) and fills the table with them; costs the curve does not decide (merge, codec,
    /// dispatch) keep their reference values. Takes a few seconds. `beaufort sim calibrate`
    /// writes the result to a file that runs then take with `--cost-table`, so a figure does not
    /// depend on how busy the host was when it started.
    pub fn calibrate() -> CostTable {
        let reference = CostTable::reference();
        let n = 100usize;
        let seeds: Vec<[u8; 32]> = (0..n as u64)
            .map(|i| hash(Domain::Other, &[b"calibrate", &i.to_le_bytes()]).0)
            .collect();
        let keys: Vec<SecretKey> = seeds.iter().map(SecretKey::generate).collect();
        let network = hash(Domain::Other, &[b"calibrate network"]);
        let Ok(membership) =
            Membership::new(network, keys.iter().map(MemberKey::from_secret).collect())
        else {
            return reference;
        };
        let signers: Vec<Signer> = seeds
            .iter()
            .enumerate()
            .map(|(i, ikm)| Signer::new(member(i), SecretKey::generate(ikm)))
            .collect();
        let message = b"calibration vote";
        let bls_sign = fastest_nanos(|| {
            std::hint::black_box(signers[0].sign(message));
        });
        let shares: Vec<(MemberIndex, Signature)> = signers
            .iter()
            .take(membership.quorum())
            .map(|s| (s.index(), s.sign(message)))
            .collect();
        let sigs: Vec<Signature> = shares.iter().map(|(_, s)| *s).collect();
        let bls_parse = fastest_nanos(|| {
            std::hint::black_box(Membership::aggregate_signatures(&sigs).ok());
        }) / sigs.len() as u64;
        let single = fastest_nanos(|| {
            std::hint::black_box(membership.verify_vote(shares[0].0, message, &shares[0].1));
        });
        let pairing_check = single.saturating_sub(bls_parse);
        let batch = |messages: usize| -> Vec<BatchItem> {
            signers
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let m = format!("calibration vote {}", i % messages).into_bytes();
                    BatchItem {
                        signer: s.index(),
                        signature: s.sign(&m),
                        message: Arc::from(m.as_slice()),
                    }
                })
                .collect()
        };
        let (one, four) = (batch(1), batch(4));
        let t1 = fastest_nanos(|| {
            std::hint::black_box(verify_batch_report(&membership, &one, [7; 32]));
        });
        let t4 = fastest_nanos(|| {
            std::hint::black_box(verify_batch_report(&membership, &four, [7; 32]));
        });
        let pairing_group = t4.saturating_sub(t1) / 3;
        let certificate_verify = match QuorumCertificate::aggregate(n, &shares) {
            Ok(qc) => fastest_nanos(|| {
                std::hint::black_box(membership.verify_qc(&qc, message).is_ok());
            }),
            Err(_) => reference.certificate_verify,
        };
        let p256_verify = match UserKeyPair::generate() {
            Ok(user) => match user.sign(message) {
                Ok(sig) => fastest_nanos(|| {
                    std::hint::black_box(
                        verify_user_signature(&user.public_key(), message, &sig).is_ok(),
                    );
                }),
                Err(_) => reference.p256_verify,
            },
            Err(_) => reference.p256_verify,
        };
        let mac = fastest_nanos(|| {
            std::hint::black_box(hash(Domain::Other, &[message, &[0u8; 200]]));
        });
        let (ed25519_sign, ed25519_verify) =
            calibrate_ed25519().unwrap_or((reference.ed25519_sign, reference.ed25519_verify));
        CostTable {
            bls_sign,
            bls_parse,
            pairing_check,
            pairing_group,
            certificate_verify,
            p256_verify,
            mac,
            ed25519_sign,
            ed25519_verify,
            ..reference
        }
    }

    /// A short fingerprint of the table (hex), printed with every run's figures so two runs can
    /// be told to have used the same costs.
    pub fn fingerprint(&self) -> String {
        let fields = [
            self.bls_sign,
            self.bls_parse,
            self.pairing_check,
            self.pairing_group,
            self.certificate_verify,
            self.p256_verify,
            self.mac,
            self.ed25519_sign,
            self.ed25519_verify,
            self.codec_per_byte,
            self.merge_per_vote,
            self.per_event,
        ];
        let bytes: Vec<u8> = fields.iter().flat_map(|f| f.to_le_bytes()).collect();
        hash(Domain::Other, &[b"beaufort cost table", &bytes]).to_hex()[..16].to_owned()
    }

    /// The time the operations in `ops` take, in nanoseconds.
    pub fn charge(&self, ops: &OpCounts) -> Nanos {
        ops.signs * self.bls_sign
            + ops.parsed * self.bls_parse
            + ops.pairing_checks * self.pairing_check
            + ops.pairing_groups * self.pairing_group
            + ops.certificates * self.certificate_verify
            + ops.user_signatures * self.p256_verify
            + ops.macs * self.mac
            + ops.ed25519_signs * self.ed25519_sign
            + ops.ed25519_verifies * self.ed25519_verify
            + ops.codec_bytes * self.codec_per_byte
            + ops.votes_merged * self.merge_per_vote
            + ops.events * self.per_event
    }
}

/// Reference Ed25519 signing cost (ring on the project's machine).
fn reference_ed25519_sign() -> Nanos {
    20_000
}

/// Reference Ed25519 verification cost (ring on the project's machine).
fn reference_ed25519_verify() -> Nanos {
    50_000
}

/// Times ring's Ed25519 signing and verification (median of a few runs each).
fn calibrate_ed25519() -> Option<(Nanos, Nanos)> {
    use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
    let pair = Ed25519KeyPair::from_seed_unchecked(&[7; 32]).ok()?;
    let message = [0u8; 120];
    let sign = fastest_nanos(|| {
        std::hint::black_box(pair.sign(&message));
    });
    let signature = pair.sign(&message);
    let public = UnparsedPublicKey::new(&ED25519, pair.public_key().as_ref().to_vec());
    let verify = fastest_nanos(|| {
        std::hint::black_box(public.verify(&message, signature.as_ref()).is_ok());
    });
    Some((sign, verify))
}

/// The median of `runs` timings of `f`, in nanoseconds.
/// Timings per operation when calibrating.
const CALIBRATION_RUNS: usize = 21;

/// The fastest of [`CALIBRATION_RUNS`] timings of `f`. Other work on the host only ever adds
/// time, so the minimum is the estimate a busy host disturbs least.
fn fastest_nanos(mut f: impl FnMut()) -> Nanos {
    (0..CALIBRATION_RUNS)
        .map(|_| {
            let start = Instant::now();
            f();
            u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
        })
        .min()
        .unwrap_or(u64::MAX)
}

fn member(i: usize) -> MemberIndex {
    MemberIndex::try_from(i).unwrap_or(MemberIndex::MAX)
}

/// How handlers are charged.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CostMode {
    /// Count operations and charge them from a table (deterministic).
    Modelled(CostTable),
    /// Time the real handler (real BLS) and multiply by a device factor (not deterministic).
    Measured {
        /// How much slower the simulated device is than this host (1.0 = as fast).
        device_factor: f64,
    },
}

impl CostModel for CostMode {
    fn charge(&self, ops: &OpCounts, elapsed: Duration) -> Micros {
        match self {
            CostMode::Modelled(table) => table.charge(ops).div_ceil(1_000),
            CostMode::Measured { device_factor } => {
                let nanos = elapsed.as_nanos() as f64 * device_factor;
                (nanos / 1_000.0).ceil() as Micros
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use beaufort_core::auth::StandInCrypto;
    use beaufort_core::auth::{SignatureCheck, Verifier};
    use beaufort_sim::engine::ops::{CountingVerifier, CryptoCounter};

    #[test]
    fn counting_verifier_charges_parse_and_one_check_per_valid_batch() {
        let crypto = StandInCrypto::new(hash(Domain::Other, &[b"t"]), 4);
        let counter = Arc::new(CryptoCounter::default());
        let verifier = CountingVerifier::new(Arc::new(crypto.clone()), counter.clone());
        let m1 = hash(Domain::Other, &[b"m1"]);
        let m2 = hash(Domain::Other, &[b"m2"]);
        let checks: Vec<SignatureCheck> = [(0, m1), (1, m1), (2, m2)]
            .iter()
            .map(|&(i, m)| SignatureCheck {
                member: i,
                message: m,
                signature: crypto.share(i, &m),
            })
            .collect();
        assert!(verifier.verify_batch(&checks).is_empty());
        let ops = counter.drain();
        assert_eq!(
            (ops.parsed, ops.pairing_checks, ops.pairing_groups),
            (3, 1, 1)
        );
        let table = CostTable::reference();
        assert_eq!(
            table.charge(&ops),
            3 * table.bls_parse + table.pairing_check + table.pairing_group
        );
        assert_eq!(counter.drain(), OpCounts::default());
    }

    #[test]
    fn invalid_signatures_cost_extra_checks() {
        let crypto = StandInCrypto::new(hash(Domain::Other, &[b"t"]), 4);
        let counter = Arc::new(CryptoCounter::default());
        let verifier = CountingVerifier::new(Arc::new(crypto.clone()), counter.clone());
        let m = hash(Domain::Other, &[b"m"]);
        let mut checks: Vec<SignatureCheck> = (0..4)
            .map(|i| SignatureCheck {
                member: i,
                message: m,
                signature: crypto.share(i, &m),
            })
            .collect();
        checks[2].signature = crypto.share(3, &m);
        assert_eq!(verifier.verify_batch(&checks), vec![2]);
        assert!(counter.drain().pairing_checks > 2);
    }
}
