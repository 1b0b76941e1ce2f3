//! Laying out the searchable graph from the compiled policy: a place for the gateway, every
//! function and every egress destination, then hubs and labelled links for the routes, the
//! allow rules, the egress rules and audit mode. Every rule is read through the policy
//! ([`Policy::allow_rules`], [`Policy::egress_rules`], [`Policy::routes`]), with the functions
//! on its sides as the policy selects them.

use std::cell::OnceCell;
use std::collections::HashMap;
use std::collections::hash_map::Entry;

use septa_manifest::{HostPattern, Methods};
use septa_policy::{AllowRuleView, FunctionId, Policy, SelectorId};

use super::{EdgeKind, Graph, Label, Link, Node};

const ANY_DESTINATION: &str = "any destination (audit mode)";

/// Hubs of one kind, by the number of the selector they stand for.
struct Hubs(Vec<Option<u32>>);

impl<'p> Graph<'p> {
    /// Builds the graph of `policy`.
    pub fn build(policy: &'p Policy) -> Self {
        let mut graph = Self {
            policy,
            nodes: vec![Node::Gateway],
            names: vec!["gateway".to_owned()],
            links: vec![Vec::new()],
            labels: Vec::new(),
            allow_labels: Vec::new(),
            edges: OnceCell::new(),
            audit_label: None,
            any_destination: None,
            egress_edges: Vec::new(),
        };
        for f in policy.functions() {
            graph.add_place(Node::Function(f.id), f.identity.clone());
        }
        // Every place before the first hub, so places keep the indexes `nodes` gives them.
        let destinations = graph.add_destinations();
        graph.add_routes();
        graph.add_allows();
        graph.add_egress(&destinations);
        graph.add_audit_mode();
        graph
    }

    /// The egress destinations of every rule that applies to some function, in file order, and
    /// the catch-all destination of audit mode when an audit-mode function may use it.
    fn add_destinations(&mut self) -> HashMap<String, usize> {
        let policy = self.policy;
        let mut destinations = HashMap::new();
        for rule in policy.egress_rules().filter(|r| !r.sources.is_empty()) {
            for target in rule.targets {
                let name = target.to_string();
                if let Entry::Vacant(slot) = destinations.entry(name.clone()) {
                    slot.insert(self.add_place(Node::Egress(name.clone()), name));
                }
            }
        }
        if policy
            .functions()
            .iter()
            .any(|f| f.audit && policy.reaches_outside(f.id))
        {
            self.any_destination = Some(self.add_place(
                Node::Egress(ANY_DESTINATION.to_owned()),
                ANY_DESTINATION.to_owned(),
            ));
        }
        destinations
    }

    fn add_routes(&mut self) {
        for route in self.policy.routes() {
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
    fn add_allows(&mut self) {
        let selectors = self.policy.selection().len();
        let mut sources = Hubs(vec![None; selectors]);
        let mut destinations = Hubs(vec![None; selectors]);
        for rule in self.policy.allow_rules() {
            let label = self.add_allow(&rule, &mut sources, &mut destinations);
            self.allow_labels.push(label);
        }
    }

    /// The link of one allow rule, and its label; `None` when it connects or admits nothing.
    fn add_allow(
        &mut self,
        rule: &AllowRuleView<'_>,
        sources: &mut Hubs,
        destinations: &mut Hubs,
    ) -> Option<u32> {
        let (Some(from), Some(to)) = (rule.from_id, rule.to_id) else {
            return None;
        };
        if rule.sources.is_empty() || rule.destinations.is_empty() || rule.admits_nothing() {
            return None;
        }
        let label = self.add_label(Label {
            kind: EdgeKind::Allow,
            rule: rule.id.to_string(),
            // Never "no method": a rule that admits nothing has no edge.
            conditions: crate::rules::conditions(rule),
            unrestricted: matches!(rule.methods, Methods::Any) && rule.paths.is_none(),
            methods: rule.methods.clone(),
        });
        let source = self.hub(sources, from, rule.sources, true);
        let destination = self.hub(destinations, to, rule.destinations, false);
        self.link(source, destination, Some(label));
        Some(label)
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

    /// One link per destination of each egress rule, from the hub of the functions it applies
    /// to (never an isolated one or an endpoint: the policy leaves them out).
    fn add_egress(&mut self, destinations: &HashMap<String, usize>) {
        let mut hubs: HashMap<SelectorId, usize> = HashMap::new();
        let mut edges = Vec::new();
        for rule in self.policy.egress_rules() {
            let Some(selector) = rule.from_id.filter(|_| !rule.sources.is_empty()) else {
                continue;
            };
            let from: Vec<usize> = rule
                .sources
                .iter()
                .map(|&f| self.function_node(f))
                .collect();
            let hub = match hubs.get(&selector) {
                Some(&hub) => hub,
                None => {
                    let hub = self.add_hub();
                    for &f in &from {
                        self.link(f, hub, None);
                    }
                    hubs.insert(selector, hub);
                    hub
                }
            };
            for target in rule.targets {
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

    /// Audit mode turns enforcement off for every flow with an audit-mode end: to an auditor
    /// those flows are open, rule or no rule, and an audit-mode function that may reach
    /// outside reaches any destination. The mesh flows follow [`Policy::decide_mesh`], which
    /// lets a flow with an audit-mode end through unless its source is an endpoint, which
    /// never makes a call.
    fn add_audit_mode(&mut self) {
        let policy = self.policy;
        let audited: Vec<FunctionId> = policy
            .functions()
            .iter()
            .filter(|f| f.audit)
            .map(|f| f.id)
            .collect();
        if audited.is_empty() {
            return;
        }
        let mesh = self.add_label(audit_label("any method any path"));
        let (any_source, to_audited) = (self.add_hub(), self.add_hub());
        let (audited_source, to_any) = (self.add_hub(), self.add_hub());
        self.audit_label = Some(mesh);
        self.link(any_source, to_audited, Some(mesh));
        self.link(audited_source, to_any, Some(mesh));
        // An endpoint is never a source, audit mode or not.
        for f in policy.functions() {
            let node = self.function_node(f.id);
            if policy.makes_calls(f.id) {
                self.link(node, any_source, None);
            }
            self.link(to_any, node, None);
        }
        for &f in &audited {
            let node = self.function_node(f);
            self.link(to_audited, node, None);
            if policy.makes_calls(f) {
                self.link(node, audited_source, None);
            }
        }
        let Some(anywhere) = self.any_destination else {
            return;
        };
        let egress = self.add_label(audit_label("egress"));
        let hub = self.add_hub();
        self.link(hub, anywhere, Some(egress));
        for &f in audited.iter().filter(|&&f| policy.reaches_outside(f)) {
            let node = self.function_node(f);
            self.link(node, hub, None);
            self.egress_edges.push((node, anywhere, egress));
        }
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
}

/// What audit mode opens: no rule, any method on any path (or any destination).
fn audit_label(conditions: &str) -> Label {
    Label {
        kind: EdgeKind::Audit,
        rule: "audit mode".to_owned(),
        conditions: conditions.to_owned(),
        unrestricted: true,
        methods: Methods::Any,
    }
}

fn methods_text(methods: &Methods) -> String {
    match methods {
        Methods::Any => "any method".to_owned(),
        Methods::Only(list) if list.is_empty() => "no method".to_owned(),
        Methods::Only(list) => list.join("|"),
    }
}
