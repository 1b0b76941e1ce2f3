//! Differential test: on random manifests, what `septa query --direct` says one function can
//! reach is exactly what the running platform lets through, driven pair by pair: in one process,
//! and spread over three nodes that decide each call on both sides of mutual TLS.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::cluster::{Cluster, TRUST_DOMAIN};
use common::{Response, Septa, encode};
use septa_audit::{Answer, Graph, query};
use septa_manifest::Selector;
use septa_policy::Policy;
use septa_testkit::NatsServer;

use septa_testkit::random::{FUNCTIONS, METHODS, PATHS, Rng, random_manifest};

fn caller_component() -> std::path::PathBuf {
    common::test_component("caller")
}

#[test]
fn what_query_says_is_what_the_platform_lets_through() {
    for seed in [7_u64, 1234, 99_999] {
        let mut rng = Rng(seed);
        let dir = tempfile::tempdir().unwrap();
        let text = random_manifest(&mut rng, caller_component().to_str().unwrap());
        std::fs::write(dir.path().join("septa.toml"), &text).unwrap();
        let septa = Septa::start(dir.path());
        compare(seed, dir.path(), &text, |_, path| septa.get(path));
    }
}

/// Drives every (caller, callee, method, path) through `get` (a gateway request for
/// `/fA/?to=...`, given the pair's index) and compares what ran with what `septa query
/// --direct` says of the manifest in `dir`.
fn compare(seed: u64, dir: &std::path::Path, text: &str, get: impl Fn(usize, &str) -> Response) {
    let policy = Policy::compile(septa_manifest::load(dir).unwrap()).unwrap();
    let graph = Graph::build(&policy);
    let mut allowed = 0;
    let mut i = 0;
    for a in 0..FUNCTIONS {
        for b in 0..FUNCTIONS {
            for method in METHODS {
                for path in PATHS {
                    let url = encode(&format!("http://f{b}.internal{path}"));
                    let response = get(i, &format!("/f{a}/?to={url}&method={method}"));
                    i += 1;
                    let r = response.json();
                    // A call that went to another node must have reached it: a node that
                    // could not be reached is no verdict at all.
                    assert_ne!(r["status"], 503, "seed {seed}: f{a} -> f{b}: {r}");
                    let ran = r["denied"] != true;
                    let from = Selector::parse(&format!("function:f{a}")).unwrap();
                    let to = Selector::parse(&format!("function:f{b}")).unwrap();
                    let said = matches!(
                        query(&policy, &graph, &from, &to, Some(method), Some(path), true),
                        Answer::Reachable(_)
                    );
                    assert_eq!(
                        ran, said,
                        "seed {seed}: f{a} -> f{b} {method} {path}: platform {r}, manifest:\n{text}"
                    );
                    allowed += usize::from(ran);
                }
            }
        }
    }
    // The generator must exercise both answers, or the comparison proves little.
    assert!(
        allowed > 0 && allowed < FUNCTIONS * FUNCTIONS * 8,
        "seed {seed}: {allowed} allowed"
    );
}

const NODES: [&str; 3] = ["n0", "n1", "n2"];

/// `[cluster]` and three nodes, each function on a random non-empty set of them, every node
/// running at least one.
fn random_placement(rng: &mut Rng) -> String {
    let mut hosts: [Vec<String>; 3] = Default::default();
    for f in 0..FUNCTIONS {
        let set = rng.next(7) + 1; // a non-empty subset of three nodes, as bits
        for (n, node) in hosts.iter_mut().enumerate() {
            if set & (1 << n) != 0 {
                node.push(format!("\"function:f{f}\""));
            }
        }
    }
    let mut m = format!("[cluster]\ntrust_domain = \"{TRUST_DOMAIN}\"\n");
    for (n, node) in hosts.iter_mut().enumerate() {
        if node.is_empty() {
            node.push(format!("\"function:f{}\"", rng.next(FUNCTIONS)));
        }
        m.push_str(&format!(
            "[node.{}]\nhosts = [{}]\n",
            NODES[n],
            node.join(", ")
        ));
    }
    m
}

#[test]
fn three_nodes_let_through_what_query_says() {
    let nats = NatsServer::start();
    let mut cluster = Cluster::new(vec![nats]);
    let url = cluster.nats_url(0);
    for seed in [7_u64, 4242] {
        let mut rng = Rng(seed);
        let app = cluster.scratch(&format!("app-{seed}"));
        std::fs::copy(caller_component(), app.join("caller.wasm")).unwrap();
        let mut text = random_manifest(&mut rng, "caller.wasm");
        text.push_str(&random_placement(&mut rng));
        std::fs::write(app.join("septa.toml"), &text).unwrap();
        let revision = cluster.publish(&app);
        if seed == 7 {
            for node in NODES {
                cluster.start_node(node, &url);
            }
            cluster.wait_peers_known(&NODES);
        }
        cluster.wait_applied(&NODES, &revision);
        // Each request enters at the next node's gateway in turn, so every caller is reached
        // both where it runs and through forwarding, and its calls cross nodes where the
        // placement says.
        compare(seed, &app, &text, |i, path| {
            cluster
                .node(NODES[i % NODES.len()])
                .request("GET", path, &[], "")
        });
    }
}
