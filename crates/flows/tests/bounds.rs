//! The flow log is bounded: fields are cut to their limits, files rotate and only so many are
//! kept, and a sink that stalls drops and counts records instead of holding up whoever records
//! them, unless the log was opened in block mode.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use septa_flows::{
    CUT_MARKER, FlowKind, FlowLog, FlowLogOptions, FlowObserver, FlowObservers, FlowRecord,
    MAX_PATH_BYTES, Overflow, Rotation, Verdict, log_files, read_records,
};

fn record(sequence: u64) -> FlowRecord {
    let mut record = FlowRecord::new(
        FlowKind::Ingress,
        "gateway",
        "function:storefront",
        Verdict::Allow,
        "route matched",
    );
    record.path = Some("/api/orders".to_owned());
    record.bytes_in = sequence;
    record
}

/// A pipe nobody reads until it is opened: every write waits for the gate.
#[derive(Clone, Default)]
struct Stalled {
    gate: Arc<(Mutex<bool>, Condvar)>,
    written: Arc<Mutex<Vec<u8>>>,
}

impl Stalled {
    fn open(&self) {
        *self.gate.0.lock().unwrap() = true;
        self.gate.1.notify_all();
    }

    fn records(&self) -> Vec<FlowRecord> {
        let written = self.written.lock().unwrap();
        septa_flows::read_records_from(&written[..], "pipe").unwrap()
    }
}

impl Write for Stalled {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (open, changed) = &*self.gate;
        let mut open = open.lock().unwrap();
        while !*open {
            open = changed.wait(open).unwrap();
        }
        self.written.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Counts what the observers are told.
#[derive(Default)]
struct Counts {
    observed: AtomicU64,
    dropped: AtomicU64,
}

impl FlowObserver for Counts {
    fn observe(&self, batch: &[Arc<FlowRecord>]) {
        self.observed
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
    }

    fn records_dropped(&self, dropped: u64) {
        self.dropped.fetch_add(dropped, Ordering::Relaxed);
    }
}

fn wait_until(what: &str, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < Duration::from_secs(20), "{what}");
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_stalled_sink_drops_and_counts_records_and_never_holds_up_a_recorder() {
    const RECORDS: u64 = 5000;
    let pipe = Stalled::default();
    let counts = Arc::new(Counts::default());
    let options = FlowLogOptions {
        capacity: 64,
        buffer_bytes: 16 * 1024,
        observers: FlowObservers::new().with(counts.clone()),
        ..FlowLogOptions::default()
    };
    let log = FlowLog::to_writer(pipe.clone(), "a stalled pipe", options).unwrap();
    // The gate stays closed the whole time: a recorder that waited for the sink would hang.
    let recorder = {
        let log = log.clone();
        thread::spawn(move || {
            for sequence in 0..RECORDS {
                log.record(record(sequence));
                if sequence % 64 == 0 {
                    // Let the writer run now and then, as requests would.
                    thread::yield_now();
                }
            }
        })
    };
    recorder.join().unwrap();
    wait_until("records to be dropped", || log.dropped() > 0);
    assert_eq!(log.backpressure_events(), 0);
    assert!(pipe.written.lock().unwrap().is_empty());

    pipe.open();
    let stats = log.stats();
    log.shutdown().unwrap();
    let written = pipe.records();
    assert!(!written.is_empty());
    assert_eq!(written.len() as u64 + stats.dropped(), RECORDS);
    // What was kept is in order.
    assert!(written.windows(2).all(|w| w[0].bytes_in < w[1].bytes_in));
    assert_eq!(counts.dropped.load(Ordering::Relaxed), stats.dropped());
    // Records dropped by the sink's queue were still observed; only those the writer never
    // received were not.
    assert!(counts.observed.load(Ordering::Relaxed) >= written.len() as u64);
    assert_eq!(stats.write_failures(), 0);
}

#[test]
fn in_block_mode_a_stalled_sink_holds_up_the_recorder_and_loses_nothing() {
    const RECORDS: usize = 2000;
    let pipe = Stalled::default();
    let options = FlowLogOptions {
        capacity: 4,
        buffer_bytes: 1024,
        overflow: Overflow::Block,
        ..FlowLogOptions::default()
    };
    let log = FlowLog::to_writer(pipe.clone(), "a stalled pipe", options).unwrap();
    let recorded = Arc::new(AtomicUsize::new(0));
    let recorder = {
        let (log, recorded) = (log.clone(), recorded.clone());
        thread::spawn(move || {
            for sequence in 0..RECORDS {
                log.record(record(sequence as u64));
                recorded.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    // Four records queued, one batch written, a kilobyte waiting: the recorder must wait long
    // before it is through, and keeps waiting while the gate is closed.
    wait_until("the recorder to wait", || log.backpressure_events() > 0);
    assert!(recorded.load(Ordering::Relaxed) < RECORDS);
    assert!(!recorder.is_finished());

    pipe.open();
    recorder.join().unwrap();
    let stats = log.stats();
    log.shutdown().unwrap();
    let written = pipe.records();
    assert_eq!(written.len(), RECORDS);
    assert!(
        written
            .iter()
            .enumerate()
            .all(|(i, r)| r.bytes_in == i as u64)
    );
    assert_eq!(stats.dropped(), 0);
}

#[test]
fn a_file_log_rotates_by_size_and_keeps_the_configured_number_of_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flows.jsonl");
    let options = FlowLogOptions {
        rotation: Some(Rotation {
            max_bytes: 2000,
            keep: 2,
        }),
        overflow: Overflow::Block,
        ..FlowLogOptions::default()
    };
    let log = FlowLog::open_with(&path, options).unwrap();
    for sequence in 0..100 {
        log.record(record(sequence));
        if sequence % 10 == 0 {
            // Several batches, so rotation happens between and within them.
            log.sync().unwrap();
        }
    }
    log.shutdown().unwrap();

    let files = log_files(&path);
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["flows.jsonl.2", "flows.jsonl.1", "flows.jsonl"]);
    assert!(!dir.path().join("flows.jsonl.3").exists());
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        assert!(
            text.len() <= 2000,
            "{} has {} bytes",
            file.display(),
            text.len()
        );
        assert!(text.ends_with('\n'), "{} ends mid-line", file.display());
    }
    // The reader reads the rotated files too, oldest first: the newest records, in order.
    let records = read_records(&path).unwrap();
    let sequences: Vec<u64> = records.iter().map(|r| r.bytes_in).collect();
    let first = sequences[0];
    assert!(first > 0, "the oldest files were not removed");
    assert_eq!(sequences, (first..100).collect::<Vec<_>>());
}

#[test]
fn a_log_reopened_past_its_size_rotates_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flows.jsonl");
    let log = FlowLog::open(&path).unwrap();
    for sequence in 0..20 {
        log.record(record(sequence));
    }
    log.shutdown().unwrap();
    let options = FlowLogOptions {
        rotation: Some(Rotation {
            max_bytes: 1000,
            keep: 1,
        }),
        ..FlowLogOptions::default()
    };
    let log = FlowLog::open_with(&path, options).unwrap();
    log.record(record(20));
    log.shutdown().unwrap();
    assert_eq!(read_records(&path).unwrap().len(), 21);
    assert_eq!(read_records_of(&path).len(), 1);
}

fn read_records_of(file: &Path) -> Vec<FlowRecord> {
    let text = std::fs::read(file).unwrap();
    septa_flows::read_records_from(&text[..], file).unwrap()
}

#[test]
fn a_long_path_reaches_the_file_cut_with_a_marker_and_its_length() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flows.jsonl");
    let log = FlowLog::open(&path).unwrap();
    let mut long = record(0);
    long.path = Some(format!("/{}", "a".repeat(100_000)));
    log.record(long);
    log.shutdown().unwrap();
    let line = std::fs::read_to_string(&path).unwrap();
    assert!(line.len() < 4096, "{} bytes", line.len());
    let records = read_records(&path).unwrap();
    let path_field = records[0].path.as_deref().unwrap();
    assert_eq!(path_field.len(), MAX_PATH_BYTES);
    assert!(path_field.ends_with(CUT_MARKER));
    assert_eq!(records[0].cut.get("path"), Some(&100_001));
}
