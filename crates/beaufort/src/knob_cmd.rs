//! `beaufort sim knob`: the trade-off curve of how votes travel (docs/AGGREGATION.md §3.8). For
//! each size, a run with single votes and one per aggregation wait, written as knob.csv and
//! knob.svg (p99 latency against Mbit/s per member).

use crate::eval::{parse_duration, run_with_progress, SeriesArgs};
use anyhow::{bail, Context, Result};
use beaufort_perf::knob::{self, Votes};
use beaufort_perf::{PerfConfig, Protocol};
use beaufort_sim::config::{Micros, MS};
use clap::Args;
use std::path::PathBuf;

/// Arguments of `beaufort sim knob`.
#[derive(Args)]
pub struct KnobArgs {
    /// Directory for knob.csv and knob.svg (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Member counts, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "20,100")]
    sizes: Vec<usize>,
    /// How votes travel at each point, comma-separated: `single`, or a wait (e.g. `300ms`) for
    /// pieces on the key's tree.
    #[arg(long, value_delimiter = ',', default_value = "single,0ms,100ms,300ms,600ms",
          value_parser = parse_votes)]
    votes: Vec<Votes>,
    /// Transactions per second per member.
    #[arg(long, default_value_t = 1.0)]
    rate: f64,
    /// Length of each run's workload.
    #[arg(long, default_value = "6s", value_parser = parse_duration)]
    duration: Micros,
    #[command(flatten)]
    series: SeriesArgs,
}

fn parse_votes(text: &str) -> Result<Votes, String> {
    match text.trim() {
        "single" => Ok(Votes::Single),
        wait => parse_duration(wait).map(Votes::Pieces),
    }
}

/// `beaufort sim knob`.
pub fn knob(args: KnobArgs) -> Result<()> {
    if args.sizes.is_empty() || args.votes.is_empty() {
        bail!("--sizes and --votes need at least one entry each");
    }
    if args.rate <= 0.0 {
        bail!("--rate must be positive");
    }
    let cost = args.series.cost_mode()?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let total = args.sizes.len() * args.votes.len();
    let mut points = Vec::new();
    for &n in &args.sizes {
        for &votes in &args.votes {
            let mut cfg = PerfConfig::new(Protocol::Beaufort, n, args.series.seed);
            cfg.rate = args.rate;
            cfg.duration = args.duration.max(MS);
            cfg.aggregate_wait = votes.aggregate_wait();
            cfg.cost = cost;
            let label = format!("[{}/{total}] n={n} {}", points.len() + 1, votes.label());
            let report = run_with_progress(&cfg, &label)?;
            eprintln!(
                "{label}: p50 {:.0} p99 {:.0} ms, {:.2} Mbit/s, {:.1}x the floor, {}/{} decided, \
                 {:.1} s wall",
                report.latency_ms.p50,
                report.latency_ms.p99,
                report.bandwidth_mbit_per_node.mean,
                report.bytes_per_tx.floor_multiple,
                report.decided,
                report.submitted,
                report.wall_s
            );
            points.push((votes, report));
        }
    }
    let table = knob::csv(&points);
    for (name, text) in [
        ("knob.csv", table.clone()),
        ("knob.svg", knob::figure(&points)),
    ] {
        let path = args.out.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    print!("{table}");
    println!("wrote {}", args.out.display());
    Ok(())
}
