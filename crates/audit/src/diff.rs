//! `septa diff`: what changes between two policies, in flows, findings and invariants.

use std::collections::BTreeSet;

use septa_policy::Policy;

use crate::declared;
use crate::findings::{Finding, audit};
use crate::graph::{EdgeKind, Graph};

/// The semantic difference of two policies.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Diff {
    /// Flows the new policy allows and the old did not, in words.
    pub allowed: Vec<String>,
    /// Flows the old policy allowed and the new does not.
    pub denied: Vec<String>,
    /// Findings that appear (severity, kind, message).
    pub new_findings: Vec<String>,
    /// Findings that disappear.
    pub gone_findings: Vec<String>,
    /// Invariants whose state changes: (id, held before, holds after); `None` where the
    /// invariant is not declared on that side.
    pub invariants: Vec<(String, Option<bool>, Option<bool>)>,
}

impl Diff {
    /// Whether the two policies differ in anything this reports.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Compares `old` with `new`.
pub fn diff(old: &Policy, new: &Policy) -> Diff {
    let (old_graph, new_graph) = (Graph::build(old), Graph::build(new));
    let old_flows = flows(&old_graph);
    let new_flows = flows(&new_graph);
    let old_findings = finding_texts(audit(old, &old_graph));
    let new_findings = finding_texts(audit(new, &new_graph));
    let ids: BTreeSet<String> = declared::invariants(old)
        .iter()
        .chain(declared::invariants(new))
        .map(|i| i.id.to_string())
        .collect();
    let state = |policy: &Policy, graph: &Graph<'_>, id: &str| -> Option<bool> {
        declared::invariants(policy)
            .iter()
            .any(|i| i.id.as_str() == id)
            .then(|| {
                !crate::findings::check_invariants(policy, graph)
                    .iter()
                    .any(|f| f.subject == format!("invariant:{id}"))
            })
    };
    let invariants = ids
        .into_iter()
        .filter_map(|id| {
            let (before, after) = (state(old, &old_graph, &id), state(new, &new_graph, &id));
            (before != after).then_some((id, before, after))
        })
        .collect();
    Diff {
        allowed: new_flows.difference(&old_flows).cloned().collect(),
        denied: old_flows.difference(&new_flows).cloned().collect(),
        new_findings: new_findings.difference(&old_findings).cloned().collect(),
        gone_findings: old_findings.difference(&new_findings).cloned().collect(),
        invariants,
    }
}

/// Every edge of a graph in words, keyed by the names of its ends so that two policies compare.
fn flows(graph: &Graph<'_>) -> BTreeSet<String> {
    graph
        .edges()
        .iter()
        .map(|e| {
            let opened_by = match e.kind {
                EdgeKind::Route => format!("route `{}`", e.rule),
                EdgeKind::Allow => format!("rule `{}`", e.rule),
                EdgeKind::Egress => format!("egress rule `{}`", e.rule),
                EdgeKind::Audit => "audit mode".to_owned(),
            };
            format!(
                "{} → {}  ({opened_by}: {})",
                graph.name(e.from),
                graph.name(e.to),
                e.conditions
            )
        })
        .collect()
}

/// Findings in words; blast radius is left out, since the flows already say what changed.
fn finding_texts(findings: Vec<Finding>) -> BTreeSet<String> {
    findings
        .into_iter()
        .filter(|f| f.kind != "blast-radius")
        .map(|f| {
            format!(
                "{} {}: {}",
                f.severity.as_str().to_uppercase(),
                f.kind,
                f.message
            )
        })
        .collect()
}
