//! What the two baselines ([`super::pbft`], [`super::tendermint`]) share: the client request as
//! they carry it, batch digests, quorum sizes and the compact wire encoding (postcard, so the
//! engine's bandwidth accounting sees realistic byte counts).

use beaufort_crypto::hash::{hash, Domain};
use beaufort_sim::engine::{Tx, TxId};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A client transaction on the wire: the key and the end-user-signed value (~170 bytes with its
/// P-256 signature), tagged with the workload's id so the engine can attribute commits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The workload's transaction id.
    pub tx: u32,
    /// The key written.
    pub key: String,
    /// The value bytes.
    pub value: Vec<u8>,
}

impl Request {
    /// The request for a workload transaction.
    pub fn of(tx: &Tx) -> Request {
        Request {
            tx: u32::try_from(tx.id).unwrap_or(u32::MAX),
            key: tx.key.clone(),
            value: tx.value.clone(),
        }
    }

    /// The workload's id of this request.
    pub fn id(&self) -> TxId {
        self.tx as TxId
    }
}

/// The digest of a batch (or block) of requests, as votes name it.
pub fn digest(batch: &[Request]) -> [u8; 32] {
    let ids: Vec<u8> = batch.iter().flat_map(|r| r.tx.to_le_bytes()).collect();
    hash(Domain::Other, &[b"baseline batch", &ids]).0
}

/// Votes needed for a quorum among `n` members (2f + 1 when n = 3f + 1; BFT-SMaRt's
/// ⌈(n + f + 1)/2⌉ and Tendermint's "more than two thirds" agree for every n).
pub fn quorum(n: usize) -> usize {
    2 * n / 3 + 1
}

/// Faulty members tolerated among `n`.
pub fn faults(n: usize) -> usize {
    n.saturating_sub(1) / 3
}

/// Encodes a message (postcard: varints, no field names).
pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    postcard::to_stdvec(message).unwrap_or_default()
}

/// Decodes a message; `None` for malformed bytes.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    postcard::from_bytes(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorums_intersect_in_an_honest_member() {
        for n in 4..200 {
            let (q, f) = (quorum(n), faults(n));
            assert!(2 * q > n + f, "n = {n}");
            assert!(
                q <= n - f,
                "n = {n}: a quorum must be reachable with f crashed"
            );
        }
    }
}
