//! The placement against a simple model: on random applications spread over three nodes, each
//! flow's calls between nodes are what "a node that runs the source and not the destination
//! calls the nodes that run the destination" gives, with hosting taken from the generator and
//! not from the compiled placement; each route and rule's crossing is the union of its flows';
//! and what runs on one node only while flows reach it from others is found.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use septa_audit::model::dashboard_model;
use septa_audit::{Cluster, EdgeKind, Graph, Node, audit};
use septa_policy::Policy;
use serde_json::{Value, json};

use common::{FUNCTIONS, Rng, random_manifest};

const NODES: [&str; 3] = ["n0", "n1", "n2"];

/// `[cluster]` and three nodes, each function on a random non-empty set of them and the
/// embedded endpoint on exactly one; with the nodes each place runs on, by identity.
fn random_cluster(rng: &mut Rng) -> (String, BTreeMap<String, BTreeSet<&'static str>>) {
    let mut hosting: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
    for f in 0..FUNCTIONS {
        let mask = rng.below(7) + 1;
        let nodes = (0..3).filter(|i| mask & (1 << i) != 0).map(|i| NODES[i]);
        hosting.insert(format!("function:f{f}"), nodes.collect());
    }
    hosting.insert(
        "endpoint:store".to_owned(),
        BTreeSet::from([NODES[rng.below(3)]]),
    );
    let mut text = String::from("[cluster]\ntrust_domain = \"random.example\"\n");
    for node in NODES {
        let hosts: Vec<String> = hosting
            .iter()
            .filter(|(_, nodes)| nodes.contains(node))
            .map(|(place, _)| format!("{place:?}"))
            .collect();
        text.push_str(&format!("[node.{node}]\nhosts = [{}]\n", hosts.join(", ")));
    }
    (text, hosting)
}

/// The calls between nodes of a flow from a place on `from` to one on `to`, by the model.
fn expected_hops(from: &BTreeSet<&str>, to: &BTreeSet<&str>) -> BTreeMap<String, BTreeSet<String>> {
    from.iter()
        .filter(|n| !to.contains(*n))
        .map(|n| (n.to_string(), to.iter().map(|t| t.to_string()).collect()))
        .collect()
}

#[test]
fn calls_between_nodes_agree_with_a_plain_model() {
    let mut single_node_seen = 0;
    for seed in 0..200 {
        let mut rng = Rng(seed);
        let (cluster, hosting) = random_cluster(&mut rng);
        let text = random_manifest(&mut rng) + &cluster;
        let manifest = match septa_manifest::parse(Path::new("septa.toml"), &text) {
            Ok(m) => m,
            Err(d) => panic!("seed {seed}: {d}\n{text}"),
        };
        let policy = Policy::compile(manifest).unwrap();
        let graph = Graph::build(&policy);
        let every: BTreeSet<&str> = NODES.into_iter().collect();
        let runs_on = |place: usize| match &graph.nodes[place] {
            Node::Gateway => every.clone(),
            Node::Function(_) => hosting[graph.name(place)].clone(),
            Node::Egress(_) => BTreeSet::new(),
        };

        // Each drawn edge: the model's calls, none for egress.
        let model = dashboard_model(&policy, "h", 1);
        let mut by_ends: BTreeMap<(String, String), &Value> = BTreeMap::new();
        for e in model["edges"].as_array().unwrap() {
            let ends = (e["from"].as_str().unwrap(), e["to"].as_str().unwrap());
            by_ends.insert((ends.0.to_owned(), ends.1.to_owned()), &e["crosses_nodes"]);
        }
        // Each route and rule (keyed as route or not, and id): the union of its flows' calls.
        let mut per_rule: BTreeMap<(bool, String), BTreeMap<String, BTreeSet<String>>> =
            BTreeMap::new();
        let mut single_node = BTreeSet::new();
        for edge in graph.edges() {
            // Egress leaves from the node that runs the function: it never crosses.
            let to = runs_on(edge.to);
            let hops = if matches!(graph.nodes[edge.to], Node::Egress(_)) {
                BTreeMap::new()
            } else {
                expected_hops(&runs_on(edge.from), &to)
            };
            let drawn: Vec<Value> = hops
                .iter()
                .map(|(from, to)| json!({ "from": from, "to": to }))
                .collect();
            let key = (
                graph.name(edge.from).to_owned(),
                graph.name(edge.to).to_owned(),
            );
            assert_eq!(*by_ends[&key], json!(drawn), "seed {seed}: {key:?}\n{text}");
            if hops.is_empty() || !matches!(edge.kind, EdgeKind::Route | EdgeKind::Allow) {
                continue;
            }
            if to.len() == 1 {
                single_node.insert(graph.name(edge.to).to_owned());
            }
            let rule = per_rule
                .entry((edge.kind == EdgeKind::Route, edge.rule.clone()))
                .or_default();
            for (from, to) in hops {
                rule.entry(from).or_default().extend(to);
            }
        }
        let crossings: BTreeMap<(bool, String), BTreeMap<String, BTreeSet<String>>> =
            Cluster::of(&policy)
                .unwrap()
                .crossings()
                .into_iter()
                .map(|c| {
                    let hops = c
                        .hops
                        .into_iter()
                        .map(|h| (h.from, h.to.into_iter().collect()))
                        .collect();
                    (
                        (c.opener.kind() == EdgeKind::Route, c.opener.id().to_owned()),
                        hops,
                    )
                })
                .collect();
        assert_eq!(crossings, per_rule, "seed {seed}\n{text}");

        // What one node alone runs, reached from another: a finding each, and no other.
        let findings = audit(&policy, &graph);
        let found: BTreeSet<String> = findings
            .iter()
            .filter(|f| f.kind == "single-node-destination")
            .map(|f| f.subject.clone())
            .collect();
        assert_eq!(found, single_node, "seed {seed}\n{text}");
        single_node_seen += found.len();
        let flows = findings
            .iter()
            .filter(|f| f.kind == "cross-node-flow")
            .count();
        assert_eq!(flows, per_rule.len(), "seed {seed}\n{text}");
        let nodes = findings
            .iter()
            .filter(|f| f.kind == "node-placement")
            .count();
        assert_eq!(nodes, NODES.len(), "seed {seed}");
    }
    assert!(
        single_node_seen > 20,
        "{single_node_seen}: the generator rarely tests it"
    );
}
