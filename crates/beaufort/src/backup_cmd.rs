//! `beaufort backup` (download a consistent backup of a running member's store) and
//! `beaufort restore` (rebuild a stopped member's store from one, fenced so it never votes twice;
//! see `beaufort_store::backup` and docs/OPERATING.md, "Backup and restore").

use crate::client::Target;
use anyhow::{bail, Context, Result};
use beaufort_client::Client;
use beaufort_core::types::{Key, View};
use beaufort_node::config::Config;
use beaufort_store::backup;
use beaufort_store::{Store, DB_FILE};
use clap::Args;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

/// Arguments of `beaufort backup`.
#[derive(Args)]
pub struct BackupArgs {
    #[command(flatten)]
    target: Target,
    /// Where to write the backup (created with mode 0600; an existing file is refused).
    #[arg(long)]
    out: PathBuf,
}

/// Downloads the backup, checks it end to end, and only then gives it its name.
pub fn backup(args: BackupArgs) -> Result<()> {
    if args.out.exists() {
        bail!("{} exists; choose a new file", args.out.display());
    }
    let client = args.target.client()?;
    let partial = args.out.with_extension("partial");
    let mut file = create_private(&partial)?;
    let runtime = current_thread()?;
    let bytes = runtime.block_on(client.backup(&mut file));
    drop(file);
    let checked = bytes
        .map_err(anyhow::Error::from)
        .and_then(|_| Ok(backup::check(BufReader::new(File::open(&partial)?))?));
    let info = match checked {
        Ok(info) => info,
        Err(error) => {
            let _ = std::fs::remove_file(&partial);
            return Err(error.context("the backup is incomplete; nothing was kept"));
        }
    };
    std::fs::rename(&partial, &args.out)
        .with_context(|| format!("naming the backup {}", args.out.display()))?;
    println!(
        "backup of network {}: {} keys, {} equivocation proofs -> {}",
        info.network.to_hex(),
        info.keys,
        info.evidence,
        args.out.display()
    );
    Ok(())
}

/// Arguments of `beaufort restore`.
#[derive(Args)]
pub struct RestoreArgs {
    /// The configuration of the member to restore (stopped).
    #[arg(long)]
    config: PathBuf,
    /// Restore even if some members cannot be asked which views they have open. Unsafe unless
    /// those members are gone for good: one of them may hold a vote this member cast after the
    /// backup, in a view the others have not seen, and the restored member could then vote
    /// again there and be excluded.
    #[arg(long)]
    allow_unreachable: bool,
    /// The backup file (`beaufort backup`).
    file: PathBuf,
}

/// Restores a stopped member from a backup (see the module documentation).
pub fn restore(args: RestoreArgs) -> Result<()> {
    let config = Config::load(&args.config)?;
    let network = config.network.membership()?.network_id();
    let info = backup::check(BufReader::new(open(&args.file)?))
        .with_context(|| format!("checking {}", args.file.display()))?;
    if info.network != network {
        bail!(
            "{} is a backup of network {}, but {} belongs to network {}",
            args.file.display(),
            info.network.to_hex(),
            args.config.display(),
            network.to_hex()
        );
    }
    let data_dir = &config.node.data_dir;
    let current = data_dir.join(DB_FILE);
    if current.exists() {
        // Opening takes the store's lock, which a running member holds.
        Store::open(data_dir, network).map_err(|e| {
            anyhow::anyhow!(
                "the member's current store cannot be opened ({e}); stop the member before \
                 restoring it"
            )
        })?;
    }
    let (views, unreachable) = gather_views(&config)?;
    if !unreachable.is_empty() {
        let list = unreachable.join("\n  ");
        if !args.allow_unreachable {
            bail!(
                "cannot ask every member which views it has open:\n  {list}\nStart them (or fix \
                 their api_url) and run restore again; use --allow-unreachable only for members \
                 that are gone for good"
            );
        }
        eprintln!("warning: restoring without asking:\n  {list}");
    }
    if current.exists() {
        let aside = data_dir.join(format!("{DB_FILE}.before-restore-{}", unix_now()));
        std::fs::rename(&current, &aside)
            .with_context(|| format!("moving the current store aside to {}", aside.display()))?;
        println!("the current store is kept at {}", aside.display());
    }
    let restored = backup::restore(data_dir, network, BufReader::new(open(&args.file)?), &views)?;
    println!(
        "restored member {} from {}: {} keys, {} equivocation proofs; it sits out the open \
         views of {} keys until the other members decide them",
        config.node.index,
        args.file.display(),
        restored.info.keys,
        restored.info.evidence,
        restored.fenced
    );
    Ok(())
}

/// Every other member's open views, the highest per key, and the members that could not be
/// asked (with why).
fn gather_views(config: &Config) -> Result<(BTreeMap<Key, View>, Vec<String>)> {
    let runtime = current_thread()?;
    let trust = crate::client::trust(Some(config), &[])?;
    let mut views: BTreeMap<Key, View> = BTreeMap::new();
    let mut unreachable = Vec::new();
    for (index, member) in config.network.members.iter().enumerate() {
        if index == usize::from(config.node.index) {
            continue;
        }
        let name = member
            .name
            .clone()
            .unwrap_or_else(|| format!("member-{index}"));
        let Some(url) = &member.api_url else {
            unreachable.push(format!(
                "member {index} ({name}): no api_url in the network"
            ));
            continue;
        };
        if !url.starts_with("http://") && !url.starts_with("https://") {
            unreachable.push(format!(
                "member {index} ({name}): {url} is not an http:// or https:// URL"
            ));
            continue;
        }
        match runtime.block_on(Client::with_trust(url, &trust).open_views()) {
            Ok(open) => {
                for entry in open {
                    let key = hex::decode(&entry.key_hex)
                        .ok()
                        .and_then(|bytes| Key::new(bytes).ok())
                        .with_context(|| format!("member {index} listed a malformed key"))?;
                    let view = views.entry(key).or_insert(entry.view);
                    *view = (*view).max(entry.view);
                }
            }
            Err(error) => unreachable.push(format!("member {index} ({name}) at {url}: {error}")),
        }
    }
    Ok((views, unreachable))
}

fn current_thread() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting tokio")
}

fn open(path: &Path) -> Result<File> {
    File::open(path).with_context(|| format!("opening {}", path.display()))
}

/// A new file only its owner can read: a backup holds every value of the consortium.
fn create_private(path: &Path) -> Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
