//! Endpoint quotas end to end: `limits = { max_keys, max_bytes }` in `septa.toml`, a real
//! component writing through the gateway and the mesh, on all three backends. A put past a quota
//! is answered `507 quota_exceeded` with a body naming the quota, nothing is written, and the
//! flow log records the 507.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "../../endpoints/tests/common/mod.rs"]
mod stores;

use common::{Septa, encode};
use serde_json::Value;
use stores::{Harness, Kind};

/// A writer allowed everything on an endpoint holding at most 2 keys and 40 bytes.
fn app(backend_lines: &str) -> tempfile::TempDir {
    common::build_components();
    let caller = common::test_component("caller");
    let dir = tempfile::tempdir().unwrap();
    let manifest = format!(
        "septa_manifest_version = 1\n[application]\nname = \"quotas\"\n\
         [segment.edge]\nsubnets = {{ web = \"public\" }}\n\
         [segment.data]\nsubnets = {{ vault = \"isolated\" }}\n\
         [function.writer]\nsource = {caller:?}\nplacement = \"edge/web\"\n\
         [[route]]\npath = \"/writer/...\"\nfunction = \"writer\"\n\
         [endpoint.carts]\nplacement = \"data/vault\"\n{backend_lines}\n\
         limits = {{ max_keys = 2, max_bytes = 40 }}\n\
         [[allow]]\nid = \"writer-to-carts\"\nfrom = \"function:writer\"\nto = \"endpoint:carts\"\n"
    );
    std::fs::write(dir.path().join("septa.toml"), manifest).unwrap();
    dir
}

/// What the writer's relay saw when it called `method` on `path` of the endpoint.
fn call(septa: &Septa, method: &str, path: &str, body: &str) -> Value {
    let url = format!("http://carts.internal{path}");
    let target = format!(
        "/writer/?to={}&method={method}&body={}",
        encode(&url),
        encode(body)
    );
    let r = septa.get(&target);
    assert_eq!(r.status, 200, "the relay itself failed: {r:?}");
    r.json()
}

/// The error object of a relayed endpoint answer.
fn error_of(reply: &Value) -> Value {
    let body: Value = serde_json::from_str(reply["body"].as_str().unwrap()).unwrap();
    body["error"].clone()
}

fn run(kind: Kind) {
    let Some(harness) = Harness::start(kind) else {
        return;
    };
    let app = app(&harness.manifest_lines("carts"));
    let septa = Septa::start(app.path());
    let what = format!("{kind:?}");

    for key in ["a", "b"] {
        let put = call(&septa, "PUT", &format!("/kv/{key}"), "ten bytes!");
        assert_eq!(put["status"], 200, "{what}: {put}");
    }
    // A third key: past `max_keys`.
    let refused = call(&septa, "PUT", "/kv/c", "x");
    assert_eq!(refused["status"], 507, "{what}: {refused}");
    let error = error_of(&refused);
    assert_eq!(error["code"], "quota_exceeded", "{what}: {error}");
    assert_eq!(error["quota"], "max_keys");
    assert_eq!(error["limit"], 2);
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("endpoint `carts` holds its quota of 2 keys"),
        "{what}: {error}"
    );
    let absent = call(&septa, "GET", "/kv/c", "");
    assert_eq!(
        absent["status"], 404,
        "{what}: nothing was written: {absent}"
    );

    // 2 keys of 1 byte and 2 values of 10: 22 of 40 bytes. 19 more would make 41.
    let big = call(&septa, "PUT", "/kv/a", &"y".repeat(29));
    assert_eq!(big["status"], 507, "{what}: {big}");
    assert_eq!(error_of(&big)["quota"], "max_bytes");
    assert_eq!(error_of(&big)["limit"], 40);
    let fits = call(&septa, "PUT", "/kv/a", &"y".repeat(28));
    assert_eq!(fits["status"], 200, "{what}: {fits}");

    // Deleting makes room again.
    assert_eq!(call(&septa, "DELETE", "/kv/b", "")["status"], 200);
    assert_eq!(call(&septa, "PUT", "/kv/c", "x")["status"], 200, "{what}");

    let flows = septa.stop();
    let over = flows
        .iter()
        .find(|f| f["kind"] == "endpoint" && f["path"] == "/kv/c" && f["status"] == 507)
        .unwrap_or_else(|| panic!("{what}: no flow record of the refused put"));
    // The policy allowed the call; the store refused it.
    assert_eq!(over["verdict"], "allow", "{what}: {over}");
    assert_eq!(over["rule"], "writer-to-carts");
}

#[test]
fn quotas_hold_on_the_embedded_store() {
    run(Kind::Embedded);
}

#[test]
fn quotas_hold_on_redis() {
    run(Kind::Redis);
}

#[test]
fn quotas_hold_on_postgres() {
    run(Kind::Postgres);
}
