//! The `pci` compliance pack: the checks a PCI DSS segmentation test asks for, with the
//! evidence an assessor can follow back to the rules.
//!
//! The cardholder data environment (CDE) is every function labelled `pci`, directly or through
//! its segment.

use std::collections::HashSet;

use septa_manifest::Selector;
use septa_policy::Policy;
use serde::Serialize;

use crate::graph::{Edge, EdgeKind, Graph, Node};

/// One requirement of a pack, passed or failed, with its evidence.
#[derive(Clone, Debug, Serialize)]
pub struct PackCheck {
    /// A stable id, e.g. `pci-segmentation`.
    pub id: &'static str,
    /// What the requirement asks, in the assessor's words.
    pub title: &'static str,
    /// Whether the policy meets it.
    pub passed: bool,
    /// What shows it: each line names the flow and the rule or route behind it.
    pub evidence: Vec<String>,
}

/// Runs the `pci` pack.
pub fn pci(policy: &Policy, graph: &Graph<'_>) -> Vec<PackCheck> {
    let Ok(label) = Selector::parse("label:pci") else {
        return Vec::new();
    };
    let cde = Cde {
        graph,
        members: graph.select(&label).into_iter().collect(),
    };
    if cde.members.is_empty() {
        return vec![PackCheck {
            id: "pci-scope",
            title: SCOPE,
            passed: false,
            evidence: vec!["no function or segment carries the label `pci`".to_owned()],
        }];
    }
    vec![
        cde.scope(),
        cde.segmentation(),
        cde.egress(),
        cde.ingress_authenticated(policy),
        cde.enforced(policy),
    ]
}

const SCOPE: &str =
    "the cardholder data environment is identified (functions or segments labelled `pci`)";

/// The cardholder data environment: the places labelled `pci`, in the graph that reaches them.
struct Cde<'g> {
    graph: &'g Graph<'g>,
    members: HashSet<usize>,
}

impl Cde<'_> {
    fn contains(&self, n: usize) -> bool {
        self.members.contains(&n)
    }

    /// An edge in words, with the rule or route behind it.
    fn describe(&self, e: &Edge) -> String {
        let graph = self.graph;
        format!(
            "{} → {} ({} `{}`: {})",
            graph.name(e.from),
            graph.name(e.to),
            match e.kind {
                EdgeKind::Route => "route",
                EdgeKind::Allow => "rule",
                EdgeKind::Egress => "egress rule",
                EdgeKind::Audit => "audit mode, no rule",
            },
            e.rule,
            e.conditions
        )
    }

    fn scope(&self) -> PackCheck {
        let mut scope: Vec<&str> = self.members.iter().map(|&n| self.graph.name(n)).collect();
        scope.sort_unstable();
        PackCheck {
            id: "pci-scope",
            title: SCOPE,
            passed: true,
            evidence: scope.iter().map(|s| format!("in scope: {s}")).collect(),
        }
    }

    /// Out-of-scope functions that can open flows into the CDE are connected-to systems.
    fn segmentation(&self) -> PackCheck {
        let graph = self.graph;
        let connected: Vec<String> = graph
            .edges()
            .iter()
            .filter(|e| {
                matches!(graph.nodes[e.from], Node::Function(_))
                    && !self.contains(e.from)
                    && self.contains(e.to)
            })
            .map(|e| self.describe(e))
            .collect();
        PackCheck {
            id: "pci-segmentation",
            title: "out-of-scope functions cannot open flows into the cardholder data environment",
            passed: connected.is_empty(),
            evidence: if connected.is_empty() {
                vec!["no flow from an out-of-scope function reaches the CDE".to_owned()]
            } else {
                connected
                    .into_iter()
                    .map(|c| format!("{c}: the caller is a connected-to system and in scope"))
                    .collect()
            },
        }
    }

    fn egress(&self) -> PackCheck {
        let graph = self.graph;
        let wide: Vec<String> = graph
            .edges()
            .iter()
            .filter(|e| {
                self.contains(e.from) && matches!(e.kind, EdgeKind::Egress | EdgeKind::Audit)
            })
            .filter(|e| matches!(graph.nodes[e.to], Node::Egress(_)))
            .filter(|e| e.unrestricted || egress_is_wildcard(graph.name(e.to)))
            .map(|e| self.describe(e))
            .collect();
        let passed = wide.is_empty();
        let evidence = if passed {
            let named: Vec<String> = graph
                .edges()
                .iter()
                .filter(|e| self.contains(e.from) && e.kind == EdgeKind::Egress)
                .map(|e| self.describe(e))
                .collect();
            if named.is_empty() {
                vec!["the CDE has no egress".to_owned()]
            } else {
                named
            }
        } else {
            wide
        };
        PackCheck {
            id: "pci-egress",
            title: "no wildcard egress from the cardholder data environment",
            passed,
            evidence,
        }
    }

    /// Ingress over an unauthenticated route: the path search may not use authenticated routes.
    fn ingress_authenticated(&self, policy: &Policy) -> PackCheck {
        let graph = self.graph;
        let authenticated: HashSet<&str> = policy
            .routes()
            .filter(|r| r.auth.is_some())
            .map(|r| r.id.as_str())
            .collect();
        let open =
            |e: &&Edge| e.kind == EdgeKind::Route && !authenticated.contains(e.rule.as_str());
        // Start the search at the functions unauthenticated routes reach; a CDE function
        // reached directly is itself an unauthenticated ingress.
        let open_routes: Vec<usize> = graph.edges().iter().filter(open).map(|e| e.to).collect();
        let mut evidence: Vec<String> = graph
            .edges()
            .iter()
            .filter(open)
            .filter(|e| self.contains(e.to))
            .map(|e| format!("unauthenticated route into the CDE: {}", self.describe(e)))
            .collect();
        let gateway = HashSet::from([0]);
        if let Some(path) = graph.shortest_path(&open_routes, &self.members, &gateway) {
            evidence.push(format!(
                "unauthenticated path: gateway, then {}",
                graph.describe(&path)
            ));
        }
        let passed = evidence.is_empty();
        if passed {
            evidence.push("every route that leads into the CDE requires a token".to_owned());
        }
        PackCheck {
            id: "pci-ingress-authenticated",
            title: "every ingress path into the cardholder data environment is authenticated",
            passed,
            evidence,
        }
    }

    fn enforced(&self, policy: &Policy) -> PackCheck {
        let audit: Vec<String> = policy
            .functions()
            .iter()
            .filter(|f| f.audit && self.contains(self.graph.function_node(f.id)))
            .map(|f| {
                format!(
                    "{} is in audit mode: its denials are not enforced",
                    f.identity
                )
            })
            .collect();
        PackCheck {
            id: "pci-enforced",
            title: "segmentation inside the cardholder data environment is enforced, not audited",
            passed: audit.is_empty(),
            evidence: if audit.is_empty() {
                vec!["every CDE function enforces".to_owned()]
            } else {
                audit
            },
        }
    }
}

fn egress_is_wildcard(target: &str) -> bool {
    target.contains("://*.") || target.ends_with(":*") || target.starts_with("*://")
}
