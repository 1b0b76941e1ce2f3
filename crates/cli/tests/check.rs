//! `septa check` on broken manifests: every case under `tests/cases/check/` must fail, print each
//! line of its `expected.txt` (file:line:col and message), and start nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{repo, septa};

/// `(component (import "fermyon:spin/key-value@2.0.0" (instance)) (import
/// "wasi:io/streams@0.2.0" (instance)))`, as `wasm-tools parse` writes it: a Spin component's
/// import, and one septa gives.
const SPIN_IMPORTS: &[u8] = b"\x00asm\x0d\x00\x01\x00\x07\x03\x01B\x00\x0a!\x01\x00\x1cfermyon:spin/key-value@2.0.0\x05\x00\x07\x03\x01B\x00\x0a\x1a\x01\x00\x15wasi:io/streams@0.2.0\x05\x01";

/// An application of one function `f`, its component `f.wasm` holding `bytes` (or absent).
fn one_function(bytes: Option<&[u8]>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("septa.toml"),
        "septa_manifest_version = 1\n[application]\nname = \"one\"\n\
         [segment.s]\nsubnets = { web = \"public\" }\n\
         [function.f]\nsource = \"f.wasm\"\nplacement = \"s/web\"\n\
         [[route]]\npath = \"/f/...\"\nfunction = \"f\"\n",
    )
    .unwrap();
    if let Some(bytes) = bytes {
        std::fs::write(dir.path().join("f.wasm"), bytes).unwrap();
    }
    dir
}

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

#[test]
fn a_file_that_cannot_serve_requests_is_refused_by_check_and_by_up_saying_why() {
    let cases: [(&[u8], &str); 3] = [
        (
            b"GIF89a\x01\x00",
            "it is not a WebAssembly file: it starts with `GIF8`, not `\\0asm`",
        ),
        (
            b"\0asm\x01\0\0\0",
            "it is a core WebAssembly module, not a component: build it for `wasm32-wasip2`",
        ),
        (
            SPIN_IMPORTS,
            "it imports `fermyon:spin/key-value@2.0.0`, which septa does not provide",
        ),
    ];
    for (bytes, said) in cases {
        let dir = one_function(Some(bytes));
        let dir = dir.path().to_str().unwrap();
        let (ok, stdout, stderr) = septa(&["check", dir]);
        assert!(!ok, "{stdout}");
        assert!(
            stderr.contains(&format!(
                "septa.toml:6:11: error: function `f`: `{dir}/f.wasm`: {said}"
            )),
            "{stderr}"
        );
        let (ok, stdout, stderr) = septa(&["up", dir, "--listen", "127.0.0.1:0"]);
        assert!(!ok && !stdout.contains("listening"), "{stdout}");
        assert!(
            stderr.contains(&format!(
                "`{dir}/f.wasm` is not a runnable wasi:http component: {said}"
            )),
            "{stderr}"
        );
        // One line, not a dump of what the parser expected.
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    }
}

#[test]
fn a_component_not_built_yet_is_a_warning_of_check_and_a_real_one_checks_clean() {
    let dir = one_function(None);
    let dir = dir.path().to_str().unwrap();
    let (ok, stdout, stderr) = septa(&["check", dir]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("ok: application `one`"), "{stdout}");
    assert!(
        stderr.contains(&format!(
            "warning: function `f`: `{dir}/f.wasm` does not exist yet; `septa up` needs it"
        )),
        "{stderr}"
    );
    common::build_components();
    let echo = std::fs::read(common::test_component("echo")).unwrap();
    let dir = one_function(Some(&echo));
    let (ok, _, stderr) = septa(&["check", dir.path().to_str().unwrap()]);
    assert!(ok && stderr.is_empty(), "{stderr}");
}
