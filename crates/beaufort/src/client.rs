//! `beaufort get/put/delete/watch` against a node's HTTP API, and `beaufort verify` (a value's
//! certificate checked offline against the network configuration).
//!
//! The client speaks plain HTTP/1.1 over a TCP stream: the API binds to localhost, and this keeps
//! a second HTTP stack out of the binary.

use anyhow::{anyhow, bail, Context, Result};
use beaufort_node::api::ValueView;
use beaufort_node::config::{read_bounded, verify_certified, Config, NetworkSection};
use clap::Args;
use std::path::PathBuf;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Largest response body read.
const MAX_RESPONSE_BYTES: u64 = 16 * 1024 * 1024;

/// Which node to talk to.
#[derive(Args)]
pub struct Target {
    /// A member's configuration file (gives the API address and the operator token).
    #[arg(long)]
    config: Option<PathBuf>,
    /// The API address (host:port, e.g. localhost:8000 or 127.0.0.1:8000), instead of --config.
    #[arg(long)]
    api: Option<String>,
    /// The operator token, instead of --config.
    #[arg(long)]
    token: Option<String>,
}

impl Target {
    /// The API address as `host:port` (a host name is resolved when connecting, trying each of
    /// its addresses, so `localhost` works whether it resolves to ::1 or 127.0.0.1 first) and
    /// the token.
    fn resolve(&self) -> Result<(String, Option<String>)> {
        match (&self.config, &self.api) {
            (_, Some(api)) => Ok((api.clone(), self.token.clone())),
            (Some(path), None) => {
                let config = Config::load(path)?;
                Ok((
                    config.node.api_bind.to_string(),
                    self.token.clone().or(Some(config.node.api_token)),
                ))
            }
            (None, None) => bail!("give --config FILE or --api HOST:PORT"),
        }
    }
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
            ClientCommand::Get { target, key } => {
                let (api, _) = target.resolve()?;
                print_answer(request(&api, "GET", &kv_path(&key), None, b"").await?)
            }
            ClientCommand::Put { target, key, value } => {
                let (api, token) = target.resolve()?;
                let answer = request(
                    &api,
                    "PUT",
                    &kv_path(&key),
                    token.as_deref(),
                    value.as_bytes(),
                )
                .await?;
                print_answer(answer)
            }
            ClientCommand::Delete { target, key } => {
                let (api, token) = target.resolve()?;
                print_answer(request(&api, "DELETE", &kv_path(&key), token.as_deref(), b"").await?)
            }
            ClientCommand::Watch { target, prefix } => {
                let (api, _) = target.resolve()?;
                watch(&api, &prefix).await
            }
        }
    })
}

fn kv_path(key: &str) -> String {
    format!("/v1/kv/{}", encode_component(key, true))
}

/// Percent-encodes a path or query component (keeping `/` in paths).
fn encode_component(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn print_answer((status, body): (u16, Vec<u8>)) -> Result<()> {
    let text = String::from_utf8_lossy(&body);
    if (200..300).contains(&status) {
        println!("{text}");
        Ok(())
    } else {
        bail!("HTTP {status}: {text}")
    }
}

async fn send_head(
    api: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> Result<BufReader<TcpStream>> {
    let mut stream = TcpStream::connect(api)
        .await
        .with_context(|| format!("connecting to {api}"))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {api}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(token) = token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    Ok(BufReader::new(stream))
}

/// Reads the status line and headers; returns the status and whether the body is chunked.
async fn read_head(reader: &mut BufReader<TcpStream>) -> Result<(u16, bool)> {
    let mut line = String::new();
    reader.read_line(&mut line).await?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("bad HTTP status line {line:?}"))?;
    let mut chunked = false;
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 || line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
    }
    Ok((status, chunked))
}

/// One request; returns the status and the whole body.
pub async fn request(
    api: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> Result<(u16, Vec<u8>)> {
    let mut reader = send_head(api, method, path, token, body).await?;
    let (status, chunked) = read_head(&mut reader).await?;
    let mut raw = Vec::new();
    (&mut reader)
        .take(MAX_RESPONSE_BYTES)
        .read_to_end(&mut raw)
        .await?;
    let body = if chunked { dechunk(&raw)? } else { raw };
    Ok((status, body))
}

/// Decodes a chunked body.
fn dechunk(mut raw: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let end = raw
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| anyhow!("bad chunk"))?;
        let size = usize::from_str_radix(std::str::from_utf8(&raw[..end])?.trim(), 16)?;
        raw = &raw[end + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = raw.get(..size).ok_or_else(|| anyhow!("truncated chunk"))?;
        out.extend_from_slice(chunk);
        raw = raw
            .get(size + 2..)
            .ok_or_else(|| anyhow!("truncated chunk"))?;
    }
}

/// Prints each server-sent `data:` line of the watch stream.
async fn watch(api: &str, prefix: &str) -> Result<()> {
    let path = format!("/v1/watch?prefix={}", encode_component(prefix, false));
    let mut reader = send_head(api, "GET", &path, None, b"").await?;
    let (status, _) = read_head(&mut reader).await?;
    if status != 200 {
        bail!("HTTP {status}");
    }
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        if let Some(data) = line.trim_end().strip_prefix("data:") {
            println!("{}", data.trim());
        }
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

/// Checks a value's certificate offline.
pub fn verify(args: VerifyArgs) -> Result<()> {
    let network: NetworkSection = match (&args.config, &args.network) {
        (Some(config), _) => Config::load(config)?.network,
        (None, Some(path)) => serde_json::from_str(&read_bounded(path)?)
            .with_context(|| format!("parsing the network description {}", path.display()))?,
        (None, None) => bail!("give --config or --network"),
    };
    let text = if args.file.as_os_str() == "-" {
        std::io::read_to_string(std::io::Read::take(std::io::stdin(), 1 << 20))?
    } else {
        read_bounded(&args.file)?
    };
    let document: serde_json::Value =
        serde_json::from_str(&text).context("parsing the receipt JSON")?;
    if let Some(claimed) = document.get("network_id").and_then(|v| v.as_str()) {
        if claimed != network.id().to_hex() {
            bail!(
                "the receipt is for network {claimed}, not {} ({})",
                network.id().to_hex(),
                network.name
            );
        }
    }
    let view: ValueView = serde_json::from_value(document).context("parsing the receipt JSON")?;
    let (key, certified) = view
        .certified()
        .map_err(|e| anyhow!("refusing the receipt: {e}"))?;
    verify_certified(&network, &key, &certified)?;
    // Shown from the verified bytes only, never from the receipt's text fields.
    let shown = match certified.value.as_data() {
        None => "<deleted>".to_owned(),
        Some(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => format!("{text:?}"),
            Err(_) => format!("0x{}", hex::encode(bytes)),
        },
    };
    println!(
        "OK: {key} = {shown} certified in view {} round {} by {} of {} members",
        certified.view,
        certified.round,
        certified.qc.signers.len(),
        network.members.len()
    );
    Ok(())
}
