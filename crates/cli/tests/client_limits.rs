//! Limits per client: the gateway-wide rate limit is a bucket per client (an IPv6 client is
//! its /64, or the prefix `[gateway] client_ipv6_prefix` says), so one client emptying it
//! leaves the others theirs; and requests refused before any route's checks count against the
//! client's refusal budget, past which they are answered 429 and recorded in aggregate.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::Septa;

/// An app behind a trusted loopback proxy, so each test names its clients in
/// `X-Forwarded-For`.
fn start(gateway: &str) -> (Septa, tempfile::TempDir) {
    let dir = common::echo_app(
        "clients",
        &format!(
            r#"[gateway]
trusted_proxies = ["127.0.0.0/8", "::1/128"]
{gateway}
[[route]]
id = "a"
path = "/a/..."
function = "echo"
methods = ["GET"]
"#
        ),
    );
    (Septa::start(dir.path()), dir)
}

fn status(septa: &Septa, client: &str, path: &str) -> u16 {
    septa
        .request("GET", path, &[("x-forwarded-for", client)], "")
        .status
}

#[test]
fn one_client_emptying_the_gateway_limit_leaves_the_others_theirs() {
    let (septa, _dir) = start("rate_limit = { per_second = 1, burst = 3 }");
    let greedy: Vec<u16> = (0..5)
        .map(|i| status(&septa, "198.51.100.7", &format!("/a/greedy{i}")))
        .collect();
    assert_eq!(greedy, [200, 200, 200, 429, 429]);
    assert_eq!(status(&septa, "198.51.100.8", "/a/other"), 200);
    assert_eq!(status(&septa, "203.0.113.1", "/a/third"), 200);

    // An IPv6 client is its /64: another address in it is the same client, the next /64 is not.
    let v6: Vec<u16> = (0..3)
        .map(|i| status(&septa, &format!("2001:db8:1:2::{i}"), &format!("/a/v6-{i}")))
        .collect();
    assert_eq!(v6, [200, 200, 200]);
    assert_eq!(status(&septa, "2001:db8:1:2:ffff::9", "/a/same64"), 429);
    assert_eq!(status(&septa, "2001:db8:1:3::1", "/a/next64"), 200);

    let flows = septa.stop();
    let f = flows.iter().find(|f| f["path"] == "/a/greedy3").unwrap();
    assert_eq!(f["status"], 429, "{f}");
    assert_eq!(
        f["reason"],
        "rate limit of the gateway: 1 per second, burst 3, by ip (`ip:198.51.100.7`)"
    );
    let f = flows.iter().find(|f| f["path"] == "/a/same64").unwrap();
    assert_eq!(
        f["reason"],
        "rate limit of the gateway: 1 per second, burst 3, by ip (`ip:2001:db8:1:2::/64`)"
    );
}

#[test]
fn the_ipv6_prefix_a_client_is_keyed_by_is_configurable() {
    let (septa, _dir) =
        start("rate_limit = { per_second = 1, burst = 1 }\nclient_ipv6_prefix = 128");
    assert_eq!(status(&septa, "2001:db8:1:2::1", "/a/1"), 200);
    assert_eq!(status(&septa, "2001:db8:1:2::1", "/a/2"), 429);
    assert_eq!(status(&septa, "2001:db8:1:2::2", "/a/3"), 200);
    drop(septa);

    let dir = common::echo_app("bad", "[gateway]\nclient_ipv6_prefix = 0\n");
    let (ok, _, stderr) = common::septa(&["check", dir.path().to_str().unwrap()]);
    assert!(!ok);
    assert!(
        stderr.contains("`client_ipv6_prefix` must be between 1 and 128"),
        "{stderr}"
    );
}

#[test]
fn refusals_past_a_clients_budget_are_429_and_recorded_in_aggregate() {
    let (septa, _dir) = start("refusal_budget = { per_second = 1, burst = 5 }");
    let scanner = "198.51.100.66";
    let statuses: Vec<u16> = (0..30)
        .map(|i| status(&septa, scanner, &format!("/scan/{i}")))
        .collect();
    assert_eq!(statuses[..5], [404; 5], "{statuses:?}");
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert!(refused >= 24, "{statuses:?}");
    // A method the route does not admit and a path that does not normalize count alike.
    let r = septa.request("POST", "/a/x", &[("x-forwarded-for", scanner)], "");
    assert_eq!(r.status, 429, "{r:?}");
    assert!(r.header("retry-after").is_some(), "{r:?}");
    assert_eq!(status(&septa, scanner, "/a/../../etc"), 429);
    // The budget is the scanner's: it still reaches what is routed, and others still get 404.
    assert_eq!(status(&septa, scanner, "/a/real"), 200);
    assert_eq!(status(&septa, "198.51.100.67", "/scan/other"), 404);

    // A second later, the next refusal past the budget is recorded, counting the ones between.
    std::thread::sleep(Duration::from_millis(1100));
    let after: Vec<u16> = (0..3)
        .map(|i| status(&septa, scanner, &format!("/later/{i}")))
        .collect();
    assert!(after.contains(&429), "{after:?}");

    let flows = septa.stop();
    let of_scanner: Vec<_> = flows
        .iter()
        .filter(|f| f["client"] == scanner && f["route"] != "a")
        .collect();
    // 30 + 2 + 3 refusals, of which only those within the budget and one a second past it
    // are records of their own.
    assert!(of_scanner.len() <= 10, "{of_scanner:#?}");
    let aggregate = of_scanner
        .iter()
        .filter_map(|f| f["reason"].as_str())
        .filter_map(|r| {
            let (_, tail) = r.split_once("`); ")?;
            tail.strip_suffix(" more refused since the last record, not recorded one by one")?
                .parse::<u64>()
                .ok()
        })
        .max();
    assert!(aggregate.is_some_and(|n| n >= 20), "{of_scanner:#?}");
    let f = of_scanner.iter().find(|f| f["status"] == 429).unwrap();
    assert!(
        f["reason"].as_str().unwrap().starts_with(
            "refusal budget of the gateway: 1 per second, burst 5, by ip (`ip:198.51.100.66`)"
        ),
        "{f}"
    );
    let other = flows.iter().find(|f| f["path"] == "/scan/other").unwrap();
    assert_eq!(other["status"], 404, "{other}");
}
