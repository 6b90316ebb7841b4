//! `beaufort demo`: N members in one process over real libp2p on loopback, with real redb stores
//! in a temporary directory and each member's HTTP API and web app. It runs a workload (shops
//! updating customers' balances, or lending tools under the eShare contract), prints commit
//! latencies, and with `--serve` stages a small living consortium for the pages (customers'
//! tickets, shared tools, pledged invoices: [`showcase`]) and keeps it up for people to use the
//! web app. With
//! `--format json` it prints the fields `beaufort sim run --format json` prints for the same
//! workload (latency percentiles at the submitter, bandwidth per member from the bytes its links
//! carried), so the deployed program and the simulated one can be compared run for run.

use crate::eval::Format;
use crate::workload::{install_script, Workload, WorkloadKind};
use anyhow::{bail, Context, Result};
use beaufort_core::types::{Key, Value};
use beaufort_node::config::{init_local, InitOptions};
use beaufort_node::{api, NodeHandle, StartOptions};
use beaufort_perf::report::{floor_bytes, MeanMax, Percentiles, TransactionBytes};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

mod showcase;

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
    /// After the workload, keep serving the web app and API until Ctrl-C. With 3 or more
    /// `--nodes`, the consortium then has one member more, left to a browser: its `/member` page
    /// runs it beside the native ones (the natives alone still make a quorum, so the workload
    /// commits without it).
    #[arg(long)]
    serve: bool,
    /// Output format: text for people, or one JSON object with the fields of
    /// `beaufort sim run --format json`.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Votes travel as pieces on one tree per key (as for `beaufort init` and `sim run`).
    #[arg(long, value_parser = humantime::parse_duration)]
    aggregate_wait: Option<Duration>,
}

/// What a demo run measured, named as `beaufort sim run --format json` names it.
#[derive(Serialize)]
struct DemoReport {
    /// Always "beaufort-node": the deployed program, over real libp2p and redb.
    protocol: &'static str,
    nodes: usize,
    /// Transactions per second submitted at each member.
    rate: f64,
    /// Link delay added to every message (ms).
    latency_added_ms: f64,
    /// The workload window (s): submissions and the bandwidth count.
    duration_s: f64,
    /// Wall time until the last write of the window had its answer (s).
    wall_s: f64,
    /// Writes submitted in the window.
    submitted: u64,
    /// Writes committed (certified at the submitter).
    decided: u64,
    /// Writes that failed (lost a race, or an error).
    failed: u64,
    /// Submission to commit at the submitting member.
    latency_ms: Percentiles,
    /// Sync bytes sent plus received per member over the window, as framed on the wire
    /// (noise, yamux and TCP overhead not counted), in Mbit/s.
    bandwidth_mbit_per_node: MeanMax,
    /// Sync bytes sent per member over the window, in Mbit/s.
    upload_mbit_per_node: MeanMax,
    /// Sync bytes received per committed write per member, and as a multiple of the
    /// information floor (as `sim run` reports it).
    bytes_per_tx: TransactionBytes,
    /// Redemptions of one voucher tried at two members at once that committed (must be 1).
    voucher_redemptions_committed: usize,
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
    // Of n + 1 members, n - f ≤ n natives make a quorum once n ≥ 3 (f = (n + 1 - 1) / 3 ≥ 1).
    let browser_slot = args.serve && args.nodes >= 3;
    let consortium = init_local(
        dir.path(),
        &InitOptions {
            members: args.nodes + usize::from(browser_slot),
            name: "demo".into(),
            p2p_base_port: 0,
            api_base_port: 0,
            write_once_prefixes: vec!["voucher/".into()],
            neighbours: beaufort_node::config::DEFAULT_NEIGHBOURS,
            aggregate_wait_ms: crate::node_cmd::aggregate_wait_ms(args.aggregate_wait)?,
        },
    )?;
    let text = args.format == Format::Text;
    let say = |line: String| {
        if text {
            println!("{line}");
        } else {
            eprintln!("{line}");
        }
    };
    say(format!(
        "demo: {} members over libp2p (TCP+noise+yamux) on loopback{}, stores in {}, link delay {:?}",
        args.nodes,
        if browser_slot {
            " and one more left to a browser"
        } else {
            ""
        },
        dir.path().display(),
        args.latency
    ));
    let mut nodes = Vec::new();
    let mut tokens = Vec::new();
    let mut binds = Vec::new();
    for path in consortium.config_files.iter().take(args.nodes) {
        let config = beaufort_node::config::Config::load(path)?;
        let bind = config.node.api_bind;
        tokens.push(config.node.api_token.clone());
        let node = NodeHandle::start(
            config,
            StartOptions {
                latency: args.latency,
                record: false,
            },
        )?;
        let listener = tokio::net::TcpListener::bind(bind)
            .await
            .with_context(|| format!("binding {bind}"))?;
        say(format!(
            "  member {}: dashboard http://{bind}/  wallet http://{bind}/wallet  eShare http://{bind}/eshare  eLoan http://{bind}/eloan  receipts http://{bind}/verify  browser member http://{bind}/member",
            nodes.len()
        ));
        binds.push(bind);
        tokio::spawn(api::serve(node.clone(), listener));
        nodes.push(node);
    }
    wait_connected(&nodes).await?;
    if args.workload == WorkloadKind::EshareScript {
        install_script(&nodes).await?;
        say("installed the eShare script through endorsements at every member".into());
    }

    let bar = ProgressBar::new(args.duration.as_secs().max(1));
    if !text {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {msg}")
            .context("progress bar template")?
            .progress_chars("=> "),
    );
    let latencies = Arc::new(Mutex::new(Vec::<Duration>::new()));
    let failures = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let submitted = Arc::new(std::sync::atomic::AtomicU64::new(0));
    // Key plus value bytes of every write submitted, for the information floor.
    let written = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let bytes_before: Vec<(u64, u64)> = nodes.iter().map(NodeHandle::link_bytes).collect();
    let started = Instant::now();
    let deadline = started + args.duration;
    let mut submitters = Vec::new();
    for (m, node) in nodes.iter().enumerate() {
        let node = node.clone();
        let latencies = latencies.clone();
        let failures = failures.clone();
        let submitted = submitted.clone();
        let written = written.clone();
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
            loop {
                ticker.tick().await;
                // A tick at or after the deadline is outside the window: submitting there would
                // count one write per member more than the simulator's workload has.
                if Instant::now() >= deadline {
                    break;
                }
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
                submitted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let size = key.as_bytes().len() + value.as_data().map_or(0, <[u8]>::len);
                written.fetch_add(size as u64, std::sync::atomic::Ordering::Relaxed);
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
    // Bandwidth over the workload window, as the simulator counts it.
    let window = started.elapsed().as_secs_f64();
    let bytes_after: Vec<(u64, u64)> = nodes.iter().map(NodeHandle::link_bytes).collect();
    for submitter in submitters {
        let _ = submitter.await;
    }
    bar.finish_and_clear();
    let wall = started.elapsed().as_secs_f64();
    let mbit = |bytes: u64| bytes as f64 * 8.0 / window / 1e6;
    let received: Vec<u64> = bytes_after
        .iter()
        .zip(&bytes_before)
        .map(|(&(_, received), &(_, before))| received.saturating_sub(before))
        .collect();
    let (total, upload): (Vec<f64>, Vec<f64>) = bytes_after
        .iter()
        .zip(&bytes_before)
        .map(|(&(sent, received), &(sent_before, received_before))| {
            let sent = sent.saturating_sub(sent_before);
            let received = received.saturating_sub(received_before);
            (mbit(sent + received), mbit(sent))
        })
        .unzip();

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

    let lat: Vec<f64> = latencies
        .lock()
        .await
        .iter()
        .map(|d| d.as_secs_f64() * 1000.0)
        .collect();
    if lat.is_empty() {
        bail!("no write committed");
    }
    let submitted = submitted.load(std::sync::atomic::Ordering::Relaxed);
    let mean_size = written.load(std::sync::atomic::Ordering::Relaxed) / submitted.max(1);
    let floor = floor_bytes(nodes.len(), mean_size as usize, 0);
    let report = DemoReport {
        protocol: "beaufort-node",
        nodes: nodes.len(),
        rate: args.rate,
        latency_added_ms: args.latency.as_secs_f64() * 1000.0,
        duration_s: window,
        wall_s: wall,
        submitted,
        decided: lat.len() as u64,
        failed: failures.load(std::sync::atomic::Ordering::Relaxed),
        latency_ms: Percentiles::of(&lat),
        bandwidth_mbit_per_node: MeanMax::of(&total),
        upload_mbit_per_node: MeanMax::of(&upload),
        bytes_per_tx: TransactionBytes::of(&received, lat.len(), floor),
        voucher_redemptions_committed: redeemed,
    };
    if text {
        print_report(&report);
    } else {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    let stats = nodes[0].store_stats()?;
    if stats.keys > 0 && text {
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
        println!("staging customers' tickets, shared tools and pledged invoices for the pages…");
        let shown = showcase::stage(&nodes).await?;
        let first = binds.first().context("no members")?;
        println!("serving the web app; operator tokens for the dashboards:");
        for (m, (token, bind)) in tokens.iter().zip(&binds).enumerate() {
            println!("  member {m}: {token}  (dashboard http://{bind}/)");
        }
        println!(
            "{}'s wallet, {} points in {} tickets from several shops (the link works at every member's /wallet; passphrase \"{}\"):",
            shown.customer,
            shown.balance,
            shown.customer_tickets,
            showcase::WALLET_PASSPHRASE
        );
        println!(
            "  http://{first}/wallet#wallet={}",
            uri_component(&shown.exported_wallet)
        );
        println!(
            "eShare: {} tools at http://{first}/eshare  eLoan: {} invoices at http://{first}/eloan  ({} tickets in all)",
            shown.tools, shown.invoices, shown.tickets
        );
        if browser_slot {
            let member = args.nodes;
            println!(
                "member {member} is left to a browser: open http://{first}/member and give it {} and {} \
                 (it votes beside the native members, keeping its state in the browser's IndexedDB)",
                dir.path().join(format!("member-{member}.bls")).display(),
                dir.path().join(format!("member-{member}.p2p")).display()
            );
        }
        println!("metrics (Prometheus/OpenMetrics): http://{first}/metrics");
        println!("API description (OpenAPI 3.1): http://{first}/openapi.json");
        if let Some(config) = consortium.config_files.first() {
            println!(
                "CLI: cargo run --release --bin beaufort -- get --config {} {}",
                config.display(),
                shown.ticket_key
            );
        }
        println!("press Ctrl-C to stop");
        tokio::signal::ctrl_c()
            .await
            .context("waiting for Ctrl-C")?;
    }
    Ok(())
}

/// Prints a run's figures for people.
fn print_report(report: &DemoReport) {
    let l = &report.latency_ms;
    println!(
        "commits: {} of {} in {:.1} s = {:.0} commits/s ({} failed writes)",
        report.decided,
        report.submitted,
        report.wall_s,
        report.decided as f64 / report.wall_s,
        report.failed
    );
    println!(
        "commit latency: p50 {:.1} ms  p90 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
        l.p50, l.p90, l.p99, l.max
    );
    println!(
        "bandwidth per member (sync bytes up + down): mean {:.3} Mbit/s  max {:.3} Mbit/s",
        report.bandwidth_mbit_per_node.mean, report.bandwidth_mbit_per_node.max
    );
    let b = &report.bytes_per_tx;
    println!(
        "received per committed write per member: {:.0} B = {:.1} x the floor of {:.0} B",
        b.received_per_tx, b.floor_multiple, b.floor
    );
    println!(
        "voucher redeemed concurrently at the first and the last member: {} redemption(s) committed",
        report.voucher_redemptions_committed
    );
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

/// `text` as a URI component (as JavaScript's `encodeURIComponent` writes it), for the wallet
/// link's fragment.
fn uri_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A random number in [0, 1), different per call and per process (std's randomly keyed hasher;
/// the demo needs no reproducible randomness and no extra dependency for it).
fn random_fraction(salt: usize) -> f64 {
    use std::hash::BuildHasher;
    let bits = std::collections::hash_map::RandomState::new().hash_one(salt);
    (bits >> 11) as f64 / (1u64 << 53) as f64
}
