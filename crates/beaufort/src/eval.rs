//! `beaufort sim run`: one performance run of BeauFort, PBFT or Tendermint-style consensus under
//! the simulator's network and CPU cost model, printed as text or JSON; `beaufort sim paper`: the
//! paper's matrix (protocols × sizes × scenarios) as CSV and SVG box plots.

use anyhow::{bail, Context, Result};
use beaufort_perf::cost::{CostMode, CostTable};
use beaufort_perf::report::PerfReport;
use beaufort_perf::{self as perf, paper, PerfConfig, Protocol, Scenario};
use beaufort_sim::config::{Micros, MS};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};

/// The protocol on the command line.
#[derive(Clone, Copy, ValueEnum)]
pub enum ProtocolArg {
    /// Leaderless BeauFort (the real core).
    Beaufort,
    /// PBFT with MACs and view change.
    Pbft,
    /// Tendermint-style gossip consensus.
    Tendermint,
}

/// The scenario on the command line.
#[derive(Clone, Copy, ValueEnum)]
pub enum ScenarioArg {
    /// No faults.
    Optimistic,
    /// 25 % of the members crash, one every 5 s.
    Crash25,
    /// One Byzantine member: invalid signatures, then withholding.
    Byzantine,
    /// Two halves cut apart for 5 s.
    Partition,
}

/// How handlers are charged on the command line.
#[derive(Clone, Copy, ValueEnum)]
pub enum CostArg {
    /// Cost table calibrated on this host at start-up (deterministic for the table).
    Modelled,
    /// The documented reference table (host-independent).
    Reference,
    /// Time the real handlers with real BLS (small runs; not deterministic).
    Measured,
}

/// Output format.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Format {
    /// Human-readable.
    Text,
    /// One JSON object.
    Json,
}

/// Arguments of `beaufort sim run`.
#[derive(Args)]
pub struct PerfArgs {
    /// Protocol to simulate.
    #[arg(long, value_enum, default_value = "beaufort")]
    protocol: ProtocolArg,
    /// Number of members.
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// Mean one-way link latency (e.g. 60ms, 0.1s).
    #[arg(long, default_value = "60ms", value_parser = parse_duration)]
    latency: Micros,
    /// Latency jitter (uniform ±).
    #[arg(long, default_value = "10ms", value_parser = parse_duration)]
    jitter: Micros,
    /// Transactions per second per member.
    #[arg(long, default_value_t = 1.0)]
    rate: f64,
    /// Length of the workload (e.g. 60s).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    duration: Micros,
    /// Fault scenario.
    #[arg(long, value_enum, default_value = "optimistic")]
    scenario: ScenarioArg,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Per-member upload and download capacity, Mbit/s.
    #[arg(long, default_value_t = 20.0)]
    bandwidth: f64,
    /// Message loss probability.
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Members writing the same key at once (1 = no contention).
    #[arg(long, default_value_t = 1)]
    contention: usize,
    /// Overlay neighbours per member.
    #[arg(long, default_value_t = 7)]
    degree: usize,
    /// BeauFort's delta flush interval (batching of gossip).
    #[arg(long, default_value = "5ms", value_parser = parse_duration)]
    flush: Micros,
    /// BeauFort's relay trees: how many neighbours forward each member's votes to each member
    /// (0 floods every vote to every neighbour).
    #[arg(long, default_value_t = 1)]
    relay_parents: usize,
    /// BeauFort's grace period before votes the relay trees held back go to the other
    /// neighbours (repairs trees cut by crashes); the wait is one to two periods.
    #[arg(long, default_value = "300ms", value_parser = parse_duration)]
    relay_retry: Micros,
    /// BeauFort's votes travel combined into pieces on one tree per key, each member waiting
    /// up to this long for its other tree links (docs/AGGREGATION.md §3.6); by default they
    /// travel as single shares on the relay trees.
    #[arg(long, value_parser = parse_duration)]
    aggregate_wait: Option<Micros>,
    /// Model every member on one shared host with this many cores, as `beaufort demo` runs
    /// them (by default each member has its own CPU, as in a deployment).
    #[arg(long)]
    host_cores: Option<usize>,
    /// CPU cost mode.
    #[arg(long, value_enum, default_value = "modelled")]
    cost: CostArg,
    /// Charge the costs of this table (written by `beaufort sim calibrate`) instead of
    /// calibrating at start-up: the same table gives the same figures on any host.
    #[arg(long, conflicts_with = "cost")]
    cost_table: Option<PathBuf>,
    /// Measured mode: how much slower the simulated device is than this host.
    #[arg(long, default_value_t = 1.0)]
    device_factor: f64,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

/// Parses a duration into microseconds: humantime like every other command ("1m", "2m 30s",
/// "60ms"), plus what this command always took: fractions ("1.5s") and a bare number of
/// milliseconds.
pub fn parse_duration(text: &str) -> Result<Micros, String> {
    let text = text.trim();
    if let Ok(duration) = humantime::parse_duration(text) {
        return Micros::try_from(duration.as_micros())
            .ok()
            .filter(|&us| us < 10_000_000_000_000)
            .ok_or_else(|| format!("duration out of range: {text}"));
    }
    let (number, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(at) => text.split_at(at),
        None => (text, "ms"),
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("not a duration: {text}"))?;
    let scale = match unit {
        "us" | "µs" => 1.0,
        "ms" => 1e3,
        "s" => 1e6,
        _ => {
            return Err(format!(
                "not a duration: {text} (e.g. 500us, 60ms, 1.5s, 1m or 2m 30s)"
            ))
        }
    };
    if !(0.0..1e13).contains(&(value * scale)) {
        return Err(format!("duration out of range: {text}"));
    }
    Ok((value * scale) as Micros)
}

/// Reads a cost table written by `beaufort sim calibrate`.
pub fn load_cost_table(path: &std::path::Path) -> Result<CostTable> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the cost table {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a cost table", path.display()))
}

/// Arguments of `beaufort sim calibrate`.
#[derive(Args)]
pub struct CalibrateArgs {
    /// Write the table here instead of printing it.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Write the documented reference table (docs/EVALUATION.md §3–4) instead of timing this
    /// host.
    #[arg(long)]
    reference: bool,
}

/// `beaufort sim calibrate`: times the signature operations on this host (the fastest of many
/// timings, which a busy host disturbs least) and writes the table for `--cost-table`.
pub fn calibrate(args: CalibrateArgs) -> Result<()> {
    let table = if args.reference {
        CostTable::reference()
    } else {
        CostTable::calibrate()
    };
    let json = serde_json::to_string_pretty(&table)? + "\n";
    match &args.out {
        Some(path) => {
            std::fs::write(path, &json).with_context(|| format!("writing {}", path.display()))?;
            eprintln!(
                "cost table {} written to {}",
                table.fingerprint(),
                path.display()
            );
        }
        None => print!("{json}"),
    }
    Ok(())
}

/// Resolves the cost mode, calibrating on this host when asked.
pub fn cost_mode(cost: CostArg, device_factor: f64) -> CostMode {
    match cost {
        CostArg::Modelled => CostMode::Modelled(CostTable::calibrate()),
        CostArg::Reference => CostMode::Modelled(CostTable::reference()),
        CostArg::Measured => CostMode::Measured { device_factor },
    }
}

impl PerfArgs {
    fn config(&self) -> Result<PerfConfig> {
        if self.bandwidth <= 0.0 || self.rate <= 0.0 || self.device_factor <= 0.0 {
            bail!("--bandwidth, --rate and --device-factor must be positive");
        }
        let protocol = match self.protocol {
            ProtocolArg::Beaufort => Protocol::Beaufort,
            ProtocolArg::Pbft => Protocol::Pbft,
            ProtocolArg::Tendermint => Protocol::Tendermint,
        };
        let mut cfg = PerfConfig::new(protocol, self.nodes, self.seed);
        cfg.latency = self.latency;
        cfg.jitter = self.jitter;
        cfg.rate = self.rate;
        cfg.duration = self.duration.max(MS);
        cfg.scenario = match self.scenario {
            ScenarioArg::Optimistic => Scenario::Optimistic,
            ScenarioArg::Crash25 => Scenario::Crash25,
            ScenarioArg::Byzantine => Scenario::Byzantine,
            ScenarioArg::Partition => Scenario::Partition,
        };
        cfg.upload_mbit = self.bandwidth;
        cfg.download_mbit = self.bandwidth;
        cfg.loss = self.loss;
        cfg.contention = self.contention;
        cfg.degree = self.degree;
        cfg.flush_every = self.flush.max(1);
        cfg.relay_parents = self.relay_parents;
        cfg.relay_retry = self.relay_retry.max(MS);
        cfg.aggregate_wait = self.aggregate_wait;
        cfg.host_cores = self.host_cores.filter(|&cores| cores > 0);
        cfg.cost = match &self.cost_table {
            Some(path) => CostMode::Modelled(load_cost_table(path)?),
            None => cost_mode(self.cost, self.device_factor),
        };
        Ok(cfg)
    }
}

/// Runs one configuration with a progress bar over virtual time (on stderr).
pub fn run_with_progress(cfg: &PerfConfig, label: &str) -> Result<PerfReport> {
    let bar = ProgressBar::new(cfg.duration / 1_000_000);
    bar.set_style(
        ProgressStyle::with_template("{prefix} {elapsed_precise} [{bar:30}] {pos}/{len} s virtual")
            .context("progress bar template")?
            .progress_chars("=> "),
    );
    bar.set_prefix(label.to_owned());
    let progress = |now: Micros| bar.set_position(now / 1_000_000);
    let report = perf::run(cfg, Some(&progress))?;
    bar.finish_and_clear();
    Ok(report)
}

/// `beaufort sim run`.
pub fn run(args: PerfArgs) -> Result<()> {
    let cfg = args.config()?;
    let report = run_with_progress(&cfg, cfg.protocol.name())?;
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Text => print_text(&report),
    }
    Ok(())
}

/// Arguments of `beaufort sim paper`.
#[derive(Args)]
pub struct PaperArgs {
    /// Directory for results.csv and the figures (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Member counts, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10,20,40")]
    sizes: Vec<usize>,
    /// Length of each run's workload.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    duration: Micros,
    /// Length of BeauFort's workloads, if different: its runs past 40 members saturate the
    /// access links and take minutes of wall time per simulated second (docs/EVALUATION.md §6).
    #[arg(long, value_parser = parse_duration)]
    beaufort_duration: Option<Micros>,
    #[command(flatten)]
    series: SeriesArgs,
}

/// The seed and cost model shared by every run of a series (`sim paper`, `sim knob`).
#[derive(Args)]
pub struct SeriesArgs {
    /// Seed of every run.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// CPU cost mode (`measured` is refused: a series should be reproducible).
    #[arg(long, value_enum, default_value = "modelled")]
    cost: CostArg,
    /// Charge the costs of this table (from `beaufort sim calibrate`) instead.
    #[arg(long, conflicts_with = "cost")]
    cost_table: Option<PathBuf>,
}

impl SeriesArgs {
    /// The cost model every run of the series charges.
    pub fn cost_mode(&self) -> Result<CostMode> {
        if matches!(self.cost, CostArg::Measured) {
            bail!("--cost measured is not deterministic; use modelled or reference");
        }
        Ok(match &self.cost_table {
            Some(path) => CostMode::Modelled(load_cost_table(path)?),
            None => cost_mode(self.cost, 1.0),
        })
    }
}

/// The runs of the matrix: every protocol in optimistic and crash25, BeauFort also Byzantine
/// (the paper did not test the baselines with a Byzantine member).
pub fn matrix(
    sizes: &[usize],
    duration: Micros,
    beaufort_duration: Micros,
    seed: u64,
    cost: CostMode,
) -> Vec<PerfConfig> {
    let mut runs = Vec::new();
    for &n in sizes {
        for protocol in Protocol::ALL {
            for scenario in [Scenario::Optimistic, Scenario::Crash25, Scenario::Byzantine] {
                if scenario == Scenario::Byzantine && protocol != Protocol::Beaufort {
                    continue;
                }
                let mut cfg = PerfConfig::new(protocol, n, seed);
                let length = match protocol {
                    Protocol::Beaufort => beaufort_duration,
                    _ => duration,
                };
                cfg.duration = length.max(MS);
                cfg.scenario = scenario;
                cfg.cost = cost;
                runs.push(cfg);
            }
        }
    }
    runs
}

/// Runs `runs` and writes results.csv, fig5_latency.svg, fig6_bandwidth.svg and
/// fig7_failures.svg into `out`; returns the reports.
pub fn write_matrix(runs: &[PerfConfig], out: &Path) -> Result<Vec<PerfReport>> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut reports = Vec::new();
    for (i, cfg) in runs.iter().enumerate() {
        let label = format!(
            "[{}/{}] {} n={} {}",
            i + 1,
            runs.len(),
            cfg.protocol.name(),
            cfg.members,
            cfg.scenario.name()
        );
        let report = run_with_progress(cfg, &label)?;
        eprintln!(
            "{label}: p50 {:.0} p99 {:.0} max {:.0} ms, {:.2} Mbit/s, {}/{} decided, {:.1} s wall",
            report.latency_ms.p50,
            report.latency_ms.p99,
            report.latency_ms.max,
            report.bandwidth_mbit_per_node.mean,
            report.decided,
            report.submitted,
            report.wall_s
        );
        reports.push(report);
    }
    let files = [
        ("results.csv", paper::csv(&reports)),
        ("fig5_latency.svg", paper::latency_figure(&reports)),
        ("fig6_bandwidth.svg", paper::bandwidth_figure(&reports)),
        ("fig7_failures.svg", paper::failures_figure(&reports)),
    ];
    for (name, text) in files {
        let path = out.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(reports)
}

/// `beaufort sim paper`.
pub fn paper(args: PaperArgs) -> Result<()> {
    if args.sizes.is_empty() {
        bail!("--sizes needs at least one member count");
    }
    let cost = args.series.cost_mode()?;
    let beaufort_duration = args.beaufort_duration.unwrap_or(args.duration);
    let runs = matrix(
        &args.sizes,
        args.duration,
        beaufort_duration,
        args.series.seed,
        cost,
    );
    let reports = write_matrix(&runs, &args.out)?;
    print!("{}", paper::csv(&reports));
    println!("wrote {}", args.out.display());
    Ok(())
}

fn print_text(r: &PerfReport) {
    let l = &r.latency_ms;
    let a = &r.latency_all_ms;
    let b = &r.breakdown_ms;
    println!(
        "{} n={} {} rate {}/s for {} s, seed {}: decided {}/{}",
        r.protocol.name(),
        r.nodes,
        r.scenario.name(),
        r.rate,
        r.duration_s,
        r.seed,
        r.decided,
        r.submitted
    );
    println!(
        "  latency at submitter (ms): p50 {:.0}  p90 {:.0}  p99 {:.0}  max {:.0}",
        l.p50, l.p90, l.p99, l.max
    );
    println!(
        "  latency at all honest (ms): p50 {:.0}  p90 {:.0}  p99 {:.0}  max {:.0}",
        a.p50, a.p90, a.p99, a.max
    );
    println!(
        "  bandwidth per member (Mbit/s, up+down): mean {:.2} max {:.2}; upload mean {:.2}",
        r.bandwidth_mbit_per_node.mean, r.bandwidth_mbit_per_node.max, r.upload_mbit_per_node.mean
    );
    println!(
        "  received per committed transaction per member: {:.0} B = {:.1} x the floor of {:.0} B",
        r.bytes_per_tx.received_per_tx, r.bytes_per_tx.floor_multiple, r.bytes_per_tx.floor
    );
    println!(
        "  CPU busy: mean {:.1} % max {:.1} %",
        r.cpu_utilisation.mean * 100.0,
        r.cpu_utilisation.max * 100.0
    );
    println!(
        "  critical path (mean ms): propagation {:.0}, links {:.0}, CPU wait {:.0}, CPU {:.0}, timers {:.0}",
        b.propagation, b.link, b.cpu_wait, b.cpu, b.timer
    );
    println!(
        "  {} messages, {} events, {:.1} s virtual, {:.1} s wall",
        r.messages, r.events, r.virtual_s, r.wall_s
    );
    match &r.cost_table_fingerprint {
        Some(fingerprint) => println!("  cost table {fingerprint}"),
        None => println!("  costs timed on this host (measured)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_humantime_as_every_other_command_does() {
        assert_eq!(parse_duration("1m"), Ok(60_000_000));
        assert_eq!(parse_duration("2m 30s"), Ok(150_000_000));
        assert_eq!(parse_duration("60ms"), Ok(60_000));
        assert_eq!(parse_duration("500us"), Ok(500));
        assert_eq!(parse_duration("1.5s"), Ok(1_500_000));
        assert_eq!(parse_duration("250"), Ok(250_000));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn a_tiny_matrix_writes_csv_and_svg() {
        let dir = tempfile::tempdir().expect("temp dir");
        let runs = matrix(
            &[4],
            2 * beaufort_sim::config::SECOND,
            beaufort_sim::config::SECOND,
            1,
            CostMode::Modelled(CostTable::reference()),
        );
        assert_eq!(
            runs.len(),
            7,
            "3 protocols × 2 scenarios + BeauFort Byzantine"
        );
        for run in &runs {
            let expected = match run.protocol {
                Protocol::Beaufort => beaufort_sim::config::SECOND,
                _ => 2 * beaufort_sim::config::SECOND,
            };
            assert_eq!(run.duration, expected, "{:?}", run.protocol);
        }
        write_matrix(&runs, dir.path()).expect("matrix");
        let csv = std::fs::read_to_string(dir.path().join("results.csv")).expect("csv");
        let mut lines = csv.lines();
        assert_eq!(lines.next(), Some(paper::CSV_HEADER));
        let columns = paper::CSV_HEADER.split(',').count();
        let rows: Vec<&str> = lines.collect();
        assert_eq!(rows.len(), runs.len());
        for row in rows {
            assert_eq!(row.split(',').count(), columns, "{row}");
        }
        for name in [
            "fig5_latency.svg",
            "fig6_bandwidth.svg",
            "fig7_failures.svg",
        ] {
            let svg = std::fs::read_to_string(dir.path().join(name)).expect("svg");
            assert!(svg.starts_with("<svg"), "{name}");
            assert!(svg.trim_end().ends_with("</svg>"), "{name}");
            for protocol in Protocol::ALL {
                assert!(svg.contains(protocol.name()), "{name} names {protocol:?}");
            }
        }
    }
}
