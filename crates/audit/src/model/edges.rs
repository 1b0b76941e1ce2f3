//! The model's edges: one per pair of places some flow connects, with every rule that opens it,
//! its methods, the paths it admits as written, and the calls between nodes it makes.

use std::collections::{BTreeMap, HashMap};

use septa_manifest::Methods;
use septa_policy::Policy;
use serde_json::{Value, json};

use crate::cluster::Cluster;
use crate::graph::{Edge, EdgeKind, Graph};

/// The graph's edges, one entry per (from, to) pair with every rule that opens it, in the
/// graph's order.
pub(super) fn grouped_edges<'g>(graph: &'g Graph<'_>) -> Vec<((usize, usize), Vec<&'g Edge>)> {
    let mut out: Vec<((usize, usize), Vec<&Edge>)> = Vec::new();
    let mut index: BTreeMap<(usize, usize), usize> = BTreeMap::new();
    for edge in graph.edges() {
        let key = (edge.from, edge.to);
        match index.get(&key) {
            Some(&i) => out[i].1.push(edge),
            None => {
                index.insert(key, out.len());
                out.push((key, vec![edge]));
            }
        }
    }
    out
}

/// The paths each route and allow rule admits, as written, by id; `null` for any.
pub(super) struct RulePaths<'p> {
    by_route: HashMap<&'p str, Value>,
    by_allow_rule: HashMap<&'p str, Value>,
}

impl<'p> RulePaths<'p> {
    /// The paths of every route and allow rule of `policy`.
    pub(super) fn of(policy: &'p Policy) -> Self {
        let by_route = policy
            .routes()
            .map(|r| (r.id.as_str(), json!([r.pattern.as_str()])))
            .collect();
        let by_allow_rule = policy
            .allow_rules()
            .map(|r| {
                let paths = r.paths.map_or(Value::Null, |list| {
                    json!(list.iter().map(|p| p.as_str()).collect::<Vec<_>>())
                });
                (r.id.as_str(), paths)
            })
            .collect();
        Self {
            by_route,
            by_allow_rule,
        }
    }

    /// The paths `edge`'s rule admits; `null` for any, and for egress and audit mode.
    fn of_edge(&self, edge: &Edge) -> Value {
        let by_id = match edge.kind {
            EdgeKind::Route => &self.by_route,
            EdgeKind::Allow => &self.by_allow_rule,
            EdgeKind::Egress | EdgeKind::Audit => return Value::Null,
        };
        by_id
            .get(edge.rule.as_str())
            .cloned()
            .unwrap_or(Value::Null)
    }
}

/// The edge from `from` to `to` and the rules that open it.
pub(super) fn edge_json(
    graph: &Graph<'_>,
    cluster: Option<Cluster<'_>>,
    paths: &RulePaths<'_>,
    (from, to): (usize, usize),
    rules: &[&Edge],
) -> Value {
    let crosses_nodes = cluster.map_or_else(Vec::new, |c| {
        c.flow_hops(&graph.nodes[from], &graph.nodes[to])
    });
    let (from, to) = (graph.name(from), graph.name(to));
    let kind = rules.first().map_or(EdgeKind::Allow, |r| r.kind);
    let rules: Vec<Value> = rules
        .iter()
        .map(|r| {
            json!({
                "id": r.rule,
                "kind": r.kind,
                "methods": methods_json(&r.methods),
                "paths": paths.of_edge(r),
                "conditions": r.conditions,
            })
        })
        .collect();
    json!({
        "id": format!("{from} -> {to}"),
        "from": from,
        "to": to,
        "kind": kind,
        "rules": rules,
        "crosses_nodes": crosses_nodes,
    })
}

/// The methods as a list; `null` for any.
pub(super) fn methods_json(methods: &Methods) -> Value {
    match methods {
        Methods::Any => Value::Null,
        Methods::Only(list) => json!(list),
    }
}
