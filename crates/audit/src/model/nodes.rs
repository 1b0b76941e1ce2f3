//! The model's nodes: the gateway, every function and endpoint with its placement, labels,
//! groups, mode, routes and the cluster nodes that run it, and every egress destination; each
//! with the rules that touch it and its blast radius.

use std::collections::BTreeMap;

use septa_manifest::{EndpointBackend, FunctionKind, Mode, Name};
use serde_json::{Value, json};

use super::LISTED_REACH;
use crate::cluster::Cluster;
use crate::declared;
use crate::graph::{Edge, EdgeKind, Graph, Node, Reach};

/// A node's rules: (direction, rule) → (kind, the nodes at the other end).
pub(super) type NodeRules<'g> = BTreeMap<(&'static str, &'g str), (EdgeKind, Vec<usize>)>;

/// Per node, its rules.
pub(super) type Touching<'g> = BTreeMap<usize, NodeRules<'g>>;

/// The rules on each node's edges, in and out, with the nodes at the other end.
pub(super) fn rules_touching<'g>(edges: &[((usize, usize), Vec<&'g Edge>)]) -> Touching<'g> {
    let mut touching: Touching<'g> = BTreeMap::new();
    for ((from, to), rules) in edges {
        for rule in rules {
            for (node, direction, peer) in [(*from, "out", *to), (*to, "in", *from)] {
                let entry = touching
                    .entry(node)
                    .or_default()
                    .entry((direction, rule.rule.as_str()))
                    .or_insert_with(|| (rule.kind, Vec::new()));
                if !entry.1.contains(&peer) {
                    entry.1.push(peer);
                }
            }
        }
    }
    touching
}

/// Node `n` with its rules and, unless left out, its blast radius.
pub(super) fn node_json(
    graph: &Graph<'_>,
    cluster: Option<Cluster<'_>>,
    n: usize,
    rules: Option<&NodeRules<'_>>,
    reach: Option<&Reach>,
) -> Value {
    let mut node = describe(graph, n);
    if !matches!(graph.nodes[n], Node::Egress(_)) {
        node["nodes"] = json!(cluster.map_or_else(Vec::new, |c| c.runs_on(&graph.nodes[n])));
    }
    node["rules"] = rules.map_or_else(|| json!([]), |rules| rules_json(graph, rules));
    node["blast_radius"] = reach.map_or(Value::Null, |reach| {
        let reaches: Vec<&str> = reach
            .from(n)
            .take(LISTED_REACH)
            .map(|r| graph.name(r))
            .collect();
        json!({ "count": reach.count(n), "reaches": reaches })
    });
    node
}

fn rules_json(graph: &Graph<'_>, rules: &NodeRules<'_>) -> Value {
    Value::Array(
        rules
            .iter()
            .map(|((direction, id), (kind, peers))| {
                let peers: Vec<&str> = peers.iter().map(|&p| graph.name(p)).collect();
                json!({ "id": id, "kind": kind, "direction": direction, "peers": peers })
            })
            .collect(),
    )
}

/// What node `n` is, and where: everything but its rules and blast radius.
fn describe(graph: &Graph<'_>, n: usize) -> Value {
    let id = graph.name(n);
    let policy = graph.policy();
    match &graph.nodes[n] {
        Node::Gateway => json!({ "id": id, "kind": "gateway", "name": "gateway" }),
        Node::Egress(target) => json!({ "id": id, "kind": "egress", "name": target }),
        Node::Function(f) => {
            let info = policy.function(*f);
            let spec = &info.spec;
            let labels: Vec<&str> = declared::labels(policy, info).map(|l| l.as_str()).collect();
            let routes: Vec<&str> = policy
                .routes()
                .filter(|r| r.function == *f)
                .map(|r| r.id.as_str())
                .collect();
            let mut node = json!({
                "id": id,
                "kind": if spec.is_endpoint() { "endpoint" } else { "function" },
                "name": spec.name.as_str(),
                "segment": spec.placement.segment.as_str(),
                "subnet": spec.placement.subnet.as_str(),
                "tier": spec.subnet_kind.to_string(),
                "labels": labels,
                "groups": names(&spec.groups),
                "mode": if info.audit { "audit" } else { "enforce" },
                "routes": routes,
            });
            if let FunctionKind::Endpoint(backend) = &spec.kind {
                node["backend"] = json!(match backend {
                    EndpointBackend::Embedded => "embedded",
                    EndpointBackend::Redis(_) => "redis",
                    EndpointBackend::Postgres(_) => "postgres",
                });
            }
            node
        }
    }
}

/// `enforce` or `audit`.
pub(super) fn mode_text(mode: Mode) -> &'static str {
    match mode {
        Mode::Enforce => "enforce",
        Mode::Audit => "audit",
    }
}

/// The names of `list`, as text.
pub(super) fn names(list: &[Name]) -> Vec<&str> {
    list.iter().map(|n| n.as_str()).collect()
}
