//! The reachability graph: who can open a flow to whom, with the rule and conditions of each
//! edge.

use std::collections::{HashMap, HashSet, VecDeque};

use septa_manifest::{HostPattern, Methods, Selector};
use septa_policy::{FunctionId, Policy};
use serde::Serialize;

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

/// Nodes and edges of one compiled policy.
#[derive(Debug)]
pub struct Graph {
    /// The nodes; index 0 is the gateway, then every function in id order, then destinations.
    pub nodes: Vec<Node>,
    /// The edges.
    pub edges: Vec<Edge>,
    names: Vec<String>,
    outgoing: Vec<Vec<usize>>,
}

const ANY_DESTINATION: &str = "any destination (audit mode)";

impl Graph {
    /// Builds the graph of `policy`.
    pub fn build(policy: &Policy) -> Self {
        let mut graph = Self {
            nodes: vec![Node::Gateway],
            edges: Vec::new(),
            names: vec!["gateway".to_owned()],
            outgoing: vec![Vec::new()],
        };
        for f in policy.functions() {
            graph.add_node(Node::Function(f.id), f.identity.clone());
        }
        let function_node = |id: FunctionId| id.index() + 1;
        for route in policy.routes() {
            let auth = match &route.auth {
                None => String::new(),
                Some(a) if a.scopes.is_empty() => format!(", {}", a.method),
                Some(a) => format!(", {} with scopes {}", a.method, a.scopes.join(" ")),
            };
            let conditions = format!("{} {}{auth}", methods_text(&route.methods), route.pattern);
            graph.add_edge(Edge {
                from: 0,
                to: function_node(route.function),
                kind: EdgeKind::Route,
                rule: route.id.to_string(),
                unrestricted: matches!(route.methods, Methods::Any)
                    && route.pattern.as_str() == "/...",
                conditions,
                methods: route.methods.clone(),
            });
        }
        let mut ruled: HashSet<(usize, usize)> = HashSet::new();
        for e in policy.mesh_edges() {
            let paths = match e.paths {
                None => "any path".to_owned(),
                Some(list) => list
                    .iter()
                    .map(|p| p.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            };
            let (from, to) = (function_node(e.from), function_node(e.to));
            ruled.insert((from, to));
            graph.add_edge(Edge {
                from,
                to,
                kind: EdgeKind::Allow,
                rule: e.rule.to_string(),
                conditions: format!("{} {paths}", methods_text(e.methods)),
                unrestricted: matches!(e.methods, Methods::Any) && e.paths.is_none(),
                methods: e.methods.clone(),
            });
        }
        // Audit mode turns enforcement off for every flow with an audit-mode end: to an auditor
        // those flows are open, rule or no rule.
        let audit: Vec<bool> = policy.functions().iter().map(|f| f.audit).collect();
        for a in policy.functions() {
            for b in policy.functions() {
                let (from, to) = (function_node(a.id), function_node(b.id));
                if (audit[a.id.index()] || audit[b.id.index()]) && !ruled.contains(&(from, to)) {
                    graph.add_edge(Edge {
                        from,
                        to,
                        kind: EdgeKind::Audit,
                        rule: "audit mode".to_owned(),
                        conditions: "any method any path".to_owned(),
                        unrestricted: true,
                        methods: Methods::Any,
                    });
                }
            }
        }
        for e in policy.egress_edges() {
            let target = e.target.to_string();
            let to = graph.node(Node::Egress(target.clone()), target);
            let unrestricted =
                matches!(&e.target.host, HostPattern::Cidr(net) if net.prefix_len() == 0);
            graph.add_edge(Edge {
                from: function_node(e.from),
                to,
                kind: EdgeKind::Egress,
                rule: e.rule.to_string(),
                conditions: "egress".to_owned(),
                unrestricted,
                methods: Methods::Any,
            });
        }
        for f in policy.functions().iter().filter(|f| f.audit) {
            if f.spec.subnet_kind == septa_manifest::SubnetKind::Isolated {
                continue;
            }
            let to = graph.node(
                Node::Egress(ANY_DESTINATION.to_owned()),
                ANY_DESTINATION.to_owned(),
            );
            graph.add_edge(Edge {
                from: function_node(f.id),
                to,
                kind: EdgeKind::Audit,
                rule: "audit mode".to_owned(),
                conditions: "egress".to_owned(),
                unrestricted: true,
                methods: Methods::Any,
            });
        }
        graph
    }

    fn add_node(&mut self, node: Node, name: String) -> usize {
        self.nodes.push(node);
        self.names.push(name);
        self.outgoing.push(Vec::new());
        self.nodes.len() - 1
    }

    fn node(&mut self, node: Node, name: String) -> usize {
        match self.nodes.iter().position(|n| *n == node) {
            Some(i) => i,
            None => self.add_node(node, name),
        }
    }

    fn add_edge(&mut self, edge: Edge) {
        self.outgoing[edge.from].push(self.edges.len());
        self.edges.push(edge);
    }

    /// The name of node `i`: `gateway`, `function:NAME` or the destination.
    pub fn name(&self, i: usize) -> &str {
        &self.names[i]
    }

    /// The node of function `id`.
    pub fn function_node(&self, id: FunctionId) -> usize {
        id.index() + 1
    }

    /// The nodes `selector` selects.
    pub fn select(&self, policy: &Policy, selector: &Selector) -> Vec<usize> {
        if *selector == Selector::Gateway {
            return vec![0];
        }
        let manifest = policy.manifest();
        policy
            .functions()
            .iter()
            .filter(|f| selector.selects(&manifest.segments, &f.spec))
            .map(|f| self.function_node(f.id))
            .collect()
    }

    /// The shortest path (as edge indexes, at least one edge) from any of `sources` to any of
    /// `targets` that never enters a `blocked` node.
    pub fn shortest_path(
        &self,
        sources: &[usize],
        targets: &HashSet<usize>,
        blocked: &HashSet<usize>,
    ) -> Option<Vec<usize>> {
        let mut via: HashMap<usize, usize> = HashMap::new();
        let mut seen: HashSet<usize> = sources.iter().copied().collect();
        let mut queue: VecDeque<usize> = sources.iter().copied().collect();
        while let Some(node) = queue.pop_front() {
            for &e in &self.outgoing[node] {
                let next = self.edges[e].to;
                if blocked.contains(&next) {
                    continue;
                }
                if targets.contains(&next) {
                    let mut path = vec![e];
                    let mut at = node;
                    while let Some(&prev) = via.get(&at) {
                        path.push(prev);
                        at = self.edges[prev].from;
                    }
                    path.reverse();
                    return Some(path);
                }
                if seen.insert(next) {
                    via.insert(next, e);
                    queue.push_back(next);
                }
            }
        }
        None
    }

    /// Every node reachable from `source` by one or more edges.
    pub fn reachable_from(&self, source: usize) -> Vec<usize> {
        let mut seen = HashSet::from([source]);
        let mut queue = VecDeque::from([source]);
        let mut out = Vec::new();
        while let Some(node) = queue.pop_front() {
            for &e in &self.outgoing[node] {
                let next = self.edges[e].to;
                if seen.insert(next) {
                    out.push(next);
                    queue.push_back(next);
                }
            }
        }
        out.sort_unstable();
        out
    }

    /// A path in words: `gateway ─[route api: GET /api/...]→ function:storefront ─[...]→ ...`.
    pub fn describe(&self, path: &[usize]) -> String {
        let Some(first) = path.first() else {
            return String::new();
        };
        let mut out = self.name(self.edges[*first].from).to_owned();
        for &e in path {
            let edge = &self.edges[e];
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
}

fn kind_text(kind: EdgeKind) -> &'static str {
    match kind {
        EdgeKind::Route => "route",
        EdgeKind::Allow => "rule",
        EdgeKind::Egress => "egress",
        EdgeKind::Audit => "no rule,",
    }
}

fn methods_text(methods: &Methods) -> String {
    match methods {
        Methods::Any => "any method".to_owned(),
        Methods::Only(list) if list.is_empty() => "no method".to_owned(),
        Methods::Only(list) => list.join("|"),
    }
}
