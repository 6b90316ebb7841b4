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
        Metrics {
            registry,
            commit_latency,
            persist_seconds,
            decisions,
            excluded,
            deferred_updates,
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
