//! septa's own fetches (an issuer's JWKS): the ceiling refuses before anything is dialled, the
//! whole fetch is bounded in time, and trusted roots that cannot be used are refused up front.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::ceiling_policy;
use septa_flows::{FlowKind, FlowLog};
use septa_manifest::HttpsUrl;
use septa_mesh::dial::DialError;
use septa_mesh::fetch::{FetchError, FetchLimits, TrustRoots, fetch_document};
use septa_policy::Policy;
use tokio::net::TcpListener;

/// A self-signed certificate authority made by the `openssl` CLI, as a PEM file in `dir`.
fn make_ca(dir: &Path) -> std::path::PathBuf {
    let ok = Command::new("openssl")
        .current_dir(dir)
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "1",
            "-subj",
            "/CN=septa test ca",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
        ])
        .output()
        .unwrap()
        .status
        .success();
    assert!(ok, "openssl could not make a certificate authority");
    dir.join("ca.pem")
}

/// A loopback listener that accepts connections, counts them and never says a word.
async fn silent_listener() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            open.push(stream);
        }
    });
    (port, accepted)
}

fn relaxed_loopback() -> Policy {
    ceiling_policy(&["127.0.0.1/32"])
}

#[tokio::test]
async fn the_default_ceiling_refuses_loopback_before_dialling() {
    let dir = tempfile::tempdir().unwrap();
    let roots = TrustRoots::load(Some(&make_ca(dir.path()))).unwrap();
    let (port, accepted) = silent_listener().await;
    let url = HttpsUrl::parse(&format!("https://127.0.0.1:{port}/jwks.json")).unwrap();
    let log = FlowLog::memory();
    let mut flow = log.guard(FlowKind::Egress, "gateway", url.to_string());
    let error = fetch_document(
        &url,
        &ceiling_policy(&[]),
        &roots,
        FetchLimits::default(),
        &mut flow,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(error, FetchError::Dial(DialError::Blocked(_))),
        "{error:?}"
    );
    assert!(error.to_string().contains("(loopback)"), "{error}");
    let record = flow.record().unwrap();
    assert_eq!(
        record.target.as_deref(),
        Some(&*format!("127.0.0.1:{port}"))
    );
    assert_eq!(record.status, None);
    assert_eq!(accepted.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_server_that_never_answers_fails_the_fetch_at_the_time_limit() {
    let dir = tempfile::tempdir().unwrap();
    let roots = TrustRoots::load(Some(&make_ca(dir.path()))).unwrap();
    let (port, accepted) = silent_listener().await;
    let url = HttpsUrl::parse(&format!("https://127.0.0.1:{port}/jwks.json")).unwrap();
    let log = FlowLog::memory();
    let mut flow = log.guard(FlowKind::Egress, "gateway", url.to_string());
    let limits = FetchLimits {
        timeout: Duration::from_millis(300),
        ..FetchLimits::default()
    };
    let started = Instant::now();
    let error = fetch_document(&url, &relaxed_loopback(), &roots, limits, &mut flow)
        .await
        .unwrap_err();
    // The TLS handshake never completes: the connect step's share of the budget runs out, or the
    // whole fetch's, whichever fires first; both are the same time limit.
    assert!(
        matches!(
            error,
            FetchError::Timeout { .. } | FetchError::Dial(DialError::ConnectionTimeout { .. })
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("300ms"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[test]
fn trusted_roots_that_cannot_be_used_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let error = TrustRoots::load(Some(&missing)).unwrap_err();
    assert!(error.to_string().contains("missing.pem"), "{error}");

    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "no certificates here\n").unwrap();
    let error = TrustRoots::load(Some(&empty)).unwrap_err();
    assert!(
        error.to_string().contains("holds no certificate"),
        "{error}"
    );

    let broken = dir.path().join("broken.pem");
    std::fs::write(
        &broken,
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let error = TrustRoots::load(Some(&broken)).unwrap_err();
    assert!(error.to_string().contains("broken.pem"), "{error}");

    assert!(TrustRoots::load(Some(&make_ca(dir.path()))).is_ok());
}
