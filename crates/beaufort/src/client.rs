//! `beaufort get/put/delete/watch` against a node's HTTP API, and `beaufort verify` (a value's
//! certificate checked offline against the network configuration).
//!
//! The requests go through `beaufort-client`, the typed client of the API.

use anyhow::{bail, Context, Result};
use beaufort_client::{Client, Trust, WatchEvent, Write};
use beaufort_node::config::{read_bounded, Config};
use beaufort_receipt::NetworkKeys;
use clap::Args;
use std::path::PathBuf;

/// Which node to talk to.
#[derive(Args)]
pub struct Target {
    /// A member's configuration file (gives the API address and the operator token).
    #[arg(long)]
    config: Option<PathBuf>,
    /// The API address, instead of --config: host:port (plain HTTP, e.g. localhost:8000 or
    /// 127.0.0.1:8000) or https://host:port.
    #[arg(long)]
    api: Option<String>,
    /// The operator token, instead of --config.
    #[arg(long)]
    token: Option<String>,
    /// Also trust this certificate (PEM) over https, e.g. a member's self-signed one
    /// (repeatable). With --config, its tls_cert and tls_trust files are trusted too.
    #[arg(long = "tls-trust")]
    tls_trust: Vec<PathBuf>,
}

impl Target {
    /// The API address (a host name is resolved when connecting, trying each of its
    /// addresses, so `localhost` works whether it resolves to ::1 or 127.0.0.1 first), the
    /// token and the certificates trusted.
    fn resolve(&self) -> Result<(String, Option<String>, Trust)> {
        let config = self.config.as_deref().map(Config::load).transpose()?;
        let trust = trust(config.as_ref(), &self.tls_trust)?;
        match (config, &self.api) {
            (_, Some(api)) => Ok((api.clone(), self.token.clone(), trust)),
            (Some(config), None) => Ok((
                own_api(&config),
                self.token.clone().or(Some(config.node.api_token)),
                trust,
            )),
            (None, None) => bail!("give --config FILE or --api HOST:PORT"),
        }
    }

    /// The client of the target's API, with its token when there is one.
    pub(crate) fn client(&self) -> Result<Client> {
        let (api, token, trust) = self.resolve()?;
        let client = Client::with_trust(api, &trust);
        Ok(match token {
            Some(token) => client.with_token(token),
            None => client,
        })
    }
}

/// Where a member's own tools reach its API: `api_bind` over plain HTTP; with TLS, the
/// member's `https://` api_url from the network (the name its certificate is for), or
/// `https://` and `api_bind`.
pub(crate) fn own_api(config: &Config) -> String {
    if config.node.tls_cert.is_none() {
        return config.node.api_bind.to_string();
    }
    config
        .network
        .members
        .get(usize::from(config.node.index))
        .and_then(|m| m.api_url.clone())
        .filter(|url| url.starts_with("https://"))
        .unwrap_or_else(|| format!("https://{}", config.node.api_bind))
}

/// The certificates trusted over https: the public roots, a configuration's `tls_cert` and
/// `tls_trust` files, and `extra`.
pub(crate) fn trust(config: Option<&Config>, extra: &[PathBuf]) -> Result<Trust> {
    let files = config
        .map(|c| c.node.trusted_certificate_files())
        .unwrap_or_default();
    files
        .iter()
        .chain(extra)
        .try_fold(Trust::public_roots(), |trust, file| {
            Ok(trust.with_pem_file(file)?)
        })
}

/// The client subcommands.
#[derive(clap::Subcommand)]
pub enum ClientCommand {
    /// Reads a key: prints its value, view and certificate as JSON.
    Get {
        #[command(flatten)]
        target: Target,
        /// The key.
        key: String,
    },
    /// Writes a key and waits for the commit.
    Put {
        #[command(flatten)]
        target: Target,
        /// The key.
        key: String,
        /// The value (text).
        value: String,
    },
    /// Deletes a key and waits for the commit.
    Delete {
        #[command(flatten)]
        target: Target,
        /// The key.
        key: String,
    },
    /// Prints committed changes under a prefix as they happen.
    Watch {
        #[command(flatten)]
        target: Target,
        /// The key prefix.
        #[arg(default_value = "")]
        prefix: String,
    },
}

/// Runs a client subcommand.
pub fn run(command: ClientCommand) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting tokio")?;
    runtime.block_on(async move {
        match command {
            ClientCommand::Get { target, key } => match target.client()?.get(&key).await? {
                Some(value) => print_json(&value),
                None => bail!("HTTP 404: {key} has no value"),
            },
            ClientCommand::Put { target, key, value } => {
                let written = target.client()?.put(&key, value.as_bytes()).await?;
                print_write(&key, written)
            }
            ClientCommand::Delete { target, key } => {
                let written = target.client()?.delete(&key).await?;
                print_write(&key, written)
            }
            ClientCommand::Watch { target, prefix } => {
                let mut watch = target.client()?.watch(&prefix, None).await?;
                while let Some(event) = watch.next().await? {
                    match event {
                        WatchEvent::Change { value, .. } => print_json(&value)?,
                        WatchEvent::Lagged { missed } => eprintln!(
                            "missed {} changes: re-read what you follow",
                            missed.map_or_else(|| "some".to_owned(), |n| n.to_string())
                        ),
                    }
                }
                Ok(())
            }
        }
    })
}

fn print_json(value: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string(value)?);
    Ok(())
}

/// Prints a committed value, or that the write is still pending (it may commit later).
fn print_write(key: &str, written: Write) -> Result<()> {
    match written {
        Write::Committed(value) => print_json(&value),
        Write::Pending => print_json(&serde_json::json!({ "status": "pending", "key": key })),
    }
}

/// Arguments of `beaufort verify`.
#[derive(Args)]
pub struct VerifyArgs {
    /// Any member's configuration file (its network section is what is checked against).
    #[arg(long, conflicts_with = "network", required_unless_present = "network")]
    config: Option<PathBuf>,
    /// The network description a node serves at `GET /v1/network` (JSON).
    #[arg(long)]
    network: Option<PathBuf>,
    /// A receipt (`GET /v1/receipts/KEY`) or the JSON printed by `beaufort get`; `-` for stdin.
    file: PathBuf,
}

/// Checks a value's certificate offline, through the same check the browser's `/verify` page runs
/// (`beaufort-receipt`, compiled to WebAssembly there).
pub fn verify(args: VerifyArgs) -> Result<()> {
    let network: NetworkKeys = match (&args.config, &args.network) {
        (Some(config), _) => NetworkKeys::from(&Config::load(config)?.network),
        (None, Some(path)) => serde_json::from_str(&read_bounded(path)?)
            .with_context(|| format!("parsing the network description {}", path.display()))?,
        (None, None) => bail!("give --config or --network"),
    };
    let text = if args.file.as_os_str() == "-" {
        std::io::read_to_string(std::io::Read::take(std::io::stdin(), 1 << 20))?
    } else {
        read_bounded(&args.file)?
    };
    let verified = network.checker()?.verify_json(&text)?;
    println!(
        "OK: {} = {} certified in view {} round {} by {} of {} members",
        verified.key_text(),
        verified.shown(),
        verified.certified.view,
        verified.certified.round,
        verified.signers,
        verified.members
    );
    Ok(())
}
