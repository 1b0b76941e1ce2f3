//! The `pci` compliance pack: the checks a PCI DSS segmentation test asks for, with the
//! evidence an assessor can follow back to the rules.
//!
//! The cardholder data environment (CDE) is every function labelled `pci`, directly or through
//! its segment.

use std::collections::HashSet;

use septa_manifest::Selector;
use septa_policy::Policy;
use serde::Serialize;

use crate::graph::{EdgeKind, Graph, Node};

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
pub fn pci(policy: &Policy, graph: &Graph) -> Vec<PackCheck> {
    let Ok(label) = Selector::parse("label:pci") else {
        return Vec::new();
    };
    let cde: HashSet<usize> = graph.select(policy, &label).into_iter().collect();
    let in_cde = |n: usize| cde.contains(&n);
    let describe = |e: &crate::graph::Edge| {
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
    };

    let mut checks = Vec::new();
    if cde.is_empty() {
        checks.push(PackCheck {
            id: "pci-scope",
            title: "the cardholder data environment is identified (functions or segments labelled `pci`)",
            passed: false,
            evidence: vec!["no function or segment carries the label `pci`".to_owned()],
        });
        return checks;
    }
    let mut scope: Vec<&str> = cde.iter().map(|&n| graph.name(n)).collect();
    scope.sort_unstable();
    checks.push(PackCheck {
        id: "pci-scope",
        title: "the cardholder data environment is identified (functions or segments labelled `pci`)",
        passed: true,
        evidence: scope.iter().map(|s| format!("in scope: {s}")).collect(),
    });

    // Out-of-scope functions that can open flows into the CDE are connected-to systems.
    let connected: Vec<String> = graph
        .edges()
        .iter()
        .filter(|e| {
            matches!(graph.nodes[e.from], Node::Function(_)) && !in_cde(e.from) && in_cde(e.to)
        })
        .map(describe)
        .collect();
    checks.push(PackCheck {
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
    });

    let wide: Vec<String> = graph
        .edges()
        .iter()
        .filter(|e| in_cde(e.from) && matches!(e.kind, EdgeKind::Egress | EdgeKind::Audit))
        .filter(|e| matches!(graph.nodes[e.to], Node::Egress(_)))
        .filter(|e| e.unrestricted || egress_is_wildcard(graph.name(e.to)))
        .map(describe)
        .collect();
    checks.push(PackCheck {
        id: "pci-egress",
        title: "no wildcard egress from the cardholder data environment",
        passed: wide.is_empty(),
        evidence: if wide.is_empty() {
            let named: Vec<String> = graph
                .edges()
                .iter()
                .filter(|e| in_cde(e.from) && e.kind == EdgeKind::Egress)
                .map(describe)
                .collect();
            if named.is_empty() {
                vec!["the CDE has no egress".to_owned()]
            } else {
                named
            }
        } else {
            wide
        },
    });

    // Ingress over an unauthenticated route: the path search may not use authenticated routes.
    let authenticated: HashSet<&str> = policy
        .routes()
        .filter(|r| r.auth.is_some())
        .map(|r| r.id.as_str())
        .collect();
    let mut open_graph_blocked = HashSet::new();
    let open_routes: Vec<usize> = graph
        .edges()
        .iter()
        .filter(|e| e.kind == EdgeKind::Route && !authenticated.contains(e.rule.as_str()))
        .map(|e| e.to)
        .collect();
    // Start the search at the functions unauthenticated routes reach; a CDE function reached
    // directly is itself an unauthenticated ingress.
    let direct: Vec<String> = graph
        .edges()
        .iter()
        .filter(|e| {
            e.kind == EdgeKind::Route && !authenticated.contains(e.rule.as_str()) && in_cde(e.to)
        })
        .map(describe)
        .collect();
    open_graph_blocked.insert(0);
    let via = graph.shortest_path(&open_routes, &cde, &open_graph_blocked);
    let mut evidence: Vec<String> = direct
        .iter()
        .map(|d| format!("unauthenticated route into the CDE: {d}"))
        .collect();
    if let Some(path) = &via {
        evidence.push(format!(
            "unauthenticated path: gateway, then {}",
            graph.describe(path)
        ));
    }
    let passed = evidence.is_empty();
    if passed {
        evidence.push("every route that leads into the CDE requires a token".to_owned());
    }
    checks.push(PackCheck {
        id: "pci-ingress-authenticated",
        title: "every ingress path into the cardholder data environment is authenticated",
        passed,
        evidence,
    });

    let audit: Vec<String> = policy
        .functions()
        .iter()
        .filter(|f| f.audit && in_cde(graph.function_node(f.id)))
        .map(|f| {
            format!(
                "{} is in audit mode: its denials are not enforced",
                f.identity
            )
        })
        .collect();
    checks.push(PackCheck {
        id: "pci-enforced",
        title: "segmentation inside the cardholder data environment is enforced, not audited",
        passed: audit.is_empty(),
        evidence: if audit.is_empty() {
            vec!["every CDE function enforces".to_owned()]
        } else {
            audit
        },
    });
    checks
}

fn egress_is_wildcard(target: &str) -> bool {
    target.contains("://*.") || target.ends_with(":*") || target.starts_with("*://")
}
