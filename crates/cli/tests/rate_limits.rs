//! Rate limits and client addresses: a burst per consumer key, 429 with Retry-After past it,
//! other consumers unaffected, no fresh bucket for a client that rewrites `X-Forwarded-For`
//! unless it came through a declared proxy, route source networks, and the gateway's ceiling.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::Septa;

fn start() -> (Septa, tempfile::TempDir) {
    let dir = common::echo_app(
        "limits",
        r#"[[route]]
id = "by-consumer"
path = "/consumer/..."
function = "echo"
rate_limit = { key = "header:x-consumer", per_second = 1, burst = 3 }
[[route]]
id = "by-ip"
path = "/ip/..."
function = "echo"
rate_limit = { key = "ip", per_second = 1, burst = 3 }
"#,
    );
    (Septa::start(dir.path()), dir)
}

#[test]
fn a_consumer_past_its_burst_gets_429_and_others_do_not() {
    let (septa, _dir) = start();
    let statuses: Vec<u16> = (0..5)
        .map(|i| {
            septa
                .request(
                    "GET",
                    &format!("/consumer/a{i}"),
                    &[("x-consumer", "alice")],
                    "",
                )
                .status
        })
        .collect();
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    // Admitted responses say how much is left.
    let fresh: Vec<String> = (0..3)
        .map(|_| {
            let r = septa.request("GET", "/consumer/c", &[("x-consumer", "carol")], "");
            assert_eq!(r.header("ratelimit-limit"), Some("3"));
            r.header("ratelimit-remaining").unwrap().to_owned()
        })
        .collect();
    assert_eq!(fresh, ["2", "1", "0"]);
    let limited = septa.request("GET", "/consumer/again", &[("x-consumer", "alice")], "");
    assert_eq!(limited.status, 429);
    let retry: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "retry-after {retry}");
    assert_eq!(limited.header("ratelimit-remaining"), Some("0"));
    assert_eq!(
        septa
            .request("GET", "/consumer/b", &[("x-consumer", "bob")], "")
            .status,
        200
    );

    let flows = septa.stop();
    let f = flows.iter().find(|f| f["path"] == "/consumer/a3").unwrap();
    assert_eq!(f["status"], 429);
    // The key names a hash of the header's value, never the value (it may be a credential).
    let reason = f["reason"].as_str().unwrap();
    let key = reason
        .strip_prefix(
            "rate limit of route `by-consumer`: 1 per second, burst 3, by header:x-consumer (`",
        )
        .and_then(|k| k.strip_suffix("`)"))
        .unwrap_or_else(|| panic!("{reason}"));
    assert!(key.starts_with("header:x-consumer#"), "{key}");
    assert!(!key.contains("alice"), "{key}");
    assert!(
        !flows
            .iter()
            .any(|f| f["reason"].as_str().unwrap().contains("alice"))
    );
    // Alice's key is the same hash on every refusal of hers.
    let again = flows
        .iter()
        .find(|f| f["path"] == "/consumer/again")
        .unwrap();
    assert_eq!(again["reason"], f["reason"]);
}

#[test]
fn a_spoofed_forwarded_for_buys_no_fresh_bucket() {
    let (septa, _dir) = start();
    let statuses: Vec<u16> = (0..5)
        .map(|i| {
            let spoof = format!("203.0.113.{i}");
            septa
                .request(
                    "GET",
                    "/ip/x",
                    &[("x-forwarded-for", &spoof), ("x-real-ip", &spoof)],
                    "",
                )
                .status
        })
        .collect();
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
}

#[test]
fn source_networks_use_the_peer_unless_a_declared_proxy_vouches() {
    // No trusted proxies: the loopback peer is the client, whatever it claims.
    let dir = common::echo_app(
        "sources",
        r#"[[route]]
id = "office"
path = "/office/..."
function = "echo"
sources = ["198.51.100.0/24"]
[[route]]
id = "local"
path = "/local/..."
function = "echo"
sources = ["127.0.0.0/8", "::1"]
"#,
    );
    let septa = Septa::start(dir.path());
    let spoofed = septa.request(
        "GET",
        "/office/x",
        &[("x-forwarded-for", "198.51.100.7")],
        "",
    );
    assert_eq!(spoofed.status, 403, "{spoofed:?}");
    assert!(spoofed.header("www-authenticate").is_none());
    assert_eq!(septa.get("/local/x").status, 200);
    let flows = septa.stop();
    let f = flows.iter().find(|f| f["path"] == "/office/x").unwrap();
    assert_eq!(f["verdict"], "deny");
    assert_eq!(f["client"], "127.0.0.1");
    assert_eq!(
        f["reason"],
        "client address 127.0.0.1 is not in route `office`'s sources"
    );

    // Loopback declared as a trusted proxy: its `X-Forwarded-For` is walked from the right.
    let dir = common::echo_app(
        "proxied",
        r#"[gateway]
trusted_proxies = ["127.0.0.1/32", "10.0.0.0/8"]
[[route]]
id = "office"
path = "/office/..."
function = "echo"
sources = ["198.51.100.0/24"]
rate_limit = { key = "ip", per_second = 1, burst = 2 }
"#,
    );
    let septa = Septa::start(dir.path());
    let via = |chain: &str, path: &str| {
        septa
            .request("GET", path, &[("x-forwarded-for", chain)], "")
            .status
    };
    // The client forged the left part; the proxies appended what they saw.
    assert_eq!(
        via("198.51.100.99, 203.0.113.5, 10.0.0.1", "/office/a"),
        403
    );
    assert_eq!(via("203.0.113.5, 198.51.100.7, 10.0.0.1", "/office/b"), 200);
    assert_eq!(via("198.51.100.7", "/office/c"), 200);
    // Same client, same bucket, whatever it puts in front.
    assert_eq!(via("1.2.3.4, 198.51.100.7", "/office/d"), 429);
    assert_eq!(via("198.51.100.8", "/office/e"), 200);
    let flows = septa.stop();
    let f = flows.iter().find(|f| f["path"] == "/office/b").unwrap();
    assert_eq!(f["client"], "198.51.100.7", "{f}");
    let f = flows.iter().find(|f| f["path"] == "/office/a").unwrap();
    assert_eq!(f["client"], "203.0.113.5", "{f}");
}

#[test]
fn the_gateway_ceiling_covers_every_route_and_audit_mode_too() {
    let dir = common::echo_app(
        "ceiling",
        r#"[gateway]
rate_limit = { per_second = 1, burst = 3 }
[[route]]
id = "a"
path = "/a/..."
function = "echo"
[[route]]
id = "b"
path = "/b/..."
function = "echo"
mode = "audit"
rate_limit = { key = "ip", per_second = 1, burst = 1 }
"#,
    );
    let septa = Septa::start(dir.path());
    let statuses: Vec<u16> = ["/a/1", "/b/1", "/b/2", "/a/2", "/b/3"]
        .iter()
        .map(|p| septa.get(p).status)
        .collect();
    // `/b/2` is over route b's own limit, but b is in audit mode: it passes, recorded. The
    // fourth and fifth requests are over the gateway's ceiling, which audit mode does not lift.
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    let flows = septa.stop();
    let f = flows.iter().find(|f| f["path"] == "/b/2").unwrap();
    assert_eq!(f["verdict"], "audit", "{f}");
    let f = flows.iter().find(|f| f["path"] == "/b/3").unwrap();
    assert_eq!(f["verdict"], "deny", "{f}");
    assert!(
        f["reason"]
            .as_str()
            .unwrap()
            .starts_with("rate limit of the gateway: 1 per second, burst 3"),
        "{f}"
    );
}

#[test]
fn a_per_consumer_limit_admits_its_rate_over_a_run_and_spares_the_others() {
    const RATE: f64 = 100.0;
    const BURST: f64 = 50.0;
    const RUN: Duration = Duration::from_secs(3);
    let dir = common::echo_app(
        "load",
        r#"[[route]]
id = "metered"
path = "/metered/..."
function = "echo"
rate_limit = { key = "header:x-consumer", per_second = 100, burst = 50 }
"#,
    );
    let septa = Septa::start(dir.path());
    let addr = septa.addr;
    let started = Instant::now();
    // Two connections of a greedy consumer, offering far more than its rate.
    let greedy: Vec<_> = (0..2)
        .map(|_| {
            std::thread::spawn(move || {
                let mut connection = common::Connection::open(addr);
                let (mut admitted, mut limited) = (0u32, 0u32);
                let first = Instant::now();
                while started.elapsed() < RUN {
                    match connection.get("/metered/x", &[("x-consumer", "greedy")]) {
                        200 => admitted += 1,
                        429 => limited += 1,
                        other => panic!("greedy consumer got {other}"),
                    }
                }
                (admitted, limited, first, Instant::now())
            })
        })
        .collect();
    // A modest consumer on the same route, well under its own rate.
    let mut modest = common::Connection::open(addr);
    let mut modest_statuses = Vec::new();
    while started.elapsed() < RUN {
        modest_statuses.push(modest.get("/metered/y", &[("x-consumer", "modest")]));
        std::thread::sleep(Duration::from_millis(50));
    }
    let (mut admitted, mut limited) = (0, 0);
    let (mut first, mut last) = (Instant::now(), started);
    for t in greedy {
        let (a, l, from, to) = t.join().unwrap();
        admitted += a;
        limited += l;
        first = first.min(from);
        last = last.max(to);
    }
    // The window the greedy consumer was asking in, from its first request to its last answer.
    let elapsed = last.duration_since(first).as_secs_f64();
    drop(septa);

    let ideal = BURST + RATE * elapsed;
    let error = (f64::from(admitted) - ideal) / ideal;
    eprintln!(
        "greedy: {admitted} admitted, {limited} limited in {elapsed:.3} s; ideal {ideal:.1}, error {:+.2}%",
        error * 100.0
    );
    assert!(
        limited > admitted,
        "the greedy consumer must offer more than its rate"
    );
    assert!(error.abs() <= 0.02, "admitted {admitted}, ideal {ideal:.1}");
    assert!(modest_statuses.len() >= 40, "{}", modest_statuses.len());
    assert!(
        modest_statuses.iter().all(|s| *s == 200),
        "{modest_statuses:?}"
    );
}
