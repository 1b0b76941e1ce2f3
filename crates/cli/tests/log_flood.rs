//! A flood of refused requests cannot flood septa's own log: each kind of per-request warning is
//! written a few times per window and the rest counted, the next line saying how many were left
//! out. Every refused request is still in the flow log.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Connection, Septa, log_lines};

/// Requests refused by the bulkhead.
const FLOOD: usize = 10_000;
const CLIENTS: usize = 4;
/// How long the throttle's window is (`LogThrottle::per_request`).
const WINDOW: Duration = Duration::from_secs(10);

#[test]
fn ten_thousand_refused_requests_write_a_few_log_lines_and_count_the_rest() {
    let sleeper = common::test_component("sleeper");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("septa.toml"),
        format!(
            r#"septa_manifest_version = 1
[application]
name = "flood"
[segment.busy]
subnets = {{ web = "public" }}
limits = {{ max_concurrency = 1 }}
[function.sleeper]
source = "{}"
placement = "busy/web"
limits = {{ timeout_ms = 60000 }}
[[route]]
path = "/busy/..."
function = "sleeper"
"#,
            sleeper.display()
        ),
    )
    .unwrap();
    let log = dir.path().join("septa.log");
    // Every record reaches the flow log, however fast they come.
    let septa = Septa::start_logging_to(dir.path(), &["--flow-log-overflow", "block"], &[], &log);

    // One request holds the segment's only slot, asleep in the guest. A probe sent while the
    // holder's request is on its way can take the slot first (and the holder is refused): then
    // the holder tries again.
    let deadline = Instant::now() + Duration::from_secs(20);
    let holder = loop {
        assert!(Instant::now() < deadline, "the slot was never taken");
        let mut holder = TcpStream::connect(septa.addr).unwrap();
        holder
            .write_all(b"GET /busy/sleep?ms=60000 HTTP/1.1\r\nhost: localhost\r\n\r\n")
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        if septa.get("/busy/probe").status == 503 {
            break holder;
        }
    };
    let flood_started = Instant::now();

    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let addr = septa.addr;
            std::thread::spawn(move || {
                let mut connection = Connection::open(addr);
                for i in 0..FLOOD / CLIENTS {
                    let status = connection.get(&format!("/busy/{i}"), &[]);
                    assert_eq!(status, 503, "request {i} was not refused");
                }
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    let flood_took = flood_started.elapsed();
    // Once the window is over, the next refusal is written with the count of those left out.
    std::thread::sleep((WINDOW + Duration::from_millis(500)).saturating_sub(flood_took));
    assert_eq!(septa.get("/busy/last").status, 503);
    drop(holder);
    let flows = septa.stop();

    let lines = log_lines(&std::fs::read_to_string(&log).unwrap());
    eprintln!(
        "{FLOOD} refused requests in {flood_took:?}; septa wrote {} log lines:\n{}",
        lines.len(),
        lines.join("\n")
    );
    assert!(
        lines.len() <= 36,
        "{} log lines for {FLOOD} refused requests",
        lines.len()
    );
    let suppressed: u64 = lines
        .iter()
        .filter(|l| l.contains("segment `busy` is at its concurrency limit of 1"))
        .filter_map(|l| l.split("suppressed=").nth(1))
        .filter_map(|n| n.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    assert!(
        suppressed >= (FLOOD as u64) - 36,
        "the log says {suppressed} refusals were left out of it"
    );
    let refused = flows.iter().filter(|f| f["status"] == 503).count();
    assert!(
        refused > FLOOD,
        "the flow log holds {refused} refusals, not every one"
    );
}
