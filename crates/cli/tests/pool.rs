//! The instance pool keeps what the manifest promises: `--instances N` runs N instances of a
//! Rust component at once (each takes three core instances, a memory and two tables), a request
//! past the pool is a 503 for that request, never a 500, and `septa check` warns when the
//! concurrency limits add up to more than the pool.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{Response, Septa, septa};

/// `sleeper` in segment `lab`, up to `concurrency` at once, and `echo` in segment `other`.
fn app(concurrency: u32) -> tempfile::TempDir {
    common::build_components();
    let wasm = common::test_component;
    let dir = tempfile::tempdir().unwrap();
    let manifest = format!(
        "septa_manifest_version = 1\n[application]\nname = \"pool\"\n\
         [segment.lab]\nsubnets = {{ web = \"public\" }}\n\
         [segment.other]\nsubnets = {{ web = \"public\" }}\n\
         [function.sleeper]\nsource = {:?}\nplacement = \"lab/web\"\n\
         limits = {{ timeout_ms = 20000, max_concurrency = {concurrency} }}\n\
         [[route]]\npath = \"/sleeper/...\"\nfunction = \"sleeper\"\n\
         [function.echo]\nsource = {:?}\nplacement = \"other/web\"\n\
         [[route]]\npath = \"/echo/...\"\nfunction = \"echo\"\n",
        wasm("sleeper"),
        wasm("echo"),
    );
    std::fs::write(dir.path().join("septa.toml"), manifest).unwrap();
    dir
}

/// Sends `GET path` from a thread of its own.
fn in_background(septa: &Septa, path: &str) -> std::thread::JoinHandle<Response> {
    let (addr, path) = (septa.addr, path.to_owned());
    std::thread::spawn(move || {
        common::send_to(
            addr,
            &format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"),
        )
    })
}

#[test]
fn a_pool_of_three_runs_three_rust_components_at_once() {
    let app = app(3);
    let septa = Septa::start_with(app.path(), &["--instances", "3"]);
    let sleepers: Vec<_> = (0..3)
        .map(|_| in_background(&septa, "/sleeper/sleep?ms=1500"))
        .collect();
    for sleeper in sleepers {
        let r = sleeper.join().unwrap();
        assert_eq!(r.status, 200, "{r:?}");
    }
}

#[test]
fn past_the_pool_a_request_is_refused_with_503_and_the_record_says_which_segment() {
    let app = app(3);
    let septa = Septa::start_with(app.path(), &["--instances", "2"]);
    let sleepers: Vec<_> = (0..2)
        .map(|_| in_background(&septa, "/sleeper/sleep?ms=4000"))
        .collect();
    // Both instances run well within their four seconds (started a while ago on any machine).
    std::thread::sleep(Duration::from_millis(1000));
    let refused = septa.get("/sleeper/sleep?ms=1");
    assert_eq!(refused.status, 503, "{refused:?}");
    assert_eq!(refused.header("retry-after"), Some("1"), "{refused:?}");
    let body = refused.json();
    assert_eq!(body["error"], "overloaded, try again later", "{body}");
    let trace = body["trace_id"].as_str().unwrap().to_owned();
    let flow = septa.wait_flow("of the refusal", |f| f["trace"] == trace.as_str());
    assert_eq!(flow["status"], 503, "{flow}");
    let error = flow["error"].as_str().unwrap();
    assert!(
        error.contains("function `sleeper` (segment `lab`) found no free instance slot"),
        "{flow}"
    );
    for sleeper in sleepers {
        let r = sleeper.join().unwrap();
        assert_eq!(r.status, 200, "{r:?}");
    }
    // Once the instances are back, every function is served again.
    assert_eq!(septa.get("/sleeper/sleep?ms=1").status, 200);
    assert_eq!(septa.get("/echo/x").status, 200);
}

#[test]
fn check_warns_when_the_concurrency_limits_add_up_to_more_than_the_pool() {
    let app = app(600);
    let dir = app.path().to_str().unwrap();
    // 600 sleepers and echo's default 64 in two segments without caps: 664 instances.
    let (ok, _, stderr) = septa(&["check", dir, "--instances", "500"]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("warning"), "{stderr}");
    assert!(stderr.contains("allow 664 instances at once"), "{stderr}");
    assert!(stderr.contains("holds 500 (`--instances`)"), "{stderr}");

    let (ok, _, stderr) = septa(&["check", dir, "--instances", "664"]);
    assert!(ok, "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");

    // A segment's own cap bounds what its functions may run together.
    let manifest = app.path().join("septa.toml");
    let text = std::fs::read_to_string(&manifest).unwrap().replace(
        "[segment.lab]\nsubnets = { web = \"public\" }\n",
        "[segment.lab]\nsubnets = { web = \"public\" }\nlimits = { max_concurrency = 400 }\n",
    );
    std::fs::write(&manifest, text).unwrap();
    let (ok, _, stderr) = septa(&["check", dir, "--instances", "500"]);
    assert!(ok, "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
}
