//! The graph searched through selector hubs against a simple model: on random manifests, its
//! edges are exactly the engine's mesh index pair by pair, and what the findings say is
//! reachable (blast radius, paths from the internet) is what a plain search over those edges
//! finds.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::path::Path;

use septa_audit::{EdgeKind, Graph, audit};
use septa_policy::Policy;

use common::{Rng, random_manifest};

/// Every place reachable from `source` by one or more edges, by a plain search over edges.
fn reachable(graph: &Graph, source: usize) -> BTreeSet<usize> {
    let mut seen = HashSet::from([source]);
    let mut queue = VecDeque::from([source]);
    let mut out = BTreeSet::new();
    while let Some(node) = queue.pop_front() {
        for e in graph.edges().iter().filter(|e| e.from == node) {
            out.insert(e.to);
            if seen.insert(e.to) {
                queue.push_back(e.to);
            }
        }
    }
    out.remove(&source);
    out
}

/// The fewest edges from the gateway to `target`, by a plain search over edges.
fn distance_from_internet(graph: &Graph, target: usize) -> Option<usize> {
    let mut depth = vec![usize::MAX; graph.nodes.len()];
    depth[0] = 0;
    let mut queue = VecDeque::from([0]);
    while let Some(node) = queue.pop_front() {
        for e in graph.edges().iter().filter(|e| e.from == node) {
            if depth[e.to] == usize::MAX {
                depth[e.to] = depth[node] + 1;
                queue.push_back(e.to);
            }
        }
    }
    (depth[target] != usize::MAX).then_some(depth[target])
}

#[test]
fn the_hub_graph_agrees_with_the_engine_and_with_a_plain_search() {
    for seed in 0..200 {
        let mut rng = Rng(seed);
        let text = random_manifest(&mut rng);
        let manifest = match septa_manifest::parse(Path::new("septa.toml"), &text) {
            Ok(m) => m,
            Err(d) => panic!("seed {seed}: {d}\n{text}"),
        };
        let policy = Policy::compile(manifest).unwrap();
        let graph = Graph::build(&policy);

        // Allow edges are the engine's mesh index, pair by pair, less rules admitting nothing.
        let from_graph: BTreeSet<(usize, usize, String)> = graph
            .edges()
            .iter()
            .filter(|e| e.kind == EdgeKind::Allow)
            .map(|e| (e.from, e.to, e.rule.clone()))
            .collect();
        let manifest = policy.manifest();
        let admits_something: HashSet<&str> = manifest
            .allows
            .iter()
            .filter(|r| !matches!(&r.methods, septa_manifest::Methods::Only(l) if l.is_empty()))
            .map(|r| r.id.as_str())
            .collect();
        let from_engine: BTreeSet<(usize, usize, String)> = policy
            .mesh_edges()
            .iter()
            .filter(|e| admits_something.contains(e.rule.as_str()))
            .map(|e| {
                (
                    graph.function_node(e.from),
                    graph.function_node(e.to),
                    e.rule.to_string(),
                )
            })
            .collect();
        assert_eq!(from_graph, from_engine, "seed {seed}\n{text}");

        // Egress edges are the engine's, function by function.
        let egress_graph: Vec<(usize, String)> = graph
            .edges()
            .iter()
            .filter(|e| e.kind == EdgeKind::Egress)
            .map(|e| (e.from, graph.name(e.to).to_owned()))
            .collect();
        let egress_engine: Vec<(usize, String)> = policy
            .egress_edges()
            .iter()
            .map(|e| (graph.function_node(e.from), e.target.to_string()))
            .collect();
        assert_eq!(egress_graph, egress_engine, "seed {seed}\n{text}");

        let findings = audit(&policy, &graph);
        for f in policy.functions() {
            let node = graph.function_node(f.id);
            // Blast radius counts what a plain search reaches.
            let reached = reachable(&graph, node);
            let radius = findings
                .iter()
                .find(|x| x.kind == "blast-radius" && x.subject == f.identity)
                .unwrap();
            let expected = match reached.len() {
                0 => format!("a compromised `{}` reaches nothing", f.identity),
                1 => format!("a compromised `{}` reaches 1 place:", f.identity),
                n => format!("a compromised `{}` reaches {n} places:", f.identity),
            };
            assert!(
                radius.message.starts_with(&expected),
                "seed {seed}: {} vs {reached:?}\n{text}",
                radius.message
            );
            // A path from the internet to a labelled function is a shortest one.
            let sensitive = findings
                .iter()
                .find(|x| x.kind == "sensitive-path" && x.subject == f.identity);
            let labelled = manifest.function_labels(&f.spec).next().is_some();
            match (labelled, distance_from_internet(&graph, node), sensitive) {
                (true, Some(hops), Some(found)) => {
                    assert_eq!(found.path.len(), hops + 1, "seed {seed}: {found:?}\n{text}");
                }
                (true, None, None) | (false, _, None) => {}
                other => panic!("seed {seed}: {other:?}\n{text}"),
            }
        }
    }
}

#[test]
fn an_endpoint_is_never_the_source_of_a_flow_however_wide_the_rule() {
    let text = r#"septa_manifest_version = 1
[application]
name = "endpoints"
[segment.data]
subnets = { app = "private", store = "isolated" }
[segment.edge]
subnets = { web = "public" }
[function.worker]
source = "worker.wasm"
placement = "data/app"
[function.front]
source = "front.wasm"
placement = "edge/web"
[endpoint.kv]
placement = "data/store"
[[allow]]
id = "data-to-front"
from = "segment:data"
to = "function:front"
"#;
    let manifest = septa_manifest::parse(Path::new("septa.toml"), text).unwrap();
    let policy = Policy::compile(manifest).unwrap();
    let id = |identity: &str| {
        policy
            .functions()
            .iter()
            .find(|f| f.identity == identity)
            .unwrap()
            .id
    };
    let (worker, front, kv) = (
        id("function:worker"),
        id("function:front"),
        id("endpoint:kv"),
    );
    assert!(
        policy
            .decide_mesh(worker, front, "GET", "/")
            .verdict
            .permits()
    );
    assert!(!policy.decide_mesh(kv, front, "GET", "/").verdict.permits());
    let graph = Graph::build(&policy);
    let edges: Vec<(String, String)> = graph
        .edges()
        .iter()
        .filter(|e| e.kind == EdgeKind::Allow)
        .map(|e| (graph.name(e.from).to_owned(), graph.name(e.to).to_owned()))
        .collect();
    assert_eq!(
        edges,
        [("function:worker".to_owned(), "function:front".to_owned())]
    );
    assert!(policy.mesh_edges().iter().all(|e| e.from != kv));
}

#[test]
fn an_endpoint_never_reaches_outside_in_the_graph_or_the_engine() {
    let text = r#"septa_manifest_version = 1
[application]
name = "endpoints"
[segment.data]
subnets = { app = "private" }
mode = "audit"
[function.worker]
source = "worker.wasm"
placement = "data/app"
[endpoint.kv]
placement = "data/app"
[[egress]]
id = "data-out"
from = "segment:data"
to = ["https://api.example.com:443"]
"#;
    let manifest = septa_manifest::parse(Path::new("septa.toml"), text).unwrap();
    let policy = Policy::compile(manifest).unwrap();
    let graph = Graph::build(&policy);
    let egress: Vec<(&str, &str)> = graph
        .edges()
        .iter()
        .filter(|e| matches!(graph.nodes[e.to], septa_audit::Node::Egress(_)))
        .map(|e| (graph.name(e.from), graph.name(e.to)))
        .collect();
    // Audit mode opens any destination, but only to the function: the endpoint calls nothing.
    assert_eq!(
        egress,
        [
            ("function:worker", "https://api.example.com:443"),
            ("function:worker", "any destination (audit mode)"),
        ]
    );
    let kv = policy
        .functions()
        .iter()
        .find(|f| f.identity == "endpoint:kv")
        .unwrap()
        .id;
    assert!(policy.egress_edges().iter().all(|e| e.from != kv));
}
