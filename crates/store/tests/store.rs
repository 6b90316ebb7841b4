//! The store keeps what the core asked it to persist across a close and reopen, and a replica
//! restored from it does not vote again in a view it already voted in.

use beaufort_core::auth::StandInCrypto;
use beaufort_core::hook::AcceptAll;
use beaufort_core::register::Proposed;
use beaufort_core::replica::Replica;
use beaufort_core::types::{Key, Value};
use beaufort_crypto::hash::{hash, Domain};
use beaufort_store::{Store, StoreError};
use std::sync::Arc;

fn network() -> beaufort_crypto::hash::Digest {
    hash(Domain::NetworkId, &[b"store test"])
}

fn replica(crypto: &StandInCrypto, store: Option<&Store>) -> Replica {
    let signer = Box::new(crypto.signer(0));
    match store {
        None => Replica::new(signer, Arc::new(crypto.clone()), Arc::new(AcceptAll)),
        Some(store) => {
            let loaded = store.load().expect("load");
            Replica::restore(
                signer,
                Arc::new(crypto.clone()),
                Arc::new(AcceptAll),
                loaded.states,
                loaded.evidence,
            )
        }
    }
}

#[test]
fn states_survive_reopen_and_block_a_second_vote() {
    let dir = tempfile::tempdir().expect("tempdir");
    let crypto = StandInCrypto::new(network(), 4);
    let key = Key::new("points/alice").expect("key");
    {
        let store = Store::open(dir.path(), network()).expect("open");
        let mut r = replica(&crypto, None);
        let (step, proposed) = r
            .propose(key.clone(), Value::data("10").expect("value"))
            .expect("propose");
        assert_eq!(proposed, Proposed::Voted);
        assert!(step.persist.contains(&key));
        store
            .persist(
                step.persist
                    .iter()
                    .filter_map(|k| r.state(k).map(|s| (k, s))),
                &step.evidence,
            )
            .expect("persist");
        let stats = store.stats().expect("stats");
        assert_eq!(stats.keys, 1);
        assert!(stats.state_bytes > 0);
    }
    let store = Store::open(dir.path(), network()).expect("reopen");
    let loaded = store.load().expect("load");
    assert_eq!(loaded.states.len(), 1);
    assert_eq!(loaded.states[0].0, key);
    let mut restored = replica(&crypto, Some(&store));
    // The round-0 vote for "10" is on disk, so a different value must wait for the next view.
    let (_, proposed) = restored
        .propose(key.clone(), Value::data("20").expect("value"))
        .expect("propose");
    assert_eq!(proposed, Proposed::Queued);
}

#[test]
fn a_store_of_another_network_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(Store::open(dir.path(), network()).expect("open"));
    let other = hash(Domain::NetworkId, &[b"other"]);
    match Store::open(dir.path(), other) {
        Err(StoreError::WrongNetwork { .. }) => {}
        other => panic!("expected WrongNetwork, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn later_writes_replace_earlier_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let crypto = StandInCrypto::new(network(), 1);
    let store = Store::open(dir.path(), network()).expect("open");
    let mut r = replica(&crypto, None);
    let key = Key::new("k").expect("key");
    // With n = 1 the member's own votes are a quorum: the value commits at once.
    let (step, _) = r
        .propose(key.clone(), Value::data("v").expect("value"))
        .expect("propose");
    assert_eq!(step.decisions.len(), 1);
    store
        .persist(
            step.persist
                .iter()
                .filter_map(|k| r.state(k).map(|s| (k, s))),
            &[],
        )
        .expect("persist");
    drop(store);
    let store = Store::open(dir.path(), network()).expect("reopen");
    let restored = replica(&crypto, Some(&store));
    let certified = restored.get(&key).expect("certified value restored");
    assert_eq!(certified.value, Value::data("v").expect("value"));
}
