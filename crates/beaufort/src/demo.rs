//! `beaufort demo`: N members in one process over real libp2p on loopback, with real redb stores
//! in a temporary directory and each member's HTTP API and web app. It runs a workload (shops
//! updating customers' balances, or lending tools under the eShare contract), prints commit
//! latencies, and with `--serve` keeps the consortium up for people to use the web app.

use crate::workload::{install_script, Workload, WorkloadKind};
use anyhow::{bail, Context, Result};
use beaufort_core::types::{Key, Value};
use beaufort_node::config::{init_local, InitOptions};
use beaufort_node::{api, NodeHandle, StartOptions};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// Arguments of `beaufort demo`.
#[derive(Args)]
pub struct DemoArgs {
    /// Number of members.
    #[arg(long, default_value_t = 7)]
    nodes: usize,
    /// How long the workload runs.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Test-only delay added to every message between members (e.g. 60ms).
    #[arg(long, default_value = "0ms", value_parser = humantime::parse_duration)]
    latency: Duration,
    /// Transactions per second submitted at each member. Open loop, as in the paper's
    /// evaluation (1 per second per member): a closed loop of waiting clients would measure the
    /// queue it builds, not the protocol.
    #[arg(long, default_value_t = 1.0)]
    rate: f64,
    /// Customers (keys) or tools per member in the workload.
    #[arg(long, default_value_t = 200)]
    customers: usize,
    /// What the shops submit.
    #[arg(long, value_enum, default_value = "kv")]
    workload: WorkloadKind,
    /// After the workload, keep serving the web app and API until Ctrl-C.
    #[arg(long)]
    serve: bool,
}

/// Most writes one member may have waiting for their commit; beyond it the demo skips a tick
/// rather than queue without bound.
const MAX_IN_FLIGHT_PER_MEMBER: usize = 1024;

/// Runs the demo.
pub fn demo(args: DemoArgs) -> Result<()> {
    if !(1..=64).contains(&args.nodes) {
        bail!("--nodes must be between 1 and 64");
    }
    if !(args.rate > 0.0 && args.rate <= 1000.0) {
        bail!("--rate must be above 0 and at most 1000 transactions per second per member");
    }
    if args.customers == 0 {
        bail!("--customers must be at least 1");
    }
    let runtime = tokio::runtime::Runtime::new().context("starting tokio")?;
    runtime.block_on(run(args))
}

async fn run(args: DemoArgs) -> Result<()> {
    let dir = tempfile::tempdir().context("creating the demo directory")?;
    let consortium = init_local(
        dir.path(),
        &InitOptions {
            members: args.nodes,
            name: "demo".into(),
            p2p_base_port: 0,
            api_base_port: 0,
            write_once_prefixes: vec!["voucher/".into()],
            neighbours: beaufort_node::config::DEFAULT_NEIGHBOURS,
        },
    )?;
    println!(
        "demo: {} members over libp2p (TCP+noise+yamux) on loopback, stores in {}, link delay {:?}",
        args.nodes,
        dir.path().display(),
        args.latency
    );
    let mut nodes = Vec::new();
    let mut tokens = Vec::new();
    for path in &consortium.config_files {
        let config = beaufort_node::config::Config::load(path)?;
        let bind = config.node.api_bind;
        tokens.push(config.node.api_token.clone());
        let node = NodeHandle::start(
            config,
            StartOptions {
                latency: args.latency,
            },
        )?;
        let listener = tokio::net::TcpListener::bind(bind)
            .await
            .with_context(|| format!("binding {bind}"))?;
        println!(
            "  member {}: dashboard http://{bind}/  wallet http://{bind}/wallet  eShare http://{bind}/eshare",
            nodes.len()
        );
        tokio::spawn(api::serve(node.clone(), listener));
        nodes.push(node);
    }
    wait_connected(&nodes).await?;
    if args.workload == WorkloadKind::EshareScript {
        install_script(&nodes).await?;
        println!("installed the eShare script through endorsements at every member");
    }

    let bar = ProgressBar::new(args.duration.as_secs().max(1));
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {msg}")
            .context("progress bar template")?
            .progress_chars("=> "),
    );
    let latencies = Arc::new(Mutex::new(Vec::<Duration>::new()));
    let failures = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + args.duration;
    let mut submitters = Vec::new();
    for (m, node) in nodes.iter().enumerate() {
        let node = node.clone();
        let latencies = latencies.clone();
        let failures = failures.clone();
        let workload = Arc::new(std::sync::Mutex::new(Workload::new(
            args.workload,
            m,
            args.customers,
            &node,
        )?));
        let period = Duration::from_secs_f64(1.0 / args.rate);
        submitters.push(tokio::spawn(async move {
            // Shops are not synchronised: each member starts at a random phase of the period, as
            // in the simulator's workload. Submitting all at one instant would measure a
            // 7-instance CPU burst once per period, not the latency of a commit.
            let phase = period.mul_f64(random_fraction(m));
            let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + phase, period);
            let mut writes = tokio::task::JoinSet::new();
            let mut i = 0usize;
            while Instant::now() < deadline {
                ticker.tick().await;
                while writes.try_join_next().is_some() {}
                if writes.len() >= MAX_IN_FLIGHT_PER_MEMBER {
                    continue;
                }
                let next = workload
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .next(i);
                i += 1;
                let (key, value, tool) = match next {
                    Ok(Some(write)) => write,
                    Ok(None) => continue,
                    Err(error) => {
                        tracing::error!(%error, "the workload could not build a write");
                        failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        continue;
                    }
                };
                let (node, latencies, failures, workload) = (
                    node.clone(),
                    latencies.clone(),
                    failures.clone(),
                    workload.clone(),
                );
                writes.spawn(async move {
                    let begun = Instant::now();
                    let outcome = node.set(key, value).await;
                    match &outcome {
                        Ok(_) => latencies.lock().await.push(begun.elapsed()),
                        Err(_) => {
                            failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                    if let Some(tool) = tool {
                        workload
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .finished(tool, outcome.as_ref().ok());
                    }
                });
            }
            while writes.join_next().await.is_some() {}
        }));
    }
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let done = latencies.lock().await.len();
        bar.set_position(started.elapsed().as_secs().min(args.duration.as_secs()));
        bar.set_message(format!("{done} commits"));
    }
    for submitter in submitters {
        let _ = submitter.await;
    }
    bar.finish_and_clear();
    let wall = started.elapsed().as_secs_f64();

    // A voucher redeemed concurrently at two members: exactly one redemption commits.
    let voucher = Key::new("voucher/demo-1").context("key")?;
    let last = nodes.len() - 1;
    let (a, b) = tokio::join!(
        nodes[0].set(voucher.clone(), Value::Data(b"redeemed at shop 0".to_vec())),
        nodes[last].set(
            voucher.clone(),
            Value::Data(format!("redeemed at shop {last}").into_bytes())
        )
    );
    let redeemed = usize::from(a.is_ok()) + usize::from(b.is_ok());

    let mut lat = latencies.lock().await.clone();
    lat.sort_unstable();
    if lat.is_empty() {
        bail!("no write committed");
    }
    let pct = |p: f64| lat[((lat.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1000.0;
    println!(
        "commits: {} in {wall:.1} s = {:.0} commits/s ({} failed writes)",
        lat.len(),
        lat.len() as f64 / wall,
        failures.load(std::sync::atomic::Ordering::Relaxed)
    );
    println!(
        "commit latency: p50 {:.1} ms  p90 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(1.0)
    );
    println!(
        "voucher redeemed concurrently at members 0 and {last}: {redeemed} redemption(s) committed"
    );
    let stats = nodes[0].store_stats()?;
    if stats.keys > 0 {
        println!(
            "storage (member 0): {} keys, {} B encoded state per key, {} B file per key",
            stats.keys,
            stats.state_bytes / stats.keys,
            stats.file_bytes / stats.keys
        );
    }
    if redeemed != 1 {
        bail!("expected exactly one redemption, got {redeemed}");
    }
    if args.serve {
        println!("serving the web app; operator tokens for the dashboards:");
        for (m, token) in tokens.iter().enumerate() {
            println!("  member {m}: {token}");
        }
        println!("press Ctrl-C to stop");
        tokio::signal::ctrl_c()
            .await
            .context("waiting for Ctrl-C")?;
    }
    Ok(())
}

/// Waits until every member sees all others (or its neighbour target), with a deadline.
async fn wait_connected(nodes: &[NodeHandle]) -> Result<()> {
    let want = (nodes.len() - 1).min(beaufort_node::config::DEFAULT_NEIGHBOURS);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut ready = true;
        for node in nodes {
            if node.status().await?.neighbours.len() < want {
                ready = false;
            }
        }
        if ready {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("members did not connect within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A random number in [0, 1), different per call and per process (std's randomly keyed hasher;
/// the demo needs no reproducible randomness and no extra dependency for it).
fn random_fraction(salt: usize) -> f64 {
    use std::hash::BuildHasher;
    let bits = std::collections::hash_map::RandomState::new().hash_one(salt);
    (bits >> 11) as f64 / (1u64 << 53) as f64
}
