//! `beaufort soak`: a load and crash soak of a consortium of member processes on loopback.
//!
//! It makes a consortium in a directory of its own (`init`), starts one `beaufort node` process
//! per member, and writes unique keys at a fixed open-loop rate (a write is sent every `1/rate`
//! seconds whether or not earlier ones have answered), each to the next member that is up. Every
//! `--kill-every` it kills one member with SIGKILL (a crash: no drain, no flush beyond what the
//! store already made durable), rotating through the members, and starts it again after
//! `--downtime`. It counts every answer by status, keeps every acknowledged write (200: the
//! value is committed, with its certificate), samples each member process's resident memory
//! from `/proc/PID/status`, and at the end, once every member is up again, reads every
//! acknowledged key back from every member (polling until they converge or a deadline passes).
//!
//! A lost write is an acknowledged key some member still lacks, or holds with another value,
//! at that deadline. The command exits 1 when a write was lost or any answer was a 5xx.

use anyhow::{bail, Context, Result};
use beaufort_client::{Client, ClientError, Write};
use beaufort_node::config::{init_local, InitOptions, DEFAULT_NEIGHBOURS};
use clap::Args;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Arguments of `beaufort soak`.
#[derive(Args)]
pub struct SoakArgs {
    /// Number of member processes.
    #[arg(long, default_value_t = 4)]
    members: usize,
    /// How long the load runs.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Writes per second, open loop, spread over the members that are up.
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// Kill one member (SIGKILL) this often, rotating through the members; 0s never.
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration)]
    kill_every: Duration,
    /// How long a killed member stays down before it is started again.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    downtime: Duration,
    /// How long the members are given, after the load, to hold every acknowledged write.
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    converge: Duration,
    /// Writes waiting for an answer at most; a write due while this many are out is counted as
    /// `skipped` (the open loop's backlog), not sent.
    #[arg(long, default_value_t = 512)]
    max_in_flight: usize,
    /// Serve the members' APIs over HTTPS (`init --tls`).
    #[arg(long)]
    tls: bool,
    /// Where the consortium lives (keys, stores, each member's log `member-N.log`); default a
    /// temporary directory, removed at the end.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Where to write the report (JSON); it is printed on stdout otherwise.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// What a soak found (the JSON report).
#[derive(Debug, Default, Serialize)]
pub struct SoakReport {
    /// Member processes.
    pub members: usize,
    /// Load duration, seconds.
    pub duration_s: f64,
    /// Target writes per second.
    pub rate: f64,
    /// Kill period, seconds (0: none).
    pub kill_every_s: f64,
    /// Downtime of a killed member, seconds.
    pub downtime_s: f64,
    /// Whether the APIs were served over HTTPS.
    pub tls: bool,
    /// Writes sent.
    pub sent: u64,
    /// Writes due while `max_in_flight` were out, not sent.
    pub skipped: u64,
    /// Writes due while no member was up, not sent.
    pub no_member_up: u64,
    /// Answers by HTTP status ("200", "202", ...), plus "connection" (no answer: the member
    /// was killed or not yet listening) and "protocol" (an answer that is not the API's).
    pub answers: BTreeMap<String, u64>,
    /// Acknowledged (200: committed) writes.
    pub acknowledged: u64,
    /// Answers with a 5xx status.
    pub server_errors: u64,
    /// Acknowledged keys some member lacks, or holds with another value, at the end.
    pub lost: u64,
    /// Acknowledged keys no member holds with the acknowledged value at the end.
    pub lost_everywhere: u64,
    /// Per member: acknowledged keys it lacks at the end.
    pub missing_per_member: Vec<u64>,
    /// Writes answered 202 (pending) that every member holds at the end.
    pub pending_committed_later: u64,
    /// How long after the load every member held every acknowledged write, seconds.
    pub converged_after_s: Option<f64>,
    /// Commit latency of acknowledged writes, milliseconds: p50, p90, p99, max.
    pub latency_ms: BTreeMap<String, f64>,
    /// Kills: (seconds since start, member).
    pub kills: Vec<(f64, usize)>,
    /// How long each restarted member took to be ready again, seconds.
    pub ready_after_restart_s: Vec<f64>,
    /// Per member: mean resident memory in the first and the last minute of the load (MiB),
    /// over the samples of whichever process of that member was up.
    pub rss_first_minute_mib: Vec<f64>,
    /// See `rss_first_minute_mib`.
    pub rss_last_minute_mib: Vec<f64>,
    /// Per member: the largest resident memory sampled (MiB).
    pub rss_max_mib: Vec<f64>,
    /// Members that exited 0 on SIGTERM at the end.
    pub clean_exits: usize,
    /// Every 5 s, each member process that was up: its resident memory and the keys it held.
    pub samples: Vec<Sample>,
}

/// One member at one moment of the soak.
#[derive(Debug, Serialize)]
pub struct Sample {
    /// Seconds since the load started.
    pub t_s: f64,
    /// The member.
    pub member: usize,
    /// Its process's resident memory, MiB.
    pub rss_mib: f64,
    /// The keys it held (`GET /v1/digest`), when it answered within a second.
    pub keys: Option<u64>,
}

fn mib(bytes: u64) -> f64 {
    (bytes as f64 / (1024.0 * 1024.0) * 10.0).round() / 10.0
}

/// A member process and where it is reached.
struct Proc {
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    client: Client,
}

impl Proc {
    fn start(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let child = Command::new(std::env::current_exe().context("this program's path")?)
            .args(["node", "--config"])
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting a member process")?;
        self.child = Some(child);
        Ok(())
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Resident memory of a process in bytes (`VmRSS` of `/proc/PID/status`).
fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Shared between the load's tasks.
#[derive(Default)]
struct Tally {
    answers: BTreeMap<String, u64>,
    acknowledged: HashMap<String, String>,
    pending: Vec<String>,
    latencies: Vec<Duration>,
}

/// Polls until the member answers `/readyz` with 200, up to `limit`.
async fn wait_ready(client: &Client, limit: Duration) -> Result<Duration> {
    let started = Instant::now();
    loop {
        if let Ok(true) = client.ready().await {
            return Ok(started.elapsed());
        }
        if started.elapsed() > limit {
            bail!("not ready within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs the soak and prints its summary; the report goes to `--out` or stdout.
pub fn soak(args: SoakArgs) -> Result<ExitCode> {
    if args.members < 1 || !args.rate.is_finite() || args.rate <= 0.0 {
        bail!("--members and --rate must be positive");
    }
    let temporary;
    let dir = match &args.dir {
        Some(dir) => dir.clone(),
        None => {
            temporary = tempfile::tempdir().context("a temporary directory")?;
            temporary.path().to_path_buf()
        }
    };
    let consortium = init_local(
        &dir,
        &InitOptions {
            members: args.members,
            name: "soak".into(),
            p2p_base_port: 0,
            api_base_port: 0,
            write_once_prefixes: Vec::new(),
            neighbours: DEFAULT_NEIGHBOURS,
            aggregate_wait_ms: None,
        },
    )?;
    let consortium = if args.tls {
        consortium.with_self_signed_tls(&dir, &[])?
    } else {
        consortium
    };
    let mut procs = Vec::new();
    for (i, path) in consortium.config_files.iter().enumerate() {
        let config = beaufort_node::config::Config::load(path)?;
        let api = crate::client::own_api(&config);
        let trust = crate::client::trust(Some(&config), &[])?;
        procs.push(Proc {
            config: path.clone(),
            log: dir.join(format!("member-{i}.log")),
            child: None,
            client: Client::with_trust(api, &trust).with_token(config.node.api_token.clone()),
        });
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting tokio")?;
    let report = runtime.block_on(run(&args, &mut procs))?;
    let json = serde_json::to_string_pretty(&report)?;
    match &args.out {
        Some(out) => std::fs::write(out, &json).with_context(|| format!("{}", out.display()))?,
        None => println!("{json}"),
    }
    summarise(&report);
    Ok(if report.lost == 0 && report.server_errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn run(args: &SoakArgs, procs: &mut [Proc]) -> Result<SoakReport> {
    let n = procs.len();
    for proc in procs.iter_mut() {
        proc.start()?;
    }
    for (i, proc) in procs.iter().enumerate() {
        wait_ready(&proc.client, Duration::from_secs(120))
            .await
            .with_context(|| format!("member {i} at start"))?;
    }
    eprintln!(
        "soak: {n} members up; {} writes/s for {:?}, a member killed every {:?}",
        args.rate, args.duration, args.kill_every
    );
    let tally = Arc::new(Mutex::new(Tally::default()));
    let in_flight = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut up = vec![true; n];
    let mut report = SoakReport {
        members: n,
        duration_s: args.duration.as_secs_f64(),
        rate: args.rate,
        kill_every_s: args.kill_every.as_secs_f64(),
        downtime_s: args.downtime.as_secs_f64(),
        tls: args.tls,
        ..SoakReport::default()
    };
    let start = tokio::time::Instant::now();
    let end = start + args.duration;
    let period = Duration::from_secs_f64(1.0 / args.rate);
    let mut next_write = start;
    let mut next_sample = start;
    let kills_on = !args.kill_every.is_zero();
    let mut next_kill = start + args.kill_every;
    // A killed member: (which, when to start it again).
    let mut down: Option<(usize, tokio::time::Instant)> = None;
    // A restarted member not yet ready: (which, restarted at).
    let mut restarting: Option<(usize, tokio::time::Instant)> = None;
    let mut seq: u64 = 0;
    let mut turn = 0usize;
    let mut kills = 0usize;
    let mut writers = tokio::task::JoinSet::new();
    let mut ready_check = tokio::time::Instant::now();
    while tokio::time::Instant::now() < end {
        let now = tokio::time::Instant::now();
        if now >= next_sample {
            let at = (now.duration_since(start).as_secs_f64() * 10.0).round() / 10.0;
            for (i, proc) in procs.iter().enumerate() {
                if let Some(bytes) = proc.pid().and_then(rss_bytes) {
                    let keys =
                        match tokio::time::timeout(Duration::from_secs(1), proc.client.digest())
                            .await
                        {
                            Ok(Ok(digest)) => Some(digest.prefixes.iter().map(|p| p.keys).sum()),
                            _ => None,
                        };
                    report.samples.push(Sample {
                        t_s: at,
                        member: i,
                        rss_mib: mib(bytes),
                        keys,
                    });
                }
            }
            next_sample += Duration::from_secs(5);
        }
        if kills_on && now >= next_kill && down.is_none() && restarting.is_none() {
            let victim = kills % n;
            kills += 1;
            procs[victim].kill();
            up[victim] = false;
            report
                .kills
                .push((now.duration_since(start).as_secs_f64(), victim));
            eprintln!(
                "soak: {:>5.0} s: killed member {victim} (SIGKILL)",
                now.duration_since(start).as_secs_f64()
            );
            down = Some((victim, now + args.downtime));
            next_kill += args.kill_every;
        }
        if let Some((victim, when)) = down {
            if now >= when {
                procs[victim].start()?;
                down = None;
                restarting = Some((victim, now));
            }
        }
        if let Some((victim, since)) = restarting {
            if now >= ready_check {
                ready_check = now + Duration::from_millis(100);
                if let Ok(true) = procs[victim].client.ready().await {
                    up[victim] = true;
                    restarting = None;
                    let took = since.elapsed().as_secs_f64();
                    report.ready_after_restart_s.push(took);
                    eprintln!("soak: member {victim} ready {took:.1} s after its restart");
                }
            }
        }
        while tokio::time::Instant::now() >= next_write && next_write < end {
            next_write += period;
            if in_flight.load(std::sync::atomic::Ordering::Relaxed) >= args.max_in_flight {
                report.skipped += 1;
                continue;
            }
            let Some(member) = (0..n).map(|k| (turn + k) % n).find(|&m| up[m]) else {
                report.no_member_up += 1;
                continue;
            };
            turn = member + 1;
            seq += 1;
            report.sent += 1;
            let key = format!("soak/{seq:09}");
            let value = format!("{seq}");
            let client = procs[member].client.clone();
            let tally = tally.clone();
            let in_flight = in_flight.clone();
            in_flight.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            writers.spawn(async move {
                let sent = Instant::now();
                let answer = client.put(&key, value.as_bytes()).await;
                let took = sent.elapsed();
                in_flight.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                let mut tally = tally.lock().expect("tally");
                let class = match answer {
                    Ok(Write::Committed(_)) => {
                        tally.acknowledged.insert(key, value);
                        tally.latencies.push(took);
                        "200".to_owned()
                    }
                    Ok(Write::Pending) => {
                        tally.pending.push(key);
                        "202".to_owned()
                    }
                    Err(ClientError::Http { status, .. }) => status.to_string(),
                    Err(ClientError::Io { .. }) => "connection".to_owned(),
                    Err(_) => "protocol".to_owned(),
                };
                *tally.answers.entry(class).or_default() += 1;
            });
        }
        while writers.try_join_next().is_some() {}
        let wake = next_write
            .min(next_sample)
            .min(end)
            .min(tokio::time::Instant::now() + Duration::from_millis(20));
        tokio::time::sleep_until(wake).await;
    }
    eprintln!("soak: load done; waiting for writes in flight");
    while writers.join_next().await.is_some() {}
    // Every member up again before the read-back.
    if let Some((victim, _)) = down.take() {
        procs[victim].start()?;
    }
    for (i, proc) in procs.iter().enumerate() {
        wait_ready(&proc.client, Duration::from_secs(120))
            .await
            .with_context(|| format!("member {i} after the load"))?;
    }
    let tally = std::mem::take(&mut *tally.lock().expect("tally"));
    report.answers = tally.answers;
    report.acknowledged = tally.acknowledged.len() as u64;
    report.server_errors = report
        .answers
        .iter()
        .filter(|(status, _)| status.starts_with('5'))
        .map(|(_, count)| count)
        .sum();
    let mut latencies = tally.latencies;
    latencies.sort();
    for (name, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0)] {
        if let Some(latency) = quantile(&latencies, q) {
            report
                .latency_ms
                .insert(name.into(), (latency.as_secs_f64() * 1e4).round() / 10.0);
        }
    }
    // Read back every acknowledged key from every member, until all hold all or the deadline.
    let load_end = Instant::now();
    let deadline = load_end + args.converge;
    let (missing, lost, wrong_everywhere, pending_held) = loop {
        let mut holdings = Vec::with_capacity(n);
        for proc in procs.iter() {
            let values = proc.client.list_all("soak/").await.unwrap_or_default();
            let held: HashMap<String, String> = values
                .into_iter()
                .map(|v| (v.key, v.value.unwrap_or_default()))
                .collect();
            holdings.push(held);
        }
        let missing: Vec<u64> = holdings
            .iter()
            .map(|held| {
                tally
                    .acknowledged
                    .iter()
                    .filter(|(key, value)| held.get(*key) != Some(*value))
                    .count() as u64
            })
            .collect();
        if missing.iter().all(|&m| m == 0) || Instant::now() > deadline {
            let lost = tally
                .acknowledged
                .iter()
                .filter(|(key, value)| holdings.iter().any(|held| held.get(*key) != Some(*value)))
                .count() as u64;
            let nowhere = tally
                .acknowledged
                .iter()
                .filter(|(key, value)| holdings.iter().all(|held| held.get(*key) != Some(*value)))
                .count() as u64;
            let pending_held = tally
                .pending
                .iter()
                .filter(|key| holdings.iter().all(|held| held.contains_key(*key)))
                .count() as u64;
            if missing.iter().all(|&m| m == 0) {
                report.converged_after_s = Some(load_end.elapsed().as_secs_f64());
            }
            break (missing, lost, nowhere, pending_held);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    report.lost = lost;
    report.lost_everywhere = wrong_everywhere;
    report.missing_per_member = missing;
    report.pending_committed_later = pending_held;
    // Memory: first and last minute per member.
    let last_from = args.duration.as_secs_f64() - 60.0;
    for i in 0..n {
        let mean = |from: f64, to: f64| {
            let samples: Vec<f64> = report
                .samples
                .iter()
                .filter(|s| s.member == i && s.t_s >= from && s.t_s < to)
                .map(|s| s.rss_mib)
                .collect();
            if samples.is_empty() {
                0.0
            } else {
                (samples.iter().sum::<f64>() / samples.len() as f64 * 10.0).round() / 10.0
            }
        };
        let first = mean(0.0, 60.0);
        let last = mean(last_from.max(0.0), f64::INFINITY);
        let max = report
            .samples
            .iter()
            .filter(|s| s.member == i)
            .map(|s| s.rss_mib)
            .fold(0.0, f64::max);
        report.rss_first_minute_mib.push(first);
        report.rss_last_minute_mib.push(last);
        report.rss_max_mib.push(max);
    }
    // Stop every member cleanly and count clean exits.
    for proc in procs.iter_mut() {
        if let Some(pid) = proc.pid() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
    }
    let stop_deadline = Instant::now() + Duration::from_secs(15);
    for proc in procs.iter_mut() {
        if let Some(child) = proc.child.as_mut() {
            loop {
                match child.try_wait() {
                    Ok(Some(status)) => {
                        if status.success() {
                            report.clean_exits += 1;
                        }
                        proc.child = None;
                        break;
                    }
                    Ok(None) if Instant::now() < stop_deadline => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    _ => break,
                }
            }
        }
    }
    Ok(report)
}

fn quantile(sorted: &[Duration], q: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted.get(index).copied()
}

fn summarise(report: &SoakReport) {
    eprintln!(
        "soak: {} members, {:.0} s at {} writes/s, {} kills: sent {}, acknowledged {}, \
         lost {} (nowhere {}), 5xx {}, answers {:?}",
        report.members,
        report.duration_s,
        report.rate,
        report.kills.len(),
        report.sent,
        report.acknowledged,
        report.lost,
        report.lost_everywhere,
        report.server_errors,
        report.answers
    );
    eprintln!(
        "soak: commit latency {:?} ms; converged {} after the load; RSS MiB first minute {:?}, \
         last minute {:?}, max {:?}; {} of {} members exited 0 on SIGTERM",
        report.latency_ms,
        report
            .converged_after_s
            .map_or_else(|| "never".to_owned(), |s| format!("{s:.1} s")),
        report.rss_first_minute_mib,
        report.rss_last_minute_mib,
        report.rss_max_mib,
        report.clean_exits,
        report.members
    );
}
