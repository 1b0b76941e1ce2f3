//! Crash safety: septa killed with SIGKILL in the middle of writes, again and again. Every write
//! a function was told had succeeded is there after the restart, and the flow log reads back
//! whole: the torn tail a kill can leave is cut when septa starts again, before it appends.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Septa, encode};

const ROUNDS: usize = 4;

fn app() -> tempfile::TempDir {
    common::build_components();
    let caller = common::test_component("caller");
    let dir = tempfile::tempdir().unwrap();
    let manifest = format!(
        "septa_manifest_version = 1\n[application]\nname = \"crash\"\n\
         [segment.edge]\nsubnets = {{ web = \"public\" }}\n\
         [segment.data]\nsubnets = {{ vault = \"isolated\" }}\n\
         [function.writer]\nsource = {caller:?}\nplacement = \"edge/web\"\n\
         [[route]]\npath = \"/writer/...\"\nfunction = \"writer\"\n\
         [endpoint.store]\nplacement = \"data/vault\"\n\
         [[allow]]\nid = \"writer-to-store\"\nfrom = \"function:writer\"\nto = \"endpoint:store\"\n"
    );
    std::fs::write(dir.path().join("septa.toml"), manifest).unwrap();
    dir
}

/// Asks the writer to put `value` at `key`; `Some(true)` when the store acknowledged it.
fn put(addr: std::net::SocketAddr, key: &str, value: &str) -> Option<bool> {
    let url = format!("http://store.internal/kv/{key}");
    let target = format!("/writer/?to={}&method=PUT&body={value}", encode(&url));
    let raw = format!("GET {target} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    let r = common::try_send_to(addr, &raw).ok()?;
    if r.status != 200 {
        return None;
    }
    Some(r.json()["status"] == 200)
}

#[test]
fn acknowledged_writes_and_the_flow_log_survive_kill_9() {
    let app = app();
    let state = tempfile::tempdir().unwrap();
    let data = state.path().join("data");
    let log = state.path().join("flows.jsonl");
    let args = [
        "--data-dir",
        data.to_str().unwrap(),
        "--flow-log",
        log.to_str().unwrap(),
    ];
    let mut acknowledged: Vec<(String, String)> = Vec::new();
    for round in 0..ROUNDS {
        let septa = Septa::start_with(app.path(), &args);
        let addr = septa.addr;
        // Two writers keep going while septa is killed under them.
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..2)
            .map(|w| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut acked = Vec::new();
                    for i in 0..10_000 {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let (key, value) =
                            (format!("r{round}/w{w}/{i}"), format!("v{round}-{w}-{i}"));
                        match put(addr, &key, &value) {
                            Some(true) => acked.push((key, value)),
                            Some(false) => panic!("the store refused {key}"),
                            None => break, // septa is gone
                        }
                    }
                    acked
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300 + 150 * round as u64));
        septa.kill();
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            acknowledged.extend(w.join().unwrap());
        }
    }
    assert!(
        acknowledged.len() >= 20,
        "too few writes to test: {}",
        acknowledged.len()
    );

    // Restarted on the same files: every acknowledged write reads back.
    let septa = Septa::start_with(app.path(), &args);
    let mut missing = Vec::new();
    for (key, value) in &acknowledged {
        let url = format!("http://store.internal/kv/{key}");
        let r = septa.get(&format!("/writer/?to={}", encode(&url)));
        let seen = r.json();
        if seen["status"] != 200 || seen["body"] != value.as_str() {
            missing.push(format!("{key}: {seen}"));
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged writes lost:\n{}",
        missing.len(),
        acknowledged.len(),
        missing.join("\n")
    );
    drop(septa);

    // The flow log parses to its last byte: every line a whole record.
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.ends_with('\n'), "the log ends mid-line");
    let mut endpoint_records = 0;
    for (n, line) in text.lines().enumerate() {
        let record: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("line {} of the flow log is torn ({e}): {line}", n + 1));
        if record["kind"] == "endpoint" {
            endpoint_records += 1;
        }
    }
    eprintln!(
        "{ROUNDS} kills, {} acknowledged writes all present, {endpoint_records} endpoint flows in a log of {} whole lines",
        acknowledged.len(),
        text.lines().count()
    );
}
