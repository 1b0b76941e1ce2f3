//! The recent flows: a bounded ring of the last records, to query with a [`FlowFilter`], and a
//! broadcast of each new record to live subscribers.
//!
//! Both are fed on the flow log's writer thread (a [`FlowObserver`]). A subscriber that falls
//! behind loses the oldest records it has not read, and is told how many
//! ([`broadcast::error::RecvError::Lagged`]); nothing ever waits for it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use septa_flows::{FlowObserver, FlowRecord};
use tokio::sync::broadcast;

use crate::filter::{DEFAULT_LIMIT, FlowFilter};

/// Records kept by default.
pub const DEFAULT_CAPACITY: usize = 10_000;

/// Records a live subscriber may fall behind by before it starts losing them.
pub const SUBSCRIBER_BACKLOG: usize = 4_096;

/// The last records, and the live feed of new ones.
pub struct Recent {
    capacity: usize,
    ring: Mutex<VecDeque<Arc<FlowRecord>>>,
    live: broadcast::Sender<Arc<FlowRecord>>,
}

/// What [`Recent::follow`] hands a new subscriber: the records it asked for that are already
/// kept, and the feed of every record after them, with no gap and no overlap.
#[derive(Debug)]
pub struct Follow {
    /// The kept records matching the filter, oldest first (empty unless asked for).
    pub backlog: Vec<Arc<FlowRecord>>,
    /// Every later record, unfiltered.
    pub live: broadcast::Receiver<Arc<FlowRecord>>,
}

impl Default for Recent {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

impl Recent {
    /// Keeps the last `capacity` records (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        let (live, _) = broadcast::channel(SUBSCRIBER_BACKLOG);
        Self {
            capacity,
            ring: Mutex::new(VecDeque::with_capacity(capacity)),
            live,
        }
    }

    /// How many records it keeps at most.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The newest kept records matching `filter`, at most its `limit` (default
    /// [`DEFAULT_LIMIT`]), oldest first.
    pub fn query(&self, filter: &FlowFilter) -> Vec<Arc<FlowRecord>> {
        let limit = filter.limit.unwrap_or(DEFAULT_LIMIT);
        Self::select(&self.ring(), filter, limit)
    }

    /// Subscribes to every new record.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<FlowRecord>> {
        self.live.subscribe()
    }

    /// Subscribes to every new record and, when `replay` is given, also returns the kept records
    /// matching it (up to its `limit`, default all kept), taken at the same instant so that none
    /// is missed or seen twice.
    pub fn follow(&self, replay: Option<&FlowFilter>) -> Follow {
        // Records are pushed and broadcast under this lock, so nothing lands between the two.
        let ring = self.ring();
        let live = self.live.subscribe();
        let backlog = match replay {
            Some(filter) => Self::select(&ring, filter, filter.limit.unwrap_or(self.capacity)),
            None => Vec::new(),
        };
        Follow { backlog, live }
    }

    fn select(
        ring: &VecDeque<Arc<FlowRecord>>,
        filter: &FlowFilter,
        limit: usize,
    ) -> Vec<Arc<FlowRecord>> {
        let mut selected: Vec<Arc<FlowRecord>> = ring
            .iter()
            .rev()
            .filter(|record| filter.matches(record))
            .take(limit)
            .cloned()
            .collect();
        selected.reverse();
        selected
    }

    fn ring(&self) -> MutexGuard<'_, VecDeque<Arc<FlowRecord>>> {
        // A ring left mid-push by a panic is still a ring of whole records.
        self.ring.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl FlowObserver for Recent {
    fn observe(&self, batch: &[Arc<FlowRecord>]) {
        let mut ring = self.ring();
        for record in batch {
            if ring.len() == self.capacity {
                ring.pop_front();
            }
            ring.push_back(Arc::clone(record));
            // No subscriber is not an error: the record is kept in the ring all the same.
            let _ = self.live.send(Arc::clone(record));
        }
    }
}

impl std::fmt::Debug for Recent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recent")
            .field("capacity", &self.capacity)
            .field("kept", &self.ring().len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use septa_flows::{FlowKind, Verdict};
    use tokio::sync::broadcast::error::TryRecvError;

    use super::*;

    fn record(sequence: u64, verdict: Verdict) -> Arc<FlowRecord> {
        let mut record = FlowRecord::new(FlowKind::Mesh, "function:a", "function:b", verdict, "r");
        record.bytes_in = sequence;
        Arc::new(record)
    }

    fn sequences(records: &[Arc<FlowRecord>]) -> Vec<u64> {
        records.iter().map(|r| r.bytes_in).collect()
    }

    #[test]
    fn keeps_the_last_records_and_answers_newest_last() {
        let recent = Recent::new(3);
        let batch: Vec<_> = (0..5).map(|i| record(i, Verdict::Allow)).collect();
        recent.observe(&batch);
        assert_eq!(sequences(&recent.query(&FlowFilter::default())), [2, 3, 4]);
        let two = FlowFilter {
            limit: Some(2),
            ..FlowFilter::default()
        };
        assert_eq!(sequences(&recent.query(&two)), [3, 4]);
    }

    #[test]
    fn the_filter_applies_before_the_limit() {
        let recent = Recent::new(100);
        let batch: Vec<_> = (0..10)
            .map(|i| {
                let verdict = if i % 2 == 0 {
                    Verdict::Deny
                } else {
                    Verdict::Allow
                };
                record(i, verdict)
            })
            .collect();
        recent.observe(&batch);
        let denials = FlowFilter {
            verdict: Some(Verdict::Deny),
            limit: Some(3),
            ..FlowFilter::default()
        };
        assert_eq!(sequences(&recent.query(&denials)), [4, 6, 8]);
    }

    #[test]
    fn a_follower_gets_the_backlog_then_every_later_record_exactly_once() {
        let recent = Recent::new(10);
        recent.observe(&[record(0, Verdict::Allow), record(1, Verdict::Deny)]);
        let mut follow = recent.follow(Some(&FlowFilter::default()));
        recent.observe(&[record(2, Verdict::Allow)]);
        assert_eq!(sequences(&follow.backlog), [0, 1]);
        assert_eq!(follow.live.try_recv().unwrap().bytes_in, 2);
        assert!(matches!(follow.live.try_recv(), Err(TryRecvError::Empty)));
    }

    #[test]
    fn a_slow_subscriber_is_told_how_many_it_lost_and_holds_nobody_up() {
        let recent = Recent::new(10);
        let mut slow = recent.subscribe();
        let flood: Vec<_> = (0..SUBSCRIBER_BACKLOG as u64 + 5)
            .map(|i| record(i, Verdict::Allow))
            .collect();
        recent.observe(&flood);
        assert!(matches!(slow.try_recv(), Err(TryRecvError::Lagged(5))));
        assert_eq!(slow.try_recv().unwrap().bytes_in, 5);
        assert_eq!(recent.query(&FlowFilter::default()).len(), 10);
    }
}
