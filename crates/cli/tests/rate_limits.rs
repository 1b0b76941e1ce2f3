//! Rate limits: a burst per consumer key, 429 with Retry-After past it, other consumers
//! unaffected, and no fresh bucket for a client that rewrites `X-Forwarded-For`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

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
    assert_eq!(
        f["reason"],
        "rate limit of route `by-consumer`: 1 per second, burst 3, by header:x-consumer (`header:alice`)"
    );
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
