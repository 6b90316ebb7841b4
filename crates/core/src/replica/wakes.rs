//! When a link's held-back pieces are due: the keys whose votes the key's tree holds back from
//! one neighbour, each with the time its hold ends at the latest.
//!
//! Every flush (every few milliseconds, for every neighbour) asks which holds have ended, so the
//! holds are indexed by their end as well as by key: the question costs the due entries, not
//! every held key (at n = 100 a link held about 65 keys at a time, scanned twice per flush).

use crate::types::Key;
use std::collections::{BTreeMap, BTreeSet};

/// The held keys of one link and when each hold ends. At most one entry per key.
#[derive(Debug, Default)]
pub(super) struct TreeWakes {
    by_key: BTreeMap<Key, u64>,
    by_due: BTreeSet<(u64, Key)>,
}

impl TreeWakes {
    /// Holds `key` back until `due` at the latest, replacing an earlier end.
    pub(super) fn set(&mut self, key: &Key, due: u64) {
        if let Some(previous) = self.by_key.insert(key.clone(), due) {
            if previous == due {
                return;
            }
            self.by_due.remove(&(previous, key.clone()));
        }
        self.by_due.insert((due, key.clone()));
    }

    /// The hold on `key` ended or no longer applies.
    pub(super) fn remove(&mut self, key: &Key) {
        if let Some(due) = self.by_key.remove(key) {
            self.by_due.remove(&(due, key.clone()));
        }
    }

    /// When the hold on `key` ends, if it is held.
    pub(super) fn get(&self, key: &Key) -> Option<u64> {
        self.by_key.get(key).copied()
    }

    /// Whether `key` is held back from this link.
    pub(super) fn contains(&self, key: &Key) -> bool {
        self.by_key.contains_key(key)
    }

    /// Whether nothing is held.
    pub(super) fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// The keys whose hold has ended by `now`.
    pub(super) fn due(&self, now: u64) -> impl Iterator<Item = &Key> {
        self.by_due
            .iter()
            .take_while(move |(due, _)| *due <= now)
            .map(|(_, key)| key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> Key {
        Key::new(name.as_bytes().to_vec()).expect("a short key is valid")
    }

    #[test]
    fn only_holds_that_ended_are_due_and_a_new_end_replaces_the_old() {
        let mut wakes = TreeWakes::default();
        wakes.set(&key("a"), 10);
        wakes.set(&key("b"), 30);
        wakes.set(&key("c"), 20);
        assert_eq!(wakes.due(20).collect::<Vec<_>>(), [&key("a"), &key("c")]);
        wakes.set(&key("a"), 40);
        assert_eq!(wakes.due(20).collect::<Vec<_>>(), [&key("c")]);
        assert_eq!(wakes.get(&key("a")), Some(40));
        wakes.remove(&key("c"));
        assert!(!wakes.contains(&key("c")));
        assert_eq!(wakes.due(35).collect::<Vec<_>>(), [&key("b")]);
        wakes.remove(&key("a"));
        wakes.remove(&key("b"));
        assert!(wakes.is_empty());
        assert_eq!(wakes.due(u64::MAX).count(), 0);
    }
}
