//! Client connections are bounded: at the cap (sized from the open-file limit) the longest idle
//! connections, HTTP/1 and HTTP/2, make room for a new client; idle connections close after
//! `--idle-timeout-ms`; and a client that resets its HTTP/2 streams as fast as it opens them
//! (rapid reset) loses its connection without starving anyone else.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::Septa;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn get(path: &str) -> http::Request<Empty<Bytes>> {
    http::Request::get(format!("http://localhost{path}"))
        .body(Empty::new())
        .unwrap()
}

/// A connection a client opened, used once, and left idle; its task ends when septa closes it.
struct Idle {
    http2: bool,
    closed: JoinHandle<()>,
    _keep: Box<dyn std::any::Any>,
}

/// Opens an HTTP/1 or HTTP/2 connection to `addr`, sends one request, and leaves it idle.
async fn idle(addr: SocketAddr, http2: bool) -> Option<Idle> {
    let io = TokioIo::new(TcpStream::connect(addr).await.ok()?);
    let path = format!("/a/idle-{}", if http2 { 2 } else { 1 });
    if http2 {
        let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .ok()?;
        let closed = tokio::spawn(async move {
            let _ = conn.await;
        });
        let response = send.send_request(get(&path)).await.ok()?;
        response.into_body().collect().await.ok()?;
        Some(Idle {
            http2,
            closed,
            _keep: Box::new(send),
        })
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.ok()?;
        let closed = tokio::spawn(async move {
            let _ = conn.await;
        });
        let response = send.send_request(get(&path)).await.ok()?;
        response.into_body().collect().await.ok()?;
        Some(Idle {
            http2,
            closed,
            _keep: Box::new(send),
        })
    }
}

/// One request on a new HTTP/1 connection: its status.
async fn newcomer(addr: SocketAddr) -> Option<u16> {
    let io = TokioIo::new(TcpStream::connect(addr).await.ok()?);
    let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.ok()?;
    tokio::spawn(conn);
    let response = send.send_request(get("/a/newcomer")).await.ok()?;
    Some(response.status().as_u16())
}

fn app() -> tempfile::TempDir {
    common::echo_app(
        "connections",
        "[[route]]\nid = \"a\"\npath = \"/a/...\"\nfunction = \"echo\"\n",
    )
}

#[test]
fn at_the_cap_idle_connections_make_room_for_a_new_client() {
    let dir = app();
    // 256 open files: septa keeps 64 for itself and admits 192 client connections.
    let septa = Septa::start_with_fd_limit(dir.path(), &[], 256);
    let addr = septa.addr;
    runtime().block_on(async move {
        // More idle connections, half HTTP/1 and half HTTP/2, than septa has descriptors for.
        let mut opened = Vec::new();
        let mut failures = 0;
        for i in 0..300 {
            match tokio::time::timeout(Duration::from_millis(500), idle(addr, i % 2 == 1)).await {
                Ok(Some(conn)) => opened.push(conn),
                _ => {
                    failures += 1;
                    if failures == 3 {
                        break;
                    }
                }
            }
        }
        let started = Instant::now();
        let status = tokio::time::timeout(Duration::from_secs(1), newcomer(addr)).await;
        assert_eq!(
            status,
            Ok(Some(200)),
            "a new client after {} idle connections ({failures} failed to open)",
            opened.len()
        );
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(opened.len(), 300, "{failures} connections failed to open");
        // The room was made by closing idle connections of both protocols.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let closed = |http2: bool| {
            opened
                .iter()
                .filter(|c| c.http2 == http2 && c.closed.is_finished())
                .count()
        };
        assert!(
            closed(false) > 0 && closed(true) > 0,
            "{} {}",
            closed(false),
            closed(true)
        );
        assert!(closed(false) + closed(true) >= 300 - 192);
    });
    assert!(
        septa
            .startup
            .iter()
            .any(|l| l == "septa: up to 192 client connections (open-file limit 256)"),
        "{:?}",
        septa.startup
    );
}

#[test]
fn out_of_descriptors_septa_sheds_idle_connections_instead_of_spinning() {
    let dir = app();
    // A cap above what the descriptors allow: `accept` runs out first.
    let septa = Septa::start_with_fd_limit(dir.path(), &["--max-connections", "1000"], 256);
    let addr = septa.addr;
    runtime().block_on(async move {
        let mut opened = Vec::new();
        let mut failures = 0;
        for i in 0..300 {
            match tokio::time::timeout(Duration::from_millis(300), idle(addr, i % 2 == 1)).await {
                Ok(Some(conn)) => opened.push(conn),
                _ => {
                    failures += 1;
                    if failures == 3 {
                        break;
                    }
                }
            }
        }
        let status = tokio::time::timeout(Duration::from_secs(1), newcomer(addr)).await;
        assert_eq!(
            status,
            Ok(Some(200)),
            "a new client after {} idle connections ({failures} failed to open)",
            opened.len()
        );
    });
}

#[test]
fn idle_connections_are_closed_after_the_idle_timeout() {
    let dir = app();
    let septa = Septa::start_with(dir.path(), &["--idle-timeout-ms", "300"]);
    let addr = septa.addr;
    runtime().block_on(async move {
        let http1 = idle(addr, false).await.unwrap();
        let http2 = idle(addr, true).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!http1.closed.is_finished() && !http2.closed.is_finished());
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert!(http1.closed.is_finished(), "HTTP/1 keep-alive still open");
        assert!(http2.closed.is_finished(), "HTTP/2 still open");
    });
}

/// Opens HTTP/2 connections and on each sends `HEADERS` then `RST_STREAM` in batches until
/// `until`; returns (streams reset, connections it took). Without `wait`, each stream is reset
/// as soon as it is sent (the classic attack, which h2's limit on streams reset before they are
/// accepted catches); with it, septa accepts a batch and starts its handlers before the batch
/// is reset, which only septa's own count of cancelled requests sees.
async fn rapid_reset(addr: SocketAddr, wait: Option<Duration>, until: Instant) -> (u64, u64) {
    let (mut streams, mut connections) = (0u64, 0u64);
    while Instant::now() < until {
        let Ok(tcp) = TcpStream::connect(addr).await else {
            continue;
        };
        let Ok((mut client, conn)) = h2::client::handshake(tcp).await else {
            continue;
        };
        connections += 1;
        let driver = tokio::spawn(conn);
        'connection: while Instant::now() < until {
            let mut batch = Vec::new();
            for _ in 0..20 {
                let Ok(ready) = client.ready().await else {
                    break 'connection;
                };
                client = ready;
                let request = http::Request::get(format!("http://localhost/a/reset-{streams}"))
                    .body(())
                    .unwrap();
                // Accepted first: the body never comes, so the handler is still waiting for
                // it when the stream is reset.
                let Ok((_response, stream)) = client.send_request(request, wait.is_none()) else {
                    break 'connection;
                };
                batch.push(stream);
            }
            if let Some(wait) = wait {
                tokio::time::sleep(wait).await;
            }
            for mut stream in batch {
                stream.send_reset(h2::Reason::CANCEL);
                streams += 1;
            }
            tokio::task::yield_now().await;
        }
        driver.abort();
    }
    (streams, connections)
}

#[test]
fn a_rapid_reset_client_loses_its_connection_and_starves_no_one() {
    let dir = app();
    let septa = Septa::start_with(dir.path(), &["--workers", "1"]);
    let addr = septa.addr;
    let until = Instant::now() + Duration::from_secs(3);
    let attack =
        |wait| std::thread::spawn(move || runtime().block_on(rapid_reset(addr, wait, until)));
    let classic = attack(None);
    let accepted_first = attack(Some(Duration::from_millis(50)));
    std::thread::sleep(Duration::from_millis(200));
    let mut slowest = Duration::ZERO;
    let mut served = 0;
    while Instant::now() < until {
        let started = Instant::now();
        let r = common::http_get(addr, "/a/victim", &[]);
        assert_eq!(r.status, 200, "{r:?}");
        slowest = slowest.max(started.elapsed());
        served += 1;
    }
    println!("slowest of {served} requests: {slowest:?}");
    assert!(
        slowest < Duration::from_secs(1),
        "slowest of {served}: {slowest:?}"
    );
    // Every connection of either attacker was dropped: the classic one by h2's limit on streams
    // reset before they were accepted, the other once it had cancelled more than 100 requests.
    let (streams, connections) = classic.join().unwrap();
    println!("classic: {streams} streams reset on {connections} connections");
    assert!(
        connections > 1,
        "classic: {streams} resets on one connection"
    );
    let (streams, connections) = accepted_first.join().unwrap();
    println!("accepted first: {streams} streams reset on {connections} connections");
    assert!(
        connections > 1,
        "accepted first: {streams} resets on one connection"
    );
    assert!(
        streams / connections <= 300,
        "accepted first: {streams} resets on {connections} connections"
    );
}
