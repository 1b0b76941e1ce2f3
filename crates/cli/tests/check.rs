//! `septa check` on broken manifests: every case under `tests/cases/check/` must fail, print each
//! line of its `expected.txt` (file:line:col and message), and start nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{repo, septa};

#[test]
fn every_broken_manifest_is_refused_with_positions() {
    let cases = repo().join("tests/cases/check");
    let mut dirs: Vec<_> = std::fs::read_dir(&cases)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    assert!(
        dirs.len() >= 12,
        "expected a dozen broken manifests, found {}",
        dirs.len()
    );
    let mut failures = Vec::new();
    for dir in dirs {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let expected = std::fs::read_to_string(dir.join("expected.txt"))
            .unwrap_or_else(|_| panic!("case `{name}` has no expected.txt"));
        let (ok, stdout, stderr) = septa(&["check", dir.to_str().unwrap()]);
        if ok {
            failures.push(format!("{name}: `septa check` succeeded:\n{stdout}"));
            continue;
        }
        for line in expected.lines().filter(|l| !l.trim().is_empty()) {
            if !stderr.contains(line) {
                failures.push(format!("{name}: missing `{line}` in:\n{stderr}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn the_example_shop_checks_clean() {
    let (ok, stdout, stderr) = septa(&["check", repo().join("examples/shop").to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("ok: application `shop`: 4 segments, 5 functions, 1 endpoints"),
        "{stdout}"
    );
}

#[test]
fn up_refuses_a_broken_manifest_and_starts_nothing() {
    let dir = repo().join("tests/cases/check/route-to-private");
    let (ok, stdout, stderr) = septa(&["up", dir.to_str().unwrap(), "--listen", "127.0.0.1:0"]);
    assert!(!ok);
    assert!(!stdout.contains("listening"), "{stdout}");
    assert!(stderr.contains("only routes to public subnets"), "{stderr}");
}

#[test]
fn help_and_version_work_on_every_command() {
    let (ok, stdout, _) = septa(&["--version"]);
    assert!(ok && stdout.starts_with("septa "), "{stdout}");
    for cmd in [&["--help"][..], &["up", "--help"], &["check", "--help"]] {
        let (ok, stdout, _) = septa(cmd);
        assert!(ok && stdout.contains("Usage"), "{cmd:?}: {stdout}");
    }
}

#[test]
fn the_admin_listener_is_separate_from_the_gateway() {
    let septa =
        common::Septa::start_with(&repo().join("examples/shop"), &["--admin", "127.0.0.1:0"]);
    let admin = septa
        .startup
        .iter()
        .find_map(|l| l.strip_prefix("septa: admin on http://"))
        .unwrap()
        .to_owned();
    let mut stream = std::net::TcpStream::connect(admin).unwrap();
    use std::io::{Read, Write};
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).unwrap();
    // Nothing on the admin listener answers without its token (tests/monitor.rs has the rest).
    assert!(out.starts_with("HTTP/1.1 401"), "{out}");
    assert!(!out.contains("\"application\":\"shop\""), "{out}");
    // The gateway never serves admin paths.
    assert_eq!(septa.get("/healthz").status, 404);
}
