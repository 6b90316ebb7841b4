//! `beaufort init` (a local consortium's keys and configurations), `beaufort node` (run one
//! member: store, libp2p network, HTTP API) and `beaufort discovery` (a rendezvous server).

use anyhow::{Context, Result};
use beaufort_node::config::{
    init_local, parse_addresses, read_p2p_key, write_p2p_key, Config, InitOptions,
    DEFAULT_NEIGHBOURS, MAX_AGGREGATE_WAIT_MS,
};
use beaufort_node::{api, NodeHandle, StartOptions};
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

/// Arguments of `beaufort init`.
#[derive(Args)]
pub struct InitArgs {
    /// Number of members.
    #[arg(long, default_value_t = 4)]
    members: usize,
    /// Output directory (keys, one `member-I.toml` per member, data directories).
    #[arg(long)]
    out: PathBuf,
    /// The consortium's name (part of the network id).
    #[arg(long, default_value = "local")]
    name: String,
    /// First libp2p port on loopback (0 picks free ports).
    #[arg(long, default_value_t = 7000)]
    p2p_port: u16,
    /// First HTTP API port on localhost (0 picks free ports).
    #[arg(long, default_value_t = 8000)]
    api_port: u16,
    /// Key prefixes that can be written only once (repeatable).
    #[arg(long = "write-once")]
    write_once: Vec<String>,
    /// Neighbours each member keeps.
    #[arg(long, default_value_t = DEFAULT_NEIGHBOURS)]
    neighbours: usize,
    /// Votes travel combined into pieces on one tree per key, each member waiting up to this
    /// long for its other tree links (e.g. 300ms; fewer bytes, more latency); by default they
    /// travel as single shares. Written to the network section, so every member runs it.
    #[arg(long, value_parser = humantime::parse_duration)]
    aggregate_wait: Option<Duration>,
    /// Serve each member's API over HTTPS with a self-signed certificate of its own
    /// (`member-I.crt`, key `member-I.key`) for localhost, 127.0.0.1 and every --tls-name.
    #[arg(long)]
    tls: bool,
    /// Another host name or IP address the certificates name (repeatable; implies --tls).
    #[arg(long = "tls-name")]
    tls_names: Vec<String>,
}

/// The network section's `aggregate_wait_ms` for a `--aggregate-wait`, refused past
/// [`MAX_AGGREGATE_WAIT_MS`].
pub(crate) fn aggregate_wait_ms(wait: Option<Duration>) -> Result<Option<u64>> {
    let Some(wait) = wait else {
        return Ok(None);
    };
    match u64::try_from(wait.as_millis()) {
        Ok(ms) if ms <= MAX_AGGREGATE_WAIT_MS => Ok(Some(ms)),
        _ => anyhow::bail!("--aggregate-wait must be at most {MAX_AGGREGATE_WAIT_MS} ms"),
    }
}

/// Creates the consortium and prints where each member's configuration is.
pub fn init(args: InitArgs) -> Result<()> {
    let consortium = init_local(
        &args.out,
        &InitOptions {
            members: args.members,
            name: args.name,
            p2p_base_port: args.p2p_port,
            api_base_port: args.api_port,
            write_once_prefixes: args.write_once,
            neighbours: args.neighbours,
            aggregate_wait_ms: aggregate_wait_ms(args.aggregate_wait)?,
        },
    )?;
    let tls = args.tls || !args.tls_names.is_empty();
    let consortium = if tls {
        consortium.with_self_signed_tls(&args.out, &args.tls_names)?
    } else {
        consortium
    };
    let scheme = if tls { "https" } else { "http" };
    for (path, config) in consortium.config_files.iter().zip(&consortium.configs) {
        println!(
            "member {}: {} (API {scheme}://{})",
            config.node.index,
            path.display(),
            config.node.api_bind
        );
    }
    Ok(())
}

/// Arguments of `beaufort node`.
#[derive(Args)]
pub struct NodeArgs {
    /// The member's configuration file.
    #[arg(long)]
    config: PathBuf,
    /// Test-only: delay every outgoing message by this much (e.g. 60ms).
    #[arg(long, value_parser = humantime::parse_duration)]
    latency: Option<std::time::Duration>,
}

/// Longest the HTTP drain may take after SIGTERM or SIGINT. Requests still running then (a
/// write waiting up to a minute for its commit) are cut, so that the process always exits well
/// within the 10 s that service managers commonly allow before SIGKILL.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// How long the protocol runtime is given, after the drain, to finish its current step.
const RUNTIME_LIMIT: Duration = Duration::from_secs(2);

/// How long the tokio runtime is given, after the drain, to let its tasks finish.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(1);

/// Runs a member until SIGTERM or SIGINT, then drains the API and exits.
pub fn node(args: NodeArgs) -> Result<()> {
    let config = Config::load(&args.config)?;
    init_tracing();
    let runtime = tokio::runtime::Runtime::new().context("starting tokio")?;
    let result = runtime.block_on(async move {
        let mut signals = StopSignals::listen()?;
        let bind = config.node.api_bind;
        // Read before anything starts, so a bad certificate or key stops the member at once.
        let tls = config.node.tls_server_config()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            network = %config.network.name,
            network_id = %config.network.id().to_hex(),
            member = config.node.index,
            wire_reads = %format!(
                "{}..={}",
                beaufort_core::wire::MIN_WIRE_VERSION,
                beaufort_core::wire::WIRE_VERSION
            ),
            wire_writes = config.node.writes_wire(),
            "starting"
        );
        let node = NodeHandle::start(
            config,
            StartOptions {
                latency: args.latency.unwrap_or_default(),
                record: false,
            },
        )?;
        let listener = tokio::net::TcpListener::bind(bind)
            .await
            .with_context(|| format!("binding the API to {bind}"))?;
        tracing::info!(%bind, scheme, "API listening");
        let runtime_stopped = node.stopped();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let mut server = tokio::spawn(api::serve_tls_until(node, listener, tls, async move {
            let _ = stopped.await;
        }));
        tokio::select! {
            served = &mut server => {
                served.context("the API task")?.context("serving the API")?;
                return Ok(());
            }
            signal = signals.recv() => {
                tracing::info!(
                    signal,
                    limit = ?DRAIN_LIMIT,
                    "stopping: no new connections, finishing requests in flight"
                );
            }
        }
        let _ = stop.send(());
        match tokio::time::timeout(DRAIN_LIMIT, &mut server).await {
            Ok(served) => served.context("the API task")?.context("serving the API")?,
            Err(_) => {
                server.abort();
                tracing::warn!(
                    limit = ?DRAIN_LIMIT,
                    "stopped with requests still in flight after the drain limit"
                );
            }
        }
        // The API's handles are gone with the server: the runtime ends its current step (its
        // store write included) and stops.
        match tokio::time::timeout(RUNTIME_LIMIT, runtime_stopped).await {
            Ok(()) => tracing::info!("stopped"),
            Err(_) => tracing::warn!(limit = ?RUNTIME_LIMIT, "the runtime did not stop in time"),
        }
        Ok(())
    });
    runtime.shutdown_timeout(SHUTDOWN_LIMIT);
    result
}

/// SIGTERM and SIGINT (Ctrl-C): service managers, container runtimes and `kill` send SIGTERM, a
/// terminal sends SIGINT, and both mean "stop cleanly". Listening starts when this is made, so
/// make it before serving anything: a signal that arrives later is never lost to the default
/// action (which ends the process at once, with no drain and a non-zero status).
struct StopSignals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn listen() -> Result<StopSignals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(StopSignals {
                term: signal(SignalKind::terminate()).context("listening for SIGTERM")?,
                int: signal(SignalKind::interrupt()).context("listening for SIGINT")?,
            })
        }
        #[cfg(not(unix))]
        Ok(StopSignals {})
    }

    /// Resolves with the name of the first stop signal.
    async fn recv(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => "SIGTERM",
                _ = self.int.recv() => "SIGINT",
            }
        }
        #[cfg(not(unix))]
        {
            match tokio::signal::ctrl_c().await {
                Ok(()) => "Ctrl-C",
                Err(_) => std::future::pending().await,
            }
        }
    }
}

/// Arguments of `beaufort discovery`.
#[derive(Args)]
pub struct DiscoveryArgs {
    /// The server's libp2p identity key file (created if it does not exist). Its peer id goes
    /// into the members' `node.discovery` addresses, so it must stay the same across restarts.
    #[arg(long)]
    p2p_key: PathBuf,
    /// libp2p listen addresses (repeatable).
    #[arg(long, default_values_t = ["/ip4/0.0.0.0/tcp/7700".to_owned(), "/ip4/0.0.0.0/udp/7700/quic-v1".to_owned()])]
    listen: Vec<String>,
}

/// Runs a discovery server until SIGTERM or SIGINT; prints each address members can use (with its
/// peer id) on stdout, one a line.
pub fn discovery(args: DiscoveryArgs) -> Result<()> {
    init_tracing();
    let keypair = if args.p2p_key.exists() {
        read_p2p_key(&args.p2p_key)?
    } else {
        let mut seed = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed)
            .map_err(|_| anyhow::anyhow!("no system randomness"))?;
        write_p2p_key(&args.p2p_key, seed)?
    };
    let listen = parse_addresses(&args.listen).map_err(anyhow::Error::msg)?;
    let runtime = tokio::runtime::Runtime::new().context("starting tokio")?;
    runtime.block_on(async move {
        let mut signals = StopSignals::listen()?;
        let (ready, mut addresses) = tokio::sync::mpsc::channel(16);
        let server = beaufort_net::run_discovery_server(keypair, listen, ready);
        tokio::pin!(server);
        loop {
            tokio::select! {
                result = &mut server => return result.context("discovery server"),
                Some(address) = addresses.recv() => {
                    use std::io::Write;
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "{address}").and_then(|()| out.flush()).context("stdout")?;
                }
                signal = signals.recv() => {
                    tracing::info!(signal, "stopping");
                    return Ok(());
                }
            }
        }
    })
}

/// Structured logs on stderr, filtered by `RUST_LOG` (default: info for Beaufort, warn otherwise);
/// coloured only when stderr is a terminal, so journals and log files get plain text.
pub fn init_tracing() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,beaufort=info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}
