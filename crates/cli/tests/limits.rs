//! Guests that trap, loop forever or grow past their memory: each gets a clear 5xx for that
//! request, its neighbours are unaffected, and the next request succeeds.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::{Septa, case};

#[test]
fn a_trapping_guest_fails_that_request_only() {
    let septa = Septa::start(&case("limits"));
    let r = septa.get("/trap");
    assert_eq!(r.status, 500, "{r:?}");
    assert_eq!(septa.get("/ok/trapper").status, 200);
    let flow = septa.wait_flow("for /trap", |f| f["path"] == "/trap");
    assert_eq!(flow["status"], 500);
    // Allowed by its route; the trap is what went wrong after that, in its own field.
    assert_eq!(flow["reason"], "allowed", "{flow}");
    assert!(
        flow["error"]
            .as_str()
            .unwrap()
            .contains("function `trapper` failed"),
        "{flow}"
    );
}

#[test]
fn a_guest_past_its_memory_limit_fails_that_request_only() {
    let septa = Septa::start(&case("limits"));
    let r = septa.get("/grow?mb=64");
    assert_eq!(r.status, 500, "{r:?}");
    // The client hears the status; the record says why (`tests/errors.rs`).
    let flow = septa.wait_flow("for /grow", |f| f["path"] == "/grow");
    assert!(
        flow["error"]
            .as_str()
            .unwrap()
            .contains("exceeded its memory limit of 16 MiB"),
        "{flow}"
    );
    let small = septa.get("/grow?mb=2");
    assert_eq!(small.status, 200, "{small:?}");
    assert_eq!(septa.get("/ok/memhog").status, 200);
}

#[test]
fn a_looping_guest_times_out_without_hurting_its_neighbours() {
    let septa = Septa::start(&case("limits"));
    let addr = septa.addr;
    // Two loopers, one per worker thread, so every thread has a guest spinning on it.
    let spinners: Vec<_> = (0..2)
        .map(|_| {
            std::thread::spawn(move || {
                let start = Instant::now();
                let mut stream = std::net::TcpStream::connect(addr).unwrap();
                use std::io::{Read, Write};
                stream
                    .write_all(b"GET /spin HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                    .unwrap();
                let mut out = String::new();
                stream.read_to_string(&mut out).unwrap();
                (out, start.elapsed())
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    // While they spin, the neighbour answers: every one of its requests completes before
    // either looper has been stopped.
    for _ in 0..3 {
        let r = septa.get("/echo/hello");
        assert_eq!(r.status, 200, "{r:?}");
    }
    assert!(
        spinners.iter().all(|s| !s.is_finished()),
        "a looper finished before its neighbour's requests did"
    );
    for s in spinners {
        let (out, took) = s.join().unwrap();
        assert!(out.starts_with("HTTP/1.1 504"), "{out}");
        assert!(took >= Duration::from_millis(1900), "{took:?}");
    }
    assert_eq!(septa.get("/ok/looper").status, 200);
    let flow = septa.wait_flow("for /spin", |f| f["path"] == "/spin");
    assert!(
        flow["error"]
            .as_str()
            .unwrap()
            .contains("exceeded its timeout of 2000 ms"),
        "{flow}"
    );
}

#[test]
fn a_second_start_loads_compiled_components_from_the_cache() {
    let cache = tempfile::tempdir().unwrap();
    let cache_dir = cache.path().to_str().unwrap();
    let first = Septa::start_with(&case("limits"), &["--cache-dir", cache_dir]);
    // `looper` and `single` share one component: the second is found in the cache the first
    // just filled.
    let line = |s: &Septa| {
        s.startup
            .iter()
            .find(|l| l.contains("compiled"))
            .cloned()
            .unwrap()
    };
    assert!(
        line(&first).contains("(4 compiled, 1 from cache)"),
        "{}",
        line(&first)
    );
    drop(first);
    let second = Septa::start_with(&case("limits"), &["--cache-dir", cache_dir]);
    assert!(
        line(&second).contains("(0 compiled, 5 from cache)"),
        "{}",
        line(&second)
    );
    assert_eq!(second.get("/echo/x").status, 200);
}

#[test]
fn a_function_at_its_concurrency_limit_refuses_at_once_with_503() {
    let septa = Septa::start(&case("limits"));
    let addr = septa.addr;
    // The spinner retries while one of the probes below holds the slot.
    let spinner = std::thread::spawn(move || {
        use std::io::{Read, Write};
        for _ in 0..100 {
            let mut stream = std::net::TcpStream::connect(addr).unwrap();
            stream
                .write_all(b"GET /single/spin HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                .unwrap();
            let mut out = String::new();
            stream.read_to_string(&mut out).unwrap();
            if !out.starts_with("HTTP/1.1 503") {
                return out;
            }
        }
        panic!("the spinner never got the slot");
    });
    // The spinner holds the only slot for its 1 s timeout once its instance runs (a loaded
    // machine may take a while to start it); meanwhile a second request is refused at once.
    let started = std::time::Instant::now();
    let refused = loop {
        let r = septa.get("/single/ok");
        if r.status != 200 || spinner.is_finished() || started.elapsed() > Duration::from_secs(10) {
            break r;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(refused.status, 503, "{refused:?}");
    let trace = refused.json()["trace_id"].as_str().unwrap().to_owned();
    let flow = septa.wait_flow("of the refusal", |f| f["trace"] == trace.as_str());
    assert!(
        flow["error"]
            .as_str()
            .unwrap()
            .contains("at its concurrency limit of 1"),
        "{flow}"
    );
    assert!(spinner.join().unwrap().starts_with("HTTP/1.1 504"));
    // The slot is free again once the spinning instance is stopped.
    assert_eq!(septa.get("/single/ok").status, 200);
}
