//! The flow log is bounded, end to end through `septa up`: a long path is cut with a marker and
//! its length, the log rotates by size and keeps `--flow-log-keep` files, and a stalled
//! `--flow-log -` pipe never holds up a request (records are dropped, counted in `/metrics`, and
//! a `flow_records_dropped` alert fires) unless `--flow-log-overflow block` asked for it to.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Septa, echo_app, http_get, send_to};
use septa_flows::{CUT_MARKER, FlowRecord, MAX_PATH_BYTES};

const TOKEN: &str = "test-admin-token-0123456789abcdef";

/// The echo function behind `/echo/...`: it answers 200 to any path under it.
const ECHO_ROUTE: &str = "[[route]]\nid = \"echo\"\npath = \"/echo/...\"\nfunction = \"echo\"\n";

/// A path of `len` bytes under the echo route, tagged so its record can be told apart. (A path
/// no route matches would do as well, but refusals spend the client's refusal budget.)
fn long_path(len: usize, tag: usize) -> String {
    let head = format!("/echo/t-{tag}-");
    format!("{head}{}", "a".repeat(len - head.len()))
}

fn get(addr: SocketAddr, path: &str) -> u16 {
    send_to(
        addr,
        &format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n"),
    )
    .status
}

#[test]
fn a_long_path_is_cut_with_a_marker_and_its_original_length() {
    let app = echo_app("long-path", ECHO_ROUTE);
    let septa = Septa::start(app.path());
    let path = long_path(6000, 0);
    assert_eq!(get(septa.addr, &path), 200);
    let record = septa.wait_flow("for the long path", |r| {
        r["path"]
            .as_str()
            .is_some_and(|p| p.starts_with("/echo/t-0-"))
    });
    let logged = record["path"].as_str().unwrap();
    assert_eq!(logged.len(), MAX_PATH_BYTES, "{logged}");
    assert!(logged.ends_with(CUT_MARKER));
    assert!(path.starts_with(logged.trim_end_matches(CUT_MARKER)));
    assert_eq!(record["cut"]["path"], 6000, "{record}");
}

#[test]
fn the_log_rotates_by_size_and_keeps_the_configured_number_of_files() {
    let app = echo_app("rotation", ECHO_ROUTE);
    let state = tempfile::tempdir().unwrap();
    let log = state.path().join("flows.jsonl");
    let log_arg = log.display().to_string();
    let septa = Septa::start_with(
        app.path(),
        &[
            "--flow-log",
            &log_arg,
            "--flow-log-max-bytes",
            "4096",
            "--flow-log-keep",
            "2",
        ],
    );
    // Each record is about 1.3 kB: 40 of them fill far more than three files.
    for tag in 0..40 {
        assert_eq!(get(septa.addr, &long_path(1000, tag)), 200);
    }
    septa.stop();

    let rotated = |n: usize| state.path().join(format!("flows.jsonl.{n}"));
    assert!(rotated(1).is_file() && rotated(2).is_file());
    assert!(!rotated(3).exists(), "only two rotated files are kept");
    let mut tags = Vec::new();
    for file in [rotated(2), rotated(1), log.clone()] {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            text.len() <= 4096,
            "{} has {} bytes",
            file.display(),
            text.len()
        );
        for line in text.lines() {
            let record: FlowRecord = serde_json::from_str(line).unwrap();
            let path = record.path.unwrap();
            let tag: usize = path.split('-').nth(1).unwrap().parse().unwrap();
            tags.push(tag);
        }
    }
    // The files hold the newest records, oldest file first, none twice; the oldest are gone.
    assert_eq!(*tags.last().unwrap(), 39);
    assert!(tags[0] > 0, "{tags:?}");
    assert_eq!(tags, (tags[0]..40).collect::<Vec<_>>());
    // `septa_flows::read_records`, which `septa suggest` uses, reads all three.
    let all = septa_flows::read_records(&log).unwrap();
    assert_eq!(all.len(), tags.len());
}

/// `septa up` writing its flow log to a pipe the test holds and does not read.
struct StalledSepta {
    child: Child,
    stdout: Option<BufReader<ChildStdout>>,
    addr: SocketAddr,
    admin: SocketAddr,
    _state: tempfile::TempDir,
}

impl StalledSepta {
    fn start(app: &Path, extra: &[&str]) -> Self {
        let state = tempfile::tempdir().unwrap();
        let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("septa-test-cache");
        let mut child = Command::new(env!("CARGO_BIN_EXE_septa"))
            .arg("up")
            .arg(app)
            .args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
            .args([
                "--workers",
                "2",
                "--flow-log",
                "-",
                "--flow-log-queue",
                "16",
            ])
            .arg("--cache-dir")
            .arg(cache)
            .arg("--data-dir")
            .arg(state.path().join("data"))
            .args(extra)
            .env("SEPTA_ADMIN_TOKEN", TOKEN)
            .env_remove("RUST_BACKTRACE")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut admin = None;
        let addr = loop {
            let mut line = String::new();
            assert!(stdout.read_line(&mut line).unwrap() > 0, "septa exited");
            if let Some(rest) = line.trim().strip_prefix("septa: admin on http://") {
                admin = Some(rest.parse().unwrap());
            }
            if let Some(rest) = line.trim().strip_prefix("septa: listening on http://") {
                break rest.parse().unwrap();
            }
        };
        Self {
            child,
            stdout: Some(stdout),
            addr,
            admin: admin.unwrap(),
            _state: state,
        }
    }

    fn metric(&self, name: &str) -> f64 {
        let auth = format!("Bearer {TOKEN}");
        let page = http_get(self.admin, "/metrics", &[("authorization", &auth)]);
        assert_eq!(page.status, 200);
        page.body
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no `{name}` in:\n{}", page.body))
    }

    /// Starts reading the pipe; the lines arrive on the returned channel until septa exits.
    fn drain(&mut self) -> mpsc::Receiver<String> {
        let mut stdout = self.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stdout.read_to_string(&mut text);
            for line in text.lines() {
                let _ = tx.send(line.to_owned());
            }
        });
        lines
    }

    fn stop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for StalledSepta {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A GET that gives up after `timeout`: `None` if no answer came by then.
fn get_within(addr: SocketAddr, path: String, timeout: Duration) -> Option<u16> {
    let (tx, answer) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(get(addr, &path));
    });
    answer.recv_timeout(timeout).ok()
}

#[test]
fn a_stalled_stdout_pipe_never_holds_up_requests_and_drops_are_counted_and_alerted() {
    let alerts = tempfile::tempdir().unwrap();
    let alert_file = alerts.path().join("alerts.jsonl");
    let alert = format!(
        "[[alert]]\nid = \"log-gaps\"\non = \"flow_records_dropped\"\ncommand = [\"/bin/sh\", \"-c\", \"cat >> \\\"$1\\\"\", \"sh\", {:?}]\n",
        alert_file.display().to_string()
    );
    let app = echo_app("stalled-pipe", &format!("{ECHO_ROUTE}{alert}"));
    let mut septa = StalledSepta::start(app.path(), &[]);
    // The pipe holds 64 KiB, the log 16 records and 4 KiB more; each record here is over 2 kB.
    // Every request is answered all the same, each well within its bound.
    const REQUESTS: usize = 300;
    for tag in 0..REQUESTS {
        let status = get_within(septa.addr, long_path(3000, tag), Duration::from_secs(10));
        assert_eq!(status, Some(200), "request {tag} was held up");
    }
    // The last records are handed over just after their responses: wait until the count holds.
    let start = Instant::now();
    let mut dropped = septa.metric("septa_flow_log_dropped_total");
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = septa.metric("septa_flow_log_dropped_total");
        if (now == dropped && now > 0.0) || start.elapsed() > Duration::from_secs(10) {
            break;
        }
        dropped = now;
    }
    assert!(dropped >= 100.0, "only {dropped} records dropped");
    assert_eq!(septa.metric("septa_flow_log_backpressure_total"), 0.0);
    // The alert went out (through its command), naming the drops.
    let start = Instant::now();
    let sent = loop {
        let text = std::fs::read_to_string(&alert_file).unwrap_or_default();
        if !text.is_empty() || start.elapsed() > Duration::from_secs(10) {
            break text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let event: serde_json::Value = serde_json::from_str(sent.lines().next().unwrap()).unwrap();
    assert_eq!(event["on"], "flow_records_dropped");
    assert!(event["dropped"].as_u64().unwrap() > 0, "{event}");

    // Once someone reads the pipe again, what was kept arrives whole: kept + dropped = all.
    let lines = septa.drain();
    septa.stop();
    let records = flow_records(&lines);
    assert_eq!(records.len() as f64 + dropped, REQUESTS as f64);
}

/// The flow records among the lines septa wrote to its standard output (which also has what
/// septa says as it stops).
fn flow_records(lines: &mpsc::Receiver<String>) -> Vec<FlowRecord> {
    lines
        .iter()
        .filter(|line| line.starts_with('{'))
        .map(|line| serde_json::from_str(&line).unwrap())
        .collect()
}

#[test]
fn in_block_mode_a_stalled_pipe_holds_up_requests_and_loses_no_record() {
    let app = echo_app("stalled-pipe-block", ECHO_ROUTE);
    let mut septa = StalledSepta::start(app.path(), &["--flow-log-overflow", "block"]);
    let mut sent = 0;
    let mut held = None;
    while sent < 500 {
        let path = long_path(3000, sent);
        sent += 1;
        // Either the request waits for its record's predecessors, or the worker is stuck on the
        // record of an earlier one: both mean requests wait for the log.
        let (tx, answer) = mpsc::channel();
        let addr = septa.addr;
        std::thread::spawn(move || {
            let _ = tx.send(get(addr, &path));
        });
        if answer.recv_timeout(Duration::from_secs(3)).is_err() {
            held = Some(answer);
            break;
        }
    }
    let held = held.expect("500 requests went through a stalled log in block mode");
    assert_eq!(septa.metric("septa_flow_log_dropped_total"), 0.0);

    // Reading the pipe again lets the held request through, and every record is there.
    let lines = septa.drain();
    assert_eq!(held.recv_timeout(Duration::from_secs(20)).unwrap(), 200);
    assert_eq!(septa.metric("septa_flow_log_dropped_total"), 0.0);
    septa.stop();
    let records = flow_records(&lines);
    let mut tags: Vec<usize> = records
        .iter()
        .filter_map(|r| r.path.as_deref()?.split('-').nth(1)?.parse().ok())
        .collect();
    tags.sort_unstable();
    assert_eq!(tags, (0..sent).collect::<Vec<_>>());
}
