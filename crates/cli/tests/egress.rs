//! Egress: loopback is refused in every spelling under the default ceiling, even when a rule
//! names it; it is reached only when the manifest both relaxes the ceiling and has a rule.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{Septa, case, encode};

/// A loopback HTTP server outside septa that counts the connections it gets.
fn outside_listener() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            counter.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 18\r\nconnection: close\r\n\r\nhello-from-outside");
        }
    });
    (port, hits)
}

#[test]
fn loopback_is_refused_in_every_spelling_under_the_default_ceiling() {
    let (port, hits) = outside_listener();
    let septa = Septa::start(&case("egress-default"));
    for host in [
        "127.0.0.1",
        "localhost",
        "127.1",
        "2130706433",
        "0x7f000001",
        "0x7f.0.0.1",
        "0177.0.0.1",
        "017700000001",
        "127.0.0.1.",
        "[::1]",
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
        "0.0.0.0",
    ] {
        let url = format!("http://{host}:{port}/");
        let r = septa.get(&format!("/?to={}", encode(&url)));
        let json = r.json();
        assert_eq!(json["denied"], true, "{url}: {json}");
    }
    let tcp = septa.get(&format!("/tcp?to=127.0.0.1:{port}")).json();
    assert_eq!(tcp["connected"], false, "{tcp}");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "something reached the loopback listener"
    );

    let flows = septa.stop();
    let egress: Vec<_> = flows.iter().filter(|f| f["kind"] == "egress").collect();
    assert!(egress.len() >= 13, "{egress:#?}");
    for f in &egress {
        assert_eq!(f["verdict"], "deny", "{f}");
    }
    assert!(
        egress
            .iter()
            .any(|f| f["reason"].as_str().unwrap().contains("loopback")),
        "{egress:#?}"
    );
}

#[test]
fn loopback_is_reached_only_with_a_relaxed_ceiling_and_a_rule() {
    let (port, hits) = outside_listener();
    let septa = Septa::start(&case("egress-relaxed"));
    let url = encode(&format!("http://127.0.0.1:{port}/"));

    let allowed = septa.get(&format!("/caller/?to={url}")).json();
    assert_eq!(allowed["status"], 200, "{allowed}");
    assert_eq!(allowed["body"], "hello-from-outside");
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    // Same ceiling, no rule: refused before anything is dialled.
    let neighbour = septa.get(&format!("/neighbour/?to={url}")).json();
    assert_eq!(neighbour["denied"], true, "{neighbour}");
    // The relaxation is exactly 127.0.0.1, not the rest of loopback.
    let other = septa
        .get(&format!(
            "/caller/?to={}",
            encode(&format!("http://127.0.0.2:{port}/"))
        ))
        .json();
    assert_eq!(other["denied"], true, "{other}");
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    // Raw sockets follow `tcp://` rules the same way.
    let tcp = septa
        .get(&format!("/caller/tcp?to=127.0.0.1:{port}"))
        .json();
    assert_eq!(tcp["connected"], true, "{tcp}");
    let tcp = septa
        .get(&format!("/neighbour/tcp?to=127.0.0.1:{port}"))
        .json();
    assert_eq!(tcp["connected"], false, "{tcp}");

    let flows = septa.stop();
    let allowed = flows
        .iter()
        .find(|f| f["kind"] == "egress" && f["verdict"] == "allow" && f["src"] == "function:caller")
        .unwrap();
    assert_eq!(allowed["rule"], "caller-to-test-listener");
    let denied = flows
        .iter()
        .find(|f| f["kind"] == "egress" && f["src"] == "function:neighbour")
        .unwrap();
    assert_eq!(denied["verdict"], "deny");
    assert!(
        denied["reason"]
            .as_str()
            .unwrap()
            .contains("no egress rule admits"),
        "{denied}"
    );
}

/// The egress flow records of `src`, in order.
fn egress_of<'f>(flows: &'f [serde_json::Value], src: &str) -> Vec<&'f serde_json::Value> {
    flows
        .iter()
        .filter(|f| f["kind"] == "egress" && f["src"] == src)
        .collect()
}

#[test]
fn an_ipv4_rule_admits_no_ipv6_form_of_its_network_but_the_mapped_one() {
    let (port, hits) = outside_listener();
    let septa = Septa::start(&case("egress-family"));
    // 6to4, IPv4-compatible, IPv4-translated and well-known NAT64 forms of 127.0.0.1: an IPv4
    // rule for 127.0.0.1 does not admit them, whatever the ceiling says.
    let refused = [
        "[2002:7f00:1::1]",
        "[::127.0.0.1]",
        "[::ffff:0:127.0.0.1]",
        "[64:ff9b::127.0.0.1]",
    ];
    for host in refused {
        let url = encode(&format!("http://{host}:{port}/"));
        let json = septa.get(&format!("/caller/?to={url}")).json();
        assert_eq!(json["denied"], true, "{host}: {json}");
    }
    let tcp = septa
        .get(&format!(
            "/caller/tcp?to={}",
            encode(&format!("[2002:7f00:1::1]:{port}"))
        ))
        .json();
    assert_eq!(tcp["connected"], false, "{tcp}");
    assert_eq!(hits.load(Ordering::SeqCst), 0, "a refused form got through");

    // IPv4-mapped is the same IPv4 connection on a dual-stack socket: the IPv4 rule admits it.
    let mapped = encode(&format!("http://[::ffff:127.0.0.1]:{port}/"));
    let json = septa.get(&format!("/caller/?to={mapped}")).json();
    assert_eq!(json["body"], "hello-from-outside", "{json}");
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    // A rule that names the IPv6 form admits exactly it.
    let named = encode(&format!("http://[2002:7f00:1::]:{port}/"));
    let json = septa.get(&format!("/caller/?to={named}")).json();
    assert_ne!(json["denied"], true, "{json}");

    let flows = septa.stop();
    let caller = egress_of(&flows, "function:caller");
    let verdicts: Vec<(&str, &str)> = caller
        .iter()
        .map(|f| {
            (
                f["verdict"].as_str().unwrap(),
                f["rule"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        verdicts,
        [
            ("deny", ""),
            ("deny", ""),
            ("deny", ""),
            ("deny", ""),
            ("deny", ""),
            ("allow", "caller-to-loopback-v4"),
            ("allow", "caller-to-6to4-form"),
        ],
        "{caller:#?}"
    );
    for f in &caller[..5] {
        let reason = f["reason"].as_str().unwrap();
        assert!(reason.contains("no egress rule admits"), "{f}");
    }
}

#[test]
fn the_ceiling_unwraps_local_nat64_and_teredo() {
    let (port, hits) = outside_listener();
    let septa = Septa::start(&case("egress-family"));
    // A rule admits all of local-use NAT64 and Teredo, but the default ceiling refuses what they
    // lead to: 127.0.0.2 (not relaxed) through NAT64 at /96, 169.254.169.254 through NAT64 at
    // /48, 127.0.0.2 as a Teredo client, and 10.0.0.1 as a Teredo client.
    for host in [
        "[64:ff9b:1::7f00:2]",
        "[64:ff9b:1:a9fe:a9:fe00::]",
        "[2001:0:808:808:8000:63bf:80ff:fffd]",
        "[2001:0:808:808:8000:63bf:f5ff:fffe]",
    ] {
        let url = encode(&format!("http://{host}:{port}/"));
        let json = septa.get(&format!("/tunnels/?to={url}")).json();
        assert_eq!(json["denied"], true, "{host}: {json}");
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0);
    let flows = septa.stop();
    let tunnels = egress_of(&flows, "function:tunnels");
    assert_eq!(tunnels.len(), 4, "{tunnels:#?}");
    let names = ["(loopback)", "(metadata)", "(loopback)", "(private)"];
    for (f, name) in tunnels.iter().zip(names) {
        assert_eq!(f["verdict"], "deny", "{f}");
        let reason = f["reason"].as_str().unwrap();
        assert!(
            reason.contains("operator ceiling") && reason.ends_with(name),
            "{f}"
        );
    }
}
