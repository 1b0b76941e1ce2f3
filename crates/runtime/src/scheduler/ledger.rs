//! What every function's guests have cost, by segment and function, for as long as the process
//! runs.
//!
//! The accounts are process-wide rather than a host's: a reload builds a new [`crate::Host`],
//! and the counters an operator graphs must not go back to zero with it, nor may a worker's
//! fair shares forget the segments of the generation still finishing its requests. So segments
//! are numbered by name once, and a function keeps its account across generations.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

/// What one function's guests have cost. Updated on the worker that runs each guest, read at
/// scrape.
#[derive(Debug, Default)]
pub(crate) struct Account {
    /// CPU time its guests ran, in nanoseconds.
    cpu_ns: AtomicU64,
    /// Time its guests were ready to run but waited for another guest, in nanoseconds.
    wait_ns: AtomicU64,
    /// Times one of its guests was stopped at a yield point so that another guest could run.
    preemptions: AtomicU64,
}

impl Account {
    pub(crate) fn ran(&self, nanos: u64) {
        self.cpu_ns.fetch_add(nanos, Ordering::Relaxed);
    }

    pub(crate) fn waited(&self, nanos: u64) {
        self.wait_ns.fetch_add(nanos, Ordering::Relaxed);
    }

    pub(crate) fn preempted(&self) {
        self.preemptions.fetch_add(1, Ordering::Relaxed);
    }

    /// Times one of its guests was preempted.
    pub(crate) fn preemptions(&self) -> u64 {
        self.preemptions.load(Ordering::Relaxed)
    }
}

/// What one function's guests have cost since the process started (the values of
/// `septa_cpu_seconds_total`, `septa_cpu_wait_seconds_total` and `septa_preemptions_total`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuUsage {
    /// The function's segment.
    pub segment: String,
    /// The function.
    pub function: String,
    /// CPU time its guests ran.
    pub cpu: Duration,
    /// Time its guests were ready to run but waited while guests of other segments (or others
    /// of its own) had their turn.
    pub waited: Duration,
    /// Times one of its guests was stopped at a yield point so that another could run.
    pub preemptions: u64,
}

#[derive(Default)]
struct Books {
    /// Segment names, numbered in the order they were first seen.
    segments: Vec<Arc<str>>,
    accounts: BTreeMap<(Arc<str>, Arc<str>), Arc<Account>>,
}

fn books() -> MutexGuard<'static, Books> {
    static BOOKS: OnceLock<Mutex<Books>> = OnceLock::new();
    BOOKS
        .get_or_init(Mutex::default)
        .lock()
        // The books are only ever extended; a poisoned lock still holds whole entries.
        .unwrap_or_else(PoisonError::into_inner)
}

/// The number of segment `name`, the same for every generation of the process.
pub(crate) fn segment_index(name: &str) -> usize {
    let mut books = books();
    if let Some(index) = books.segments.iter().position(|s| &**s == name) {
        return index;
    }
    books.segments.push(name.into());
    books.segments.len() - 1
}

/// The account of `function` in `segment`, created the first time it is asked for.
pub(crate) fn account(segment: &str, function: &str) -> Arc<Account> {
    books()
        .accounts
        .entry((segment.into(), function.into()))
        .or_default()
        .clone()
}

/// What every function's guests have cost, ordered by segment and function.
pub fn cpu_usage() -> Vec<CpuUsage> {
    let books = books();
    books
        .accounts
        .iter()
        .map(|((segment, function), account)| CpuUsage {
            segment: segment.to_string(),
            function: function.to_string(),
            cpu: Duration::from_nanos(account.cpu_ns.load(Ordering::Relaxed)),
            waited: Duration::from_nanos(account.wait_ns.load(Ordering::Relaxed)),
            preemptions: account.preemptions(),
        })
        .collect()
}
