//! The measurements of one performance run, as `beaufort sim run --format json` prints them.

use super::{PerfConfig, Protocol, Scenario};
use beaufort_core::wire::WireParts;
use beaufort_sim::config::Micros;
use beaufort_sim::engine::path::{attribute, mean_path, Path};
use beaufort_sim::engine::{EngineResult, Tx};
use serde::Serialize;

/// Percentiles of a latency distribution, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Maximum.
    pub max: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles of `samples` (ms); all zero when empty.
    pub fn of(samples: &[f64]) -> Percentiles {
        let mut s = samples.to_vec();
        s.sort_by(f64::total_cmp);
        let rank = |p: f64| -> f64 {
            if s.is_empty() {
                return 0.0;
            }
            let i = ((p * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1;
            s[i]
        };
        Percentiles {
            p50: rank(0.5),
            p90: rank(0.9),
            p99: rank(0.99),
            max: rank(1.0),
        }
    }
}

/// Mean and maximum over members.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct MeanMax {
    /// Mean.
    pub mean: f64,
    /// Maximum.
    pub max: f64,
}

impl MeanMax {
    /// Mean and maximum of `values` (all zero when empty).
    pub fn of(values: &[f64]) -> MeanMax {
        MeanMax {
            mean: values.iter().sum::<f64>() / values.len().max(1) as f64,
            max: values.iter().copied().fold(0.0, f64::max),
        }
    }
}

/// Bytes of one certificate's header beyond its signature and signer set: view, round, kind and
/// a short name of the value.
pub const CERT_HEADER_BYTES: usize = 20;

/// The information floor of one transaction at one member: the least it must receive, once, to
/// hold the decision — the value with its key, and a PRE-COMMIT and a COMMIT quorum each as one
/// aggregate (a 48-byte signature, a ⌈n/8⌉-byte signer set and a header). A scale-free yardstick
/// for bandwidth: bytes received per transaction as a multiple of this floor compares runs of any
/// size and load (`../shared` research on aggregation, §1; docs/EVALUATION.md).
pub fn floor_bytes(members: usize, key_len: usize, value_len: usize) -> f64 {
    let certificate = 48 + members.div_ceil(8) + CERT_HEADER_BYTES;
    (key_len + value_len + 2 * certificate) as f64
}

/// Bytes received per committed transaction per member, beside the floor.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct TransactionBytes {
    /// Mean over the honest members of the bytes each received in the window, divided by the
    /// transactions committed in the window.
    pub received_per_tx: f64,
    /// [`floor_bytes`] for this run's membership and mean key and value sizes.
    pub floor: f64,
    /// `received_per_tx / floor`: 1 would be perfect, every byte needed and nothing twice.
    pub floor_multiple: f64,
}

/// Bytes each honest member sent per committed transaction, by part of the wire format
/// (`beaufort_core::wire::WireParts`); with no loss they add up to about
/// [`TransactionBytes::received_per_tx`].
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct PartBytes {
    /// Values.
    pub bodies: f64,
    /// Single votes.
    pub votes: f64,
    /// Pieces.
    pub pieces: f64,
    /// Certificates of accepted values.
    pub certificates: f64,
    /// Keys, views, flags, framing, envelope.
    pub framing: f64,
    /// Anti-entropy.
    pub repair: f64,
    /// Relay-tree adverts.
    pub routes: f64,
    /// Equivocation proofs.
    pub evidence: f64,
}

impl PartBytes {
    /// From what the honest members sent by part (`sent`, summed over `members` of them).
    pub fn of(sent: &WireParts, members: usize, committed: usize) -> PartBytes {
        let per = |bytes: u64| bytes as f64 / members.max(1) as f64 / committed.max(1) as f64;
        PartBytes {
            bodies: per(sent.bodies),
            votes: per(sent.votes),
            pieces: per(sent.pieces),
            certificates: per(sent.certificates),
            framing: per(sent.framing),
            repair: per(sent.repair),
            routes: per(sent.routes),
            evidence: per(sent.evidence),
        }
    }
}

impl TransactionBytes {
    /// From the bytes each member received, the transactions committed, and the floor.
    pub fn of(received: &[u64], committed: usize, floor: f64) -> TransactionBytes {
        let mean = received.iter().sum::<u64>() as f64 / received.len().max(1) as f64;
        let received_per_tx = mean / committed.max(1) as f64;
        TransactionBytes {
            received_per_tx,
            floor,
            floor_multiple: received_per_tx / floor.max(1.0),
        }
    }
}

/// Everything a run measured.
#[derive(Clone, Debug, Serialize)]
pub struct PerfReport {
    /// The protocol.
    pub protocol: Protocol,
    /// The scenario.
    pub scenario: Scenario,
    /// Members.
    pub nodes: usize,
    /// The seed.
    pub seed: u64,
    /// Transactions per second per member.
    pub rate: f64,
    /// Seconds of workload.
    pub duration_s: f64,
    /// Transactions submitted by honest running members.
    pub submitted: usize,
    /// Of those, committed at their submitter.
    pub decided: usize,
    /// Submission to the submitter holding the commit certificate.
    pub latency_ms: Percentiles,
    /// Submission to every honest member still running holding it.
    pub latency_all_ms: Percentiles,
    /// Upload plus download per honest member over the workload window.
    pub bandwidth_mbit_per_node: MeanMax,
    /// Upload alone.
    pub upload_mbit_per_node: MeanMax,
    /// Bytes received per committed transaction per honest member, and as a multiple of the
    /// information floor.
    pub bytes_per_tx: TransactionBytes,
    /// Beaufort only (the simulator sees every message): [`TransactionBytes`] split by part of
    /// the wire format, as sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sent_per_tx_by_part: Option<PartBytes>,
    /// Share of the workload window each honest member's CPU was busy.
    pub cpu_utilisation: MeanMax,
    /// Mean latency at the submitter split by phase along the critical path (ms).
    pub breakdown_ms: Path,
    /// Messages delivered.
    pub messages: u64,
    /// Events processed.
    pub events: u64,
    /// Virtual seconds simulated.
    pub virtual_s: f64,
    /// Wall-clock seconds the simulation took.
    pub wall_s: f64,
    /// The cost table the run charged (absent when handlers were timed for real), so a figure
    /// can be reproduced with `--cost-table`.
    pub cost_table: Option<super::cost::CostTable>,
    /// [`super::cost::CostTable::fingerprint`] of that table.
    pub cost_table_fingerprint: Option<String>,
    /// The latencies at the submitter (ms), for box plots.
    #[serde(skip)]
    pub samples: Vec<f64>,
    /// Each honest member's bandwidth (Mbit/s, up + down), for box plots.
    #[serde(skip)]
    pub bandwidth_samples: Vec<f64>,
}

impl PerfReport {
    /// Summarises an engine result.
    pub fn new(cfg: &PerfConfig, txs: &[Tx], r: &EngineResult) -> PerfReport {
        let ms = |us: Micros| us as f64 / 1_000.0;
        let mut samples = Vec::new();
        let mut all = Vec::new();
        let mut paths = Vec::new();
        let mut submitted = 0;
        for tx in txs {
            if !r.counted[tx.id] {
                continue;
            }
            submitted += 1;
            if let Some((at, path)) = r.at_submitter[tx.id] {
                let latency = at.saturating_sub(tx.at);
                samples.push(ms(latency));
                paths.push(attribute(&path, latency));
            }
            if let Some(at) = r.at_all[tx.id] {
                all.push(ms(at.saturating_sub(tx.at)));
            }
        }
        let window = cfg.duration as f64 / 1e6;
        let honest: Vec<usize> = (0..cfg.members)
            .filter(|&m| !cfg.byzantine().contains(&beaufort_sim::network::index(m)))
            .collect();
        let mbit = |bytes: u64| bytes as f64 * 8.0 / 1e6 / window;
        let total: Vec<f64> = honest
            .iter()
            .map(|&m| mbit(r.members[m].sent + r.members[m].received))
            .collect();
        let upload: Vec<f64> = honest.iter().map(|&m| mbit(r.members[m].sent)).collect();
        let received: Vec<u64> = honest.iter().map(|&m| r.members[m].received).collect();
        let counted = txs.iter().filter(|tx| r.counted[tx.id]);
        let (sizes, count) = counted.fold((0usize, 0usize), |(bytes, count), tx| {
            (bytes + tx.key.len() + tx.value.len(), count + 1)
        });
        let mean_size = sizes / count.max(1);
        let floor = floor_bytes(cfg.members, mean_size, 0);
        let cpu: Vec<f64> = honest
            .iter()
            .map(|&m| r.members[m].cpu as f64 / cfg.duration as f64)
            .collect();
        PerfReport {
            protocol: cfg.protocol,
            scenario: cfg.scenario,
            nodes: cfg.members,
            seed: cfg.seed,
            rate: cfg.rate,
            duration_s: window,
            submitted,
            decided: samples.len(),
            latency_ms: Percentiles::of(&samples),
            latency_all_ms: Percentiles::of(&all),
            bandwidth_mbit_per_node: MeanMax::of(&total),
            upload_mbit_per_node: MeanMax::of(&upload),
            bytes_per_tx: TransactionBytes::of(&received, samples.len(), floor),
            sent_per_tx_by_part: None,
            cpu_utilisation: MeanMax::of(&cpu),
            breakdown_ms: mean_path(&paths),
            messages: r.stats.messages_delivered,
            events: r.stats.events,
            virtual_s: r.end as f64 / 1e6,
            wall_s: r.wall_seconds,
            cost_table: match cfg.cost {
                super::cost::CostMode::Modelled(table) => Some(table),
                super::cost::CostMode::Measured { .. } => None,
            },
            cost_table_fingerprint: match cfg.cost {
                super::cost::CostMode::Modelled(table) => Some(table.fingerprint()),
                super::cost::CostMode::Measured { .. } => None,
            },
            samples,
            bandwidth_samples: total,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_is_the_value_and_two_aggregate_certificates() {
        // n = 100: 13-byte signer sets; a 10-byte key and a 170-byte value.
        assert_eq!(floor_bytes(100, 10, 170), (180 + 2 * (48 + 13 + 20)) as f64);
        let bytes = TransactionBytes::of(&[1000, 3000], 4, 250.0);
        assert_eq!(bytes.received_per_tx, 500.0);
        assert_eq!(bytes.floor_multiple, 2.0);
    }
}
