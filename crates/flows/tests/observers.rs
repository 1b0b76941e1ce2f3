//! Observers of the flow log: they see every record once, off the request path, whether the
//! log goes to a file, nowhere, or fails to be written.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};

use septa_flows::{
    FlowKind, FlowLog, FlowLogOptions, FlowObserver, FlowObservers, FlowRecord, Verdict,
};

/// Keeps what it sees, and who called it.
#[derive(Default)]
struct Collect {
    seen: Mutex<Vec<Arc<FlowRecord>>>,
    threads: Mutex<Vec<String>>,
}

impl FlowObserver for Collect {
    fn observe(&self, batch: &[Arc<FlowRecord>]) {
        self.seen.lock().unwrap().extend(batch.iter().cloned());
        let name = std::thread::current().name().unwrap_or("").to_owned();
        self.threads.lock().unwrap().push(name);
    }
}

impl Collect {
    fn sequences(&self) -> Vec<u64> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.bytes_in)
            .collect()
    }
}

struct Panics;

impl FlowObserver for Panics {
    fn observe(&self, _batch: &[Arc<FlowRecord>]) {
        panic!("an observer with a bug");
    }
}

fn record(sequence: u64) -> FlowRecord {
    let mut record = FlowRecord::new(
        FlowKind::Mesh,
        "function:a",
        "function:b",
        Verdict::Deny,
        "no rule",
    );
    record.bytes_in = sequence;
    record
}

fn options(observers: FlowObservers) -> FlowLogOptions {
    FlowLogOptions {
        observers,
        ..FlowLogOptions::default()
    }
}

#[test]
fn observers_of_a_file_log_see_every_record_once_in_order_on_the_writer_thread() {
    let dir = tempfile::tempdir().unwrap();
    let first = Arc::new(Collect::default());
    let second = Arc::new(Collect::default());
    let observers = FlowObservers::new()
        .with(first.clone())
        .with(second.clone());
    let log = FlowLog::open_with(dir.path().join("flows.jsonl"), options(observers)).unwrap();
    for sequence in 0..1000 {
        log.record(record(sequence));
    }
    // `sync` returns once the observers have seen everything handed over before it.
    log.sync().unwrap();
    let expected: Vec<u64> = (0..1000).collect();
    assert_eq!(first.sequences(), expected);
    assert_eq!(second.sequences(), expected);
    assert!(
        first
            .threads
            .lock()
            .unwrap()
            .iter()
            .all(|t| t == "septa-flows")
    );
    log.shutdown().unwrap();
    let written = septa_flows::read_records(dir.path().join("flows.jsonl")).unwrap();
    assert_eq!(written.len(), 1000);
}

#[test]
fn a_log_without_a_file_still_feeds_its_observers() {
    let seen = Arc::new(Collect::default());
    let log = FlowLog::observers_only(options(FlowObservers::new().with(seen.clone()))).unwrap();
    assert!(log.is_enabled());
    log.guard(FlowKind::Ingress, "gateway", "function:a")
        .finish();
    log.record(record(7));
    log.shutdown().unwrap();
    assert_eq!(seen.seen.lock().unwrap().len(), 2);
    assert_eq!(seen.sequences()[1], 7);
}

#[test]
fn a_log_without_a_file_or_observers_is_disabled() {
    let log = FlowLog::observers_only(FlowLogOptions::default()).unwrap();
    assert!(!log.is_enabled());
}

#[test]
fn a_panicking_observer_stops_neither_the_writer_nor_the_others() {
    let seen = Arc::new(Collect::default());
    let observers = FlowObservers::new()
        .with(Arc::new(Panics))
        .with(seen.clone());
    let log = FlowLog::observers_only(options(observers)).unwrap();
    log.record(record(1));
    log.sync().unwrap();
    log.record(record(2));
    log.shutdown().unwrap();
    assert_eq!(seen.sequences(), vec![1, 2]);
}

#[cfg(target_os = "linux")]
#[test]
fn records_that_cannot_be_written_are_still_observed() {
    let seen = Arc::new(Collect::default());
    let log = FlowLog::open_with(
        "/dev/full",
        options(FlowObservers::new().with(seen.clone())),
    )
    .unwrap();
    log.record(record(1));
    assert!(log.sync().is_err());
    assert_eq!(seen.sequences(), vec![1]);
    assert_eq!(log.stats().write_failures(), 1);
    log.shutdown().unwrap();
}
