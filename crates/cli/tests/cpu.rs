//! The CPU a guest may use: its function's budget (`limits.cpu_ms`), past which it is stopped
//! like a timeout, and its segment's weight (`limits.cpu_share`) when guests of several segments
//! compute at once, as `septa_cpu_seconds_total` counts it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{Septa, prometheus};

const TOKEN: &str = "test-admin-token-0123456789abcdef";

fn looper() -> String {
    common::test_component("looper").display().to_string()
}

fn start(manifest: &str) -> (Septa, tempfile::TempDir) {
    common::build_components();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("septa.toml"), manifest).unwrap();
    // One worker, so that every looping guest shares the same compute thread.
    let septa = Septa::start_with_env(
        dir.path(),
        &["--workers", "1", "--admin", "127.0.0.1:0"],
        &[("SEPTA_ADMIN_TOKEN", TOKEN)],
    );
    (septa, dir)
}

#[test]
fn a_guest_past_its_cpu_budget_is_stopped_like_a_timeout_and_recorded_as_such() {
    let (septa, _dir) = start(&format!(
        r#"septa_manifest_version = 1
[application]
name = "budget"
[segment.lab]
subnets = {{ web = "public" }}
[function.looper]
source = "{}"
placement = "lab/web"
limits = {{ timeout_ms = 20000, cpu_ms = 150 }}
[[route]]
path = "/lab/..."
function = "looper"
"#,
        looper()
    ));
    let sent = Instant::now();
    let response = septa.get("/lab/spin");
    let took = sent.elapsed();
    let flows = septa.stop();

    assert_eq!(response.status, 504, "{response:?}");
    assert_eq!(
        response.json()["error"],
        "the function did not answer in time"
    );
    // Stopped by its CPU, long before its wall-clock timeout.
    assert!(took < Duration::from_secs(10), "stopped after {took:?}");
    let record = flows
        .iter()
        .find(|f| f["dst"].as_str().is_some_and(|d| d.contains("looper")))
        .expect("a record of the request");
    assert_eq!(record["status"], 504, "{record}");
    assert_eq!(
        record["error"], "function `looper` exceeded its CPU budget of 150 ms",
        "{record}"
    );
}

/// The CPU each segment's guests used, by segment.
fn cpu_by_segment(septa: &Septa) -> BTreeMap<String, f64> {
    let page = septa.admin_get("/metrics", Some(TOKEN));
    assert_eq!(page.status, 200, "{page:?}");
    let mut out = BTreeMap::new();
    for sample in prometheus::parse(&page.body) {
        if sample.name == "septa_cpu_seconds_total" {
            *out.entry(sample.label("segment").unwrap().to_owned())
                .or_default() += sample.value;
        }
    }
    out
}

#[test]
fn segments_computing_at_once_share_the_cpu_by_their_cpu_share_not_by_their_guests() {
    let function = |name: &str, segment: &str| {
        format!(
            "[function.{name}]\nsource = \"{}\"\nplacement = \"{segment}/web\"\n\
             limits = {{ timeout_ms = 2000 }}\n[[route]]\npath = \"/{name}/...\"\nfunction = \"{name}\"\n",
            looper()
        )
    };
    // `heavy` weighs three times the default; `crowd` has three looping guests to the others'
    // one, and no more weight than `light`.
    let manifest = format!(
        r#"septa_manifest_version = 1
[application]
name = "shares"
[segment.heavy]
subnets = {{ web = "public" }}
limits = {{ cpu_share = 300 }}
[segment.light]
subnets = {{ web = "public" }}
[segment.crowd]
subnets = {{ web = "public" }}
{}{}{}"#,
        function("a", "heavy"),
        function("b", "light"),
        function("c", "crowd"),
    );
    let (septa, _dir) = start(&manifest);
    let clients: Vec<_> = ["/a/spin", "/b/spin", "/c/spin", "/c/spin", "/c/spin"]
        .into_iter()
        .map(|path| {
            let addr = septa.addr;
            std::thread::spawn(move || common::http_get(addr, path, &[]).status)
        })
        .collect();
    for client in clients {
        assert_eq!(client.join().unwrap(), 504);
    }
    let cpu = cpu_by_segment(&septa);
    let (heavy, light, crowd) = (cpu["heavy"], cpu["light"], cpu["crowd"]);
    eprintln!("CPU: heavy {heavy:.3} s, light {light:.3} s, crowd {crowd:.3} s");
    // Shares 300 : 100 : 100, so 60% : 20% : 20% of the compute thread.
    assert!(
        (2.2..=4.0).contains(&(heavy / light)),
        "heavy had {heavy:.3} s of CPU to light's {light:.3} s"
    );
    assert!(
        (0.6..=1.6).contains(&(crowd / light)),
        "three guests of crowd had {crowd:.3} s of CPU to one of light's {light:.3} s"
    );
    assert!(
        light > 0.05,
        "light's guest was starved: {light:.3} s of CPU"
    );
}
