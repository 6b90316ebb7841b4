//! An append-only log of what changed in a register, read by many readers at their own pace,
//! whose memory stays bounded however long a view runs.
//!
//! The sync layer remembers, per neighbour, how far into a register's log it has looked, and
//! pushes only what was logged since. A view that a Byzantine member drives through many rounds
//! would grow a plain log without limit, so the log is compacted: when it holds far more entries
//! than the state it describes, it is rebuilt from the state. A reader that had not read up to
//! the compaction then re-reads the rebuilt log whole (its per-link record filters what it already
//! sent); a reader that had keeps its place.

/// How many entries per current item the log may hold before it is rebuilt.
const SLACK: usize = 4;

/// Entries that grow the log without bound unless compacted; positions are absolute.
#[derive(Clone, Debug)]
pub struct ChangeLog<T> {
    entries: Vec<T>,
    /// Absolute position of `entries[0]`.
    base: usize,
    /// Absolute position at the last compaction: readers below it re-read everything.
    compacted_at: usize,
}

impl<T> Default for ChangeLog<T> {
    fn default() -> Self {
        ChangeLog {
            entries: Vec::new(),
            base: 0,
            compacted_at: 0,
        }
    }
}

impl<T: Clone> ChangeLog<T> {
    /// A log holding `current`, as a register restored from disk starts.
    pub fn from_current(current: Vec<T>) -> ChangeLog<T> {
        ChangeLog {
            entries: current,
            base: 0,
            compacted_at: 0,
        }
    }

    /// Appends one entry.
    pub fn push(&mut self, entry: T) {
        self.entries.push(entry);
    }

    /// Appends several entries.
    pub fn extend(&mut self, entries: impl IntoIterator<Item = T>) {
        self.entries.extend(entries);
    }

    /// The absolute position just past the last entry: where a reader that has seen everything
    /// stands.
    pub fn end(&self) -> usize {
        self.base + self.entries.len()
    }

    /// The entries a reader at absolute position `from` has not seen.
    pub fn since(&self, from: usize) -> &[T] {
        if from < self.compacted_at {
            return &self.entries;
        }
        self.entries.get(from - self.base..).unwrap_or_default()
    }

    /// Rebuilds the log from `current` (what the register holds now) once it holds more than
    /// four entries per current item (plus slack); `current` is only called then.
    pub fn compact_if_long(&mut self, current_len: usize, current: impl FnOnce() -> Vec<T>) {
        if self.entries.len() <= SLACK * (current_len + 16) {
            return;
        }
        let end = self.end();
        self.entries = current();
        self.compacted_at = end;
        self.base = end - self.entries.len().min(end);
    }

    /// Empties the log for a new view; every reader starts over.
    pub fn clear(&mut self) {
        let end = self.end();
        self.entries.clear();
        self.base = end;
        self.compacted_at = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_behind_a_compaction_rereads_the_rebuilt_log_and_one_past_it_keeps_its_place() {
        let mut log = ChangeLog::default();
        log.extend(0..100u32);
        let behind = 10;
        let caught_up = log.end();
        log.compact_if_long(3, || vec![97, 98, 99]);
        assert_eq!(log.since(behind), &[97, 98, 99]);
        assert!(log.since(caught_up).is_empty());
        log.push(100);
        assert_eq!(log.since(caught_up), &[100]);
        assert_eq!(log.since(behind), &[97, 98, 99, 100]);
    }

    #[test]
    fn a_short_log_is_left_alone_and_clearing_restarts_every_reader() {
        let mut log = ChangeLog::default();
        log.extend(0..10u32);
        log.compact_if_long(10, || unreachable!("the log is short"));
        assert_eq!(log.since(4), &[4, 5, 6, 7, 8, 9]);
        log.clear();
        log.push(7);
        assert_eq!(log.since(4), &[7]);
        assert_eq!(log.since(log.end()), &[] as &[u32]);
    }
}
