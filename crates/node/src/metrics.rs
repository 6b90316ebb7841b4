//! Prometheus metrics of a node: build information, commit latency of own writes, decisions, disk
//! commit time, excluded members, and the network's counters (peers, bytes and messages sent and
//! received).

use beaufort_net::NetStats;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// The node's metrics and the registry they are exported from.
pub struct Metrics {
    registry: Registry,
    /// Seconds from an own write's submission to its commit.
    pub commit_latency: Histogram,
    /// Seconds one fsync'd store commit takes.
    pub persist_seconds: Histogram,
    /// Values certified (one per key and view), own or others'.
    pub decisions: Counter,
    /// Members proven to have equivocated.
    pub excluded: Gauge,
    /// Peer updates set aside because the validation hook could not judge a value yet (an asset
    /// whose contract is not installed here yet); anti-entropy brings them again.
    pub deferred_updates: Counter,
    /// Keys this member holds (sampled when metrics are read).
    pub keys: Gauge,
    /// Own writes waiting for their commit (sampled when metrics are read).
    pub pending_writes: Gauge,
    /// The store's file size in bytes (sampled when metrics are read).
    pub store_file_bytes: Gauge,
    /// The process's resident memory in bytes (Linux; sampled when metrics are read).
    resident_bytes: Gauge,
    /// The process's CPU time, user plus system, in seconds (Linux; sampled when read).
    cpu_seconds: Gauge<f64, AtomicU64>,
}

impl Metrics {
    /// Registers the node's metrics and the network's counters, and `beaufort_build_info` (the
    /// version and network id as labels, value 1), so dashboards can tell builds and networks
    /// apart when comparing members.
    pub fn new(net: &NetStats, network_id: &str) -> Metrics {
        let mut registry = Registry::with_prefix("beaufort");
        registry.register(
            "build",
            "The node's version and network id",
            Info::new(vec![
                ("version".to_owned(), env!("CARGO_PKG_VERSION").to_owned()),
                ("network_id".to_owned(), network_id.to_owned()),
            ]),
        );
        let commit_latency = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        let persist_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        let decisions = Counter::default();
        let excluded = Gauge::default();
        let deferred_updates = Counter::default();
        registry.register(
            "deferred_updates",
            "Peer updates set aside until a value's dependency (a contract) is installed here",
            deferred_updates.clone(),
        );
        registry.register(
            "commit_latency_seconds",
            "Time from an own write's submission to its commit",
            commit_latency.clone(),
        );
        registry.register(
            "persist_seconds",
            "Time of one fsync'd store commit",
            persist_seconds.clone(),
        );
        registry.register(
            "decisions",
            "Values certified (one per key and view)",
            decisions.clone(),
        );
        registry.register(
            "excluded_members",
            "Members proven to have equivocated",
            excluded.clone(),
        );
        registry.register(
            "peers",
            "Members currently connected",
            net.connected.clone(),
        );
        registry.register(
            "sent_bytes",
            "Bytes (batch framing included) of sync messages sent",
            net.bytes_sent.clone(),
        );
        registry.register(
            "received_bytes",
            "Bytes (batch framing included) of sync messages received",
            net.bytes_received.clone(),
        );
        registry.register(
            "sent_messages",
            "Sync messages sent",
            net.messages_sent.clone(),
        );
        registry.register(
            "received_messages",
            "Sync messages received",
            net.messages_received.clone(),
        );
        registry.register(
            "dropped_messages",
            "Sync messages dropped (queue full, peer not connected or isolated, batch not acknowledged)",
            net.messages_dropped.clone(),
        );
        registry.register(
            "banned_peers",
            "Peers disconnected and backed off for a fault",
            net.peers_banned.clone(),
        );
        registry.register(
            "rewirings",
            "Times the neighbours were re-wired because own writes made no progress",
            net.rewirings.clone(),
        );
        registry.register(
            "stale_connections_closed",
            "Connections closed because the member they lead to dialled anew (it restarted)",
            net.stale_connections_closed.clone(),
        );
        let keys = Gauge::default();
        registry.register("keys", "Keys this member holds", keys.clone());
        let pending_writes = Gauge::default();
        registry.register(
            "pending_writes",
            "Own writes waiting for their commit",
            pending_writes.clone(),
        );
        let store_file_bytes = Gauge::default();
        registry.register(
            "store_file_bytes",
            "Size of the store's database file",
            store_file_bytes.clone(),
        );
        let resident_bytes = Gauge::default();
        registry.register(
            "process_resident_memory_bytes",
            "Resident memory of the node's process",
            resident_bytes.clone(),
        );
        let cpu_seconds = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "process_cpu_seconds",
            "CPU time (user plus system) the node's process has used",
            cpu_seconds.clone(),
        );
        Metrics {
            registry,
            commit_latency,
            persist_seconds,
            decisions,
            excluded,
            deferred_updates,
            keys,
            pending_writes,
            store_file_bytes,
            resident_bytes,
            cpu_seconds,
        }
    }

    /// Reads the process's resident memory and CPU time from `/proc/self` (Linux); elsewhere,
    /// or if the files cannot be read, the gauges keep their last value.
    pub fn sample_process(&self) {
        if let Some(bytes) = resident_memory_bytes() {
            self.resident_bytes
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
        if let Some(seconds) = cpu_seconds() {
            self.cpu_seconds.set(seconds);
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut text = String::new();
        if encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }
}

/// `VmRSS` of `/proc/self/status`, in bytes.
fn resident_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// User plus system time of `/proc/self/stat` (fields 14 and 15, in the kernel's fixed
/// 100 ticks per second), in seconds.
fn cpu_seconds() -> Option<f64> {
    /// `USER_HZ`, which `/proc` reports times in on every Linux architecture Beaufort builds for.
    const TICKS_PER_SECOND: f64 = 100.0;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some((user + system) as f64 / TICKS_PER_SECOND)
}
