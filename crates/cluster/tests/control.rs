//! The control plane against a real NATS server: a publish is what every reader sees, files come
//! back only as published (a changed byte is refused), a node fetches only what it hosts, and the
//! registry lists who heartbeats. One test runs against a three-server NATS cluster.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use futures_util::StreamExt;
use septa_cluster::{Bundle, ControlError, ControlPlane, NodeStatus};
use septa_testkit::NatsServer;

const MANIFEST: &str = r#"septa_manifest_version = 1
[application]
name = "t"
[segment.edge]
subnets = { web = "public" }
[function.a]
source = "a.wasm"
placement = "edge/web"
[function.b]
source = "../shared/b.wasm"
placement = "edge/web"
[api_keys.partners]
keys_file = "keys.txt"
[cluster]
trust_domain = "t.example"
[node.n1]
hosts = ["function:a"]
[node.n2]
hosts = ["function:b"]
"#;

/// An application in `root/app` whose function `b` lives in `root/shared`.
fn bundle(root: &Path, a: &[u8]) -> Bundle {
    let app = root.join("app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::create_dir_all(root.join("shared")).unwrap();
    std::fs::write(app.join("a.wasm"), a).unwrap();
    std::fs::write(root.join("shared/b.wasm"), b"component b").unwrap();
    std::fs::write(app.join("keys.txt"), b"").unwrap();
    let file = app.join("septa.toml");
    std::fs::write(&file, MANIFEST).unwrap();
    let manifest = septa_manifest::parse(&file, MANIFEST).unwrap();
    Bundle::of(&manifest, MANIFEST.as_bytes().to_vec()).unwrap()
}

#[tokio::test]
async fn a_publish_is_fetched_back_verified_and_only_what_a_node_hosts() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let first = bundle(dir.path(), b"component a, first");
    let control = ControlPlane::connect(&nats.url()).await.unwrap();
    assert_eq!(control.current().await.unwrap(), None);
    let mut watch = Box::pin(control.watch().await.unwrap());
    control.publish(&first).await.unwrap();
    let current = control.current().await.unwrap().unwrap();
    assert_eq!(current, first.revision);
    assert_eq!(watch.next().await.unwrap().unwrap().id, first.revision.id);
    // The manifest sits one level down so `../shared/b.wasm` stays inside the revision.
    let paths: Vec<&str> = current.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(current.manifest.path, "app/septa.toml");
    assert_eq!(paths, ["app/a.wasm", "app/keys.txt", "shared/b.wasm"]);

    let fetched = control.fetch(&current, |f| f == "a").await.unwrap();
    let fetched_paths: Vec<&str> = fetched.keys().map(String::as_str).collect();
    assert_eq!(
        fetched_paths,
        ["app/a.wasm", "app/keys.txt", "app/septa.toml"]
    );
    assert_eq!(&fetched["app/a.wasm"][..], b"component a, first");

    let second = bundle(dir.path(), b"component a, second");
    assert_ne!(second.revision.id, first.revision.id);
    control.publish(&second).await.unwrap();
    assert_eq!(watch.next().await.unwrap().unwrap().id, second.revision.id);
    // A node started now sees the revision in force first.
    let mut late = Box::pin(control.watch().await.unwrap());
    assert_eq!(late.next().await.unwrap().unwrap().id, second.revision.id);
}

#[tokio::test]
async fn a_file_changed_in_the_store_is_refused() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let published = bundle(dir.path(), b"component a");
    let control = ControlPlane::connect(&nats.url()).await.unwrap();
    control.publish(&published).await.unwrap();
    // Someone with write access to the bucket swaps a component's bytes.
    let client = async_nats::connect(nats.url()).await.unwrap();
    let files = async_nats::jetstream::new(client)
        .get_object_store("septa-files")
        .await
        .unwrap();
    let a = &published.revision.files[0];
    let mut evil: &[u8] = b"component A";
    files.put(a.sha256.as_str(), &mut evil).await.unwrap();
    let error = control
        .fetch(&published.revision, |_| true)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ControlError::BadFile { path, .. } if path == "app/a.wasm"),
        "{error}"
    );
    assert!(
        error.to_string().contains("do not match its SHA-256"),
        "{error}"
    );
}

#[tokio::test]
async fn nodes_register_by_heartbeat() {
    let nats = NatsServer::start();
    let control = ControlPlane::connect(&nats.url()).await.unwrap();
    assert!(control.nodes().await.unwrap().is_empty());
    let status = |name: &str| NodeStatus {
        name: name.to_owned(),
        address: "127.0.0.1:1".to_owned(),
        mesh_address: "127.0.0.1:2".to_owned(),
        fingerprint: "ab".repeat(32),
        revision: Some("0123456789ab".to_owned()),
        hosts: vec!["function:a".to_owned()],
        failed: None,
        started_at_ms: 1,
        heartbeat_at_ms: 2,
    };
    control.heartbeat(&status("n2")).await.unwrap();
    control.heartbeat(&status("n1")).await.unwrap();
    let nodes = control.nodes().await.unwrap();
    assert_eq!(nodes, [status("n1"), status("n2")]);
}

#[test]
fn a_file_named_by_an_absolute_path_cannot_be_published() {
    let text = MANIFEST.replace("source = \"a.wasm\"", "source = \"/opt/a.wasm\"");
    let manifest = septa_manifest::parse(Path::new("app/septa.toml"), &text).unwrap();
    let error = Bundle::of(&manifest, text.into_bytes()).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("`/opt/a.wasm` is an absolute path"),
        "{error}"
    );
}

#[tokio::test]
async fn a_three_server_nats_cluster_serves_one_revision_from_every_server() {
    let servers = NatsServer::cluster_of_three();
    let dir = tempfile::tempdir().unwrap();
    let published = bundle(dir.path(), b"component a");
    // JetStream needs its meta leader elected before the buckets can be created.
    let mut control = None;
    for _ in 0..100 {
        match ControlPlane::connect(&servers[0].url()).await {
            Ok(c) => {
                control = Some(c);
                break;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
    control.unwrap().publish(&published).await.unwrap();
    for server in &servers[1..] {
        let reader = ControlPlane::connect(&server.url()).await.unwrap();
        let current = reader.current().await.unwrap().unwrap();
        assert_eq!(current.id, published.revision.id);
        let files = reader.fetch(&current, |_| true).await.unwrap();
        assert_eq!(files.len(), 4);
    }
}
