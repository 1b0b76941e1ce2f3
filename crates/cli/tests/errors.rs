//! What a client is told when its request fails: `{"error", "status", "trace_id"}` and no more.
//! Never a trap message or backtrace, a function's name or a limit; the flow record of that
//! trace keeps the detail. The same holds for a function calling another through the mesh: it
//! hears what a client would.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::{Response, Septa, encode};
use serde_json::Value;

/// `trapper`, `memhog` (16 MiB) and `spinner` (a looper, 1 s, one at a time) behind routes,
/// and `relay`, which may call `trapper` through the mesh.
fn app() -> tempfile::TempDir {
    common::build_components();
    let wasm = common::test_component;
    let dir = tempfile::tempdir().unwrap();
    let mut manifest = String::from(
        "septa_manifest_version = 1\n[application]\nname = \"errors\"\n\
         [segment.lab]\nsubnets = { web = \"public\" }\n",
    );
    for (name, component, limits) in [
        ("trapper", "trapper", "{}"),
        ("memhog", "memhog", "{ memory_mb = 16 }"),
        (
            "spinner",
            "looper",
            "{ timeout_ms = 1000, max_concurrency = 1 }",
        ),
        ("relay", "caller", "{}"),
    ] {
        manifest.push_str(&format!(
            "[function.{name}]\nsource = {:?}\nplacement = \"lab/web\"\nlimits = {limits}\n\
             [[route]]\npath = \"/{name}/...\"\nfunction = \"{name}\"\n",
            wasm(component)
        ));
    }
    manifest.push_str(
        "[[allow]]\nid = \"relay-to-trapper\"\nfrom = \"function:relay\"\nto = \"function:trapper\"\n",
    );
    std::fs::write(dir.path().join("septa.toml"), manifest).unwrap();
    dir
}

/// Words that would tell a client more than the status: function names, what wasmtime and the
/// guest said, and limits.
const DETAIL: &[&str] = &[
    "trapper",
    "memhog",
    "spinner",
    "relay",
    "function `",
    "wasm",
    "backtrace",
    "unreachable",
    "panicked",
    "MiB",
    "1000",
    "limit",
    "exceeded",
];

/// Checks that `body` is exactly septa's short error for `status`, naming a trace and nothing
/// else; returns the trace.
fn short_error(body: &str, status: u16) -> String {
    let json: Value = serde_json::from_str(body).unwrap();
    let object = json.as_object().unwrap();
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["error", "status", "trace_id"], "{body}");
    assert_eq!(json["status"], status, "{body}");
    let trace = json["trace_id"].as_str().unwrap().to_owned();
    assert_eq!(trace.len(), 16, "{body}");
    // Past the trace (hex digits, which may spell anything), nothing but the status's words.
    let rest = body.replace(&trace, "");
    for word in DETAIL {
        assert!(!rest.contains(word), "`{word}` in the body: {body}");
    }
    let error = json["error"].as_str().unwrap();
    assert!(
        !error.chars().any(|c| c.is_ascii_digit()) && error.len() < 60,
        "{body}"
    );
    trace
}

/// The record of the ingress flow traced as `trace`.
fn record(septa: &Septa, trace: &str) -> Value {
    septa.wait_flow(&format!("traced {trace}"), |f| {
        f["trace"] == trace && f["kind"] == "ingress"
    })
}

fn detail(flow: &Value) -> &str {
    flow["error"].as_str().unwrap_or_default()
}

#[test]
fn a_trap_is_a_short_500_and_the_record_keeps_the_trap() {
    let app = app();
    let septa = Septa::start(app.path());
    let r = septa.get("/trapper/trap");
    assert_eq!(r.status, 500, "{r:?}");
    let trace = short_error(&r.body, 500);
    let flow = record(&septa, &trace);
    assert_eq!(flow["status"], 500, "{flow}");
    assert!(
        detail(&flow).contains("function `trapper` failed"),
        "{flow}"
    );
}

#[test]
fn running_out_of_memory_is_a_short_500_and_the_record_keeps_the_limit() {
    let app = app();
    let septa = Septa::start(app.path());
    let r = septa.get("/memhog/grow?mb=64");
    assert_eq!(r.status, 500, "{r:?}");
    let trace = short_error(&r.body, 500);
    let flow = record(&septa, &trace);
    assert!(
        detail(&flow).contains("function `memhog` exceeded its memory limit of 16 MiB"),
        "{flow}"
    );
}

#[test]
fn a_timeout_and_a_bulkhead_refusal_are_short_and_their_records_keep_the_limits() {
    let app = app();
    let septa = Septa::start(app.path());
    let addr = septa.addr;
    // The spinner tries again while one of the probes below holds the slot.
    let spin = std::thread::spawn(move || {
        for _ in 0..100 {
            let r = common::send_to(
                addr,
                "GET /spinner/spin HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
            );
            if r.status != 503 {
                return r;
            }
        }
        panic!("the spinner never got the slot");
    });
    // While it spins, its only slot is taken (a loaded machine may take a while to start it).
    let start = Instant::now();
    let refused = loop {
        let r = septa.get("/spinner/ok");
        if r.status != 200 || spin.is_finished() || start.elapsed() > Duration::from_secs(10) {
            break r;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(refused.status, 503, "{refused:?}");
    assert_eq!(refused.header("retry-after"), Some("1"), "{refused:?}");
    let trace = short_error(&refused.body, 503);
    let flow = record(&septa, &trace);
    assert!(
        detail(&flow).contains("function `spinner` is at its concurrency limit of 1"),
        "{flow}"
    );

    let timed_out: Response = spin.join().unwrap();
    assert_eq!(timed_out.status, 504, "{timed_out:?}");
    let trace = short_error(&timed_out.body, 504);
    let flow = record(&septa, &trace);
    assert!(
        detail(&flow).contains("function `spinner` exceeded its timeout of 1000 ms"),
        "{flow}"
    );
}

#[test]
fn a_function_whose_callee_traps_hears_only_the_status_and_the_trace() {
    let app = app();
    let septa = Septa::start(app.path());
    let url = encode("http://trapper.internal/trap");
    let r = septa.get(&format!("/relay/?to={url}"));
    assert_eq!(r.status, 200, "the relay itself failed: {r:?}");
    let relayed = r.json();
    assert_eq!(relayed["status"], 500, "{relayed}");
    let heard = relayed["body"].as_str().unwrap();
    let trace = short_error(heard, 500);
    // The call's own record, in the same trace, keeps the trap.
    let call = septa.wait_flow("of the mesh call", |f| {
        f["trace"] == trace.as_str() && f["kind"] == "mesh"
    });
    assert!(
        detail(&call).contains("function `trapper` failed"),
        "{call}"
    );
}

#[test]
fn refusals_name_their_trace_too() {
    let app = app();
    let septa = Septa::start(app.path());
    let r = septa.get("/nowhere");
    assert_eq!(r.status, 404, "{r:?}");
    let trace = short_error(&r.body, 404);
    let flow = record(&septa, &trace);
    assert_eq!(flow["status"], 404, "{flow}");

    let r = septa.send(
        "POST /trapper/ok HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\ncontent-length: 2\r\n\r\nab",
    );
    assert_eq!(r.status, 400, "{r:?}");
    let json = r.json();
    let trace = json["trace_id"].as_str().unwrap();
    let flow = record(&septa, trace);
    assert_eq!(flow["status"], 400, "{flow}");
}
