//! What a browser member starts from: the network description its page fetched (`GET
//! /v1/network`, the same JSON `network.json` holds), the member's BLS key file as `beaufort
//! keygen`/`init` wrote it, and what its IndexedDB held.
//!
//! The member's index is not typed in by anyone: it is the member whose public key the imported
//! key file holds, so a key file of another network is refused instead of voting under a wrong
//! index.

use crate::records::Stored;
use beaufort_apps::AppHook;
use beaufort_contracts::Registry;
use beaufort_core::auth::{BlsSigner, BlsVerifier};
use beaufort_core::cadence::{Cadence, MAX_AGGREGATE_WAIT_MS};
use beaufort_core::replica::Replica;
use beaufort_crypto::{Digest, MemberIndex, Membership, SecretKey, Signer};
use beaufort_receipt::NetworkKeys;
use serde::Deserialize;
use std::path::Path;
use std::sync::Arc;

/// Largest network description accepted (a consortium of the maximum size fits many times).
pub const MAX_NETWORK_BYTES: usize = 4 * 1024 * 1024;

/// Why a browser member cannot start.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The network description is not one.
    #[error("network description: {0}")]
    Network(String),
    /// The BLS key file is malformed or inconsistent.
    #[error("BLS key file: {0}")]
    Key(String),
    /// The key is valid but belongs to no member of this network.
    #[error("the BLS key file holds no member's key of network {network}")]
    NotAMember {
        /// The network's name.
        network: String,
    },
    /// The libp2p key file is not a hex Ed25519 seed, or not the member's identity.
    #[error("libp2p key file: {0}")]
    Identity(String),
    /// What the browser's storage held cannot be read back.
    #[error("stored state: {0}")]
    Stored(String),
}

/// One other member as the browser sees it: its libp2p identity and the WebSocket addresses it
/// listens on (a page can dial nothing else).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerEntry {
    /// Its libp2p peer id (text).
    pub peer_id: String,
    /// Its `/ws` (or `/wss`) multiaddresses.
    pub websocket: Vec<String>,
}

/// Who this member is in which network: what the runtime needs besides the replica.
#[derive(Clone, Debug)]
pub struct Consortium {
    /// This member's index.
    pub me: MemberIndex,
    /// The network's name.
    pub name: String,
    /// The network id (what IndexedDB's database is named after, so two networks never share one).
    pub network_id: Digest,
    /// Every member, in index order (this one included).
    pub peers: Vec<PeerEntry>,
}

impl Consortium {
    /// Number of members.
    pub fn n(&self) -> usize {
        self.peers.len()
    }
}

/// The network and the member's key, checked.
pub struct Loaded {
    /// Who this member is.
    pub consortium: Consortium,
    membership: Membership,
    secret: SecretKey,
    write_once_prefixes: Vec<String>,
    cadence: Cadence,
}

/// What the network description says besides the keys: members' addresses, and the schedule
/// every member runs.
#[derive(Deserialize)]
struct Addresses {
    members: Vec<MemberAddresses>,
    /// Votes as pieces with this wait (the network section's `aggregate_wait_ms`).
    #[serde(default)]
    aggregate_wait_ms: Option<u64>,
}

#[derive(Deserialize)]
struct MemberAddresses {
    #[serde(default)]
    addresses: Vec<String>,
}

/// Whether a multiaddress ends in a WebSocket the browser can dial.
fn is_websocket(address: &str) -> bool {
    address.split('/').any(|part| part == "ws" || part == "wss")
        && !address.contains("/p2p-circuit")
}

impl Loaded {
    /// Checks the network description (every proof of possession) and finds the member whose key
    /// `bls_key_file` holds.
    pub fn new(network_json: &str, bls_key_file: &[u8]) -> Result<Loaded, SetupError> {
        if network_json.len() > MAX_NETWORK_BYTES {
            return Err(SetupError::Network(format!(
                "{} bytes, more than {MAX_NETWORK_BYTES}",
                network_json.len()
            )));
        }
        let keys =
            NetworkKeys::from_json(network_json).map_err(|e| SetupError::Network(e.to_string()))?;
        let addresses: Addresses = serde_json::from_str(network_json)
            .map_err(|e| SetupError::Network(format!("member addresses: {e}")))?;
        if addresses.members.len() != keys.members.len() {
            return Err(SetupError::Network("member lists differ in length".into()));
        }
        if addresses
            .aggregate_wait_ms
            .is_some_and(|wait| wait > MAX_AGGREGATE_WAIT_MS)
        {
            return Err(SetupError::Network(format!(
                "aggregate_wait_ms above {MAX_AGGREGATE_WAIT_MS}"
            )));
        }
        let cadence = Cadence {
            aggregate_wait: addresses.aggregate_wait_ms,
            ..Cadence::default()
        };
        let checker = keys
            .checker()
            .map_err(|e| SetupError::Network(e.to_string()))?;
        let secret = beaufort_crypto::keyfile::parse_secret_key_file(
            bls_key_file,
            Path::new("the imported BLS key file"),
        )
        .map_err(|e| SetupError::Key(e.to_string()))?;
        let public = secret.public_key();
        let me = keys
            .members
            .iter()
            .position(|m| m.key.public_key == public)
            .and_then(|i| MemberIndex::try_from(i).ok())
            .ok_or_else(|| SetupError::NotAMember {
                network: keys.name.clone(),
            })?;
        let peers = keys
            .members
            .iter()
            .zip(addresses.members)
            .map(|(member, listed)| PeerEntry {
                peer_id: member.peer_id.clone(),
                websocket: listed
                    .addresses
                    .into_iter()
                    .filter(|a| is_websocket(a))
                    .collect(),
            })
            .collect();
        Ok(Loaded {
            consortium: Consortium {
                me,
                name: keys.name.clone(),
                network_id: keys.id(),
                peers,
            },
            membership: checker.membership().clone(),
            secret,
            write_once_prefixes: keys.write_once_prefixes,
            cadence,
        })
    }

    /// The replica this member runs, restored from what its storage held, with the hook every
    /// native member runs (the built-in applications; contracts installed on the network are
    /// learnt from the restored state as the node learns them).
    pub fn replica(self, stored: Stored) -> (Replica, Arc<AppHook>) {
        let membership = Arc::new(self.membership.clone());
        let apps = Arc::new(AppHook::new(
            membership,
            Arc::new(Registry::new()),
            &self.write_once_prefixes,
        ));
        for (key, state) in &stored.states {
            if let Some(certified) = &state.accepted {
                // A contract that cannot be installed is refused at every member alike; the
                // values under it then fail validation here as there.
                let _ = apps.learn(key, certified);
            }
        }
        let replica = Replica::restore(
            Box::new(BlsSigner::new(Signer::new(self.consortium.me, self.secret))),
            Arc::new(BlsVerifier::new(self.membership)),
            apps.clone(),
            stored.states,
            stored.evidence,
        )
        .with_cadence(self.cadence);
        (replica, apps)
    }
}
