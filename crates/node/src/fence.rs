//! The fence a restored member sits behind (`beaufort_store::backup`): for each fenced key, the
//! highest view it may have voted in before its store was replaced by an older backup. The
//! runtime hands its replica only the certificates of those views, none of their votes or
//! proposals, and refuses own writes in them, so the replica, which holds no vote of theirs,
//! never casts one there; a key leaves the fence when an update of a later view (carrying the
//! certificate that closes the fenced ones) moves the replica past it.
//!
//! Why in the runtime and not the core: the core votes whenever a merged state calls for it, and
//! cannot tell a lost vote from one never cast; the runtime decides what reaches it, which is
//! all the fence needs.

use beaufort_core::register::KeyUpdate;
use beaufort_core::replica::Replica;
use beaufort_core::types::{Key, View};
use beaufort_core::wire::SyncMessage;
use std::collections::BTreeMap;

/// Fenced keys and their last fenced view.
#[derive(Debug, Default)]
pub(crate) struct Fence {
    views: BTreeMap<Key, View>,
}

impl Fence {
    /// The fence read from the store, without the keys the replica has already moved past;
    /// returns those too, so the caller can lift them in the store.
    pub fn new(stored: BTreeMap<Key, View>, replica: &Replica) -> (Fence, Vec<Key>) {
        let (passed, views): (BTreeMap<Key, View>, BTreeMap<Key, View>) = stored
            .into_iter()
            .partition(|(key, view)| beyond(replica, key, *view));
        (Fence { views }, passed.into_keys().collect())
    }

    /// Keys still fenced. A key leaves the fence once the replica is past its fenced view,
    /// which an update may do without any later message naming the key again, so the count
    /// looks at the replica rather than waiting for the key's next update or write.
    pub fn len(&self, replica: &Replica) -> usize {
        self.views
            .iter()
            .filter(|(key, view)| !beyond(replica, key, **view))
            .count()
    }

    /// The view an own write to `key` would have to sit out, if any.
    pub fn holds(&mut self, key: &Key, replica: &Replica) -> Option<View> {
        let view = *self.views.get(key)?;
        if beyond(replica, key, view) {
            self.views.remove(key);
            return None;
        }
        Some(view)
    }

    /// What of `message` may reach the replica: an update of a fenced key in a view up to its
    /// fence only as the certificate it carries (the replica learns decided values, so reads stay
    /// fresh, but never sees a vote or a proposal it could answer with a vote of its own there);
    /// updates of later views, and every other message, whole.
    pub fn admit(&mut self, message: SyncMessage, replica: &Replica) -> SyncMessage {
        if self.views.is_empty() {
            return message;
        }
        match message {
            SyncMessage::Updates { verified, updates } => SyncMessage::Updates {
                verified,
                updates: updates
                    .into_iter()
                    .map(|update| match self.holds(&update.key, replica) {
                        Some(fenced) if update.view <= fenced => certificate_only(update),
                        _ => update,
                    })
                    .collect(),
            },
            other => other,
        }
    }
}

/// An update reduced to the view it opens and the certificate that opened it.
fn certificate_only(update: KeyUpdate) -> KeyUpdate {
    KeyUpdate {
        key: update.key,
        view: update.view,
        accepted: update.accepted,
        values: Vec::new(),
        votes: Vec::new(),
        pieces: Vec::new(),
        complete: false,
        short_refs: false,
    }
}

/// Whether the replica's open view of `key` is past `fenced`.
fn beyond(replica: &Replica, key: &Key, fenced: View) -> bool {
    replica.state(key).is_some_and(|state| state.view > fenced)
}

#[cfg(test)]
mod tests {
    use super::*;
    use beaufort_core::auth::StandInCrypto;
    use beaufort_core::hook::AcceptAll;
    use beaufort_core::register::KeyUpdate;
    use beaufort_core::state::RegisterState;
    use beaufort_core::types::Value;
    use beaufort_crypto::hash::{hash, Domain};
    use std::sync::Arc;

    fn key(text: &str) -> Key {
        Key::new(text).expect("key")
    }

    /// A peer's whole state of `k` in `view`: one value and member 1's vote for it.
    fn update(k: &str, view: View) -> KeyUpdate {
        let value = Value::data("x").expect("value");
        let signature = beaufort_crypto::bls::Signature::from_bytes(&[7; 48]).expect("48 bytes");
        KeyUpdate {
            key: key(k),
            view,
            accepted: None,
            values: vec![value.clone()],
            votes: vec![beaufort_core::register::WireBallot {
                kind: beaufort_core::vote::VoteKind::PreCommit,
                round: 0,
                member: 1,
                ballot: beaufort_core::state::Ballot::Vote {
                    value: value.hash(),
                    signature,
                },
            }],
            pieces: Vec::new(),
            complete: true,
            short_refs: false,
        }
    }

    fn replica() -> Replica {
        let crypto = StandInCrypto::new(hash(Domain::NetworkId, &[b"fence"]), 4);
        Replica::new(
            Box::new(crypto.signer(0)),
            Arc::new(crypto),
            Arc::new(AcceptAll),
        )
    }

    #[test]
    fn updates_of_fenced_views_reach_the_replica_as_their_certificate_only() {
        let replica = replica();
        let stored = BTreeMap::from([(key("a"), 3), (key("b"), 0)]);
        let (mut fence, passed) = Fence::new(stored, &replica);
        assert!(passed.is_empty());
        let message = SyncMessage::Updates {
            verified: false,
            updates: vec![
                update("a", 3),
                update("a", 4),
                update("b", 0),
                update("c", 0),
            ],
        };
        let SyncMessage::Updates { updates, .. } = fence.admit(message, &replica) else {
            panic!("updates stay updates");
        };
        let whole: Vec<bool> = updates.iter().map(|u| !u.votes.is_empty()).collect();
        assert_eq!(
            whole,
            [false, true, false, true],
            "fenced views lose their votes"
        );
        assert!(updates
            .iter()
            .zip([false, true, false, true])
            .all(|(u, kept)| kept || (u.values.is_empty() && u.pieces.is_empty() && !u.complete)));
        let other = SyncMessage::NeedState {
            keys: vec![key("a")],
        };
        assert!(matches!(
            fence.admit(other, &replica),
            SyncMessage::NeedState { .. }
        ));
        assert_eq!(fence.holds(&key("a"), &replica), Some(3));
        assert_eq!(fence.holds(&key("c"), &replica), None);
    }

    #[test]
    fn a_key_the_replica_moved_past_leaves_the_fence() {
        let crypto = StandInCrypto::new(hash(Domain::NetworkId, &[b"fence"]), 4);
        let signers = beaufort_crypto::qc::SignerSet::new(4).expect("4 members");
        let decided = RegisterState {
            view: 2,
            accepted: Some(beaufort_core::state::Certified {
                view: 1,
                round: 0,
                value: Value::data("x").expect("value"),
                qc: beaufort_crypto::qc::QuorumCertificate {
                    signers: beaufort_crypto::weights::SignerWeights::from_signers(&signers)
                        .expect("weights"),
                    signature: beaufort_crypto::bls::Signature::from_bytes(&[7; 48])
                        .expect("48 bytes"),
                },
            }),
            ..RegisterState::default()
        };
        let replica = Replica::restore(
            Box::new(crypto.signer(0)),
            Arc::new(crypto),
            Arc::new(AcceptAll),
            [(key("a"), decided)],
            [],
        );
        let stored = BTreeMap::from([(key("a"), 1), (key("b"), 2)]);
        let (mut fence, passed) = Fence::new(stored, &replica);
        assert_eq!(passed, [key("a")], "view 2 is past a fence at view 1");
        assert_eq!(fence.holds(&key("a"), &replica), None);
        assert_eq!(fence.holds(&key("b"), &replica), Some(2));
        assert_eq!(fence.len(&replica), 1);
    }
}
