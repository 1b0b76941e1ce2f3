//! `septa query`: can this reach that, and through which rules; or why not.

use std::collections::{BTreeSet, HashSet};

use septa_manifest::Selector;
use septa_policy::path::normalize_path;
use septa_policy::{IngressRequest, NoFacts, Policy, Verdict};

use crate::cluster::{Cluster, HopsText};
use crate::graph::{Edge, Graph};

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
    find_path(policy, graph, from, to, method, path, direct).0
}

/// [`query`], and when the application spans several nodes, where its two sides run and which
/// hops of the answer go between nodes over mutual TLS, one line each (none without a cluster).
pub fn query_on_nodes(
    policy: &Policy,
    graph: &Graph<'_>,
    from: &Selector,
    to: &Selector,
    method: Option<&str>,
    path: Option<&str>,
    direct: bool,
) -> (Answer, Vec<String>) {
    let (answer, hops) = find_path(policy, graph, from, to, method, path, direct);
    let lines = Cluster::of(policy).map_or_else(Vec::new, |cluster| {
        on_nodes(graph, cluster, (from, to), &hops)
    });
    (answer, lines)
}

/// The answer, and the hops of the path it found (none when unreachable).
fn find_path(
    policy: &Policy,
    graph: &Graph<'_>,
    from: &Selector,
    to: &Selector,
    method: Option<&str>,
    path: Option<&str>,
    direct: bool,
) -> (Answer, Vec<Edge>) {
    let unreachable = |why| (Answer::Unreachable(why), Vec::new());
    // Ask about the path enforcement would see, or say why there is none.
    let normalized = match path.map(normalize_path).transpose() {
        Ok(p) => p,
        Err(e) => return unreachable(format!("invalid path: {e}")),
    };
    let path = normalized.as_ref().map(|p| p.as_str());
    let sources = graph.select(from);
    let targets: Vec<usize> = graph.select(to);
    if sources.is_empty() || targets.is_empty() {
        return unreachable(format!("`{from}` or `{to}` selects nothing"));
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
                return (Answer::Reachable(how), hops);
            }
        }
    }
    unreachable(why_not(
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

/// Where the two sides of a query run, and each hop of `path` that goes between nodes; or that
/// the path stays on the nodes that run its source.
fn on_nodes(
    graph: &Graph<'_>,
    cluster: Cluster<'_>,
    (from, to): (&Selector, &Selector),
    path: &[Edge],
) -> Vec<String> {
    let runs_on = |selector: &Selector| {
        let places = graph.select(selector);
        let nodes: BTreeSet<&str> = places
            .iter()
            .flat_map(|&p| cluster.runs_on(&graph.nodes[p]))
            .collect();
        let nodes = nodes.into_iter().collect::<Vec<_>>().join(", ");
        match (selector, places.len()) {
            (Selector::Gateway, _) => format!("`gateway` runs on every node ({nodes})"),
            (_, 1) => format!("`{}` runs on {nodes}", graph.name(places[0])),
            (_, n) => format!("`{selector}` ({n} places) runs on {nodes}"),
        }
    };
    let mut lines = vec![format!("{}; {}", runs_on(from), runs_on(to))];
    let mut crossed = false;
    for edge in path {
        let hops = cluster.flow_hops(&graph.nodes[edge.from], &graph.nodes[edge.to]);
        if hops.is_empty() {
            continue;
        }
        crossed = true;
        lines.push(format!(
            "{} → {} goes between nodes over mTLS: {}; the receiving node decides it again",
            graph.name(edge.from),
            graph.name(edge.to),
            HopsText(&hops)
        ));
    }
    if !path.is_empty() && !crossed {
        lines.push("no hop goes between nodes: each node that runs a hop's source runs its destination too".to_owned());
    }
    lines
}
