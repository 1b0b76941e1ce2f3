//! Request hygiene at the gateway: oversized headers and bodies, and clients too slow to send
//! their headers, are refused before any function runs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::Septa;

fn start() -> (Septa, tempfile::TempDir) {
    let dir = common::echo_app(
        "hygiene",
        r#"[[route]]
id = "small"
path = "/small/..."
function = "echo"
max_body_kb = 1
[[route]]
id = "slow"
path = "/slow/..."
function = "echo"
body_timeout_ms = 300
[[route]]
id = "default"
path = "/..."
function = "echo"
"#,
    );
    let septa = Septa::start_with(dir.path(), &["--header-timeout-ms", "500"]);
    (septa, dir)
}

#[test]
fn bodies_over_the_route_limit_are_refused_with_413() {
    let (septa, _dir) = start();
    let ok = septa.request("POST", "/small/x", &[], &"a".repeat(1024));
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(ok.json()["body"].as_str().unwrap().len(), 1024);
    let big = septa.request("POST", "/small/y", &[], &"a".repeat(1025));
    assert_eq!(big.status, 413, "{big:?}");
    // The default limit is far larger.
    assert_eq!(
        septa
            .request("POST", "/other", &[], &"a".repeat(64 * 1024))
            .status,
        200
    );
    let flows = septa.stop();
    let refused = flows.iter().find(|f| f["path"] == "/small/y").unwrap();
    assert_eq!(refused["status"], 413);
    assert_eq!(
        refused["reason"],
        "request body of 1025 bytes is over route `small`'s limit of 1024 bytes"
    );
}

#[test]
fn oversized_headers_are_refused() {
    let (septa, _dir) = start();
    let r = septa.request("GET", "/x", &[("x-big", &"a".repeat(20 * 1024))], "");
    assert_eq!(r.status, 431, "{r:?}");
    let many: Vec<(String, String)> = (0..150)
        .map(|i| (format!("x-h{i}"), "v".to_owned()))
        .collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let r = septa.request("GET", "/x", &many, "");
    assert_eq!(r.status, 431, "{r:?}");
    assert_eq!(septa.get("/x").status, 200);
}

#[test]
fn a_client_too_slow_to_send_its_headers_is_disconnected() {
    let (septa, _dir) = start();
    let mut stream = TcpStream::connect(septa.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let start = Instant::now();
    // Half a request line, then nothing: a slowloris client.
    stream.write_all(b"GET /x HTTP/1.1\r\nhost: x\r\n").unwrap();
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "still connected after {took:?}"
    );
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
    // Everyone else is still served.
    assert_eq!(septa.get("/x").status, 200);
}

#[test]
fn a_body_that_does_not_arrive_in_time_is_a_408() {
    let (septa, _dir) = start();
    let mut stream = TcpStream::connect(septa.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let start = Instant::now();
    // Declares 100 bytes, sends 10, then trickles nothing.
    stream
        .write_all(b"POST /slow/x HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n0123456789")
        .unwrap();
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    let took = start.elapsed();
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(took < Duration::from_secs(5), "answered after {took:?}");
    // A body that arrives in time on the same route is served.
    assert_eq!(septa.request("POST", "/slow/y", &[], "hello").status, 200);
    let flows = septa.stop();
    let f = flows.iter().find(|f| f["path"] == "/slow/x").unwrap();
    assert_eq!(f["status"], 408, "{f}");
    // Allowed by its route; what went wrong afterwards is the record's error, not its reason.
    assert_eq!(f["verdict"], "allow", "{f}");
    assert_eq!(
        f["error"], "the request body did not arrive within 300 ms",
        "{f}"
    );
}
