//! What a guest writes to stdout and stderr reaches septa's log, a line for each of its lines,
//! naming the function, the stream and the request's trace: above all the panic message a guest
//! writes before it traps, which the client never sees. Bounded: escaped so that it cannot drive
//! the operator's terminal, 64 KiB a request and 100 lines every 10 s a function, the rest
//! counted.
//! `SEPTA_LOG=warn` leaves it out.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{Septa, log_lines};
use serde_json::Value;

/// The lines one function may write every [`WINDOW`] (`guest_output::LINES_PER_WINDOW`).
const LINES_PER_WINDOW: usize = 100;
const WINDOW: Duration = Duration::from_secs(10);

/// `trapper` behind `/lab/...`, started with septa's log in a file.
fn start(env: &[(&str, &str)]) -> (Septa, PathBuf, tempfile::TempDir) {
    common::build_components();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("septa.toml"),
        format!(
            "septa_manifest_version = 1\n[application]\nname = \"output\"\n\
             [segment.lab]\nsubnets = {{ web = \"public\" }}\n\
             [function.trapper]\nsource = {:?}\nplacement = \"lab/web\"\n\
             [[route]]\npath = \"/lab/...\"\nfunction = \"trapper\"\n",
            common::test_component("trapper")
        ),
    )
    .unwrap();
    let log = dir.path().join("septa.log");
    let septa = Septa::start_logging_to(dir.path(), &[], env, &log);
    (septa, log, dir)
}

/// The guest-output lines of septa's log, without colours.
fn guest_lines(log: &PathBuf) -> Vec<String> {
    log_lines(&std::fs::read_to_string(log).unwrap())
        .into_iter()
        .filter(|l| l.contains("septa::guest"))
        .collect()
}

/// The trace of the flow record of `path`.
fn trace_of(flows: &[Value], path: &str) -> String {
    let record = flows.iter().find(|f| f["path"] == path).unwrap();
    record["trace"].as_str().unwrap().to_owned()
}

#[test]
fn what_a_guest_writes_reaches_septas_log_with_its_function_stream_and_trace() {
    let (septa, log, _dir) = start(&[]);
    let trapped = septa.get("/lab/trap");
    assert_eq!(trapped.status, 500);
    assert!(
        !trapped.body.contains("trapping on purpose"),
        "{}",
        trapped.body
    );
    let trap_trace = serde_json::from_str::<Value>(&trapped.body).unwrap()["trace_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let printed = septa.get("/lab/print?lines=2&bytes=3");
    assert_eq!(printed.status, 200, "{}", printed.body);
    let flows = septa.stop();
    let print_trace = trace_of(&flows, "/lab/print");

    let lines = guest_lines(&log);
    let said = |text: &str, stream: &str, trace: &str| {
        lines.iter().any(|l| {
            l.contains(text)
                && l.contains("function=trapper")
                && l.contains(&format!("stream=\"{stream}\""))
                && l.contains(&format!("trace={trace}"))
        })
    };
    // The panic message the guest wrote before it trapped, in the failed request's trace.
    assert!(
        said(
            "\"trapper: trapping on purpose (GET /trap)\"",
            "stderr",
            &trap_trace
        ),
        "{lines:#?}"
    );
    // Each printed line as a line of its own, quoted.
    assert!(said("\"0 ppp\"", "stdout", &print_trace), "{lines:#?}");
    assert!(said("\"1 ppp\"", "stdout", &print_trace), "{lines:#?}");
    // A terminal escape, a bell and a carriage return are written escaped, never as they are.
    let raw = std::fs::read_to_string(&log).unwrap();
    assert!(
        !raw.contains("\u{1b}]0;pwned"),
        "a raw escape reached the log"
    );
    assert!(!raw.contains('\u{7}'), "a raw bell reached the log");
    assert!(
        said(
            r#""title \u{1b}]0;pwned\u{7} and \r return""#,
            "stdout",
            &print_trace
        ),
        "{lines:#?}"
    );
}

#[test]
fn a_guest_flooding_its_output_is_cut_and_throttled_and_served_on() {
    let (septa, log, _dir) = start(&[]);
    // 2,000 lines of 105 bytes: 210 KB, over the 64 KiB a request may write.
    let started = Instant::now();
    let flood = septa.get("/lab/print?lines=2000&bytes=100");
    assert_eq!(flood.status, 200, "{}", flood.body);
    // The next window's first line says how many were left out.
    std::thread::sleep((WINDOW + Duration::from_millis(500)).saturating_sub(started.elapsed()));
    let after = septa.get("/lab/print?lines=1&bytes=1");
    assert_eq!(after.status, 200);
    let flows = septa.stop();
    let (flood_trace, after_trace) = (
        trace_of(&flows, "/lab/print"),
        flows
            .iter()
            .filter(|f| f["path"] == "/lab/print")
            .nth(1)
            .unwrap()["trace"]
            .as_str()
            .unwrap()
            .to_owned(),
    );

    let lines = guest_lines(&log);
    let flooded = lines
        .iter()
        .filter(|l| l.contains(&format!("trace={flood_trace}")))
        .count();
    // At most a window's lines, or two if the flood straddled the turn of a window.
    assert!(
        (1..=2 * LINES_PER_WINDOW).contains(&flooded),
        "{flooded} lines written of the flood"
    );
    let first_after = lines
        .iter()
        .find(|l| l.contains(&format!("trace={after_trace}")))
        .unwrap();
    let suppressed: usize = first_after
        .split("suppressed=")
        .nth(1)
        .and_then(|n| n.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no count of the lines left out: {first_after}"));
    // 64 KiB holds 624 of the flood's lines; the rest of them were never kept.
    assert!(
        suppressed + flooded >= 600 && suppressed + flooded <= 700,
        "{suppressed} left out, {flooded} written"
    );
}

#[test]
fn septa_log_warn_leaves_guest_output_out() {
    let (septa, log, _dir) = start(&[("SEPTA_LOG", "warn")]);
    assert_eq!(septa.get("/lab/trap").status, 500);
    assert_eq!(septa.get("/lab/print?lines=3&bytes=3").status, 200);
    septa.stop();
    let all = log_lines(&std::fs::read_to_string(&log).unwrap());
    assert!(guest_lines(&log).is_empty(), "{all:#?}");
    // Its own warnings are still there.
    assert!(
        all.iter().any(|l| l.contains("function failed")),
        "{all:#?}"
    );
}
