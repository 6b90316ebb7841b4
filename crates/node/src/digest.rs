//! A member's holdings summarised so that members can be compared from outside
//! (`GET /v1/digest`, read by `beaufort doctor`): per key prefix, how many keys it holds, how
//! many decisions it has learnt (the sum of its keys' certified views: it only grows, so a
//! smaller sum means fewer decisions learnt) and a digest of exactly which values are certified.
//! Members that learnt the same decisions show the same three figures; one that lags shows a
//! smaller sum; equal sums with different digests would mean two members certified different
//! values, which the protocol rules out.
//!
//! Certified state is compared rather than the Merkle root (also shown), because the root covers
//! the votes of open views, which differ between members for as long as a decision is under way.

use beaufort_core::replica::Replica;
use beaufort_core::types::{Key, MemberIndex};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// The certified state under one key prefix (the text before a key's first `/`, or the whole
/// key if it has none).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PrefixDigest {
    /// The prefix.
    pub prefix: String,
    /// Keys with a certified value under it.
    pub keys: u64,
    /// The sum of those keys' certified views: decisions learnt, up to the first view of each
    /// key.
    pub decisions: u64,
    /// BLAKE3 over every such key with its certified view and value hash, in key order (hex).
    pub digest: String,
}

/// What `GET /v1/digest` shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StoreDigest {
    /// This member's index.
    #[schema(value_type = u16)]
    pub member: MemberIndex,
    /// The root of the member's Merkle index (covers open views too; see the module notes).
    pub merkle_root: String,
    /// Members connected now.
    #[schema(value_type = Vec<u16>)]
    pub neighbours: Vec<MemberIndex>,
    /// Members this member holds proof of having voted twice.
    #[schema(value_type = Vec<u16>)]
    pub excluded: Vec<MemberIndex>,
    /// Keys this member sits out since a restore from a backup.
    pub fenced_keys: u64,
    /// Certified state per key prefix, in prefix order.
    pub prefixes: Vec<PrefixDigest>,
}

impl StoreDigest {
    /// The digest of what `replica` holds now.
    pub(crate) fn of(replica: &mut Replica, fenced_keys: usize) -> StoreDigest {
        let merkle_root = replica.merkle_root().to_hex();
        let mut prefixes: BTreeMap<String, (u64, u64, blake3::Hasher)> = BTreeMap::new();
        for (key, state) in replica.states() {
            let Some(certified) = &state.accepted else {
                continue;
            };
            let entry = prefixes
                .entry(prefix_of(key))
                .or_insert_with(|| (0, 0, blake3::Hasher::new()));
            entry.0 += 1;
            entry.1 = entry.1.saturating_add(certified.view);
            let bytes = key.as_bytes();
            entry.2.update(&(bytes.len() as u64).to_le_bytes());
            entry.2.update(bytes);
            entry.2.update(&certified.view.to_le_bytes());
            entry.2.update(certified.value.hash().0.as_bytes());
        }
        StoreDigest {
            member: replica.me(),
            merkle_root,
            neighbours: replica.peers().collect(),
            excluded: replica.excluded().keys().copied().collect(),
            fenced_keys: fenced_keys as u64,
            prefixes: prefixes
                .into_iter()
                .map(|(prefix, (keys, decisions, hasher))| PrefixDigest {
                    prefix,
                    keys,
                    decisions,
                    digest: hasher.finalize().to_hex().to_string(),
                })
                .collect(),
        }
    }
}

/// A key's prefix as the digest groups it.
fn prefix_of(key: &Key) -> String {
    let bytes = key.as_bytes();
    let end = bytes.iter().position(|&b| b == b'/').unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}
