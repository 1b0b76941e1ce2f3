//! Observers: consumers of every flow record (metrics, a buffer of recent flows, a live stream)
//! that run off the request path.
//!
//! They are called on the flow log's writer thread, once per batch, as the batch is handed to
//! the sink (whether or not the sink keeps up: the flows happened all the same). A request hands its record
//! over the bounded channel and returns; it never waits for an observer. An observer slows only
//! the writer, so it must be quick: count, push into a bounded buffer, hand over to a channel
//! that never blocks. A panicking observer is logged and skipped; it stops neither the writer nor
//! the other observers.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use crate::record::FlowRecord;

/// A consumer of every record a [`FlowLog`](crate::FlowLog) receives.
///
/// Records arrive in the order the log received them, in batches, each record shared behind an
/// `Arc` so an observer can keep it without copying.
pub trait FlowObserver: Send + Sync + 'static {
    /// Sees one batch of records, oldest first.
    fn observe(&self, batch: &[Arc<FlowRecord>]);

    /// Learns that `dropped` more records were dropped since the last call (the log had no
    /// room for them, or could not write them), on the writer thread after a batch. Records
    /// dropped before reaching the writer were never [observed](Self::observe).
    fn records_dropped(&self, dropped: u64) {
        let _ = dropped;
    }
}

/// The observers of one flow log, in the order they were added.
#[derive(Clone, Default)]
pub struct FlowObservers {
    observers: Vec<Arc<dyn FlowObserver>>,
}

impl FlowObservers {
    /// No observers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `observer`, which will see every record after those added before it.
    pub fn push(&mut self, observer: Arc<dyn FlowObserver>) {
        self.observers.push(observer);
    }

    /// Adds `observer`, builder style.
    #[must_use]
    pub fn with(mut self, observer: Arc<dyn FlowObserver>) -> Self {
        self.push(observer);
        self
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.observers.is_empty()
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.observers.len()
    }

    /// Hands `batch` to every observer in turn.
    pub(crate) fn notify(&self, batch: &[Arc<FlowRecord>]) {
        if batch.is_empty() {
            return;
        }
        for observer in &self.observers {
            if catch_unwind(AssertUnwindSafe(|| observer.observe(batch))).is_err() {
                tracing::error!(
                    records = batch.len(),
                    "a flow observer panicked; it missed this batch"
                );
            }
        }
    }
}

impl FlowObservers {
    /// Tells every observer that `dropped` more records were dropped.
    pub(crate) fn notify_dropped(&self, dropped: u64) {
        for observer in &self.observers {
            if catch_unwind(AssertUnwindSafe(|| observer.records_dropped(dropped))).is_err() {
                tracing::error!("a flow observer panicked on dropped records");
            }
        }
    }
}

impl fmt::Debug for FlowObservers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlowObservers")
            .field("len", &self.observers.len())
            .finish()
    }
}
