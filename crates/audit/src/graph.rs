//! The reachability graph: who can open a flow to whom, with the rule and conditions of each
//! edge.
//!
//! Searched, the graph works at the level rules are written at, so that it stays linear in the
//! rules: a rule from `segment:a` to `segment:b` is one link between two hubs, not one edge per
//! pair of their functions. Each function links to the source hub of every selector that selects
//! it; each destination hub links to every function its selector selects. A flow from one
//! function to another is then three links — into a source hub, the rule, out of a destination
//! hub — and a path found through hubs is folded back into hops between functions, each naming
//! its rule. Audit mode, which opens every flow to and from a function, is two more pairs of hubs.
//!
//! The same graph as edges between places ([`Graph::edges`]), which the query, diff, HTML
//! report and packs read, is expanded from the hubs when first asked for.

use std::cell::OnceCell;
use std::collections::{HashMap, HashSet, VecDeque};

use septa_manifest::{HostPattern, Methods, Paths, Selector, SubnetKind};
use septa_policy::{FunctionId, Policy};
use serde::Serialize;

use crate::selection::{Selection, SelectorId};

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
pub struct Graph {
    /// The places; index 0 is the gateway, then every function in id order, then destinations.
    pub nodes: Vec<Node>,
    names: Vec<String>,
    /// Outgoing links of every place, then of every hub (hubs are numbered after the places).
    links: Vec<Vec<Link>>,
    labels: Vec<Label>,
    /// Per allow rule in file order: the selectors of its two sides, and its label when it
    /// admits something.
    allows: Vec<(Option<SelectorId>, Option<SelectorId>, Option<u32>)>,
    edges: OnceCell<Vec<Edge>>,
    selection: Selection,
    audit: Vec<bool>,
    /// The label of audit mode's mesh flows, when some function is in audit mode.
    audit_label: Option<u32>,
    /// The catch-all destination of audit mode.
    any_destination: Option<usize>,
    /// (function, destination, label) of every egress flow, in function and file order.
    egress_edges: Vec<(usize, usize, u32)>,
}

const ANY_DESTINATION: &str = "any destination (audit mode)";

/// Hubs of one kind, by the number of the selector they stand for.
struct Hubs(Vec<Option<u32>>);

impl Graph {
    /// Builds the graph of `policy`.
    pub fn build(policy: &Policy) -> Self {
        let selection = Selection::new(policy);
        let mut graph = Self {
            nodes: vec![Node::Gateway],
            names: vec!["gateway".to_owned()],
            links: vec![Vec::new()],
            labels: Vec::new(),
            allows: Vec::new(),
            edges: OnceCell::new(),
            selection: Selection::default(),
            audit: policy.functions().iter().map(|f| f.audit).collect(),
            audit_label: None,
            any_destination: None,
            egress_edges: Vec::new(),
        };
        for f in policy.functions() {
            graph.add_place(Node::Function(f.id), f.identity.clone());
        }
        // Every place before the first hub, so places keep the indexes `nodes` gives them.
        let destinations = graph.add_destinations(policy, &selection);
        graph.add_routes(policy);
        graph.add_allows(policy, &selection);
        graph.add_egress(policy, &selection, &destinations);
        graph.add_audit_mode(policy);
        graph.selection = selection;
        graph
    }

    /// Which functions each selector selects.
    pub(crate) fn selection(&self) -> &Selection {
        &self.selection
    }

    /// The selectors on each side of the allow rule at `index` in file order, as numbers.
    pub(crate) fn allow_selectors(&self, index: usize) -> (Option<SelectorId>, Option<SelectorId>) {
        let (from, to, _) = self.allows.get(index).copied().unwrap_or_default();
        (from, to)
    }

    /// The functions on each side of the allow rule at `index` in file order (no endpoint on
    /// the `from` side: endpoints never make a call).
    pub(crate) fn allow_sides(&self, index: usize) -> (&[FunctionId], &[FunctionId]) {
        let (from, to, _) = self.allows.get(index).copied().unwrap_or_default();
        (self.selection.sources(from), self.selection.functions(to))
    }

    /// The egress destinations of every rule that applies to some function, in file order, and
    /// the catch-all destination of audit mode when an audit-mode function may use it.
    fn add_destinations(
        &mut self,
        policy: &Policy,
        selection: &Selection,
    ) -> HashMap<String, usize> {
        let mut destinations = HashMap::new();
        for rule in &policy.manifest().egress {
            if !selection
                .get(&rule.from)
                .iter()
                .any(|&f| has_egress(policy, f))
            {
                continue;
            }
            for target in &rule.to {
                let name = target.to_string();
                if let std::collections::hash_map::Entry::Vacant(slot) =
                    destinations.entry(name.clone())
                {
                    slot.insert(self.add_place(Node::Egress(name.clone()), name));
                }
            }
        }
        if policy
            .functions()
            .iter()
            .any(|f| f.audit && has_egress(policy, f.id))
        {
            self.any_destination = Some(self.add_place(
                Node::Egress(ANY_DESTINATION.to_owned()),
                ANY_DESTINATION.to_owned(),
            ));
        }
        destinations
    }

    fn add_routes(&mut self, policy: &Policy) {
        for route in policy.routes() {
            let auth = match &route.auth {
                None => String::new(),
                Some(a) if a.scopes.is_empty() => format!(", {}", a.method),
                Some(a) => format!(", {} with scopes {}", a.method, a.scopes.join(" ")),
            };
            let label = self.add_label(Label {
                kind: EdgeKind::Route,
                rule: route.id.to_string(),
                conditions: format!("{} {}{auth}", methods_text(&route.methods), route.pattern),
                unrestricted: matches!(route.methods, Methods::Any)
                    && route.pattern.as_str() == "/...",
                methods: route.methods.clone(),
            });
            let to = self.function_node(route.function);
            self.link(0, to, Some(label));
        }
    }

    /// One link per allow rule, between the hubs of its two selectors.
    fn add_allows(&mut self, policy: &Policy, selection: &Selection) {
        let manifest = policy.manifest();
        let mut sources = Hubs(vec![None; selection.len()]);
        let mut destinations = Hubs(vec![None; selection.len()]);
        for rule in &manifest.allows {
            let ids = (selection.id(&rule.from), selection.id(&rule.to));
            self.allows.push((ids.0, ids.1, None));
            let (from, to) = (selection.sources(ids.0), selection.functions(ids.1));
            let (Some(from_id), Some(to_id)) = ids else {
                continue;
            };
            if from.is_empty() || to.is_empty() || admits_nothing(&rule.methods, &rule.paths) {
                continue;
            }
            let paths = match &rule.paths {
                Paths::Any => "any path".to_owned(),
                Paths::Only(list) => list
                    .iter()
                    .map(|p| p.text.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            };
            let label = self.add_label(Label {
                kind: EdgeKind::Allow,
                rule: rule.id.to_string(),
                conditions: format!("{} {paths}", methods_text(&rule.methods)),
                unrestricted: matches!(rule.methods, Methods::Any)
                    && matches!(rule.paths, Paths::Any),
                methods: rule.methods.clone(),
            });
            let source = self.hub(&mut sources, from_id, from, true);
            let destination = self.hub(&mut destinations, to_id, to, false);
            self.link(source, destination, Some(label));
            if let Some(last) = self.allows.last_mut() {
                last.2 = Some(label);
            }
        }
    }

    /// The hub of `selector`, made on first use: functions link into a source hub, a
    /// destination hub links out to its functions.
    fn hub(
        &mut self,
        hubs: &mut Hubs,
        selector: SelectorId,
        functions: &[FunctionId],
        source: bool,
    ) -> usize {
        let slot = &mut hubs.0[selector.index()];
        if let Some(hub) = *slot {
            return hub as usize;
        }
        let hub = self.links.len();
        *slot = Some(hub as u32);
        self.add_hub();
        for &f in functions {
            let f = self.function_node(f);
            if source {
                self.link(f, hub, None);
            } else {
                self.link(hub, f, None);
            }
        }
        hub
    }

    /// Audit mode turns enforcement off for every flow with an audit-mode end: to an auditor
    /// those flows are open, rule or no rule, and an audit-mode function outside an isolated
    /// subnet reaches any destination.
    fn add_audit_mode(&mut self, policy: &Policy) {
        let audited: Vec<&septa_policy::FunctionInfo> =
            policy.functions().iter().filter(|f| f.audit).collect();
        if audited.is_empty() {
            return;
        }
        let mesh = self.add_label(Label {
            kind: EdgeKind::Audit,
            rule: "audit mode".to_owned(),
            conditions: "any method any path".to_owned(),
            unrestricted: true,
            methods: Methods::Any,
        });
        let (any_source, to_audited) = (self.add_hub(), self.add_hub());
        let (audited_source, to_any) = (self.add_hub(), self.add_hub());
        self.audit_label = Some(mesh);
        self.link(any_source, to_audited, Some(mesh));
        self.link(audited_source, to_any, Some(mesh));
        for f in policy.functions() {
            let node = self.function_node(f.id);
            self.link(node, any_source, None);
            self.link(to_any, node, None);
        }
        for f in &audited {
            let node = self.function_node(f.id);
            self.link(to_audited, node, None);
            self.link(node, audited_source, None);
        }
        let Some(anywhere) = self.any_destination else {
            return;
        };
        let egress = self.add_label(Label {
            kind: EdgeKind::Audit,
            rule: "audit mode".to_owned(),
            conditions: "egress".to_owned(),
            unrestricted: true,
            methods: Methods::Any,
        });
        let hub = self.add_hub();
        self.link(hub, anywhere, Some(egress));
        for f in audited.iter().filter(|f| has_egress(policy, f.id)) {
            let node = self.function_node(f.id);
            self.link(node, hub, None);
            self.egress_edges.push((node, anywhere, egress));
        }
    }

    /// One link per destination of each egress rule, from the hub of the functions it applies
    /// to (never an isolated one: they have no egress whatever the rules say).
    fn add_egress(
        &mut self,
        policy: &Policy,
        selection: &Selection,
        destinations: &HashMap<String, usize>,
    ) {
        let mut hubs: HashMap<&Selector, usize> = HashMap::new();
        let mut edges = Vec::new();
        for rule in &policy.manifest().egress {
            let from: Vec<usize> = selection
                .get(&rule.from)
                .iter()
                .filter(|&&f| has_egress(policy, f))
                .map(|&f| self.function_node(f))
                .collect();
            if from.is_empty() {
                continue;
            }
            let hub = match hubs.get(&rule.from) {
                Some(&hub) => hub,
                None => {
                    let hub = self.add_hub();
                    for &f in &from {
                        self.link(f, hub, None);
                    }
                    hubs.insert(&rule.from, hub);
                    hub
                }
            };
            for target in &rule.to {
                let Some(&to) = destinations.get(&target.to_string()) else {
                    continue;
                };
                let label = self.add_label(Label {
                    kind: EdgeKind::Egress,
                    rule: rule.id.to_string(),
                    conditions: "egress".to_owned(),
                    unrestricted: matches!(&target.host, HostPattern::Cidr(net) if net.prefix_len() == 0),
                    methods: Methods::Any,
                });
                self.link(hub, to, Some(label));
                edges.extend(from.iter().map(|&f| (f, to, label)));
            }
        }
        // In function and file order, as the engine lists a function's destinations.
        edges.sort_by_key(|&(f, _, label)| (f, label));
        self.egress_edges.extend(edges);
    }

    /// Adds a place (the gateway, a function or a destination); every place is added before the
    /// first hub, so places are numbered `0..nodes.len()` and hubs after them.
    fn add_place(&mut self, node: Node, name: String) -> usize {
        self.nodes.push(node);
        self.names.push(name);
        self.links.push(Vec::new());
        self.nodes.len() - 1
    }

    fn add_hub(&mut self) -> usize {
        self.links.push(Vec::new());
        self.links.len() - 1
    }

    fn add_label(&mut self, label: Label) -> u32 {
        self.labels.push(label);
        (self.labels.len() - 1) as u32
    }

    fn link(&mut self, from: usize, to: usize, label: Option<u32>) {
        self.links[from].push(Link {
            to: to as u32,
            label,
        });
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

    /// Every allowed flow between two places: one edge per route, per (source, destination,
    /// rule) of an allow rule in source, destination and file order, per pair with an
    /// audit-mode end and no rule, and per function and egress destination.
    ///
    /// Built on first use: it grows with the pairs of functions rules connect, which the
    /// findings never need.
    pub fn edges(&self) -> &[Edge] {
        self.edges.get_or_init(|| self.expand())
    }

    fn expand(&self) -> Vec<Edge> {
        let edge = |from: usize, to: usize, label: u32| {
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
        };
        let mut out: Vec<Edge> = self.links[0]
            .iter()
            .filter_map(|link| link.label.map(|label| edge(0, link.to as usize, label)))
            .collect();
        let mut pairs: Vec<(usize, usize, u32)> = Vec::new();
        for &(from, to, label) in &self.allows {
            let Some(label) = label else {
                continue;
            };
            let (from, to) = (self.selection.sources(from), self.selection.functions(to));
            for &f in from {
                pairs.extend(
                    to.iter()
                        .map(|&t| (self.function_node(f), self.function_node(t), label)),
                );
            }
        }
        pairs.sort_unstable();
        let ruled: HashSet<(usize, usize)> = pairs.iter().map(|&(f, t, _)| (f, t)).collect();
        out.extend(pairs.into_iter().map(|(f, t, label)| edge(f, t, label)));
        if let Some(label) = self.audit_label {
            let functions = self.audit.len();
            for a in 0..functions {
                for b in 0..functions {
                    let (from, to) = (a + 1, b + 1);
                    if (self.audit[a] || self.audit[b]) && !ruled.contains(&(from, to)) {
                        out.push(edge(from, to, label));
                    }
                }
            }
        }
        out.extend(
            self.egress_edges
                .iter()
                .map(|&(from, to, label)| edge(from, to, label)),
        );
        out
    }

    fn is_place(&self, node: usize) -> bool {
        node < self.nodes.len()
    }

    /// The shortest path (as hops between places, at least one) from any of `sources` to any of
    /// `targets` that never enters a `blocked` place.
    pub fn shortest_path(
        &self,
        sources: &[usize],
        targets: &HashSet<usize>,
        blocked: &HashSet<usize>,
    ) -> Option<Vec<Edge>> {
        let mut search = Search::new(self, sources);
        let (node, link) = search.run(self, |next| {
            if blocked.contains(&next) {
                Step::Skip
            } else if targets.contains(&next) {
                Step::Stop
            } else {
                Step::Go
            }
        })?;
        Some(search.hops(self, node, link))
    }

    /// From `source`, the shortest path to every place it reaches, in one search.
    pub(crate) fn shortest_paths_from(&self, source: usize) -> ShortestPaths<'_> {
        let mut search = Search::new(self, &[source]);
        let _ = search.run(self, |_| Step::Go);
        ShortestPaths {
            graph: self,
            search,
        }
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
}

/// What the search does on reaching a place.
enum Step {
    /// Go on through it.
    Go,
    /// Do not enter it.
    Skip,
    /// It is the target: stop.
    Stop,
}

/// A breadth-first search over places and hubs, remembering how each node was first reached.
struct Search {
    /// Per node: the node and link it was first reached through.
    via: Vec<Option<(u32, Link)>>,
    seen: Vec<bool>,
    queue: VecDeque<usize>,
}

impl Search {
    fn new(graph: &Graph, sources: &[usize]) -> Self {
        let mut seen = vec![false; graph.links.len()];
        for &s in sources {
            seen[s] = true;
        }
        Self {
            via: vec![None; graph.links.len()],
            seen,
            queue: sources.iter().copied().collect(),
        }
    }

    /// Runs until `step` says stop at a place (returning the node left and the link taken) or
    /// the queue is empty.
    fn run(&mut self, graph: &Graph, mut step: impl FnMut(usize) -> Step) -> Option<(usize, Link)> {
        while let Some(node) = self.queue.pop_front() {
            for &link in &graph.links[node] {
                let next = link.to as usize;
                if graph.is_place(next) {
                    match step(next) {
                        Step::Skip => continue,
                        Step::Stop => return Some((node, link)),
                        Step::Go => {}
                    }
                }
                if !self.seen[next] {
                    self.seen[next] = true;
                    self.via[next] = Some((node as u32, link));
                    self.queue.push_back(next);
                }
            }
        }
        None
    }

    /// The hops of the path that ends by taking `link` out of `node`, folded from links into
    /// hops between places.
    fn hops(&self, graph: &Graph, node: usize, link: Link) -> Vec<Edge> {
        let mut links = vec![(node, link)];
        let mut at = node;
        while let Some((prev, link)) = self.via[at] {
            links.push((prev as usize, link));
            at = prev as usize;
        }
        links.reverse();
        let mut hops = Vec::new();
        let (mut start, mut label) = (at, None);
        for (_, link) in links {
            label = link.label.or(label);
            let to = link.to as usize;
            if graph.is_place(to) {
                if let Some(l) = label.take() {
                    let l = &graph.labels[l as usize];
                    hops.push(Edge {
                        from: start,
                        to,
                        kind: l.kind,
                        rule: l.rule.clone(),
                        conditions: l.conditions.clone(),
                        unrestricted: l.unrestricted,
                        methods: l.methods.clone(),
                    });
                }
                start = to;
            }
        }
        hops
    }
}

/// The shortest paths from one place, found by one search.
pub(crate) struct ShortestPaths<'g> {
    graph: &'g Graph,
    search: Search,
}

impl ShortestPaths<'_> {
    /// The shortest path to `target`, if the source reaches it.
    pub(crate) fn to(&self, target: usize) -> Option<Vec<Edge>> {
        let (node, link) = self.search.via[target]?;
        Some(self.search.hops(self.graph, node as usize, link))
    }
}

/// What each place reaches, computed once for all of them: the strongly connected components
/// of places and hubs, then, from the last component to the first, the union of what each
/// component's successors are and reach. One bit per place, so 10,000 functions cost about
/// 1.3 KB per component.
pub struct Reach {
    component: Vec<u32>,
    reached: Vec<Vec<u64>>,
}

impl Reach {
    fn new(graph: &Graph) -> Self {
        let places = graph.nodes.len();
        let words = places.div_ceil(64);
        let (component, order) = components(graph);
        let mut reached: Vec<Vec<u64>> = vec![Vec::new(); order.len()];
        // `components` lists them so that every component comes after the ones it reaches.
        for (c, members) in order.iter().enumerate() {
            let mut set = vec![0u64; words];
            let cyclic = members.len() > 1
                || members
                    .iter()
                    .any(|&n| graph.links[n].iter().any(|l| l.to as usize == n));
            for &n in members {
                if cyclic && n < places {
                    set[n / 64] |= 1 << (n % 64);
                }
                for link in &graph.links[n] {
                    let to = link.to as usize;
                    let other = component[to] as usize;
                    if other == c {
                        continue;
                    }
                    if to < places {
                        set[to / 64] |= 1 << (to % 64);
                    }
                    for (word, theirs) in set.iter_mut().zip(&reached[other]) {
                        *word |= theirs;
                    }
                }
            }
            reached[c] = set;
        }
        Self { component, reached }
    }

    /// How many places `node` reaches by one or more hops, itself left out.
    pub fn count(&self, node: usize) -> usize {
        let set = &self.reached[self.component[node] as usize];
        let all: u32 = set.iter().map(|w| w.count_ones()).sum();
        let itself = set
            .get(node / 64)
            .is_some_and(|w| w & (1 << (node % 64)) != 0);
        all as usize - usize::from(itself)
    }

    /// The places `node` reaches by one or more hops, itself left out, in index order.
    pub fn from(&self, node: usize) -> impl Iterator<Item = usize> + '_ {
        let set = &self.reached[self.component[node] as usize];
        set.iter()
            .enumerate()
            .flat_map(|(w, &word)| {
                let mut rest = word;
                std::iter::from_fn(move || {
                    (rest != 0).then(|| {
                        let bit = rest.trailing_zeros() as usize;
                        rest &= rest - 1;
                        w * 64 + bit
                    })
                })
            })
            .filter(move |&n| n != node)
    }
}

/// Tarjan's strongly connected components, without recursion: each node's component, and the
/// components in the order they complete (a component completes after every one it reaches).
fn components(graph: &Graph) -> (Vec<u32>, Vec<Vec<usize>>) {
    const UNSEEN: u32 = u32::MAX;
    let n = graph.links.len();
    let mut index = vec![UNSEEN; n];
    let mut low = vec![0u32; n];
    let mut on_stack = vec![false; n];
    let mut component = vec![UNSEEN; n];
    let mut stack: Vec<usize> = Vec::new();
    let mut order: Vec<Vec<usize>> = Vec::new();
    let mut next = 0u32;
    // (node, position in its links)
    let mut calls: Vec<(usize, usize)> = Vec::new();
    for root in 0..n {
        if index[root] != UNSEEN {
            continue;
        }
        calls.push((root, 0));
        index[root] = next;
        low[root] = next;
        next += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some(&mut (node, ref mut at)) = calls.last_mut() {
            if let Some(link) = graph.links[node].get(*at) {
                *at += 1;
                let to = link.to as usize;
                if index[to] == UNSEEN {
                    index[to] = next;
                    low[to] = next;
                    next += 1;
                    stack.push(to);
                    on_stack[to] = true;
                    calls.push((to, 0));
                } else if on_stack[to] {
                    low[node] = low[node].min(index[to]);
                }
                continue;
            }
            calls.pop();
            if let Some(&(parent, _)) = calls.last() {
                low[parent] = low[parent].min(low[node]);
            }
            if low[node] == index[node] {
                let id = order.len() as u32;
                let mut members = Vec::new();
                while let Some(m) = stack.pop() {
                    on_stack[m] = false;
                    component[m] = id;
                    members.push(m);
                    if m == node {
                        break;
                    }
                }
                order.push(members);
            }
        }
    }
    (component, order)
}

/// Whether function `f` may have egress at all (isolated subnets have none whatever the rules
/// say).
fn has_egress(policy: &Policy, f: FunctionId) -> bool {
    let spec = &policy.function(f).spec;
    spec.subnet_kind != SubnetKind::Isolated && !spec.is_endpoint()
}

/// Whether a rule's lists leave it nothing to admit (`methods = []` or `paths = []`).
pub(crate) fn admits_nothing(methods: &Methods, paths: &Paths) -> bool {
    matches!(methods, Methods::Only(list) if list.is_empty())
        || matches!(paths, Paths::Only(list) if list.is_empty())
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
