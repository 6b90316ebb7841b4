//! `beaufort keygen`: a member's BLS key pair and, for a multi-host consortium, its libp2p
//! identity and its entry in the member list; `beaufort assemble`: the `[network]` table from
//! every party's entry. No party ever sees another's secret: each runs `keygen` on its own host
//! and hands over only the printed entry (docs/OPERATING.md, "A consortium across hosts").

use anyhow::{bail, Context, Result};
use beaufort_crypto::keyfile::{generate_member_key, write_secret_key_file};
use beaufort_node::config::{read_bounded, write_p2p_key, MemberEntry, NetworkSection};
use clap::Args;
use ring::rand::{SecureRandom, SystemRandom};
use std::path::PathBuf;

/// Where to put the key, and what to say about the member.
#[derive(Args)]
pub struct KeygenArgs {
    /// The secret key file to create (mode 0600; never printed).
    #[arg(long)]
    out: PathBuf,
    /// Replace an existing file.
    #[arg(long)]
    force: bool,
    /// Also create a libp2p identity in this file (mode 0600) and print the whole member entry
    /// (keys, peer id, addresses, name, API URL) for `beaufort assemble`. Needs `--address`,
    /// or `--browser` for a member that will run in a browser.
    #[arg(long)]
    p2p_out: Option<PathBuf>,
    /// An address the other members reach this one at (a libp2p multiaddress such as
    /// /ip4/203.0.113.7/tcp/7000; repeatable).
    #[arg(long, requires = "p2p_out")]
    address: Vec<String>,
    /// The member will run in a browser (the `/member` page): it dials the others and cannot be
    /// dialled, so its entry lists no address.
    #[arg(long, conflicts_with = "address", requires = "p2p_out")]
    browser: bool,
    /// The member's display name (a shop's name).
    #[arg(long)]
    name: Option<String>,
    /// The public URL of the member's HTTP API (for wallets, doctor and restore).
    #[arg(long)]
    api_url: Option<String>,
}

/// Generates a key, writes the secret to a file and prints the public part as JSON: the public
/// key and its proof of possession, or with `--p2p-out` the whole member entry.
pub fn keygen(args: KeygenArgs) -> Result<()> {
    if args.p2p_out.is_some() && args.address.is_empty() && !args.browser {
        anyhow::bail!(
            "--p2p-out needs --address (where the others reach this member), or --browser for a \
             member that runs in a browser"
        );
    }
    let rng = SystemRandom::new();
    let (secret, key) = generate_member_key(&rng).context("generating a key")?;
    write_secret_key_file(&args.out, &secret, args.force)
        .with_context(|| format!("writing {}", args.out.display()))?;
    let Some(p2p_out) = args.p2p_out else {
        println!("{}", serde_json::to_string_pretty(&key)?);
        return Ok(());
    };
    beaufort_node::config::parse_addresses(&args.address)
        .map_err(|e| anyhow::anyhow!("--address: {e}"))?;
    if args.force && p2p_out.exists() {
        std::fs::remove_file(&p2p_out)
            .with_context(|| format!("replacing {}", p2p_out.display()))?;
    }
    let mut seed = [0u8; 32];
    rng.fill(&mut seed)
        .map_err(|_| anyhow::anyhow!("no randomness for the libp2p identity"))?;
    let keypair = write_p2p_key(&p2p_out, seed)?;
    let entry = MemberEntry {
        key,
        peer_id: keypair.public().to_peer_id().to_string(),
        addresses: args.address,
        name: args.name,
        api_url: args.api_url,
    };
    println!("{}", serde_json::to_string_pretty(&entry)?);
    Ok(())
}

/// Arguments of `beaufort assemble`.
#[derive(Args)]
pub struct AssembleArgs {
    /// The consortium's name (part of the network id).
    #[arg(long)]
    name: String,
    /// Key prefixes that can be written only once (repeatable).
    #[arg(long = "write-once")]
    write_once: Vec<String>,
    /// Where to write the `[network]` table (TOML); an existing file is refused.
    #[arg(long)]
    out: PathBuf,
    /// Votes travel as pieces on one tree per key, each member waiting up to this long for its
    /// other tree links (as for `beaufort init`); by default single shares.
    #[arg(long, value_parser = humantime::parse_duration)]
    aggregate_wait: Option<std::time::Duration>,
    /// Each party's member entry (`keygen --p2p-out` output, JSON), in member index order.
    #[arg(required = true)]
    entries: Vec<PathBuf>,
}

/// Checks every entry (proofs of possession, peer ids, addresses) and writes the `[network]`
/// table every member pastes into its configuration; prints the network id, which the parties
/// compare over a channel they trust before starting.
pub fn assemble(args: AssembleArgs) -> Result<()> {
    if args.out.exists() {
        bail!("{} exists; choose a new file", args.out.display());
    }
    let mut members = Vec::with_capacity(args.entries.len());
    for path in &args.entries {
        let entry: MemberEntry = serde_json::from_str(&read_bounded(path)?)
            .with_context(|| format!("{} is not a member entry", path.display()))?;
        members.push(entry);
    }
    let network = NetworkSection {
        name: args.name,
        write_once_prefixes: args.write_once,
        members,
        aggregate_wait_ms: crate::node_cmd::aggregate_wait_ms(args.aggregate_wait)?,
    };
    network.membership()?;
    network.peers()?;
    let text = network.to_toml()?;
    std::fs::write(&args.out, text).with_context(|| format!("writing {}", args.out.display()))?;
    println!(
        "network {} with {} members -> {}\nnetwork id {} (every party should see this same id)",
        network.name,
        network.members.len(),
        args.out.display(),
        network.id().to_hex()
    );
    Ok(())
}
