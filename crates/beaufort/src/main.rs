//! The `beaufort` command-line tool: `init` and `keygen` make a consortium's keys and
//! configurations, `node` runs a member, `get/put/delete/watch` talk to its API, `verify` checks
//! a receipt offline, `demo` runs a consortium in one process, and `sim` drives the
//! deterministic simulator (`check`, `replay`, `run`, `paper`, `model-check`).

mod backup_cmd;
mod client;
mod demo;
mod doctor;
mod eval;
mod keygen;
mod knob_cmd;
mod model_check;
mod node_cmd;
mod soak;
mod workload;

use anyhow::{bail, Context, Result};
use beaufort_sim::config::Transport;
use beaufort_sim::replay;
use beaufort_sim::scenario::{self, AdversaryMode, Summary};
use beaufort_sim::sim::RunReport;
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Beaufort: a leaderless BFT replicated key-value store.
#[derive(Parser)]
#[command(name = "beaufort", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The deterministic network simulator.
    #[command(subcommand)]
    Sim(SimCommand),
    /// Generates a member's BLS key: writes the secret to a file, prints the public key and its
    /// proof of possession; with --p2p-out also its libp2p identity and whole member entry.
    Keygen(keygen::KeygenArgs),
    /// Writes the `[network]` table of a consortium across hosts from every party's member entry
    /// (`keygen --p2p-out`).
    Assemble(keygen::AssembleArgs),
    /// Creates a local consortium: every member's keys and one configuration file per member.
    Init(node_cmd::InitArgs),
    /// Runs one member: durable store, libp2p network and HTTP API.
    Node(node_cmd::NodeArgs),
    /// Runs a discovery server (libp2p rendezvous) where members find each other's addresses.
    Discovery(node_cmd::DiscoveryArgs),
    /// Runs N members in one process over real libp2p and a loyalty-style workload, and prints
    /// commit-latency percentiles and throughput.
    Demo(demo::DemoArgs),
    /// Checks a value's certificate offline against the network configuration.
    Verify(client::VerifyArgs),
    /// Downloads a consistent backup of a running member's store (operator token).
    Backup(backup_cmd::BackupArgs),
    /// Asks every member named in the network file how it is, compares what they hold, and
    /// names the member that needs its operator (exit status 1 if any).
    Doctor(doctor::DoctorArgs),
    /// Rebuilds a stopped member's store from a backup; it then sits out every view it may have
    /// voted in since, so it never votes twice.
    Restore(backup_cmd::RestoreArgs),
    /// A load and crash soak on loopback: starts a consortium of member processes, writes at
    /// a fixed rate while killing (SIGKILL) and restarting one member at a time, then checks
    /// that every member holds every acknowledged write (exit status 1 if one was lost or any
    /// answer was a 5xx).
    Soak(soak::SoakArgs),
    /// Talks to a node's HTTP API.
    #[command(flatten)]
    Client(client::ClientCommand),
}

#[derive(Subcommand)]
enum SimCommand {
    /// Runs seeded adversarial scenarios and checks agreement, validity, integrity and liveness.
    Check(CheckArgs),
    /// Runs one seeded adversarial scenario and prints its report and every honest member's
    /// final state (a debugging trace).
    Trace(RunArgs),
    /// Measures latency and bandwidth of BeauFort, PBFT or Tendermint under one network and CPU
    /// cost model.
    Run(eval::PerfArgs),
    /// Runs the paper's matrix (protocols × sizes × scenarios) and writes CSV and SVG box plots.
    Paper(eval::PaperArgs),
    /// Runs the latency/bandwidth trade-off of how votes travel (single votes, then pieces at
    /// each aggregation wait) for each size and writes knob.csv and knob.svg.
    Knob(knob_cmd::KnobArgs),
    /// Time this host's signature operations and write the cost table `sim run --cost-table`
    /// and `sim paper --cost-table` charge, so figures do not depend on how busy the host was.
    Calibrate(eval::CalibrateArgs),
    /// Runs a scripted schedule from a JSON replay file and checks the invariants.
    Replay {
        /// The replay file.
        file: PathBuf,
    },
    /// Exhaustively explores the register's schedules (n = 4, one Byzantine member) up to a depth.
    ModelCheck(model_check::ModelCheckArgs),
}

#[derive(Args)]
struct RunArgs {
    /// Number of members.
    #[arg(long, default_value_t = 4)]
    nodes: usize,
    /// The seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Byzantine behaviour (as for `check`).
    #[arg(long, default_value = "all")]
    adversary: AdversaryMode,
    /// Link model (as for `check`).
    #[arg(long, default_value = "stream")]
    transport: TransportArg,
    /// Votes travel as pieces on one tree per key (as for `check`).
    #[arg(long, value_parser = humantime::parse_duration)]
    aggregate_wait: Option<std::time::Duration>,
    /// Also write the run's schedule as a replay file.
    #[arg(long)]
    record: Option<PathBuf>,
}

#[derive(Args)]
struct CheckArgs {
    /// Member counts to simulate, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "4,7,10")]
    nodes: Vec<usize>,
    /// Seeds per member count.
    #[arg(long, default_value_t = 100)]
    seeds: u64,
    /// First seed.
    #[arg(long, default_value_t = 0)]
    seed_start: u64,
    /// Byzantine behaviour: none, all, equivocate, invalid-signatures, hook-violation,
    /// unjustified-rounds, withhold, replay-stale, flood-bodies, drive-rounds, split-round-zero,
    /// withhold-reveal, junk-keys or pieces.
    #[arg(long, default_value = "all")]
    adversary: AdversaryMode,
    /// Link model: stream (FIFO links, a loss breaks the connection, as with libp2p) or
    /// datagram (independent losses, reordering on one link).
    #[arg(long, default_value = "stream")]
    transport: TransportArg,
    /// Votes travel combined into pieces on one tree per key, each member waiting up to this
    /// long for its other tree links (docs/AGGREGATION.md §3.6); by default they travel as
    /// single shares.
    #[arg(long, value_parser = humantime::parse_duration)]
    aggregate_wait: Option<std::time::Duration>,
    /// Worker threads (default: available cores).
    #[arg(long)]
    jobs: Option<usize>,
    /// Where to write the replay file of a failing seed.
    #[arg(long, default_value = ".")]
    replay_dir: PathBuf,
}

/// The link model on the command line.
#[derive(Clone, Copy, clap::ValueEnum)]
enum TransportArg {
    /// FIFO links; a lost message breaks the connection.
    Stream,
    /// Independent datagrams, reordered even on one link.
    Datagram,
}

/// The scenario of `beaufort sim check` for one member count and seed, with the chosen link model.
fn scenario_config(
    nodes: usize,
    seed: u64,
    adversary: AdversaryMode,
    transport: TransportArg,
    aggregate_wait: Option<std::time::Duration>,
) -> beaufort_sim::SimConfig {
    let mut cfg = scenario::check_config(nodes, seed, adversary);
    cfg.cadence.aggregate_wait =
        aggregate_wait.map(|wait| u64::try_from(wait.as_millis()).unwrap_or(u64::MAX));
    cfg.network.transport = match transport {
        TransportArg::Stream => Transport::Stream,
        TransportArg::Datagram => Transport::Datagram,
    };
    cfg
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Sim(SimCommand::Check(args)) => check(args),
        Command::Sim(SimCommand::Trace(args)) => run_one(args),
        Command::Sim(SimCommand::Run(args)) => eval::run(args).map(|()| ExitCode::SUCCESS),
        Command::Sim(SimCommand::Paper(args)) => eval::paper(args).map(|()| ExitCode::SUCCESS),
        Command::Sim(SimCommand::Knob(args)) => knob_cmd::knob(args).map(|()| ExitCode::SUCCESS),
        Command::Sim(SimCommand::Calibrate(args)) => {
            eval::calibrate(args).map(|()| ExitCode::SUCCESS)
        }
        Command::Sim(SimCommand::Replay { file }) => replay_file(file),
        Command::Sim(SimCommand::ModelCheck(args)) => model_check::model_check(args),
        Command::Keygen(args) => keygen::keygen(args).map(|()| ExitCode::SUCCESS),
        Command::Assemble(args) => keygen::assemble(args).map(|()| ExitCode::SUCCESS),
        Command::Init(args) => node_cmd::init(args).map(|()| ExitCode::SUCCESS),
        Command::Node(args) => node_cmd::node(args).map(|()| ExitCode::SUCCESS),
        Command::Discovery(args) => node_cmd::discovery(args).map(|()| ExitCode::SUCCESS),
        Command::Demo(args) => demo::demo(args).map(|()| ExitCode::SUCCESS),
        Command::Soak(args) => soak::soak(args),
        Command::Verify(args) => client::verify(args).map(|()| ExitCode::SUCCESS),
        Command::Backup(args) => backup_cmd::backup(args).map(|()| ExitCode::SUCCESS),
        Command::Doctor(args) => doctor::doctor(args),
        Command::Restore(args) => backup_cmd::restore(args).map(|()| ExitCode::SUCCESS),
        Command::Client(command) => client::run(command).map(|()| ExitCode::SUCCESS),
    }
}

fn check(args: CheckArgs) -> Result<ExitCode> {
    if args.nodes.is_empty() || args.nodes.iter().any(|&n| !(1..=1024).contains(&n)) {
        bail!("--nodes must list member counts between 1 and 1024");
    }
    let jobs: Vec<(usize, u64)> = args
        .nodes
        .iter()
        .flat_map(|&n| (0..args.seeds).map(move |i| (n, args.seed_start + i)))
        .collect();
    let threads = args
        .jobs
        .or_else(|| std::thread::available_parallelism().ok().map(|p| p.get()))
        .unwrap_or(1)
        .max(1);
    let started = Instant::now();
    let bar = ProgressBar::new(jobs.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} runs ({eta})")
            .context("progress bar template")?
            .progress_chars("=> "),
    );
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<RunReport, String>>>> = Mutex::new(vec![None; jobs.len()]);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&(n, seed)) = jobs.get(i) else {
                    break;
                };
                let cfg =
                    scenario_config(n, seed, args.adversary, args.transport, args.aggregate_wait);
                let report = beaufort_sim::Simulation::new(cfg)
                    .map(beaufort_sim::Simulation::run)
                    .map_err(|e| e.to_string());
                if let Ok(mut results) = results.lock() {
                    results[i] = Some(report);
                }
                bar.inc(1);
            });
        }
    });
    bar.finish_and_clear();
    let results = results
        .into_inner()
        .map_err(|_| anyhow::anyhow!("a worker thread panicked"))?;

    let mut summary = Summary::default();
    for (result, &(n, seed)) in results.into_iter().zip(&jobs) {
        match result {
            Some(Ok(report)) => summary.add(&report),
            Some(Err(error)) => bail!("n={n} seed={seed}: {error}"),
            None => bail!("n={n} seed={seed}: run did not complete"),
        }
    }
    print_summary(&args, &summary, started.elapsed().as_secs_f64());

    let verdict = format!(
        "violations: {} stalled keys: {} faults against honest: {} decided: {}",
        summary.violations.len(),
        summary.stalled_keys,
        summary.stats.faults_against_honest,
        summary.decided
    );
    if summary.violations.is_empty() && summary.stats.faults_against_honest == 0 {
        println!("{verdict}");
        return Ok(ExitCode::SUCCESS);
    }
    let mut failing: Vec<(usize, u64)> = summary
        .violations
        .iter()
        .map(|(n, s, _)| (*n, *s))
        .collect();
    failing.dedup();
    for (n, seed, violation) in &summary.violations {
        println!("VIOLATION n={n} seed={seed}: {violation}");
    }
    for (n, seed) in failing.iter().take(5) {
        let (_, script) = scenario::record(scenario_config(
            *n,
            *seed,
            args.adversary,
            args.transport,
            args.aggregate_wait,
        ))?;
        let path = args
            .replay_dir
            .join(format!("replay-n{n}-seed{seed}-{}.json", args.adversary));
        replay::save(&script, &path)?;
        let pieces = args
            .aggregate_wait
            .map(|wait| format!(" --aggregate-wait {}", humantime::format_duration(wait)))
            .unwrap_or_default();
        println!(
            "reproduce: beaufort sim check --nodes {n} --seeds 1 --seed-start {seed} --adversary {} \
             --transport {}{pieces} (replay written to {})",
            args.adversary,
            match args.transport {
                TransportArg::Stream => "stream",
                TransportArg::Datagram => "datagram",
            },
            path.display()
        );
    }
    println!("{verdict}");
    Ok(ExitCode::FAILURE)
}

fn print_summary(args: &CheckArgs, s: &Summary, wall: f64) {
    let nodes: Vec<String> = args.nodes.iter().map(|n| n.to_string()).collect();
    println!(
        "sim check: nodes {} x {} seeds (from {}), adversary {}: {} runs in {wall:.1} s wall, \
         {:.0} s virtual",
        nodes.join(","),
        args.seeds,
        args.seed_start,
        args.adversary,
        s.runs,
        s.virtual_time as f64 / 1e6
    );
    let strategies: Vec<String> = s
        .strategies
        .iter()
        .map(|(strategy, runs)| format!("{strategy} {runs}"))
        .collect();
    if !strategies.is_empty() {
        println!("  strategies used (runs):       {}", strategies.join(", "));
    }
    let a = &s.adversary;
    println!(
        "  adversary actions:            {} equivocating votes, {} corrupted signatures, \
         {} forged votes/proofs, {} hook-violating votes, {} unjustified votes, \
         {} stale replays, {} withheld messages, {} junk votes/bodies, {} splitting votes, \
         {} votes revealed late, {} junk-key/far-view updates, {} pieces ({} bad), \
         {} strategy switches",
        a.equivocating_votes,
        a.corrupted_signatures,
        a.forged_votes,
        a.hook_violations,
        a.unjustified_votes,
        a.stale_replays,
        a.withheld_messages,
        a.flooded,
        a.splitting_votes,
        a.revealed_late,
        a.junk_updates,
        a.pieces,
        a.bad_pieces,
        a.switches
    );
    let t = &s.stats;
    println!(
        "  equivocations detected:       {} (evidence produced)",
        t.evidence_produced
    );
    println!(
        "  invalid signatures caught:    {}",
        t.invalid_signatures_caught
    );
    println!("  members excluded:             {}", t.members_excluded);
    println!(
        "  faults reported:              {} ({} against honest members), links dropped: {}, \
         links re-wired: {}",
        t.faults_reported, t.faults_against_honest, t.links_dropped, t.rewires
    );
    println!("  crash-restarts:               {}", t.crash_restarts);
    println!(
        "  messages:                     {} sent, {} delivered, {} lost; {} bytes sent; \
         {} wire errors",
        t.messages_sent, t.messages_delivered, t.messages_lost, s.bytes_sent, t.wire_errors
    );
    println!(
        "  proposals:                    {} made, {} dropped by the core",
        t.proposals, t.dropped_proposals
    );
    println!("  events:                       {}", t.events);
    for (n, seed, fault) in s.honest_faults.iter().take(5) {
        println!("  honest member blamed (n={n} seed={seed}): {fault}");
    }
}

fn run_one(args: RunArgs) -> Result<ExitCode> {
    let cfg = scenario_config(
        args.nodes,
        args.seed,
        args.adversary,
        args.transport,
        args.aggregate_wait,
    );
    println!("byzantine: {:?}", cfg.byzantine);
    for (at, fault) in &cfg.faults {
        println!("  t={:>8} µs fault {fault:?}", at);
    }
    let mut sim = beaufort_sim::Simulation::new(cfg)?;
    if args.record.is_some() {
        sim.record();
    }
    sim.run_to_end();
    let report = sim.report();
    for node in sim.nodes() {
        let Some(replica) = node.replica() else {
            println!("member {} is down", node.index());
            continue;
        };
        println!(
            "member {} (peers {:?}):",
            node.index(),
            replica.peers().collect::<Vec<_>>()
        );
        for (key, state) in replica.states() {
            println!(
                "  {key}: view {} accepted {:?}",
                state.view,
                state.current_value()
            );
            for (round, ballots) in &state.precommits {
                println!("    precommit r{round}: {ballots:?}");
            }
            for (round, ballots) in &state.commits {
                println!("    commit r{round}: {ballots:?}");
            }
        }
    }
    println!("stats: {:?}", report.stats);
    println!("adversary: {:?}", report.adversary);
    println!("event hash: {}", report.event_hash.to_hex());
    for fault in &report.honest_faults {
        println!("honest member blamed: {fault}");
    }
    for v in &report.violations {
        println!("VIOLATION {v}");
    }
    if let (Some(path), Some(script)) = (&args.record, sim.script()) {
        replay::save(&script, path)?;
        println!("replay written to {}", path.display());
    }
    println!(
        "violations: {} decided: {}",
        report.violations.len(),
        report.decided_instances
    );
    Ok(if report.violations.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn replay_file(file: PathBuf) -> Result<ExitCode> {
    let script = replay::load(&file)?;
    let outcome = replay::run(&script).with_context(|| format!("replaying {}", file.display()))?;
    if let Some(description) = &script.description {
        println!("{description}");
    }
    for member in &outcome.honest {
        println!("member {member}:");
        for d in outcome.decisions.iter().filter(|d| d.member == *member) {
            println!(
                "  step {:>4}: decided {} view {} = {:?} (round {}{})",
                d.at,
                d.key,
                d.view,
                d.value,
                d.round,
                if d.mine { ", own proposal" } else { "" }
            );
        }
    }
    for v in &outcome.violations {
        println!("VIOLATION {v}");
    }
    for (at, fault) in &outcome.honest_faults {
        println!(
            "HONEST FAULT step {at}: member {} blamed: {}",
            fault.peer, fault.reason
        );
    }
    println!(
        "violations: {} honest faults: {} decided: {}",
        outcome.violations.len(),
        outcome.honest_faults.len(),
        outcome
            .decisions
            .iter()
            .map(|d| (&d.key, d.view))
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    );
    Ok(
        if outcome.violations.is_empty() && outcome.honest_faults.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        },
    )
}
