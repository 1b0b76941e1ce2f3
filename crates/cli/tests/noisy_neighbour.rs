//! Fault isolation: a segment whose guests loop on every core cannot take the others down. Its
//! bulkhead refuses what is over its cap at once (503), its guests yield to the scheduler every
//! epoch tick and are stopped at their deadline, and the quiet segment keeps answering.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Connection, Septa, repo};

fn start() -> (Septa, tempfile::TempDir) {
    common::build_components();
    let components = repo().join("tests/components/target/wasm32-wasip2/release");
    let dir = tempfile::tempdir().unwrap();
    let manifest = format!(
        r#"septa_manifest_version = 1
[application]
name = "neighbours"
[segment.noisy]
subnets = {{ web = "public" }}
limits = {{ max_concurrency = 2 }}
[segment.quiet]
subnets = {{ web = "public" }}
[function.looper]
source = "{looper}"
placement = "noisy/web"
limits = {{ timeout_ms = 500, max_concurrency = 64 }}
[function.echo]
source = "{echo}"
placement = "quiet/web"
[[route]]
path = "/noisy/..."
function = "looper"
[[route]]
path = "/quiet/..."
function = "echo"
"#,
        looper = components.join("looper.wasm").display(),
        echo = components.join("echo.wasm").display(),
    );
    std::fs::write(dir.path().join("septa.toml"), manifest).unwrap();
    (Septa::start(dir.path()), dir)
}

/// Latencies of `n` requests in a row to the quiet segment; every one must be a 200.
fn quiet_latencies(septa: &Septa, n: usize) -> Vec<Duration> {
    let mut connection = Connection::open(septa.addr);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let sent = Instant::now();
        let status = connection.get(&format!("/quiet/{i}"), &[]);
        out.push(sent.elapsed());
        assert_eq!(status, 200, "the quiet segment failed request {i}");
    }
    out.sort();
    out
}

fn p99(sorted: &[Duration]) -> Duration {
    sorted[(sorted.len() * 99 / 100).min(sorted.len() - 1)]
}

#[test]
fn looping_guests_in_one_segment_neither_fail_nor_stall_another() {
    let (septa, _dir) = start();
    // Warm up, then measure the quiet segment alone.
    quiet_latencies(&septa, 50);
    let alone = quiet_latencies(&septa, 300);

    // Four clients keep the noisy segment's guests looping, far past its cap of two.
    let stop = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicU64::new(0));
    let stopped = Arc::new(AtomicU64::new(0));
    let noise: Vec<_> = (0..4)
        .map(|_| {
            let (addr, stop, refused, stopped) =
                (septa.addr, stop.clone(), refused.clone(), stopped.clone());
            std::thread::spawn(move || {
                let mut connection = Connection::open(addr);
                while !stop.load(Ordering::Relaxed) {
                    match connection.get("/noisy/spin", &[]) {
                        503 => {
                            refused.fetch_add(1, Ordering::Relaxed);
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        504 => {
                            stopped.fetch_add(1, Ordering::Relaxed);
                        }
                        other => panic!("the noisy segment answered {other}"),
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let noisy = quiet_latencies(&septa, 300);
    stop.store(true, Ordering::Relaxed);
    for t in noise {
        t.join().unwrap();
    }
    let flows = septa.stop();

    let ratio = p99(&noisy).as_secs_f64() / p99(&alone).as_secs_f64();
    eprintln!(
        "quiet p99 alone {:?}, while the noisy segment loops {:?}: ratio {ratio:.1}; noisy: {} stopped at the deadline, {} refused by the bulkhead",
        p99(&alone),
        p99(&noisy),
        stopped.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
    );
    assert!(
        stopped.load(Ordering::Relaxed) >= 2,
        "the noisy guests never ran"
    );
    assert!(
        refused.load(Ordering::Relaxed) >= 1,
        "the bulkhead never refused"
    );
    let refusal = flows
        .iter()
        .find(|f| f["status"] == 503)
        .expect("a refusal is a flow");
    assert!(
        refusal["error"]
            .as_str()
            .unwrap()
            .ends_with("segment `noisy` is at its concurrency limit of 2"),
        "{refusal}"
    );
}
