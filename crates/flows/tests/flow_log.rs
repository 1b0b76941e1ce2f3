//! The flow log end to end: files on disk, the writer thread, the guard and the reader.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::Path;
use std::thread;

use septa_flows::{
    FlowGuard, FlowKind, FlowLog, FlowLogError, FlowLogOptions, FlowRecord, Overflow, Verdict,
    format_rfc3339_millis, read_records,
};
use septa_manifest::Name;
use septa_policy::{Decision, RuleId};

fn record(src: &str, sequence: u64) -> FlowRecord {
    let mut record = FlowRecord::new(
        FlowKind::Mesh,
        src,
        "function:checkout",
        Verdict::Allow,
        "allowed by rule",
    );
    record.rule = Some("storefront-to-checkout".to_owned());
    record.bytes_in = sequence;
    record
}

/// Every line of the file, each checked to be a whole JSON flow record.
fn lines_of(path: &Path) -> Vec<FlowRecord> {
    let text = fs::read_to_string(path).unwrap();
    assert!(text.is_empty() || text.ends_with('\n'), "log ends mid-line");
    text.lines()
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line).unwrap();
            serde_json::from_str::<FlowRecord>(line).unwrap()
        })
        .collect()
}

#[test]
fn a_guard_dropped_without_finish_writes_exactly_one_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flows.jsonl");
    let log = FlowLog::open(&path).unwrap();
    {
        let mut guard = log.guard(FlowKind::Ingress, "gateway", "function:storefront");
        guard.set_method("GET").set_path("/").set_status(401);
        // An early return: no decision, no finish.
    }
    log.shutdown().unwrap();

    let records = lines_of(&path);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].verdict, Verdict::Deny);
    assert_eq!(records[0].status, Some(401));
}

#[test]
fn a_guard_finished_then_dropped_writes_exactly_one_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flows.jsonl");
    let log = FlowLog::open(&path).unwrap();
    let mut guard = FlowGuard::new(
        &log,
        FlowKind::Egress,
        "function:checkout",
        "https://api.payments.example:443",
    );
    guard
        .set_decision(&Decision::allow(RuleId::Egress(
            Name::new("checkout-egress").unwrap(),
        )))
        .set_target("api.payments.example:443");
    guard.finish(); // consumes and drops the guard
    log.shutdown().unwrap();

    let records = lines_of(&path);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].rule.as_deref(), Some("checkout-egress"));
    assert_eq!(
        records[0].target.as_deref(),
        Some("api.payments.example:443")
    );
}

#[test]
fn a_guard_can_finish_on_another_thread() {
    let log = FlowLog::memory();
    let mut guard = log.guard(FlowKind::Ingress, "gateway", "function:storefront");
    guard.set_decision(&Decision::allow(RuleId::Route(Name::new("home").unwrap())));
    thread::spawn(move || {
        guard.add_bytes_out(42);
    })
    .join()
    .unwrap();
    let records = log.snapshot().unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].bytes_out, 42);
}

fn ten_thousand_records_from_four_threads(options: FlowLogOptions) -> FlowLog {
    const THREADS: u64 = 4;
    const PER_THREAD: u64 = 2500;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/dir/flows.jsonl");
    let log = FlowLog::open_with(&path, options).unwrap();
    let writers: Vec<_> = (0..THREADS)
        .map(|thread_index| {
            let log = log.clone();
            thread::spawn(move || {
                let src = format!("function:t{thread_index}");
                for sequence in 0..PER_THREAD {
                    log.record(record(&src, sequence));
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    let stats = log.clone();
    log.shutdown().unwrap();

    let records = lines_of(&path);
    assert_eq!(records.len() as u64, THREADS * PER_THREAD);
    assert_eq!(read_records(&path).unwrap(), records);
    for thread_index in 0..THREADS {
        let src = format!("function:t{thread_index}");
        let sequence: Vec<u64> = records
            .iter()
            .filter(|record| record.src == src)
            .map(|record| record.bytes_in)
            .collect();
        assert_eq!(
            sequence,
            (0..PER_THREAD).collect::<Vec<_>>(),
            "order of {src}"
        );
    }
    assert_eq!(stats.write_failures(), 0);
    assert_eq!(stats.dropped(), 0);
    stats
}

// Four threads recording as fast as they can outrun the writer's queue within its batch
// delay; in the default drop mode some records would be dropped (see `tests/bounds.rs`).
#[test]
fn ten_thousand_records_from_four_threads_all_arrive_in_order() {
    ten_thousand_records_from_four_threads(FlowLogOptions {
        overflow: Overflow::Block,
        ..FlowLogOptions::default()
    });
}

#[test]
fn a_tiny_queue_in_block_mode_makes_record_wait_instead_of_dropping() {
    let options = FlowLogOptions {
        capacity: 1,
        overflow: Overflow::Block,
        ..FlowLogOptions::default()
    };
    let log = ten_thousand_records_from_four_threads(options);
    // With one slot and four producers the queue is full most of the time.
    assert!(log.backpressure_events() > 0);
}

#[test]
fn a_torn_tail_is_cut_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flows.jsonl");
    let whole = serde_json::to_string(&record("function:before", 1)).unwrap();
    let torn = &whole[..whole.len() / 2];
    fs::write(&path, format!("{whole}\n{whole}\n{torn}")).unwrap();

    let log = FlowLog::open(&path).unwrap();
    log.record(record("function:after", 2));
    log.shutdown().unwrap();

    let records = lines_of(&path);
    let sources: Vec<&str> = records.iter().map(|record| record.src.as_str()).collect();
    assert_eq!(
        sources,
        ["function:before", "function:before", "function:after"]
    );
    assert_eq!(read_records(&path).unwrap(), records);
}

#[test]
fn a_file_holding_only_a_torn_line_is_emptied_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flows.jsonl");
    fs::write(&path, r#"{"time":"2026-11-29T20:4"#).unwrap();
    let log = FlowLog::open(&path).unwrap();
    log.shutdown().unwrap();
    assert_eq!(fs::read_to_string(&path).unwrap(), "");
}

#[test]
fn reopening_appends_after_existing_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flows.jsonl");
    for sequence in 0..3 {
        let log = FlowLog::open(&path).unwrap();
        log.record(record("function:a", sequence));
        log.shutdown().unwrap();
    }
    let sequence: Vec<u64> = lines_of(&path)
        .iter()
        .map(|record| record.bytes_in)
        .collect();
    assert_eq!(sequence, [0, 1, 2]);
}

#[test]
fn a_second_log_on_the_same_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flows.jsonl");
    let first = FlowLog::open(&path).unwrap();
    let error = FlowLog::open(&path).unwrap_err();
    assert!(matches!(error, FlowLogError::InUse { .. }), "{error}");
    first.shutdown().unwrap();
    FlowLog::open(&path).unwrap().shutdown().unwrap();
}

#[test]
fn dropping_every_handle_writes_everything_queued() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flows.jsonl");
    let log = FlowLog::open(&path).unwrap();
    let guard = log.guard(FlowKind::Endpoint, "function:checkout", "endpoint:cards");
    for sequence in 0..100 {
        log.record(record("function:a", sequence));
    }
    drop(log);
    drop(guard); // the last handle: writes, syncs and joins the writer
    let records = lines_of(&path);
    assert_eq!(records.len(), 101);
    assert_eq!(records[100].kind, FlowKind::Endpoint);
}

#[test]
fn shutdown_with_other_handles_alive_syncs_and_keeps_serving_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flows.jsonl");
    let log = FlowLog::open(&path).unwrap();
    let other = log.clone();
    log.record(record("function:a", 0));
    log.shutdown().unwrap();
    assert_eq!(lines_of(&path).len(), 1);

    other.record(record("function:a", 1));
    other.sync().unwrap();
    assert_eq!(lines_of(&path).len(), 2);
    other.shutdown().unwrap();
}

#[test]
fn record_times_have_the_rfc3339_millisecond_shape() {
    let log = FlowLog::memory();
    log.guard(FlowKind::Ingress, "gateway", "function:storefront")
        .finish();
    let time = log.snapshot().unwrap()[0].time.clone();
    assert_rfc3339_millis(&time);
    assert_rfc3339_millis(&format_rfc3339_millis(std::time::SystemTime::now()));
}

fn assert_rfc3339_millis(time: &str) {
    // YYYY-MM-DDTHH:MM:SS.mmmZ
    let shape = "dddd-dd-ddTdd:dd:dd.dddZ";
    assert_eq!(time.len(), shape.len(), "{time}");
    for (actual, expected) in time.chars().zip(shape.chars()) {
        match expected {
            'd' => assert!(actual.is_ascii_digit(), "{time}"),
            other => assert_eq!(actual, other, "{time}"),
        }
    }
}

#[test]
fn the_memory_log_reads_back_in_order_and_shares_across_clones() {
    let log = FlowLog::memory();
    let clone = log.clone();
    log.record(record("function:a", 0));
    clone.record(record("function:b", 1));
    let records = log.snapshot().unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].src, "function:a");
    assert_eq!(records[1].src, "function:b");
    assert_eq!(clone.snapshot().unwrap(), records);
    assert!(FlowLog::disabled().snapshot().is_none());
}

#[test]
fn the_disabled_log_keeps_nothing() {
    let log = FlowLog::disabled();
    assert!(!log.is_enabled());
    log.record(record("function:a", 0));
    log.guard(FlowKind::Mesh, "function:a", "function:b")
        .finish();
    assert_eq!(log.backpressure_events(), 0);
    log.shutdown().unwrap();
}

#[cfg(target_os = "linux")]
#[test]
fn write_failures_are_counted_and_reported_not_silent() {
    // Every write to /dev/full fails with "no space left on device".
    let log = FlowLog::open("/dev/full").unwrap();
    for sequence in 0..3 {
        log.record(record("function:a", sequence));
    }
    let error = log.sync().unwrap_err();
    assert!(matches!(error, FlowLogError::Write { .. }), "{error}");
    assert_eq!(log.write_failures(), 3);
    // The error was reported once; later records fail and are counted again.
    log.record(record("function:a", 3));
    assert!(log.sync().is_err());
    assert_eq!(log.write_failures(), 4);
    // In drop mode a record that could not be written counts as dropped too.
    assert_eq!(log.dropped(), 4);
    log.shutdown().unwrap();
}
