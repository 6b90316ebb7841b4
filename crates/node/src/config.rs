//! A member's configuration file (TOML): the network it belongs to and how this member runs.
//!
//! The `[network]` table is identical in every member's file: the consortium's name, the rules
//! every member's validation hook applies, and each member's BLS public key with its proof of
//! possession, libp2p peer id (binding the transport identity to the voting key) and addresses.
//! Its id is derived from all of that ([`NetworkSection::id`]), so two members with different
//! member lists or rules cannot talk: their votes are signed over different network ids.
//! The `[node]` table is this member's own: its index, key files, data directory, listen
//! addresses and HTTP API. Relative paths are resolved against the configuration file's directory.

use beaufort_core::cadence::Cadence;
pub use beaufort_core::cadence::MAX_AGGREGATE_WAIT_MS;
use beaufort_crypto::hash::Digest;
use beaufort_crypto::membership::{MemberIndex, MemberKey, Membership};
use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Largest configuration file read.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// Default number of neighbours the peer manager keeps.
pub const DEFAULT_NEIGHBOURS: usize = 7;

/// Why a configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read or written.
    ///
    /// The I/O error is part of the message and deliberately not a `source()`: error reports
    /// that print the chain would otherwise name the cause twice ("x.toml: No such file or
    /// directory: No such file or directory").
    #[error("{}: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The file is not valid TOML of the expected shape.
    #[error("{path}: {error}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        error: String,
    },
    /// The contents are inconsistent.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// One member in the network configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberEntry {
    /// The BLS public key and proof of possession.
    #[serde(flatten)]
    pub key: MemberKey,
    /// The libp2p peer id of the member's node.
    pub peer_id: String,
    /// Where the member's node listens (libp2p multiaddresses).
    pub addresses: Vec<String>,
    /// A display name (a shop's name), shown by the web app. Not part of the network id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The public URL of the member's HTTP API, so wallets can redeem at any merchant. Not part
    /// of the network id (a member may move its API without re-keying the network).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
}

/// What every member agrees on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NetworkSection {
    /// The consortium's name.
    pub name: String,
    /// Key prefixes whose keys can be written only once (a voucher redeemed twice is refused by
    /// every member's validation hook).
    #[serde(default)]
    pub write_once_prefixes: Vec<String>,
    /// The members, in index order.
    #[schema(schema_with = crate::api::schema::network_members)]
    pub members: Vec<MemberEntry>,
    /// Votes travel combined into pieces along one tree per key, each member waiting up to this
    /// many milliseconds for its other tree links (docs/AGGREGATION.md §3.6, §3.8): fewer bytes,
    /// more latency. Absent: single shares on per-origin relay trees. Every member should run
    /// the same setting: a member that waits for pieces from a neighbour sending single shares
    /// waits its full wait. It moves nothing that is safe, so it is not part of the network id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregate_wait_ms: Option<u64>,
}

impl NetworkSection {
    /// The network id: a hash of the name, the hook rules and every member's keys and peer id.
    pub fn id(&self) -> Digest {
        beaufort_receipt::network_id(
            &self.name,
            &self.write_once_prefixes,
            self.members
                .iter()
                .map(|m| (&m.key.public_key, m.peer_id.as_str())),
        )
    }

    /// The schedule every member of this network runs: the default one, with votes as pieces
    /// when `aggregate_wait_ms` is set.
    pub fn cadence(&self) -> Cadence {
        Cadence {
            aggregate_wait: self.aggregate_wait_ms,
            ..Cadence::default()
        }
    }

    /// Checks every proof of possession and builds the verified membership.
    pub fn membership(&self) -> Result<Membership, ConfigError> {
        Membership::new(self.id(), self.members.iter().map(|m| m.key).collect())
            .map_err(|e| ConfigError::Invalid(format!("member keys: {e}")))
    }

    /// This section as the `[network]` table of a configuration file (what `beaufort
    /// assemble` writes for every party to paste into its own file).
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        #[derive(Serialize)]
        struct Table<'a> {
            network: &'a NetworkSection,
        }
        toml::to_string_pretty(&Table { network: self })
            .map_err(|e| ConfigError::Invalid(format!("serialising: {e}")))
    }

    /// The members' peer ids and addresses, parsed.
    pub fn peers(&self) -> Result<Vec<(PeerId, Vec<Multiaddr>)>, ConfigError> {
        self.members
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let peer_id = m
                    .peer_id
                    .parse()
                    .map_err(|e| ConfigError::Invalid(format!("member {i} peer id: {e}")))?;
                let addresses = parse_addresses(&m.addresses)
                    .map_err(|e| ConfigError::Invalid(format!("member {i}: {e}")))?;
                Ok((peer_id, addresses))
            })
            .collect()
    }
}

impl From<&NetworkSection> for beaufort_receipt::NetworkKeys {
    /// The part of the network a receipt is checked against, so `beaufort verify --config` goes
    /// through the same check as `--network` and the browser.
    fn from(network: &NetworkSection) -> beaufort_receipt::NetworkKeys {
        beaufort_receipt::NetworkKeys {
            name: network.name.clone(),
            write_once_prefixes: network.write_once_prefixes.clone(),
            members: network
                .members
                .iter()
                .map(|m| beaufort_receipt::NetworkMember {
                    key: m.key,
                    peer_id: m.peer_id.clone(),
                    name: m.name.clone(),
                })
                .collect(),
        }
    }
}

/// This member's own settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSection {
    /// This member's index in the member list.
    pub index: MemberIndex,
    /// The BLS secret key file (see `beaufort keygen`).
    pub bls_key_file: PathBuf,
    /// The libp2p identity key file (32-byte Ed25519 seed, hex).
    pub p2p_key_file: PathBuf,
    /// Where the store lives.
    pub data_dir: PathBuf,
    /// libp2p listen addresses.
    pub listen: Vec<String>,
    /// Where the HTTP API binds (localhost unless deliberately changed).
    #[serde(default = "default_api_bind")]
    pub api_bind: SocketAddr,
    /// The bearer token operator routes require.
    pub api_token: String,
    /// The API's TLS certificate chain (PEM): with `tls_key`, the API and the web app are served
    /// over HTTPS only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of `tls_cert` (PEM: PKCS#8, PKCS#1 or SEC1; mode 0600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// Certificates (PEM) the command-line tools trust, besides the public roots and `tls_cert`,
    /// when they talk to members' APIs over HTTPS: the other members' self-signed certificates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tls_trust: Vec<PathBuf>,
    /// Minimum neighbours to keep.
    #[serde(default = "default_neighbours")]
    pub neighbours: usize,
    /// Discovery servers (`beaufort discovery`), as multiaddresses ending in `/p2p/<peer id>`.
    /// Trusted only for liveness: they help members find each other's addresses, never see data.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub discovery: Vec<String>,
    /// Find members on the local network with mDNS (a market on one Wi-Fi needs no server).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mdns: bool,
    /// Test-only: enables the operator route `PUT /v1/test/isolate`, which makes this member
    /// drop all traffic to and from chosen members (to partition processes on loopback). Off by
    /// default; never enable it in production.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub test_controls: bool,
    /// The wire encoding version this member writes, while some members still run a build that
    /// reads only an older one (docs/OPERATING.md, "Upgrading"); absent: the newest this build
    /// writes. Must be one this build reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wire_version: Option<u16>,
}

fn default_api_bind() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

fn default_neighbours() -> usize {
    DEFAULT_NEIGHBOURS
}

impl NodeSection {
    /// The wire encoding version this member writes: the configured one, or the newest.
    pub fn writes_wire(&self) -> u16 {
        self.wire_version
            .unwrap_or(beaufort_core::wire::WIRE_VERSION)
    }

    /// The API's TLS configuration when `tls_cert` and `tls_key` are set: the files are read and
    /// checked (a missing, unreadable or mismatched file is an error naming it).
    pub fn tls_server_config(
        &self,
    ) -> Result<Option<std::sync::Arc<rustls::ServerConfig>>, crate::tls::TlsError> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => crate::tls::server_config(cert, key).map(Some),
            _ => Ok(None),
        }
    }

    /// The certificates the command-line tools trust besides the public roots: `tls_cert` and
    /// every `tls_trust` file.
    pub fn trusted_certificate_files(&self) -> Vec<PathBuf> {
        self.tls_cert
            .iter()
            .chain(&self.tls_trust)
            .cloned()
            .collect()
    }
}

/// A member's whole configuration file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// The shared network description.
    pub network: NetworkSection,
    /// This member's settings.
    pub node: NodeSection,
}

impl Config {
    /// Reads a configuration file and resolves its relative paths against its directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = read_bounded(path)?;
        let mut config: Config = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            error: e.to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let node = &mut config.node;
        for p in [
            &mut node.bls_key_file,
            &mut node.p2p_key_file,
            &mut node.data_dir,
        ]
        .into_iter()
        .chain(node.tls_cert.as_mut())
        .chain(node.tls_key.as_mut())
        .chain(node.tls_trust.iter_mut())
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        config.validate()?;
        Ok(config)
    }

    /// Writes the configuration as TOML with a comment on each setting, readable only by its
    /// owner: it holds the operator token. An existing file is replaced (atomically, by renaming a new owner-only file over
    /// it), so the token is never in a file others can read, not even for a moment.
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        let text = toml::to_string_pretty(self)
            .map_err(|e| ConfigError::Invalid(format!("serialising: {e}")))?;
        let mut staging = path.as_os_str().to_owned();
        staging.push(".new");
        let staging = PathBuf::from(staging);
        match std::fs::remove_file(&staging) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                return Err(ConfigError::Io {
                    path: staging,
                    error,
                })
            }
        }
        write_secret(&staging, crate::config_doc::commented(&text).as_bytes())?;
        std::fs::rename(&staging, path).map_err(|error| ConfigError::Io {
            path: path.to_path_buf(),
            error,
        })
    }

    /// The discovery servers with their peer ids.
    pub fn discovery_servers(&self) -> Result<Vec<(PeerId, Multiaddr)>, ConfigError> {
        let addresses = parse_addresses(&self.node.discovery).map_err(ConfigError::Invalid)?;
        addresses
            .into_iter()
            .map(|address| match address.iter().last() {
                Some(libp2p::multiaddr::Protocol::P2p(peer)) => Ok((peer, address)),
                _ => Err(ConfigError::Invalid(format!(
                    "discovery server {address} does not end in /p2p/<peer id>"
                ))),
            })
            .collect()
    }

    /// Checks what can be checked without touching keys: the index, the listen addresses, the
    /// peer ids, a non-empty token, the wire version and the aggregation wait.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if usize::from(self.node.index) >= self.network.members.len() {
            return Err(ConfigError::Invalid(format!(
                "node.index {} but only {} members",
                self.node.index,
                self.network.members.len()
            )));
        }
        if self.node.api_token.len() < 16 {
            return Err(ConfigError::Invalid(
                "node.api_token must be at least 16 characters".into(),
            ));
        }
        if self.node.tls_cert.is_some() != self.node.tls_key.is_some() {
            return Err(ConfigError::Invalid(
                "node.tls_cert and node.tls_key go together: set both (HTTPS) or neither".into(),
            ));
        }
        parse_addresses(&self.node.listen).map_err(ConfigError::Invalid)?;
        if let Some(version) = self.node.wire_version {
            let reads = beaufort_core::wire::MIN_WIRE_VERSION..=beaufort_core::wire::WIRE_VERSION;
            if !reads.contains(&version) {
                return Err(ConfigError::Invalid(format!(
                    "node.wire_version {version}: this build writes versions {} to {}",
                    reads.start(),
                    reads.end()
                )));
            }
        }
        if let Some(wait) = self.network.aggregate_wait_ms {
            if wait > MAX_AGGREGATE_WAIT_MS {
                return Err(ConfigError::Invalid(format!(
                    "network.aggregate_wait_ms {wait}: at most {MAX_AGGREGATE_WAIT_MS}"
                )));
            }
        }
        self.discovery_servers()?;
        self.network.peers()?;
        Ok(())
    }
}

/// Parses libp2p multiaddresses.
pub fn parse_addresses(addresses: &[String]) -> Result<Vec<Multiaddr>, String> {
    addresses
        .iter()
        .map(|a| a.parse().map_err(|e| format!("address {a:?}: {e}")))
        .collect()
}

/// Reads a small text file, refusing anything larger than [`MAX_CONFIG_BYTES`].
pub fn read_bounded(path: &Path) -> Result<String, ConfigError> {
    let io = |source| ConfigError::Io {
        path: path.to_path_buf(),
        error: source,
    };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > MAX_CONFIG_BYTES {
        return Err(ConfigError::Invalid(format!(
            "{} is {len} bytes, more than {MAX_CONFIG_BYTES}",
            path.display()
        )));
    }
    std::fs::read_to_string(path).map_err(io)
}

/// Reads a libp2p identity key file (a hex Ed25519 seed).
pub fn read_p2p_key(path: &Path) -> Result<libp2p::identity::Keypair, ConfigError> {
    let text = read_bounded(path)?;
    let mut seed = hex::decode(text.trim())
        .map_err(|e| ConfigError::Invalid(format!("{}: not hex: {e}", path.display())))?;
    libp2p::identity::Keypair::ed25519_from_bytes(&mut seed)
        .map_err(|e| ConfigError::Invalid(format!("{}: {e}", path.display())))
}

/// Writes a new libp2p identity key file (mode 0600) and returns the key pair.
pub fn write_p2p_key(
    path: &Path,
    seed: [u8; 32],
) -> Result<libp2p::identity::Keypair, ConfigError> {
    let mut bytes = seed;
    let keypair = libp2p::identity::Keypair::ed25519_from_bytes(&mut bytes)
        .map_err(|e| ConfigError::Invalid(e.to_string()))?;
    write_secret(path, hex::encode(seed).as_bytes())?;
    Ok(keypair)
}

/// Creates a file readable only by its owner (mode 0600 from its creation, never widened then
/// narrowed) and syncs it; refuses to overwrite an existing file.
fn write_secret(path: &Path, bytes: &[u8]) -> Result<(), ConfigError> {
    use std::io::Write;
    let io = |source| ConfigError::Io {
        path: path.to_path_buf(),
        error: source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)
}

/// What [`init_local`] makes.
#[derive(Clone, Debug)]
pub struct LocalConsortium {
    /// One configuration file per member, in index order.
    pub config_files: Vec<PathBuf>,
    /// The configurations themselves (paths relative to the output directory).
    pub configs: Vec<Config>,
}

/// Options of [`init_local`].
#[derive(Clone, Debug)]
pub struct InitOptions {
    /// Number of members.
    pub members: usize,
    /// The consortium's name.
    pub name: String,
    /// First libp2p port (member i listens on TCP and UDP/QUIC `base + i`, and on WebSocket for
    /// browser members at `base + members + i`); 0 picks free ports.
    pub p2p_base_port: u16,
    /// First HTTP API port (member i binds `base + i` on localhost); 0 picks free ports.
    pub api_base_port: u16,
    /// Write-once key prefixes for the validation hook.
    pub write_once_prefixes: Vec<String>,
    /// Neighbours each member keeps.
    pub neighbours: usize,
    /// Votes as pieces with this wait ([`NetworkSection::aggregate_wait_ms`]); `None`: single
    /// shares.
    pub aggregate_wait_ms: Option<u64>,
}

/// Creates a local consortium in `out`: each member's BLS and libp2p key files and one
/// configuration file per member, all on loopback.
pub fn init_local(out: &Path, options: &InitOptions) -> Result<LocalConsortium, ConfigError> {
    use rand::RngCore;
    let n = options.members;
    if n == 0 || n > beaufort_crypto::membership::MAX_MEMBERS {
        return Err(ConfigError::Invalid(format!("--members {n} out of range")));
    }
    std::fs::create_dir_all(out).map_err(|error| ConfigError::Io {
        path: out.to_path_buf(),
        error,
    })?;
    let rng = ring::rand::SystemRandom::new();
    let mut members = Vec::with_capacity(n);
    let mut nodes = Vec::with_capacity(n);
    // Sockets holding the ports picked so far, so no port is handed out twice; released when
    // the configuration is written.
    let mut probes = Vec::new();
    for i in 0..n {
        let index = MemberIndex::try_from(i)
            .map_err(|_| ConfigError::Invalid("too many members".into()))?;
        let bls_key_file = PathBuf::from(format!("member-{i}.bls"));
        let p2p_key_file = PathBuf::from(format!("member-{i}.p2p"));
        let (secret, key) = beaufort_crypto::keyfile::generate_member_key(&rng)
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        beaufort_crypto::keyfile::write_secret_key_file(&out.join(&bls_key_file), &secret, false)
            .map_err(|e| ConfigError::Invalid(format!("writing the BLS key: {e}")))?;
        let mut seed = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut seed);
        let keypair = write_p2p_key(&out.join(&p2p_key_file), seed)?;
        let p2p_port = port(options.p2p_base_port, i, &mut probes)?;
        let ws_base = match options.p2p_base_port {
            0 => 0,
            base => u16::try_from(usize::from(base) + n)
                .map_err(|_| ConfigError::Invalid(format!("port {base} + {n} out of range")))?,
        };
        let ws_port = port(ws_base, i, &mut probes)?;
        let api_port = port(options.api_base_port, i, &mut probes)?;
        // A browser member can dial only WebSocket, so every member also listens there.
        let addresses = vec![
            format!("/ip4/127.0.0.1/tcp/{p2p_port}"),
            format!("/ip4/127.0.0.1/udp/{p2p_port}/quic-v1"),
            format!("/ip4/127.0.0.1/tcp/{ws_port}/ws"),
        ];
        let mut token = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut token);
        members.push(MemberEntry {
            key,
            peer_id: keypair.public().to_peer_id().to_string(),
            addresses: addresses.clone(),
            name: Some(member_name(i)),
            api_url: Some(format!("http://127.0.0.1:{api_port}")),
        });
        nodes.push(NodeSection {
            index,
            bls_key_file,
            p2p_key_file,
            data_dir: PathBuf::from(format!("data-{i}")),
            listen: addresses,
            api_bind: SocketAddr::from(([127, 0, 0, 1], api_port)),
            api_token: hex::encode(token),
            tls_cert: None,
            tls_key: None,
            tls_trust: Vec::new(),
            neighbours: options.neighbours,
            discovery: Vec::new(),
            mdns: false,
            test_controls: false,
            wire_version: None,
        });
    }
    let network = NetworkSection {
        name: options.name.clone(),
        write_once_prefixes: options.write_once_prefixes.clone(),
        members,
        aggregate_wait_ms: options.aggregate_wait_ms,
    };
    let mut config_files = Vec::with_capacity(n);
    let mut configs = Vec::with_capacity(n);
    for (i, node) in nodes.into_iter().enumerate() {
        let config = Config {
            network: network.clone(),
            node,
        };
        let path = out.join(format!("member-{i}.toml"));
        config.save(&path)?;
        config_files.push(path);
        configs.push(config);
    }
    Ok(LocalConsortium {
        config_files,
        configs,
    })
}

impl LocalConsortium {
    /// Gives every member of a consortium [`init_local`] made in `out` a self-signed certificate
    /// for its API (`member-N.crt`, its key `member-N.key` with mode 0600) naming `localhost`,
    /// `127.0.0.1` and `names`; sets `tls_cert` and `tls_key`, makes every member's tools trust
    /// every member's certificate (`tls_trust`), turns each `api_url` into `https://…` and
    /// rewrites the configuration files.
    pub fn with_self_signed_tls(
        mut self,
        out: &Path,
        names: &[String],
    ) -> Result<LocalConsortium, ConfigError> {
        let mut subject_names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        for name in names {
            if !subject_names.contains(name) {
                subject_names.push(name.clone());
            }
        }
        let certificates: Vec<PathBuf> = (0..self.configs.len())
            .map(|i| PathBuf::from(format!("member-{i}.crt")))
            .collect();
        for (i, config) in self.configs.iter_mut().enumerate() {
            let (cert, key) = crate::tls::self_signed(&subject_names)
                .map_err(|e| ConfigError::Invalid(e.to_string()))?;
            let key_file = PathBuf::from(format!("member-{i}.key"));
            write_secret(&out.join(&key_file), key.as_bytes())?;
            let cert_path = out.join(&certificates[i]);
            std::fs::write(&cert_path, cert).map_err(|error| ConfigError::Io {
                path: cert_path,
                error,
            })?;
            config.node.tls_cert = Some(certificates[i].clone());
            config.node.tls_key = Some(key_file);
            config.node.tls_trust = certificates
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, c)| c.clone())
                .collect();
        }
        let mut network = self.configs.first().map(|c| c.network.clone());
        if let Some(network) = network.as_mut() {
            for member in &mut network.members {
                if let Some(url) = &member.api_url {
                    if let Some(rest) = url.strip_prefix("http://") {
                        member.api_url = Some(format!("https://{rest}"));
                    }
                }
            }
        }
        for (config, path) in self.configs.iter_mut().zip(&self.config_files) {
            if let Some(network) = &network {
                config.network = network.clone();
            }
            config.save(path)?;
        }
        Ok(self)
    }
}

/// "Merchant A", "Merchant B", …, then "Merchant 26", … for a local consortium.
fn member_name(i: usize) -> String {
    match u8::try_from(i) {
        Ok(letter @ 0..=25) => format!("Merchant {}", char::from(b'A' + letter)),
        _ => format!("Merchant {i}"),
    }
}

/// Port `base + i`, or a currently free port when `base` is 0: free for both TCP and UDP (libp2p
/// listens on the same number for TCP and QUIC), and kept bound in `probes` until the caller is
/// done, so two members never get the same port.
fn port(
    base: u16,
    i: usize,
    probes: &mut Vec<(std::net::TcpListener, std::net::UdpSocket)>,
) -> Result<u16, ConfigError> {
    if base == 0 {
        let io = |error| ConfigError::Io {
            path: PathBuf::from("127.0.0.1:0"),
            error,
        };
        for _ in 0..64 {
            let tcp = std::net::TcpListener::bind(("127.0.0.1", 0)).map_err(io)?;
            let port = tcp.local_addr().map_err(io)?.port();
            if let Ok(udp) = std::net::UdpSocket::bind(("127.0.0.1", port)) {
                probes.push((tcp, udp));
                return Ok(port);
            }
        }
        return Err(ConfigError::Invalid(
            "found no port free for both TCP and UDP in 64 tries".into(),
        ));
    }
    u16::try_from(usize::from(base) + i)
        .map_err(|_| ConfigError::Invalid(format!("port {base} + {i} out of range")))
}

/// Checks a certified value's certificate offline against the network configuration.
pub fn verify_certified(
    network: &NetworkSection,
    key: &beaufort_core::types::Key,
    certified: &beaufort_core::state::Certified,
) -> Result<(), ConfigError> {
    let membership = network.membership()?;
    beaufort_receipt::verify_certified(&membership, key, certified)
        .map_err(|e| ConfigError::Invalid(e.to_string()))
}
