//! `septa query`: can this reach that, and through which rules; or why not.

use std::collections::HashSet;

use septa_manifest::Selector;
use septa_policy::path::normalize_path;
use septa_policy::{IngressRequest, NoFacts, Policy, Verdict};

use crate::graph::Graph;

/// The answer to one query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// A path exists; the text names every hop's rule.
    Reachable(String),
    /// No path exists; the text says why and which rule would have to change.
    Unreachable(String),
}

/// Whether anything `from` selects can reach anything `to` selects, optionally with `method`
/// and `path` on the last hop; with `direct`, only by one flow, not through other functions.
pub fn query(
    policy: &Policy,
    graph: &Graph<'_>,
    from: &Selector,
    to: &Selector,
    method: Option<&str>,
    path: Option<&str>,
    direct: bool,
) -> Answer {
    // Ask about the path enforcement would see, or say why there is none.
    let normalized = match path.map(normalize_path).transpose() {
        Ok(p) => p,
        Err(e) => return Answer::Unreachable(format!("invalid path: {e}")),
    };
    let path = normalized.as_ref().map(|p| p.as_str());
    let sources = graph.select(from);
    let targets: Vec<usize> = graph.select(to);
    if sources.is_empty() || targets.is_empty() {
        return Answer::Unreachable(format!("`{from}` or `{to}` selects nothing"));
    }
    for &target in &targets {
        // The last hop must admit the method and path, decided exactly as enforcement would.
        for (e, edge) in graph
            .edges()
            .iter()
            .enumerate()
            .filter(|(_, e)| e.to == target)
        {
            if !last_hop_admits(policy, graph, e, method, path) {
                continue;
            }
            let hops = if sources.contains(&edge.from) {
                Some(vec![edge.clone()])
            } else if direct {
                None
            } else {
                let reach = HashSet::from([edge.from]);
                graph
                    .shortest_path(&sources, &reach, &HashSet::new())
                    .map(|mut p| {
                        p.push(edge.clone());
                        p
                    })
            };
            if let Some(hops) = hops {
                let mut how = graph.describe(&hops);
                if hops.len() > 1
                    && let Some(direct) =
                        direct_refusal(policy, graph, &sources, &targets, method, path)
                {
                    how.push_str(&format!(" (not directly: {direct})"));
                }
                return Answer::Reachable(how);
            }
        }
    }
    Answer::Unreachable(why_not(
        policy, graph, &sources, &targets, method, path, direct,
    ))
}

/// Whether edge `e` admits a request with `method` on `path`, decided as enforcement would; a
/// missing method or path means "some": with neither, every edge admits (the graph holds only
/// allowed flows).
fn last_hop_admits(
    policy: &Policy,
    graph: &Graph<'_>,
    e: usize,
    method: Option<&str>,
    path: Option<&str>,
) -> bool {
    const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];
    let edge = &graph.edges()[e];
    let methods = method.as_ref().map_or(&METHODS[..], std::slice::from_ref);
    match (path, &graph.nodes[edge.from], &graph.nodes[edge.to]) {
        (None, _, crate::Node::Function(_)) => method.is_none_or(|m| edge.methods.admits(m)),
        (Some(p), crate::Node::Function(from), crate::Node::Function(to)) => methods
            .iter()
            .any(|m| policy.decide_mesh(*from, *to, m, p).verdict != Verdict::Deny),
        (Some(p), crate::Node::Gateway, crate::Node::Function(to)) => methods.iter().any(|m| {
            let decided = policy.decide_ingress(&IngressRequest::probe(m, p), &mut NoFacts);
            decided.decision.verdict.permits() && decided.route.is_some_and(|r| r.function == *to)
        }),
        _ => method.is_none() && path.is_none(),
    }
}

/// For one function to one function, the policy's reason for refusing the direct call, if it
/// does.
fn direct_refusal(
    policy: &Policy,
    graph: &Graph<'_>,
    sources: &[usize],
    targets: &[usize],
    method: Option<&str>,
    path: Option<&str>,
) -> Option<String> {
    let ([s], [t]) = (sources, targets) else {
        return None;
    };
    let (crate::Node::Function(from), crate::Node::Function(to)) =
        (&graph.nodes[*s], &graph.nodes[*t])
    else {
        return None;
    };
    let decision = policy.decide_mesh(*from, *to, method.unwrap_or("GET"), path.unwrap_or("/"));
    (decision.verdict == Verdict::Deny).then(|| decision.reason.to_string())
}

/// Why nothing connects: for one function to one function, the policy's own reason (which
/// names the nearest rules); otherwise, what the graph lacks.
fn why_not(
    policy: &Policy,
    graph: &Graph<'_>,
    sources: &[usize],
    targets: &[usize],
    method: Option<&str>,
    path: Option<&str>,
    direct: bool,
) -> String {
    if let Some(refusal) = direct_refusal(policy, graph, sources, targets, method, path) {
        if direct {
            return refusal;
        }
        return format!("{refusal}; and no path through other functions");
    }
    let from: Vec<&str> = sources.iter().map(|&n| graph.name(n)).collect();
    let to: Vec<&str> = targets.iter().map(|&n| graph.name(n)).collect();
    format!(
        "no chain of allowed flows leads from {} to {}",
        from.join(", "),
        to.join(", ")
    )
}
