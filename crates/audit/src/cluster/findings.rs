//! The placement as findings: what each node runs (and so what its certificate speaks for),
//! each route and allow rule whose flows go between nodes, and each destination those flows
//! can reach on one node only.

use std::collections::BTreeMap;

use septa_manifest::{EndpointBackend, FunctionKind};
use septa_policy::{FunctionId, Policy};

use super::{Cluster, HopsText, Opener};
use crate::declared;
use crate::findings::{Finding, Severity};

/// The most places a node's finding names; it counts the rest.
const LISTED_PLACES: usize = 20;

/// The placement findings of `policy`; none when it runs in one process.
pub(crate) fn placement(policy: &Policy, out: &mut Vec<Finding>) {
    let Some(cluster) = Cluster::of(policy) else {
        return;
    };
    nodes(policy, cluster, out);
    let crossings = cluster.crossings();
    // Destinations on one node, with the rules that reach them from others and their nodes.
    let mut single: BTreeMap<FunctionId, (Vec<Opener<'_>>, Vec<&str>)> = BTreeMap::new();
    for crossing in &crossings {
        let subject = match crossing.opener {
            Opener::Route(id) => format!("route:{id}"),
            Opener::Allow(id) => format!("allow:{id}"),
        };
        out.push(Finding {
            severity: Severity::Info,
            kind: "cross-node-flow",
            subject,
            message: format!(
                "{} (`{}` → `{}`) goes between nodes over mTLS: {}; the receiving node decides each call again",
                crossing.opener,
                crossing.from,
                crossing.to,
                HopsText(&crossing.hops)
            ),
            rules: vec![crossing.opener.id().to_owned()],
            path: Vec::new(),
            location: crossing.location.map(|at| declared::at(policy, at)),
            position: crossing.location,
        });
        for (destination, callers) in &crossing.single_node {
            let (openers, from) = single.entry(*destination).or_default();
            openers.push(crossing.opener.clone());
            for caller in callers {
                if !from.contains(caller) {
                    from.push(caller);
                }
            }
        }
    }
    for (destination, (openers, mut from)) in single {
        from.sort_unstable();
        single_node(policy, cluster, destination, &openers, &from, out);
    }
}

/// One finding per node: what it runs, which its certificate speaks for to the other nodes.
fn nodes(policy: &Policy, cluster: Cluster<'_>, out: &mut Vec<Finding>) {
    for node in cluster.nodes() {
        let hosted = cluster.hosted_by(node);
        let names: Vec<&str> = hosted
            .iter()
            .take(LISTED_PLACES)
            .map(|&f| policy.function(f).identity.as_str())
            .collect();
        let more = match hosted.len() - names.len() {
            0 => String::new(),
            n => format!(" and {n} more"),
        };
        let message = match hosted.len() {
            0 => format!("node `{node}` (`{}`) runs nothing", cluster.spiffe_id(node)),
            count => format!(
                "node `{node}` (`{}`) runs {count} {}, and its certificate speaks for {}: {}{more}",
                cluster.spiffe_id(node),
                if count == 1 { "place" } else { "places" },
                if count == 1 { "it" } else { "them" },
                names.join(", ")
            ),
        };
        let at = declared::node_location(policy, node);
        out.push(Finding {
            severity: Severity::Info,
            kind: "node-placement",
            subject: format!("node:{node}"),
            message,
            rules: Vec::new(),
            path: Vec::new(),
            location: at.map(|at| declared::at(policy, at)),
            position: at,
        });
    }
}

/// A destination that runs on one node only, which flows reach from other nodes: while that
/// node is down, they fail.
fn single_node(
    policy: &Policy,
    cluster: Cluster<'_>,
    destination: FunctionId,
    openers: &[Opener<'_>],
    from: &[&str],
    out: &mut Vec<Finding>,
) {
    let info = policy.function(destination);
    let host = cluster.hosting(destination).join(", ");
    let remedy = match info.spec.kind {
        FunctionKind::Endpoint(EndpointBackend::Embedded) => {
            "an embedded endpoint keeps its data on one node: move it to Redis or PostgreSQL to run it on several"
        }
        _ => "let a second node host it",
    };
    let backticked = |list: &mut dyn Iterator<Item = String>| list.collect::<Vec<_>>().join(", ");
    out.push(Finding {
        severity: Severity::Low,
        kind: "single-node-destination",
        subject: info.identity.clone(),
        message: format!(
            "`{}` runs only on node `{host}`, and flows reach it there over mTLS from {} ({}): while `{host}` is down they fail with 503 (`node unavailable`); {remedy}",
            info.identity,
            backticked(&mut from.iter().map(|n| format!("`{n}`"))),
            backticked(&mut openers.iter().map(ToString::to_string)),
        ),
        rules: openers.iter().map(|o| o.id().to_owned()).collect(),
        path: Vec::new(),
        location: Some(declared::at(policy, info.spec.location)),
        position: Some(info.spec.location),
    });
}
