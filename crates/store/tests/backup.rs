//! A backup taken from a store restores as certified state only, with a fence over every view
//! the member might have voted in; damaged, incomplete or foreign backups are refused and leave
//! nothing behind.

use beaufort_core::auth::StandInCrypto;
use beaufort_core::hook::AcceptAll;
use beaufort_core::replica::{Replica, Step};
use beaufort_core::types::{Key, MemberIndex, Value, View};
use beaufort_core::wire::SyncMessage;
use beaufort_crypto::hash::{hash, Digest, Domain};
use beaufort_store::backup::{self, BackupInfo};
use beaufort_store::{Store, StoreError, DB_FILE};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

fn network() -> Digest {
    hash(Domain::NetworkId, &[b"backup test"])
}

fn key(text: &str) -> Key {
    Key::new(text).expect("key")
}

/// Four stand-in replicas on a virtual clock that deliver among the members given, persisting
/// member 0's steps as the node does.
struct World {
    replicas: Vec<Replica>,
    clock: u64,
}

impl World {
    fn new(crypto: &StandInCrypto) -> World {
        let mut replicas: Vec<Replica> = (0..4u16)
            .map(|m| {
                Replica::new(
                    Box::new(crypto.signer(m)),
                    Arc::new(crypto.clone()),
                    Arc::new(AcceptAll),
                )
            })
            .collect();
        for (m, replica) in replicas.iter_mut().enumerate() {
            for peer in 0..4u16 {
                if usize::from(peer) != m {
                    replica.add_peer(peer);
                }
            }
        }
        World { replicas, clock: 0 }
    }

    /// Persists member 0's step, then queues its messages to the reachable members.
    fn apply(
        &mut self,
        store: &Store,
        from: MemberIndex,
        mut step: Step,
        reachable: &[MemberIndex],
        queue: &mut VecDeque<(MemberIndex, MemberIndex, SyncMessage)>,
    ) {
        if from == 0 {
            let replica = &self.replicas[0];
            store
                .persist(
                    step.persist
                        .iter()
                        .filter_map(|k| replica.state(k).map(|s| (k, s))),
                    &step.evidence,
                )
                .expect("persist");
        }
        self.replicas[usize::from(from)].mark_durable();
        let mut messages = std::mem::take(&mut step.early);
        messages.append(&mut step.messages);
        for (to, message) in messages {
            if reachable.contains(&to) {
                queue.push_back((from, to, message));
            }
        }
    }

    /// Proposes at member 0 and runs the reachable members for a while (ticks, flushes,
    /// deliveries): enough for a decision when a quorum is reachable.
    fn write(&mut self, store: &Store, reachable: &[MemberIndex], k: &Key) {
        let mut queue = VecDeque::new();
        let (step, _) = self.replicas[0]
            .propose(k.clone(), Value::data("v").expect("value"))
            .expect("propose");
        self.apply(store, 0, step, reachable, &mut queue);
        for _ in 0..20 {
            self.clock += 10_000;
            for &m in reachable {
                let mut step = self.replicas[usize::from(m)].tick(self.clock);
                step.absorb(self.replicas[usize::from(m)].flush());
                self.apply(store, m, step, reachable, &mut queue);
            }
            while let Some((from, to, message)) = queue.pop_front() {
                let step = self.replicas[usize::from(to)].receive(from, message);
                self.apply(store, to, step, reachable, &mut queue);
            }
        }
    }
}

fn backup_bytes(store: &Store) -> (Vec<u8>, BackupInfo) {
    let mut bytes = Vec::new();
    let info = store.backup(&mut bytes).expect("backup");
    (bytes, info)
}

/// A store of member 0 holding a decided key `done` (view 1) and a key `open` whose view 0 it
/// voted in without a decision (members 2 and 3 unreachable).
fn member_store(dir: &std::path::Path) -> Store {
    let crypto = StandInCrypto::new(network(), 4);
    let store = Store::open(dir, network()).expect("open");
    let mut world = World::new(&crypto);
    world.write(&store, &[0, 1, 2, 3], &key("done"));
    world.write(&store, &[0, 1], &key("open"));
    let loaded = store.load().expect("load");
    let views: BTreeMap<&Key, View> = loaded.states.iter().map(|(k, s)| (k, s.view)).collect();
    assert_eq!(views.get(&key("done")), Some(&1), "done is decided");
    assert_eq!(views.get(&key("open")), Some(&0), "open is not");
    store
}

#[test]
fn a_restored_store_holds_certified_state_and_fences_every_view_that_may_hold_a_lost_vote() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = member_store(&dir.path().join("live"));
    let (bytes, info) = backup_bytes(&store);
    assert_eq!(
        info,
        BackupInfo {
            schema: beaufort_store::SCHEMA_VERSION,
            network: network(),
            keys: 2,
            evidence: 0
        }
    );
    assert_eq!(backup::check(bytes.as_slice()).expect("check"), info);

    // The other members report `done` open in view 4 and a key the backup does not have.
    let reported = BTreeMap::from([(key("done"), 4), (key("elsewhere"), 2)]);
    let target = dir.path().join("restored");
    let restored =
        backup::restore(&target, network(), bytes.as_slice(), &reported).expect("restore");
    assert_eq!(restored.info, info);
    assert_eq!(restored.fenced, 3);

    let store = Store::open(&target, network()).expect("open restored");
    let loaded = store.load().expect("load");
    assert_eq!(loaded.states.len(), 1, "only keys with a certified value");
    let (k, state) = &loaded.states[0];
    assert_eq!(k, &key("done"));
    assert_eq!(state.view, 1);
    assert!(state.accepted.is_some(), "the certificate is kept");
    assert_eq!(state.vote_count(), 0, "no vote of the open view");
    assert!(state.values.is_empty() && state.pieces.is_empty());
    assert_eq!(
        store.fence().expect("fence"),
        BTreeMap::from([(key("done"), 4), (key("elsewhere"), 2), (key("open"), 0)])
    );
    store.lift_fence([&key("done")]).expect("lift");
    assert_eq!(store.fence().expect("fence").len(), 2);
}

#[test]
fn a_backup_taken_while_the_store_is_written_is_one_consistent_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = member_store(dir.path());
    let mut out = Vec::new();
    // A writer that persists another key in the middle of the backup: the backup still shows
    // the store as of its start.
    struct Interfering<'a> {
        out: &'a mut Vec<u8>,
        store: &'a Store,
        done: bool,
    }
    impl std::io::Write for Interfering<'_> {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            if !self.done && self.out.len() > 100 {
                self.done = true;
                let crypto = StandInCrypto::new(network(), 4);
                let mut world = World::new(&crypto);
                world.write(self.store, &[0], &key("late"));
            }
            self.out.extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let info = store
        .backup(Interfering {
            out: &mut out,
            store: &store,
            done: false,
        })
        .expect("backup");
    assert_eq!(info.keys, 2);
    assert_eq!(
        store.load().expect("load").states.len(),
        3,
        "the write landed"
    );
    assert_eq!(backup::check(out.as_slice()).expect("check").keys, 2);
}

#[test]
fn damaged_incomplete_and_foreign_backups_are_refused_and_leave_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = member_store(&dir.path().join("live"));
    let (bytes, _) = backup_bytes(&store);
    let none = BTreeMap::new();
    let target = dir.path().join("restored");
    let refused = |input: &[u8], network: Digest| {
        let result = backup::restore(&target, network, input, &none);
        assert!(
            !target.join(DB_FILE).exists(),
            "a refused restore left a store"
        );
        result.expect_err("refused")
    };

    let mut flipped = bytes.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 1;
    assert!(matches!(
        refused(&flipped, network()),
        StoreError::Backup(_) | StoreError::Corrupt { .. }
    ));
    let cut = &bytes[..bytes.len() - 10];
    assert!(refused(cut, network()).to_string().contains("ends early"));
    assert!(backup::check(cut).is_err());
    let other = hash(Domain::NetworkId, &[b"another"]);
    assert!(matches!(
        refused(&bytes, other),
        StoreError::WrongNetwork { .. }
    ));
    assert!(refused(b"hello", network()).to_string().contains("backup"));

    // A directory that already holds a store is left alone.
    let live = dir.path().join("live");
    let error = backup::restore(&live, network(), bytes.as_slice(), &none).expect_err("refused");
    assert!(
        error.to_string().contains("already holds a store"),
        "{error}"
    );
}
