//! The reachability graph: who can open a flow to whom, with the rule and conditions of each
//! edge, built from the compiled policy alone.
//!
//! Searched, the graph works at the level rules are written at, so that it stays linear in the
//! rules: a rule from `segment:a` to `segment:b` is one link between two hubs, not one edge per
//! pair of their functions. Each function links to the source hub of every selector that selects
//! it; each destination hub links to every function its selector selects. A flow from one
//! function to another is then three links — into a source hub, the rule, out of a destination
//! hub — and a path found through hubs is folded back into hops between functions, each naming
//! its rule. Audit mode, which opens every flow to and from a function, is two more pairs of hubs.
//!
//! The parts: `build` lays out places, hubs and links from the policy's routes, allow rules,
//! egress rules and audit modes; `search` finds shortest paths through hubs; `reach` says what
//! every place reaches; `expand` lists the same graph as edges between places
//! ([`Graph::edges`]), which the query, diff, HTML report, packs and dashboard read.

mod build;
mod expand;
mod reach;
mod search;

use std::cell::OnceCell;

use septa_manifest::{Methods, Selector};
use septa_policy::{FunctionId, Policy};
use serde::Serialize;

pub use reach::Reach;

/// A place a flow can start or end.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Node {
    /// The internet, through the gateway.
    Gateway,
    /// A function.
    Function(FunctionId),
    /// An egress destination, as its rule writes it (`https://api.example.com:443`).
    Egress(String),
}

/// What opens an edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EdgeKind {
    /// A gateway route.
    Route,
    /// An allow rule.
    Allow,
    /// An egress rule.
    Egress,
    /// No rule: one side is in audit mode, so enforcement is off for the flow.
    Audit,
}

/// An allowed flow from one node to another.
#[derive(Clone, Debug)]
pub struct Edge {
    /// Source node index.
    pub from: usize,
    /// Destination node index.
    pub to: usize,
    /// What opens it.
    pub kind: EdgeKind,
    /// The rule or route id (`audit mode` for audit edges).
    pub rule: String,
    /// The methods and paths it admits, in words.
    pub conditions: String,
    /// Whether it admits any method on any path (the broadest an edge can be).
    pub unrestricted: bool,
    /// The methods it admits (`Any` for egress and audit-mode edges).
    pub methods: Methods,
}

/// What a rule, route or audit mode opens, shared by every flow it opens.
#[derive(Clone, Debug)]
struct Label {
    kind: EdgeKind,
    rule: String,
    conditions: String,
    unrestricted: bool,
    methods: Methods,
}

/// A link of the searchable graph; `label` is `None` for the links into and out of hubs.
#[derive(Clone, Copy, Debug)]
struct Link {
    to: u32,
    label: Option<u32>,
}

/// Nodes and edges of one compiled policy.
#[derive(Debug)]
pub struct Graph<'p> {
    policy: &'p Policy,
    /// The places; index 0 is the gateway, then every function in id order, then destinations.
    pub nodes: Vec<Node>,
    names: Vec<String>,
    /// Outgoing links of every place, then of every hub (hubs are numbered after the places).
    links: Vec<Vec<Link>>,
    labels: Vec<Label>,
    /// Per allow rule in file order, its label when it connects and admits something.
    allow_labels: Vec<Option<u32>>,
    edges: OnceCell<Vec<Edge>>,
    /// The label of audit mode's mesh flows, when some function is in audit mode.
    audit_label: Option<u32>,
    /// The catch-all destination of audit mode.
    any_destination: Option<usize>,
    /// (function, destination, label) of every egress flow, in function and file order.
    egress_edges: Vec<(usize, usize, u32)>,
}

impl<'p> Graph<'p> {
    /// The policy the graph was built from.
    pub fn policy(&self) -> &'p Policy {
        self.policy
    }

    /// The name of node `i`: `gateway`, `function:NAME` or the destination.
    pub fn name(&self, i: usize) -> &str {
        &self.names[i]
    }

    /// The node of function `id`.
    pub fn function_node(&self, id: FunctionId) -> usize {
        id.index() + 1
    }

    /// The nodes `selector` selects, as the policy selects them.
    pub fn select(&self, selector: &Selector) -> Vec<usize> {
        if *selector == Selector::Gateway {
            return vec![0];
        }
        self.policy
            .selected(selector)
            .iter()
            .map(|&f| self.function_node(f))
            .collect()
    }

    /// Every allowed flow between two places: one edge per route, per (source, destination,
    /// rule) of an allow rule in source, destination and file order, per pair with an
    /// audit-mode end and no rule, and per function and egress destination.
    ///
    /// Built on first use: it grows with the pairs of functions rules connect, which the
    /// findings never need.
    pub fn edges(&self) -> &[Edge] {
        self.edges.get_or_init(|| self.expand())
    }

    /// What every place reaches by one or more hops, as a bit set over the places (see
    /// [`Reach`]): the blast radius of each, computed for all of them at once.
    pub fn reach(&self) -> Reach {
        Reach::new(self)
    }

    /// A path in words: `gateway ─[route api: GET /api/...]→ function:storefront ─[...]→ ...`.
    pub fn describe(&self, path: &[Edge]) -> String {
        let Some(first) = path.first() else {
            return String::new();
        };
        let mut out = self.name(first.from).to_owned();
        for edge in path {
            out.push_str(&format!(
                " ─[{} `{}`: {}]→ {}",
                kind_text(edge.kind),
                edge.rule,
                edge.conditions,
                self.name(edge.to)
            ));
        }
        out
    }

    /// The edge from `from` to `to` that label `label` opens.
    fn edge(&self, from: usize, to: usize, label: u32) -> Edge {
        let l = &self.labels[label as usize];
        Edge {
            from,
            to,
            kind: l.kind,
            rule: l.rule.clone(),
            conditions: l.conditions.clone(),
            unrestricted: l.unrestricted,
            methods: l.methods.clone(),
        }
    }

    /// Whether `node` is a place (not a hub).
    fn is_place(&self, node: usize) -> bool {
        node < self.nodes.len()
    }
}

fn kind_text(kind: EdgeKind) -> &'static str {
    match kind {
        EdgeKind::Route => "route",
        EdgeKind::Allow => "rule",
        EdgeKind::Egress => "egress",
        EdgeKind::Audit => "no rule,",
    }
}
