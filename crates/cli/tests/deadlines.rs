//! `timeout_ms` is wall-clock: a guest parked in a host call, where no epoch tick reaches it
//! (asleep on a wasi clock, waiting for another function's answer, writing a body no one reads,
//! holding endpoint puts open), is stopped at its deadline with a 504 and gives back its
//! function slot, its segment slot and its instance; an endpoint's slots are never held by a
//! caller that does not finish writing its value.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{Septa, encode};

/// How long any request here may take before the test calls it hung: far past every timeout
/// in the manifest, far short of the hour the guests sleep.
const HUNG: Duration = Duration::from_secs(20);

/// `sleeper` (1 s, one at a time) and `slow` (60 s, one at a time) sleep; `waiter` (a relay,
/// 1 s) waits on `slow`; `holder` (60 s) holds puts open on endpoint `store` (1 s) while
/// `writer` (a relay) uses the same endpoint.
fn app() -> tempfile::TempDir {
    common::build_components();
    let wasm = common::test_component;
    let (sleeper, caller) = (wasm("sleeper"), wasm("caller"));
    let dir = tempfile::tempdir().unwrap();
    let mut manifest = String::from(
        "septa_manifest_version = 1\n[application]\nname = \"deadlines\"\n\
         [segment.lab]\nsubnets = { web = \"public\" }\nlimits = { max_concurrency = 100 }\n\
         [segment.data]\nsubnets = { vault = \"isolated\" }\n",
    );
    for (name, source, limits) in [
        (
            "sleeper",
            &sleeper,
            "{ timeout_ms = 1000, max_concurrency = 1 }",
        ),
        (
            "slow",
            &sleeper,
            "{ timeout_ms = 60000, max_concurrency = 1 }",
        ),
        ("waiter", &caller, "{ timeout_ms = 1000 }"),
        ("holder", &sleeper, "{ timeout_ms = 60000 }"),
        ("writer", &caller, "{ timeout_ms = 10000 }"),
    ] {
        manifest.push_str(&format!(
            "[function.{name}]\nsource = {source:?}\nplacement = \"lab/web\"\nlimits = {limits}\n\
             [[route]]\npath = \"/{name}/...\"\nfunction = \"{name}\"\n"
        ));
    }
    manifest.push_str(
        "[endpoint.store]\nplacement = \"data/vault\"\nlimits = { timeout_ms = 1000 }\n\
         [[allow]]\nid = \"waiter-to-slow\"\nfrom = \"function:waiter\"\nto = \"function:slow\"\n\
         [[allow]]\nid = \"holder-to-store\"\nfrom = \"function:holder\"\nto = \"endpoint:store\"\n\
         [[allow]]\nid = \"writer-to-store\"\nfrom = \"function:writer\"\nto = \"endpoint:store\"\n",
    );
    std::fs::write(dir.path().join("septa.toml"), manifest).unwrap();
    dir
}

/// `GET path` on a fresh connection, failing the test if no whole answer comes within
/// [`HUNG`]: (status line and headers, body, how long it took).
fn timed_get(addr: SocketAddr, path: &str) -> (String, String, Duration) {
    let start = Instant::now();
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(HUNG)).unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes(),
        )
        .unwrap();
    let mut out = Vec::new();
    if let Err(e) = stream.read_to_end(&mut out) {
        panic!("`GET {path}` got no answer within {HUNG:?} ({e})");
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (head.to_owned(), body.to_owned(), start.elapsed())
}

fn status(head: &str) -> u16 {
    head.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_guest_asleep_in_a_host_call_gets_504_at_its_timeout_and_gives_its_slot_back() {
    let app = app();
    let septa = Septa::start(app.path());
    // Twice in a row: the second finds the only slot free again, so it is a 504, not a 503.
    for attempt in 1..=2 {
        let (head, body, took) = timed_get(septa.addr, "/sleeper/sleep");
        assert_eq!(status(&head), 504, "attempt {attempt}: {head}\n{body}");
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(10),
            "attempt {attempt} took {took:?}"
        );
    }
    let (head, _, _) = timed_get(septa.addr, "/sleeper/ok");
    assert_eq!(status(&head), 200, "{head}");
    let flow = septa.wait_flow("for the sleep", |f| {
        f["path"] == "/sleeper/sleep" && f["status"] == 504
    });
    assert!(
        flow["error"]
            .as_str()
            .unwrap()
            .contains("function `sleeper` exceeded its timeout of 1000 ms"),
        "{flow}"
    );
}

#[test]
fn a_guest_writing_a_body_no_one_reads_is_stopped_and_its_body_ends_in_an_error() {
    let app = app();
    let septa = Septa::start(app.path());
    let mut flood = TcpStream::connect(septa.addr).unwrap();
    flood
        .write_all(b"GET /sleeper/flood HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut head = [0u8; 12];
    flood.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200", "{}", String::from_utf8_lossy(&head));
    // Not reading on: the guest fills the socket's buffers and waits on the body's flow
    // control. Its deadline still stops it, and the only slot is free again.
    let start = Instant::now();
    loop {
        let (head, body, _) = timed_get(septa.addr, "/sleeper/ok");
        match status(&head) {
            200 => break,
            503 if start.elapsed() < Duration::from_secs(10) => {
                std::thread::sleep(Duration::from_millis(100));
            }
            _ => panic!("the flooding guest still holds its slot: {head}\n{body}"),
        }
    }
    // What the client gets is cut short by an error, never a complete-looking chunked body.
    flood.set_read_timeout(Some(HUNG)).unwrap();
    let mut rest = Vec::new();
    let _ = flood.read_to_end(&mut rest);
    assert!(!rest.is_empty());
    assert!(
        !rest.ends_with(b"\r\n0\r\n\r\n"),
        "the cut body looks complete"
    );
    let flow = septa.wait_flow("for the flood", |f| f["path"] == "/sleeper/flood");
    assert!(
        flow["error"]
            .as_str()
            .unwrap()
            .contains("exceeded its timeout of 1000 ms while sending its response"),
        "{flow}"
    );
}

#[test]
fn a_call_waiting_on_a_slower_callee_ends_by_the_callers_deadline_for_both() {
    let app = app();
    let septa = Septa::start(app.path());
    let url = encode("http://slow.internal/sleep");
    let (head, body, took) = timed_get(septa.addr, &format!("/waiter/?to={url}"));
    assert_eq!(status(&head), 504, "{head}\n{body}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    // `slow` (60 s of its own, one at a time) was stopped by its caller's deadline too: its
    // only slot is free.
    let (head, body, _) = timed_get(septa.addr, "/slow/sleep?ms=1");
    assert_eq!(status(&head), 200, "{head}\n{body}");
    // The call's record says why it ended with its caller.
    let callee = septa.wait_flow("for the call to slow", |f| {
        f["kind"] == "mesh" && f["dst"] == "function:slow" && f["status"] == 504
    });
    assert!(
        callee["error"]
            .as_str()
            .unwrap()
            .contains("deadline passed"),
        "{callee}"
    );
}

#[test]
fn unfinished_endpoint_puts_leave_other_functions_calls_answering() {
    let app = app();
    let septa = Septa::start(app.path());
    // 64 puts, as many as the endpoint's default slots, each body started and never finished;
    // the holder answers once all are open and keeps them open for its whole minute.
    let (head, body, _) = timed_get(septa.addr, "/holder/hold?to=store&n=64");
    assert_eq!(status(&head), 200, "{head}\n{body}");
    assert!(body.contains("\"holding\":64"), "{body}");
    let call = |method: &str, extra: &str| {
        let url = encode("http://store.internal/kv/other");
        let start = Instant::now();
        let r = septa.get(&format!("/writer/?to={url}&method={method}{extra}"));
        assert_eq!(r.status, 200, "the relay failed: {r:?}");
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{method} took {:?}",
            start.elapsed()
        );
        r.json()["status"].as_u64().unwrap()
    };
    assert_eq!(call("PUT", "&body=v"), 200);
    assert_eq!(call("GET", ""), 200);
    // Past the endpoint's timeout the held values are given up on; the endpoint still serves.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(call("PUT", "&body=w"), 200);
}
