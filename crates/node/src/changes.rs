//! The feed of committed changes that listeners (`/v1/watch`, [`crate::NodeHandle::listen`])
//! follow: every change gets an id, the most recent ones are kept so a listener that reconnects
//! resumes after the last id it saw, and a listener that falls behind or asks for changes no
//! longer kept is told how many it missed instead of silently skipping them.
//!
//! Ids are `<epoch>-<sequence>`: the epoch is drawn when the node starts, because sequences are
//! not persisted, so an id from before a restart is recognised as unresumable.

use futures::Stream;
use std::collections::VecDeque;
use std::sync::Mutex;
use tokio::sync::broadcast;

/// What a listener receives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Watched<T> {
    /// The next item, with the id to resume after it.
    Item {
        /// `<epoch>-<sequence>`, for `Last-Event-ID`.
        id: String,
        /// The item.
        item: T,
    },
    /// Items were missed here: `Some(n)` for n items (of any key, so fewer may match the
    /// listener's prefix), `None` when the number is unknown (an id from before a restart or
    /// that does not parse). The listener should re-read the state it follows.
    Lagged {
        /// How many items were missed, when known.
        missed: Option<u64>,
    },
}

struct Kept<T> {
    /// Sequence number the next item gets (the first is 1).
    next: u64,
    /// The most recent items with their sequence numbers, oldest first.
    recent: VecDeque<(u64, T)>,
}

/// A numbered broadcast that keeps its last `capacity` items for listeners that resume.
pub(crate) struct ChangeLog<T> {
    epoch: u64,
    capacity: usize,
    kept: Mutex<Kept<T>>,
    sender: broadcast::Sender<(u64, T)>,
}

impl<T: Clone + Send + 'static> ChangeLog<T> {
    /// A log keeping `capacity` items (at least one), with a fresh random epoch.
    pub(crate) fn new(capacity: usize) -> ChangeLog<T> {
        let capacity = capacity.max(1);
        ChangeLog {
            epoch: rand::random(),
            capacity,
            kept: Mutex::new(Kept {
                next: 1,
                recent: VecDeque::with_capacity(capacity),
            }),
            sender: broadcast::channel(capacity).0,
        }
    }

    fn id(&self, seq: u64) -> String {
        format!("{:016x}-{seq}", self.epoch)
    }

    /// The sequence number an id of this log names, if it is one.
    fn parse(&self, id: &str) -> Option<u64> {
        let (epoch, seq) = id.split_once('-')?;
        (u64::from_str_radix(epoch, 16).ok()? == self.epoch).then_some(())?;
        seq.parse().ok()
    }

    /// Numbers, keeps and sends an item. The lock makes the kept order the sent order.
    pub(crate) fn publish(&self, item: T) {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        let seq = kept.next;
        kept.next += 1;
        if kept.recent.len() == self.capacity {
            kept.recent.pop_front();
        }
        kept.recent.push_back((seq, item.clone()));
        let _ = self.sender.send((seq, item));
    }

    /// The items `wanted` accepts, from now on, or from just after `resume` (an id this log
    /// gave out): first the kept items after it (or a [`Watched::Lagged`] for those no longer
    /// kept), then each new one as it is published.
    pub(crate) fn listen(
        &self,
        resume: Option<&str>,
        wanted: impl Fn(&T) -> bool + Send + 'static,
    ) -> impl Stream<Item = Watched<T>> + Send + 'static {
        let mut backlog = VecDeque::new();
        let rx = {
            let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
            // Subscribing under the lock: everything published later arrives through `rx`,
            // everything before is in `kept`, nothing twice.
            let rx = self.sender.subscribe();
            if let Some(resume) = resume {
                match self.parse(resume).filter(|seq| *seq < kept.next) {
                    None => backlog.push_back(Watched::Lagged { missed: None }),
                    Some(after) => {
                        let first_kept = kept.recent.front().map_or(kept.next, |(s, _)| *s);
                        if after + 1 < first_kept {
                            backlog.push_back(Watched::Lagged {
                                missed: Some(first_kept - after - 1),
                            });
                        }
                        backlog.extend(
                            kept.recent
                                .iter()
                                .filter(|(seq, item)| *seq > after && wanted(item))
                                .map(|(seq, item)| Watched::Item {
                                    id: self.id(*seq),
                                    item: item.clone(),
                                }),
                        );
                    }
                }
            }
            rx
        };
        let epoch = self.epoch;
        futures::stream::unfold(
            (backlog, rx, wanted),
            move |(mut backlog, mut rx, wanted)| async move {
                if let Some(next) = backlog.pop_front() {
                    return Some((next, (backlog, rx, wanted)));
                }
                loop {
                    match rx.recv().await {
                        Ok((seq, item)) if wanted(&item) => {
                            let id = format!("{epoch:016x}-{seq}");
                            return Some((Watched::Item { id, item }, (backlog, rx, wanted)));
                        }
                        Ok(_) => continue,
                        Err(broadcast::error::RecvError::Lagged(missed)) => {
                            let lagged = Watched::Lagged {
                                missed: Some(missed),
                            };
                            return Some((lagged, (backlog, rx, wanted)));
                        }
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn items(got: &[Watched<u32>]) -> Vec<Option<u32>> {
        got.iter()
            .map(|w| match w {
                Watched::Item { item, .. } => Some(*item),
                Watched::Lagged { .. } => None,
            })
            .collect()
    }

    async fn take(log: &ChangeLog<u32>, resume: Option<&str>, n: usize) -> Vec<Watched<u32>> {
        log.listen(resume, |i| i % 2 == 0).take(n).collect().await
    }

    #[tokio::test]
    async fn a_listener_resumes_after_the_last_id_it_saw() {
        let log = ChangeLog::new(8);
        let live = log.listen(None, |_| true);
        for i in 0..4 {
            log.publish(i);
        }
        let seen: Vec<_> = live.take(4).collect().await;
        let Watched::Item { id, .. } = &seen[1] else {
            panic!("an item");
        };
        // Resuming after item 1 replays 2 (3 is not wanted), then follows what comes next.
        let resumed = log.listen(Some(id), |i| i % 2 == 0);
        log.publish(4);
        let got: Vec<_> = resumed.take(2).collect().await;
        assert_eq!(items(&got), vec![Some(2), Some(4)]);
        assert_eq!(got[0], seen[2], "the same id as the first time");
    }

    #[tokio::test]
    async fn resuming_past_what_is_kept_or_from_another_epoch_reports_the_gap() {
        let log = ChangeLog::new(3);
        let first = log.listen(None, |_| true);
        log.publish(0);
        let Some(Watched::Item { id, .. }) = Box::pin(first).next().await else {
            panic!("an item");
        };
        for i in 1..=6 {
            log.publish(i);
        }
        // Kept: 4, 5, 6 (sequences 5..=7); after sequence 1, sequences 2..=4 are gone.
        let got = take(&log, Some(&id), 3).await;
        assert_eq!(got[0], Watched::Lagged { missed: Some(3) });
        assert_eq!(items(&got[1..]), vec![Some(4), Some(6)]);
        for stale in [
            "0000000000000000-1",
            "garbage",
            &format!("{:016x}-99", log.epoch),
        ] {
            let got = take(&log, Some(stale), 1).await;
            assert_eq!(got[0], Watched::Lagged { missed: None }, "{stale}");
        }
    }

    #[tokio::test]
    async fn a_listener_that_falls_behind_is_told_how_many_it_missed() {
        let log = ChangeLog::new(2);
        let slow = log.listen(None, |_| true);
        for i in 0..5 {
            log.publish(i);
        }
        let got: Vec<_> = slow.take(3).collect().await;
        assert_eq!(got[0], Watched::Lagged { missed: Some(3) });
        assert_eq!(items(&got[1..]), vec![Some(3), Some(4)]);
    }
}
