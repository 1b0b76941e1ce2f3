//! PostgreSQL over TLS, against a real server that takes TLS connections only, with a
//! certificate for `localhost` from a CA the test makes: `sslmode=require` encrypts,
//! `verify-full` checks the chain and the name, `verify-ca` only the chain, and a server whose
//! certificate does not chain to the given CA, or does not name the host, is refused.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use bytes::Bytes;
use common::PostgresServer;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, PKCS_ECDSA_P256_SHA256,
};
use septa_endpoints::{Backend, Condition, Store, StoreError, StoreOptions};

/// A CA, as PEM, and what it can sign with.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn ca(name: &str) -> Ca {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap();
    Ca {
        pem: cert.pem(),
        issuer: Issuer::new(params, key),
    }
}

/// A server certificate for `localhost` only (not `127.0.0.1`), and its key, as PEM.
fn server_certificate(ca: &Ca) -> (String, String) {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

async fn round_trip(url: String, what: &str) -> Result<(), StoreError> {
    let backend = Backend::Postgres { url };
    let store = Store::open("secrets", &backend, StoreOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{what}: the store does not open: {e}"));
    store
        .put("k", Bytes::from_static(b"v"), None, Condition::Any)
        .await?;
    assert_eq!(store.get("k").await?.value, "v", "{what}");
    Ok(())
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[tokio::test]
async fn require_and_verify_full_connect_over_tls_and_a_wrong_ca_is_refused() {
    let real = ca("septa test CA");
    let (cert, key) = server_certificate(&real);
    let Some(server) = PostgresServer::start_with_tls(&cert, &key) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ca_file = write(dir.path(), "ca.pem", &real.pem);
    let other_ca_file = write(dir.path(), "other-ca.pem", &ca("another CA").pem);

    // The server takes TLS connections only: without TLS, nothing gets in.
    let plain = round_trip(server.url_at("127.0.0.1", "sslmode=disable"), "disable").await;
    assert!(
        matches!(plain, Err(StoreError::Unavailable { .. })),
        "a plain connection got in: {plain:?}"
    );

    // `require` encrypts without checking the certificate, as libpq does.
    round_trip(server.url_at("127.0.0.1", "sslmode=require"), "require")
        .await
        .unwrap();
    // `verify-full` checks the chain and the name: `localhost` is the certificate's name.
    let full = format!("sslmode=verify-full&sslrootcert={ca_file}");
    round_trip(server.url_at("localhost", &full), "verify-full")
        .await
        .unwrap();
    // `verify-ca` checks the chain only, so `127.0.0.1` (not in the certificate) is fine...
    let chain_only = format!("sslmode=verify-ca&sslrootcert={ca_file}");
    round_trip(server.url_at("127.0.0.1", &chain_only), "verify-ca")
        .await
        .unwrap();
    // ...which `verify-full` refuses.
    let refused = round_trip(server.url_at("127.0.0.1", &full), "verify-full by address").await;
    let Err(StoreError::Unavailable { reason, .. }) = refused else {
        panic!("verify-full accepted a certificate for another name: {refused:?}");
    };
    assert!(reason.contains("certificate"), "{reason}");

    // A certificate from another CA is refused by `verify-full` and `verify-ca`, and so is
    // `require` once it is given a CA (libpq's rule).
    for mode in ["verify-full", "verify-ca", "require"] {
        let query = format!("sslmode={mode}&sslrootcert={other_ca_file}");
        let refused = round_trip(server.url_at("localhost", &query), mode).await;
        let Err(StoreError::Unavailable { reason, .. }) = refused else {
            panic!("{mode} with the wrong CA connected: {refused:?}");
        };
        assert!(reason.contains("certificate"), "{mode}: {reason}");
        assert!(!reason.contains(PostgresServer::PASSWORD), "{reason}");
    }
}
