//! The Beaufort node: the runtime that drives the protocol core over a durable store and the
//! libp2p network, the Rust API applications embed ([`NodeHandle`]), the HTTP API ([`api`]),
//! Prometheus metrics and the configuration format ([`config`]).

pub mod api;
mod changes;
pub mod config;
mod config_doc;
pub mod digest;
mod fence;
pub mod metrics;
mod runtime;
pub mod tls;

pub use changes::Watched;

use beaufort_apps::AppHook;
use beaufort_contracts::Registry;
use beaufort_core::auth::{BlsSigner, BlsVerifier};
use beaufort_core::cadence::Cadence;
use beaufort_core::hook::ValidationHook;
use beaufort_core::replica::Replica;
use beaufort_core::state::Certified;
use beaufort_core::types::{Key, MemberIndex, Round, Value, View};
use beaufort_crypto::keyfile::read_secret_key_file;
use beaufort_crypto::membership::{Membership, Signer};
use beaufort_net::{MemberPeer, NetConfig, Network};
use beaufort_store::Store;
use changes::ChangeLog;
use config::{parse_addresses, read_p2p_key, Config};
use futures::Stream;
use metrics::Metrics;
use runtime::{ListQuery, Request, Runtime};
pub use runtime::{Recording, MAX_RECORDED};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Capacity of the request channel into the runtime.
const REQUEST_CAPACITY: usize = 1024;
/// Committed changes kept for listeners that resume, and how far a listener may fall behind
/// before it is told it missed some.
const CHANGE_CAPACITY: usize = 4096;

/// Why a node could not start or a request failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] beaufort_store::StoreError),
    /// The network could not start.
    #[error(transparent)]
    Net(#[from] beaufort_net::NetError),
    /// The key files do not match the configuration.
    #[error("key mismatch: {0}")]
    KeyMismatch(String),
    /// The node has stopped.
    #[error("the node has stopped")]
    Stopped,
    /// The runtime's thread could not be started.
    #[error("starting the runtime thread: {0}")]
    Thread(std::io::Error),
    /// An application's rules or contracts cannot be registered.
    #[error("applications: {0}")]
    Apps(String),
    /// Too many writes are waiting for their commit.
    #[error("too many pending writes")]
    Busy,
    /// The validation hook refused the value.
    #[error("rejected: {0}")]
    Rejected(String),
    /// Another value won and ours may not be proposed again (the hook refuses it now).
    #[error("another value was committed")]
    Lost(Option<Certified>),
    /// This member was restored from a backup and sits out the key's view it may have voted in
    /// before (docs/OPERATING.md, "Backup and restore").
    #[error(
        "this member was restored from a backup and sits out view {view} of this key until the \
         others decide it; write at another member, or here once that view is decided"
    )]
    SittingOut {
        /// The last view it sits out.
        view: View,
    },
}

/// A key as the API and the web app show it: its bytes as text, without quotes (`Key`'s
/// `Display` is its debug form, quoted for logs). Keys written through the API are UTF-8;
/// any other byte shows as U+FFFD.
pub fn key_text(key: &Key) -> String {
    String::from_utf8_lossy(key.as_bytes()).into_owned()
}

/// A committed change, as `listen` delivers it.
#[derive(Clone, Debug)]
pub struct Change {
    /// The key.
    pub key: Key,
    /// The certified value (a tombstone for a delete).
    pub certified: Certified,
}

/// Consensus progress of one key with own writes pending.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct KeyProgress {
    /// The key.
    pub key: String,
    /// Its current view.
    #[schema(value_type = u64)]
    pub view: View,
    /// The highest round with votes.
    #[schema(value_type = Option<u32>)]
    pub top_round: Option<Round>,
    /// Votes held in the view.
    pub votes: usize,
}

/// What `GET /v1/status` shows.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Status {
    /// This member's index.
    #[schema(value_type = u16)]
    pub member: MemberIndex,
    /// Number of members.
    pub members: usize,
    /// Connected neighbours.
    #[schema(value_type = Vec<u16>)]
    pub neighbours: Vec<MemberIndex>,
    /// Members proven to have equivocated.
    #[schema(value_type = Vec<u16>)]
    pub excluded: Vec<MemberIndex>,
    /// Keys held.
    pub keys: usize,
    /// Own writes waiting for their commit.
    pub pending_writes: usize,
    /// Keys this member sits out since it was restored from a backup, until the views it may
    /// have voted in before are decided (0 for a member never restored).
    pub fenced_keys: usize,
    /// Milliseconds since a neighbour last sent anything (or the latest one connected); each
    /// neighbour sends at least once a second, so seconds of silence mean the member is cut off.
    pub silent_ms: u64,
    /// Progress of keys with pending own writes.
    pub in_progress: Vec<KeyProgress>,
    /// This member's most recent own writes and how long each took to commit, newest first.
    pub recent_commits: Vec<RecentCommit>,
}

/// One of this member's recent commits, for the dashboard.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct RecentCommit {
    /// The key written.
    pub key: String,
    /// From submission to holding the certificate, in milliseconds.
    pub latency_ms: u64,
}

/// Options that are not part of the configuration file.
#[derive(Clone, Copy, Debug, Default)]
pub struct StartOptions {
    /// Test-only delay on every outgoing message.
    pub latency: Duration,
    /// Log every replica input and every message sent, for [`NodeHandle::recording`] (the
    /// conformance test replays them; bounded by [`MAX_RECORDED`]).
    pub record: bool,
}

/// An application's own rules and compiled-in contracts, added to the built-in ones (loyalty,
/// eShare, eLoan) when a node starts ([`NodeHandle::start_with`]). Every member of a network
/// must start with the same ones.
///
/// ```
/// use beaufort_contracts::native::NativeContract;
/// use beaufort_core::hook::HookError;
/// use beaufort_core::state::Certified;
/// use beaufort_core::types::{Key, Value};
/// use beaufort_node::Apps;
/// use std::sync::Arc;
///
/// let apps = Apps::new()
///     // Notes under note/ are text, at most 280 bytes.
///     .rule("note/", |_: &Key, _: Option<&Certified>, new: &Value| match new.as_data() {
///         Some(text) if text.len() <= 280 && std::str::from_utf8(text).is_ok() => Ok(()),
///         _ => Err(HookError::Rejected("a note is text of at most 280 bytes".into())),
///     })
///     .contract(Arc::new(
///         NativeContract::new("ticket")
///             .transition("open", &["Start"], "open", |_, _, _| Ok(()), |_, _, _| Ok(serde_json::json!({})))
///             .build()?,
///     ));
/// # let _ = apps;
/// # Ok::<(), beaufort_contracts::ContractError>(())
/// ```
#[derive(Clone, Default)]
pub struct Apps {
    rules: Vec<(String, Arc<dyn ValidationHook>)>,
    contracts: Vec<Arc<dyn beaufort_contracts::Contract>>,
}

impl Apps {
    /// No application of its own: the built-in ones only.
    pub fn new() -> Apps {
        Apps::default()
    }

    /// Every write of a key starting with `prefix` must pass `rule` (see
    /// [`AppHook::with_rule`]); refused at start if the prefix overlaps a built-in application's
    /// or another rule's.
    pub fn rule(mut self, prefix: impl Into<String>, rule: impl ValidationHook + 'static) -> Apps {
        self.rules.push((prefix.into(), Arc::new(rule)));
        self
    }

    /// A compiled-in contract assets can be governed by, like eShare; refused at start if its
    /// name is taken.
    pub fn contract(mut self, contract: Arc<dyn beaufort_contracts::Contract>) -> Apps {
        self.contracts.push(contract);
        self
    }

    /// The hook running the built-in applications and these.
    fn hook(
        &self,
        membership: Arc<Membership>,
        write_once_prefixes: &[String],
    ) -> Result<AppHook, NodeError> {
        let mut registry = Registry::new();
        for contract in &self.contracts {
            registry = registry
                .with_contract(contract.clone())
                .map_err(|e| NodeError::Apps(e.to_string()))?;
        }
        let mut hook = AppHook::new(membership, Arc::new(registry), write_once_prefixes);
        for (prefix, rule) in &self.rules {
            hook = hook
                .with_rule(prefix.clone(), rule.clone())
                .map_err(|e| NodeError::Apps(e.to_string()))?;
        }
        Ok(hook)
    }
}

/// The application's handle on a running node. Cheap to clone; the node stops when every clone
/// is dropped.
#[derive(Clone)]
pub struct NodeHandle {
    requests: mpsc::Sender<Request>,
    changes: Arc<ChangeLog<Change>>,
    metrics: Arc<Metrics>,
    membership: Arc<Membership>,
    config: Arc<Config>,
    store: Arc<Store>,
    network: Network,
    apps: Arc<AppHook>,
    statements: Arc<Signer>,
    /// Closed when the runtime's thread ends (see [`NodeHandle::stopped`]).
    runtime_done: tokio::sync::watch::Receiver<()>,
}

/// A write submitted and not yet committed.
pub struct Pending {
    reply: oneshot::Receiver<Result<Certified, NodeError>>,
}

impl Pending {
    /// Waits for the commit and returns the certificate.
    pub async fn wait(self) -> Result<Certified, NodeError> {
        self.reply.await.map_err(|_| NodeError::Stopped)?
    }
}

/// The replica a member runs: its BLS vote signer, the membership's verifier and the
/// applications' hook, restored from what its store held, on the network's schedule. The node
/// and the conformance test both build it here, so a replay runs exactly the program the node
/// ran.
fn member_replica(
    signer: Signer,
    membership: Membership,
    apps: Arc<AppHook>,
    cadence: Cadence,
    states: impl IntoIterator<Item = (Key, beaufort_core::state::RegisterState)>,
    evidence: impl IntoIterator<Item = beaufort_core::vote::Equivocation>,
) -> Replica {
    Replica::restore(
        Box::new(BlsSigner::new(signer)),
        Arc::new(BlsVerifier::new(membership)),
        apps,
        states,
        evidence,
    )
    .with_cadence(cadence)
}

/// A new member's replica for this configuration, with nothing restored: what a node started on
/// an empty store runs. For replaying a [`Recording`] of such a node.
pub fn fresh_replica(config: &Config) -> Result<Replica, NodeError> {
    let membership = config.network.membership()?;
    let me = config.node.index;
    let secret = read_secret_key_file(&config.node.bls_key_file)
        .map_err(|e| NodeError::KeyMismatch(format!("BLS key file: {e}")))?;
    let apps = Arc::new(AppHook::new(
        Arc::new(membership.clone()),
        Arc::new(Registry::new()),
        &config.network.write_once_prefixes,
    ));
    Ok(member_replica(
        Signer::new(me, secret),
        membership,
        apps,
        config.network.cadence(),
        Vec::new(),
        Vec::new(),
    ))
}

impl NodeHandle {
    /// Starts a node from its configuration with the built-in applications only (see
    /// [`NodeHandle::start_with`]).
    pub fn start(config: Config, options: StartOptions) -> Result<NodeHandle, NodeError> {
        NodeHandle::start_with(config, options, Apps::new())
    }

    /// Starts a node from its configuration, running the built-in applications and `apps`:
    /// loads the keys, opens and restores the store, starts the network (a task on the
    /// caller's tokio runtime) and the runtime (its own thread). Must run inside a tokio
    /// runtime.
    pub fn start_with(
        config: Config,
        options: StartOptions,
        apps: Apps,
    ) -> Result<NodeHandle, NodeError> {
        let membership = config.network.membership()?;
        let me = config.node.index;
        let read_secret = || {
            read_secret_key_file(&config.node.bls_key_file)
                .map_err(|e| NodeError::KeyMismatch(format!("BLS key file: {e}")))
        };
        let secret = read_secret()?;
        // A second signer for application statements (ticket issues, endorsements), so the
        // replica keeps sole ownership of the one that votes.
        let statements = Arc::new(Signer::new(me, read_secret()?));
        if membership.public_key(me) != Some(&secret.public_key()) {
            return Err(NodeError::KeyMismatch(format!(
                "the BLS key file is not member {me}'s key"
            )));
        }
        let keypair = read_p2p_key(&config.node.p2p_key_file)?;
        let peers = config.network.peers()?;
        if peers.get(usize::from(me)).map(|(id, _)| *id) != Some(keypair.public().to_peer_id()) {
            return Err(NodeError::KeyMismatch(format!(
                "the libp2p key file is not member {me}'s identity"
            )));
        }
        let store = Arc::new(Store::open(&config.node.data_dir, membership.network_id())?);
        let loaded = store.load()?;
        tracing::info!(
            member = me,
            keys = loaded.states.len(),
            "restored state from the store"
        );
        let shared_membership = Arc::new(membership.clone());
        let apps = Arc::new(apps.hook(
            shared_membership.clone(),
            &config.network.write_once_prefixes,
        )?);
        for (key, state) in &loaded.states {
            if let Some(certified) = &state.accepted {
                match apps.learn(key, certified) {
                    Ok(Some(name)) => tracing::info!(contract = name, "installed contract"),
                    Ok(None) => {}
                    Err(error) => tracing::error!(%key, %error, "could not install a contract"),
                }
            }
        }
        let replica = member_replica(
            Signer::new(me, secret),
            membership,
            apps.clone(),
            config.network.cadence(),
            loaded.states,
            loaded.evidence,
        );
        let (fence, passed) = fence::Fence::new(store.fence()?, &replica);
        if !passed.is_empty() {
            store.lift_fence(&passed)?;
        }
        let fenced = fence.len(&replica);
        if fenced > 0 {
            tracing::warn!(
                keys = fenced,
                "restored from a backup: sitting out every view this member may have voted in \
                 before, until the others decide it"
            );
        }
        let (network, events) = Network::start(NetConfig {
            keypair,
            me,
            members: peers
                .into_iter()
                .map(|(peer_id, addresses)| MemberPeer { peer_id, addresses })
                .collect(),
            listen: parse_addresses(&config.node.listen).map_err(config::ConfigError::Invalid)?,
            neighbours: config.node.neighbours,
            latency: options.latency,
            discovery: config.discovery_servers()?,
            namespace: format!("beaufort/{}", shared_membership.network_id().to_hex()),
            mdns: config.node.mdns,
        })?;
        let metrics = Arc::new(Metrics::new(
            network.stats(),
            &shared_membership.network_id().to_hex(),
        ));
        let changes = Arc::new(ChangeLog::new(CHANGE_CAPACITY));
        let (requests, request_rx) = mpsc::channel(REQUEST_CAPACITY);
        let runtime = Runtime::new(
            replica,
            store.clone(),
            network.clone(),
            shared_membership.n(),
            changes.clone(),
            metrics.clone(),
            apps.clone(),
        )
        .recording(options.record)
        .fenced(fence)
        .writing_wire(config.node.writes_wire());
        // The runtime gets its own OS thread and single-threaded tokio runtime: its protocol steps
        // are CPU-bound (BLS signing, batch and aggregate verification, several milliseconds for
        // a burst of votes) and would otherwise hold a worker of the caller's runtime, where the
        // network task and every libp2p connection task wait behind them for each hop.
        let (done, runtime_done) = tokio::sync::watch::channel(());
        let thread_runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(NodeError::Thread)?;
        std::thread::Builder::new()
            .name(format!("beaufort-runtime-{me}"))
            .spawn(move || {
                thread_runtime.block_on(runtime.run(request_rx, events));
                drop(done);
            })
            .map_err(NodeError::Thread)?;
        Ok(NodeHandle {
            requests,
            changes,
            metrics,
            membership: shared_membership,
            config: Arc::new(config),
            store,
            network,
            apps,
            statements,
            runtime_done,
        })
    }

    /// Resolves once the runtime has stopped. The runtime stops when every handle is dropped (or
    /// its store fails), and only between steps: the step it is in, with its store write and
    /// fsync, is finished first. The future holds no handle, so a caller can drop its handles
    /// and then wait for a clean stop.
    pub fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut done = self.runtime_done.clone();
        async move {
            // Only the sender's drop ends this: the runtime never sends.
            while done.changed().await.is_ok() {}
        }
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Request,
    ) -> Result<T, NodeError> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send(make(tx))
            .await
            .map_err(|_| NodeError::Stopped)?;
        rx.await.map_err(|_| NodeError::Stopped)
    }

    /// The committed value of a key with its certificate (tombstones included).
    pub async fn get(&self, key: Key) -> Result<Option<Certified>, NodeError> {
        self.ask(|tx| Request::Get(key, tx)).await
    }

    /// Up to `limit` committed, non-deleted keys starting with `prefix`, in key order.
    pub async fn list(
        &self,
        prefix: String,
        limit: usize,
    ) -> Result<Vec<(Key, Certified)>, NodeError> {
        self.list_after(prefix, None, limit).await
    }

    /// Like [`NodeHandle::list`], but only keys after `after`: a listing larger than one answer
    /// (at most 1,000 keys) is read page by page, each page starting after the last key of the
    /// one before.
    pub async fn list_after(
        &self,
        prefix: String,
        after: Option<Key>,
        limit: usize,
    ) -> Result<Vec<(Key, Certified)>, NodeError> {
        self.ask(|tx| {
            Request::List(
                ListQuery {
                    prefix,
                    after,
                    limit,
                },
                tx,
            )
        })
        .await
    }

    /// Up to `limit` keys after `after` (at most 1,000), each with the view this member has
    /// open for it, in key order: what a restore elsewhere must sit out (`beaufort restore`).
    pub async fn open_views(
        &self,
        after: Option<Key>,
        limit: usize,
    ) -> Result<Vec<(Key, View)>, NodeError> {
        self.ask(|tx| Request::Views(after, limit, tx)).await
    }

    /// What this member holds, summarised for comparison with the others (`beaufort doctor`).
    pub async fn digest(&self) -> Result<digest::StoreDigest, NodeError> {
        self.ask(Request::Digest).await
    }

    /// Writes a consistent backup of this member's store to `out` while the node keeps running
    /// (`beaufort_store::backup`). Blocking: call it off the async runtime.
    pub fn backup(
        &self,
        out: impl std::io::Write,
    ) -> Result<beaufort_store::backup::BackupInfo, NodeError> {
        Ok(self.store.backup(out)?)
    }

    /// Proposes a value and returns a handle to wait for its commit.
    pub async fn submit(&self, key: Key, value: Value) -> Result<Pending, NodeError> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send(Request::Write(key, value, tx))
            .await
            .map_err(|_| NodeError::Stopped)?;
        Ok(Pending { reply: rx })
    }

    /// Writes a value and returns once it is committed, with its certificate.
    pub async fn set(&self, key: Key, value: Value) -> Result<Certified, NodeError> {
        self.submit(key, value).await?.wait().await
    }

    /// Deletes a key (a tombstone goes through consensus like any write).
    pub async fn delete(&self, key: Key) -> Result<Certified, NodeError> {
        self.set(key, Value::Tombstone).await
    }

    /// A stream of committed changes to keys starting with `prefix`, each with an id. Given
    /// the id of the last change a listener saw (`resume`), it first replays the changes after
    /// it that this member still keeps (the last 4,096). A listener that falls further behind,
    /// or resumes from an id no longer kept or from before a restart, gets a
    /// [`Watched::Lagged`] where changes are missing, never a silent gap.
    pub fn listen(
        &self,
        prefix: String,
        resume: Option<&str>,
    ) -> impl Stream<Item = Watched<Change>> + Send + 'static {
        self.changes.listen(resume, move |change: &Change| {
            change.key.as_bytes().starts_with(prefix.as_bytes())
        })
    }

    /// The node's status.
    pub async fn status(&self) -> Result<Status, NodeError> {
        self.ask(Request::Status).await
    }

    /// The node's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The verified membership (to check certificates).
    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// The applications' hook: contracts this member can run, contract installs.
    pub fn apps(&self) -> &AppHook {
        &self.apps
    }

    /// This member's signer of application statements (ticket issues, contract endorsements).
    pub fn statement_signer(&self) -> &Signer {
        &self.statements
    }

    /// The configuration the node runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Test-only: drops all traffic to and from `members` until called again (an empty set
    /// heals). Refused unless the configuration enables `test_controls`.
    pub async fn isolate(
        &self,
        members: std::collections::BTreeSet<MemberIndex>,
    ) -> Result<(), NodeError> {
        if !self.config.node.test_controls {
            return Err(NodeError::Rejected("test controls are disabled".into()));
        }
        Ok(self.network.isolate(members).await?)
    }

    /// Sets the gauges that are sampled rather than kept up to date: keys held and pending
    /// writes (asked of the runtime; left as they were if it does not answer), the store's file
    /// size, and the process's memory and CPU time.
    pub async fn sample_gauges(&self) {
        let answer = tokio::time::timeout(Duration::from_secs(2), self.status()).await;
        if let Ok(Ok(status)) = answer {
            let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
            self.metrics.keys.set(gauge(status.keys));
            self.metrics
                .pending_writes
                .set(gauge(status.pending_writes));
        }
        self.metrics
            .store_file_bytes
            .set(i64::try_from(self.store.file_bytes()).unwrap_or(i64::MAX));
        self.metrics.sample_process();
    }

    /// Bytes of sync messages this member's links have sent and received since it started, as
    /// framed on the wire (what `beaufort demo` reports as bandwidth, comparable with the
    /// simulator's).
    pub fn link_bytes(&self) -> (u64, u64) {
        let stats = self.network.stats();
        (stats.bytes_sent.get(), stats.bytes_received.get())
    }

    /// What the node recorded since it started, if it was started with
    /// [`StartOptions::record`].
    pub async fn recording(&self) -> Result<Option<Recording>, NodeError> {
        self.ask(Request::Recording).await
    }

    /// Size figures of the node's store.
    pub fn store_stats(&self) -> Result<beaufort_store::StoreStats, NodeError> {
        Ok(self.store.stats()?)
    }
}
