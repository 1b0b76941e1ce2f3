//! Private endpoints through the real mesh, on all three backends: the same table of allowed
//! and denied calls against an embedded store, a real `redis-server` and a real PostgreSQL.
//! Functions reach an endpoint only where an allow rule says, only for the methods and key
//! prefixes it names, and from no other segment by any spelling of its name.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "../../endpoints/tests/common/mod.rs"]
mod stores;

use common::{Septa, encode};
use serde_json::Value;
use stores::{Harness, Kind};

/// An application with one endpoint on `backend` (the lines of its `[endpoint.store]`), a writer
/// allowed `GET`/`PUT`/`DELETE` under `a/`, an auditor allowed `GET` everywhere, a reader in the
/// same segment with no rule, and an outsider in another segment.
fn app(backend_lines: &str) -> tempfile::TempDir {
    common::build_components();
    let caller = common::test_component("caller");
    let dir = tempfile::tempdir().unwrap();
    let mut manifest = String::from(
        "septa_manifest_version = 1\n[application]\nname = \"endpoints\"\n\
         [segment.edge]\nsubnets = { web = \"public\" }\n\
         [segment.other]\nsubnets = { web = \"public\" }\n\
         [segment.data]\nsubnets = { vault = \"isolated\" }\nlabels = [\"pii\"]\n",
    );
    for (name, segment) in [
        ("writer", "edge"),
        ("auditor", "edge"),
        ("reader", "edge"),
        ("outsider", "other"),
    ] {
        manifest.push_str(&format!(
            "[function.{name}]\nsource = {caller:?}\nplacement = \"{segment}/web\"\n\
             [[route]]\npath = \"/{name}/...\"\nfunction = \"{name}\"\n"
        ));
    }
    manifest.push_str(&format!(
        "[endpoint.store]\nplacement = \"data/vault\"\n{backend_lines}\n\
         [[allow]]\nid = \"writer-to-store\"\nfrom = \"function:writer\"\nto = \"endpoint:store\"\n\
         methods = [\"GET\", \"PUT\", \"DELETE\"]\npaths = [\"/kv/a/...\"]\n\
         [[allow]]\nid = \"auditor-reads-store\"\nfrom = \"function:auditor\"\nto = \"endpoint:store\"\n\
         methods = [\"GET\"]\n"
    ));
    std::fs::write(dir.path().join("septa.toml"), manifest).unwrap();
    dir
}

/// What a function's relay saw when it called `url` with `method` (and `body`, `headers`).
fn call(septa: &Septa, function: &str, method: &str, url: &str, extra: &str) -> Value {
    let target = format!("/{function}/?to={}&method={method}{extra}", encode(url));
    let r = septa.get(&target);
    assert_eq!(r.status, 200, "the relay itself failed: {r:?}");
    r.json()
}

fn store_url(path: &str) -> String {
    format!("http://store.internal{path}")
}

fn run_table(kind: Kind) {
    let Some(harness) = Harness::start(kind) else {
        return;
    };
    let app = app(&harness.manifest_lines("store"));
    let septa = Septa::start(app.path());
    let what = format!("{kind:?}");

    // Allowed: put, get, list, compare-and-swap, delete, all under `a/`.
    let put = call(&septa, "writer", "PUT", &store_url("/kv/a/1"), "&body=one");
    assert_eq!(put["status"], 200, "{what}: {put}");
    let version = serde_json::from_str::<Value>(put["body"].as_str().unwrap()).unwrap()["version"]
        .as_u64()
        .unwrap();
    let got = call(&septa, "writer", "GET", &store_url("/kv/a/1"), "");
    assert_eq!(
        (got["status"].as_u64(), got["body"].as_str()),
        (Some(200), Some("one")),
        "{what}: {got}"
    );
    let listed = call(&septa, "writer", "GET", &store_url("/kv/a/"), "");
    assert_eq!(listed["status"], 200, "{what}: {listed}");
    assert!(
        listed["body"].as_str().unwrap().contains("\"a/1\""),
        "{what}: {listed}"
    );
    let stale = format!(
        "&header={}",
        encode(&format!("if-match:\"{}\"", version + 100))
    );
    let cas = call(
        &septa,
        "writer",
        "PUT",
        &store_url("/kv/a/1"),
        &format!("&body=two{stale}"),
    );
    assert_eq!(cas["status"], 412, "{what}: {cas}");
    let fresh = format!("&header={}", encode(&format!("if-match:\"{version}\"")));
    let cas = call(
        &septa,
        "writer",
        "PUT",
        &store_url("/kv/a/1"),
        &format!("&body=two{fresh}"),
    );
    assert_eq!(cas["status"], 200, "{what}: {cas}");

    // Denied: another prefix, the way out of the prefix, a method the rule does not name.
    for (method, path) in [
        ("PUT", "/kv/b/1"),
        ("GET", "/kv/b/"),
        ("GET", "/kv/"),
        ("POST", "/kv/a/1"),
    ] {
        let r = call(&septa, "writer", method, &store_url(path), "&body=x");
        assert_eq!(r["status"], 403, "{what}: {method} {path}: {r}");
        assert_eq!(r["denied"], true, "{what}: {method} {path}: {r}");
    }
    for path in [
        "/kv/a/../b/1",
        "/kv/a/%2E%2E/b/1",
        "/kv/a%2F..%2Fb/1",
        "/kv/a/..;/b/1",
    ] {
        let r = call(&septa, "writer", "PUT", &store_url(path), "&body=x");
        let status = r["status"].as_u64().unwrap_or(0);
        assert!(
            !(200..300).contains(&status),
            "{what}: PUT {path} was stored: {r}"
        );
    }
    // Nothing reached `b/`: the auditor, who may read everything, finds it empty.
    let b = call(&septa, "auditor", "GET", &store_url("/kv/b/"), "");
    assert_eq!(b["status"], 200, "{what}: {b}");
    assert!(
        b["body"].as_str().unwrap().contains("\"keys\":[]"),
        "{what}: {b}"
    );
    // The auditor reads, never writes.
    let r = call(&septa, "auditor", "PUT", &store_url("/kv/a/1"), "&body=x");
    assert_eq!(r["status"], 403, "{what}: {r}");

    // A function with no rule, and a function in another segment by every spelling of the name.
    let r = call(&septa, "reader", "GET", &store_url("/kv/a/1"), "");
    assert_eq!(r["status"], 403, "{what}: {r}");
    for url in [
        "http://store.internal/kv/a/1",
        "http://STORE.internal/kv/a/1",
        "http://store.INTERNAL/kv/a/1",
        "http://store.internal./kv/a/1",
        "http://store.internal:80/kv/a/1",
        "http://store.internal:8080/kv/a/1",
        "http://store/kv/a/1",
        "https://store.internal/kv/a/1",
    ] {
        let r = call(&septa, "outsider", "GET", url, "");
        assert_ne!(r["status"], 200, "{what}: {url}: {r}");
        assert_eq!(r["denied"], true, "{what}: {url}: {r}");
    }

    let deleted = call(&septa, "writer", "DELETE", &store_url("/kv/a/1"), "");
    assert_eq!(deleted["status"], 200, "{what}: {deleted}");
    let gone = call(&septa, "writer", "GET", &store_url("/kv/a/1"), "");
    assert_eq!(gone["status"], 404, "{what}: {gone}");

    let flows = septa.stop();
    let endpoint_flows: Vec<&Value> = flows.iter().filter(|f| f["kind"] == "endpoint").collect();
    let first = endpoint_flows[0];
    assert_eq!(first["src"], "function:writer", "{what}: {first}");
    assert_eq!(first["dst"], "endpoint:store", "{what}: {first}");
    assert_eq!(first["rule"], "writer-to-store", "{what}: {first}");
    assert_eq!(first["verdict"], "allow");
    assert_eq!(first["segment"], "edge");
    let denied = endpoint_flows
        .iter()
        .find(|f| f["path"] == "/kv/b/1" && f["method"] == "PUT")
        .unwrap_or_else(|| panic!("{what}: no flow for the denied put"));
    assert_eq!(denied["verdict"], "deny", "{what}: {denied}");
    assert_eq!(denied["status"], 403);
}

#[test]
fn the_endpoint_table_holds_on_the_embedded_store() {
    run_table(Kind::Embedded);
}

#[test]
fn the_endpoint_table_holds_on_redis() {
    run_table(Kind::Redis);
}

#[test]
fn the_endpoint_table_holds_on_postgres() {
    run_table(Kind::Postgres);
}
