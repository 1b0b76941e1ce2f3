//! Node certificates from `septa ca` and the mutual TLS they make: two nodes of one CA connect,
//! and every peer the issue names as refused at the door is refused by the handshake or by the
//! identity read from it. Real TLS over loopback sockets, no mocks.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use septa_identity::tls::NodeTls;
use septa_identity::{NodeId, PeerError, ca, node_id_of};
use time::{Duration, OffsetDateTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// A CA for `trust_domain` in `dir/ca` and node `name`'s directory in `dir/name`.
fn node(dir: &Path, ca_name: &str, trust_domain: &str, name: &str) -> NodeTls {
    let ca_dir = dir.join(ca_name);
    if !ca_dir.join("ca.crt").exists() {
        ca::init(&ca_dir, trust_domain).unwrap();
    }
    let out = dir.join(name);
    ca::issue(&ca_dir, name, &out, 30).unwrap();
    NodeTls::load(&out).unwrap()
}

/// What the server saw (the client's node id or why none) and whether the client got its echo.
async fn connect(
    server: &NodeTls,
    client: &NodeTls,
    server_name: &str,
) -> (Result<NodeId, String>, Result<(), String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(server.current().server.clone());
    let accept = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
        let peer = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .ok_or(PeerError::NoCertificate)
            .and_then(|c| node_id_of(c))
            .map_err(|e| e.to_string())?;
        let mut buf = [0; 4];
        tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        tls.write_all(&buf).await.map_err(|e| e.to_string())?;
        tls.flush().await.map_err(|e| e.to_string())?;
        Ok::<_, String>(peer)
    });
    let connector = TlsConnector::from(client.current().client.clone());
    let name = ServerName::try_from(server_name.to_owned()).unwrap();
    let client_side = async {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let mut tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        tls.write_all(b"ping").await.map_err(|e| e.to_string())?;
        let mut buf = [0; 4];
        tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        Ok::<_, String>(())
    }
    .await;
    let server_side = accept.await.unwrap();
    (server_side, client_side)
}

#[tokio::test]
async fn two_nodes_of_one_ca_know_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let a = node(dir.path(), "ca", "shop.example", "edge-1");
    let b = node(dir.path(), "ca", "shop.example", "pay-1");
    assert_eq!(mode(&dir.path().join("ca/ca.key")), 0o600);
    assert_eq!(mode(&dir.path().join("pay-1/node.key")), 0o600);
    assert_eq!(
        b.current().id.to_string(),
        "spiffe://shop.example/node/pay-1"
    );
    assert_eq!(b.current().fingerprint.len(), 64);
    let (server, client) = connect(&b, &a, "pay-1").await;
    assert_eq!(client, Ok(()));
    assert_eq!(
        server,
        Ok(NodeId {
            trust_domain: "shop.example".into(),
            node: "edge-1".into()
        })
    );
}

#[tokio::test]
async fn a_client_calling_one_node_refuses_another() {
    let dir = tempfile::tempdir().unwrap();
    let a = node(dir.path(), "ca", "shop.example", "edge-1");
    let b = node(dir.path(), "ca", "shop.example", "pay-1");
    let (_, client) = connect(&b, &a, "pay-2").await;
    let error = client.unwrap_err();
    assert!(
        error.contains("not `spiffe://shop.example/node/pay-2`"),
        "{error}"
    );
}

#[tokio::test]
async fn a_node_of_another_ca_fails_the_handshake_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let ours = node(dir.path(), "ca", "shop.example", "pay-1");
    let theirs = node(dir.path(), "other-ca", "shop.example", "edge-1");
    let (server, client) = connect(&ours, &theirs, "pay-1").await;
    assert!(server.is_err() && client.is_err(), "{server:?} {client:?}");
    let (server, client) = connect(&theirs, &ours, "edge-1").await;
    assert!(server.is_err() && client.is_err(), "{server:?} {client:?}");
}

#[tokio::test]
async fn a_client_without_a_certificate_fails_the_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let ours = node(dir.path(), "ca", "shop.example", "pay-1");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(ours.current().server.clone());
    let accept = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        acceptor.accept(tcp).await.map(|_| ())
    });
    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read(dir.path().join("ca/ca.crt")).unwrap();
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(&ca) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.unwrap();
    // The client cannot check the SPIFFE id by DNS name, so it may fail on that first; either
    // way the server must not accept it.
    let _ = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("pay-1").unwrap(), tcp)
        .await
        .map(|mut s| async move { s.write_all(b"ping").await });
    assert!(accept.await.unwrap().is_err());
}

#[tokio::test]
async fn an_expired_certificate_fails_the_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let ours = node(dir.path(), "ca", "shop.example", "pay-1");
    let ca = ca::Ca::open(&dir.path().join("ca")).unwrap();
    let now = OffsetDateTime::now_utc();
    let expired = dir.path().join("expired");
    ca.issue(
        "spiffe://shop.example/node/edge-1",
        now - Duration::days(2),
        now - Duration::days(1),
        &expired,
    )
    .unwrap();
    let expired = NodeTls::load(&expired).unwrap();
    let (server, client) = connect(&ours, &expired, "pay-1").await;
    assert!(server.is_err(), "{server:?}");
    assert!(client.is_err(), "{client:?}");
    let (_, client) = connect(&expired, &ours, "edge-1").await;
    assert!(client.unwrap_err().to_lowercase().contains("expired"));
}

#[tokio::test]
async fn a_node_of_another_trust_domain_is_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let ours = node(dir.path(), "ca", "shop.example", "pay-1");
    let ca = ca::Ca::open(&dir.path().join("ca")).unwrap();
    let now = OffsetDateTime::now_utc();
    let foreign = dir.path().join("foreign");
    ca.issue(
        "spiffe://evil.example/node/edge-1",
        now - Duration::minutes(1),
        now + Duration::days(1),
        &foreign,
    )
    .unwrap();
    let foreign = NodeTls::load(&foreign).unwrap();
    assert_eq!(
        node_id_of(&first_cert(&dir.path().join("foreign/node.crt"))).unwrap(),
        NodeId {
            trust_domain: "evil.example".into(),
            node: "edge-1".into()
        }
    );
    // Signed by our CA, but of another domain: neither side gets a session with the other (the
    // node also refuses such a peer after the handshake, before deciding anything).
    let (server, client) = connect(&ours, &foreign, "pay-1").await;
    assert!(server.is_err() && client.is_err(), "{server:?} {client:?}");
    let (server, client) = connect(&foreign, &ours, "edge-1").await;
    assert!(server.is_err() && client.is_err(), "{server:?} {client:?}");
}

fn first_cert(path: &Path) -> Vec<u8> {
    let pem = std::fs::read(path).unwrap();
    let cert: rustls::pki_types::CertificateDer<'static> =
        rustls::pki_types::pem::PemObject::from_pem_slice(&pem).unwrap();
    cert.to_vec()
}

#[test]
fn init_refuses_an_existing_ca_and_bad_names() {
    let dir = tempfile::tempdir().unwrap();
    ca::init(dir.path(), "shop.example").unwrap();
    let before = std::fs::read(dir.path().join("ca.key")).unwrap();
    let error = ca::init(dir.path(), "shop.example")
        .unwrap_err()
        .to_string();
    assert!(error.contains("already exists"), "{error}");
    assert_eq!(std::fs::read(dir.path().join("ca.key")).unwrap(), before);
    let error = ca::init(&dir.path().join("x"), "Shop Example")
        .unwrap_err()
        .to_string();
    assert!(error.contains("trust domain `Shop Example`"), "{error}");
    let out = dir.path().join("n");
    let error = ca::issue(dir.path(), "Pay_1", &out, 30)
        .unwrap_err()
        .to_string();
    assert!(error.contains("`Pay_1`"), "{error}");
    let error = ca::issue(dir.path(), "pay-1", &out, 0)
        .unwrap_err()
        .to_string();
    assert!(error.contains("`--days`"), "{error}");
    assert!(!out.exists());
}

#[tokio::test]
async fn replaced_files_are_picked_up_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let a = node(dir.path(), "ca", "shop.example", "edge-1");
    let b = node(dir.path(), "ca", "shop.example", "pay-1");
    let first = b.current().fingerprint.clone();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    ca::issue(
        &dir.path().join("ca"),
        "pay-1",
        &dir.path().join("pay-1"),
        30,
    )
    .unwrap();
    let second = b.current().fingerprint.clone();
    assert_ne!(first, second);
    let (server, client) = connect(&b, &a, "pay-1").await;
    assert!(server.is_ok() && client.is_ok());
}
