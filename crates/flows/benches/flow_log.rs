//! How many flow records per second the flow log takes, and what handing one over costs the
//! request that made it.
//!
//! ```sh
//! cargo bench -p septa-flows --bench flow_log
//! ```
//!
//! Each record is what the gateway writes for an allowed request (a [`FlowGuard`] with the
//! decision, method, path, route, segment, client and status set, recorded on `finish`).
//!
//! - `flow_log/write/file`: 10,000 flows recorded by one thread into a fresh file log with the
//!   default options but `Overflow::Block` (so a record the writer has no room for yet waits
//!   rather than being dropped, and every one of them is written), then [`FlowLog::sync`] (which returns once all of them are written and
//!   `fdatasync`ed): records per second end to end, through the writer thread. The default
//!   policy syncs the file at most every 100 ms while records keep coming, and always on `sync`
//!   and on shutdown; records are flushed to the file after every batch the writer drains.
//! - `flow_log/record/file`: only the caller's side, 1,000 flows (fewer than the channel holds,
//!   so the caller never waits): what the request path pays per record.
//!
//! The target (issue 7) is 200,000 records per second or more without slowing the request path.

#![allow(clippy::expect_used, clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use septa_flows::{FlowKind, FlowLog, FlowLogOptions, Overflow};
use septa_manifest::Name;
use septa_policy::{Decision, RuleId};
use tempfile::TempDir;

/// Records per end-to-end measurement.
const WRITE_BATCH: u64 = 10_000;
/// Records per caller-side measurement: well under the default channel capacity (8,192).
const RECORD_BATCH: u64 = 1_000;

/// Records one flow as the gateway does for an allowed request to `hello`.
fn record_flow(log: &FlowLog, decision: &Decision) {
    let mut flow = log.guard(FlowKind::Ingress, "gateway", "function:hello");
    flow.set_decision(decision)
        .set_method("GET")
        .set_path("/plain/x")
        .set_route("plain")
        .set_segment("edge")
        .set_client("127.0.0.1")
        .set_status(200)
        .add_bytes_out(13);
    flow.finish();
}

fn fresh_log() -> (FlowLog, TempDir) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let options = FlowLogOptions {
        overflow: Overflow::Block,
        ..FlowLogOptions::default()
    };
    let log =
        FlowLog::open_with(dir.path().join("flows.jsonl"), options).expect("open the flow log");
    (log, dir)
}

fn write(c: &mut Criterion) {
    let rule = Name::new("plain").expect("a valid route name");
    let decision = Decision::allow(RuleId::Route(rule));
    let mut group = c.benchmark_group("flow_log");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(10));

    group.throughput(Throughput::Elements(WRITE_BATCH));
    group.bench_function("write/file", |b| {
        // A fresh file for every batch, so the log does not grow for the whole run; the
        // output is dropped (the writer joined, the file removed) outside the timing.
        b.iter_batched(
            fresh_log,
            |(log, dir)| {
                for _ in 0..WRITE_BATCH {
                    record_flow(&log, &decision);
                }
                log.sync().expect("sync the flow log");
                assert_eq!(log.dropped(), 0, "records were dropped");
                (log, dir)
            },
            BatchSize::PerIteration,
        );
    });

    group.throughput(Throughput::Elements(RECORD_BATCH));
    group.bench_function("record/file", |b| {
        // Only the caller's side is timed; the writer drains, and is joined, outside it.
        b.iter_batched(
            fresh_log,
            |(log, dir)| {
                for _ in 0..RECORD_BATCH {
                    record_flow(&log, &decision);
                }
                (log, dir)
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

criterion_group!(benches, write);
criterion_main!(benches);
