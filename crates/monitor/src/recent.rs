//! The recent flows: a ring of the last records, bounded in records and in bytes, to query with
//! a [`FlowFilter`], and a broadcast of each new record to live subscribers.
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

/// Bytes of records kept by default (as [`FlowRecord::approx_bytes`] counts them): with records
/// cut to their fields' limits, the ring never holds more than this whatever flows through it.
pub const DEFAULT_MAX_BYTES: usize = 16 * 1024 * 1024;

/// Records a live subscriber may fall behind by before it starts losing them.
pub const SUBSCRIBER_BACKLOG: usize = 4_096;

/// The last records, and the live feed of new ones.
pub struct Recent {
    capacity: usize,
    max_bytes: usize,
    ring: Mutex<Ring>,
    live: broadcast::Sender<Arc<FlowRecord>>,
}

/// The kept records and how many bytes they hold.
#[derive(Default)]
struct Ring {
    records: VecDeque<Arc<FlowRecord>>,
    bytes: usize,
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
        Self::bounded(DEFAULT_CAPACITY, DEFAULT_MAX_BYTES)
    }
}

impl Recent {
    /// Keeps the last `capacity` records (at least one), within [`DEFAULT_MAX_BYTES`].
    pub fn new(capacity: usize) -> Self {
        Self::bounded(capacity, DEFAULT_MAX_BYTES)
    }

    /// Keeps the last `capacity` records (at least one) as long as they hold at most
    /// `max_bytes`; the oldest go first when either is reached (the newest record is always
    /// kept).
    pub fn bounded(capacity: usize, max_bytes: usize) -> Self {
        let capacity = capacity.max(1);
        let (live, _) = broadcast::channel(SUBSCRIBER_BACKLOG);
        Self {
            capacity,
            max_bytes,
            ring: Mutex::new(Ring::default()),
            live,
        }
    }

    /// How many records it keeps at most.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How many bytes of records it keeps at most.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// How many bytes the kept records hold now.
    pub fn bytes(&self) -> usize {
        self.ring().bytes
    }

    /// The newest kept records matching `filter`, at most its `limit` (default
    /// [`DEFAULT_LIMIT`]), oldest first.
    pub fn query(&self, filter: &FlowFilter) -> Vec<Arc<FlowRecord>> {
        let limit = filter.limit.unwrap_or(DEFAULT_LIMIT);
        Self::select(&self.ring().records, filter, limit)
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
            Some(filter) => {
                Self::select(&ring.records, filter, filter.limit.unwrap_or(self.capacity))
            }
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

    fn ring(&self) -> MutexGuard<'_, Ring> {
        // A ring left mid-push by a panic is still a ring of whole records.
        self.ring.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl FlowObserver for Recent {
    fn observe(&self, batch: &[Arc<FlowRecord>]) {
        let mut ring = self.ring();
        for record in batch {
            let size = record.approx_bytes();
            while !ring.records.is_empty()
                && (ring.records.len() >= self.capacity || ring.bytes + size > self.max_bytes)
            {
                if let Some(oldest) = ring.records.pop_front() {
                    ring.bytes = ring.bytes.saturating_sub(oldest.approx_bytes());
                }
            }
            ring.records.push_back(Arc::clone(record));
            ring.bytes += size;
            // No subscriber is not an error: the record is kept in the ring all the same.
            let _ = self.live.send(Arc::clone(record));
        }
    }
}

impl std::fmt::Debug for Recent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recent")
            .field("capacity", &self.capacity)
            .field("max_bytes", &self.max_bytes)
            .field("kept", &self.ring().records.len())
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
    fn the_ring_is_bounded_in_bytes_too() {
        let one = record(0, Verdict::Allow).approx_bytes();
        let recent = Recent::bounded(1000, one * 3);
        let batch: Vec<_> = (0..10).map(|i| record(i, Verdict::Allow)).collect();
        recent.observe(&batch);
        assert_eq!(sequences(&recent.query(&FlowFilter::default())), [7, 8, 9]);
        assert!(recent.bytes() <= recent.max_bytes());
        // A record larger than the whole budget is still kept, alone.
        let mut huge = FlowRecord::new(
            FlowKind::Mesh,
            "function:a",
            "function:b",
            Verdict::Deny,
            "r",
        );
        huge.reason = "x".repeat(one * 4);
        huge.bytes_in = 10;
        recent.observe(&[Arc::new(huge)]);
        assert_eq!(sequences(&recent.query(&FlowFilter::default())), [10]);
        recent.observe(&[record(11, Verdict::Allow)]);
        assert_eq!(sequences(&recent.query(&FlowFilter::default())), [11]);
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
