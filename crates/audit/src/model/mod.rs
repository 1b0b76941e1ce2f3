//! The platform as the dashboard draws it (`GET /model` on the admin listener): segments and
//! subnets, the functions, endpoints and routes inside them, the gateway and the egress
//! destinations outside them, and the allowed flows between them, each with its rules.
//!
//! Everything comes from the compiled policy and the auditor's reachability graph
//! ([`crate::Graph`]), the same graph `septa audit` and `septa query` read: the edges are the
//! graph's, the rules are the policy's, and a node's blast radius is what the graph says it
//! reaches. Nothing here decides a flow, and nothing reads the manifest's rules. `septa up`
//! serves it; `nodes` and `edges` word the places and flows.
//!
//! The JSON (`version` 1); lists keep the policy's order, ids are flow-record identities, so a
//! record's `src` and `dst` name the nodes and edges it crossed:
//!
//! ```text
//! {
//!   "version": 1,
//!   "application": "shop",
//!   "policy_hash": "9f2c…",              // SHA-256 of the manifest, as /healthz says
//!   "generation": 1,                      // 1 at start, +1 per applied reload
//!   "truncated": null,                    // or why edges, rules and blast radius are left out
//!   "cluster": { "trust_domain": "shop.example",       // null without `[node.*]` tables
//!                "nodes": [ { "name": "edge-1", "hosts": ["function:storefront", "function:relay",
//!                                                         "function:catalog"] },
//!                           { "name": "pay-1", "hosts": ["function:checkout", …, "endpoint:carts"] } ] },
//!   "segments": [ { "name": "payments", "labels": ["pci"], "mode": "enforce",
//!                   "subnets": [ { "name": "app", "tier": "private" },
//!                                { "name": "vault", "tier": "isolated" } ] } ],
//!   "nodes": [
//!     { "id": "gateway", "kind": "gateway", "name": "gateway",
//!       "nodes": ["edge-1", "pay-1", "pay-2"], "rules": […], "blast_radius": {…} },
//!     { "id": "function:checkout", "kind": "function", "name": "checkout",
//!       "segment": "payments", "subnet": "app", "tier": "private",
//!       "labels": ["pci"], "groups": ["pci-app"], "mode": "enforce",
//!       "routes": [],                     // ids of the routes that reach it
//!       "nodes": ["pay-1", "pay-2"],      // the cluster nodes that run it; [] without a cluster
//!       "rules": [ { "id": "storefront-to-checkout", "kind": "allow", "direction": "in",
//!                    "peers": ["function:storefront"] }, … ],
//!       "blast_radius": { "count": 2, "reaches": ["function:ledger", "https://api.payments.example:443"] } },
//!     { "id": "endpoint:carts", "kind": "endpoint", "backend": "embedded", … same as a function },
//!     { "id": "https://api.payments.example:443", "kind": "egress", "name": "…", "rules": […], "blast_radius": {…} }
//!   ],
//!   "routes": [ { "id": "orders", "path": "/api/orders", "methods": ["GET"],
//!                 "function": "function:storefront", "mode": "enforce",
//!                 "auth": { "kind": "jwt", "name": "customers", "scopes": ["orders:read"] } } ],
//!   "edges": [ { "id": "function:storefront -> function:checkout",
//!                "from": "function:storefront", "to": "function:checkout", "kind": "allow",
//!                "rules": [ { "id": "storefront-to-checkout", "kind": "allow",
//!                             "methods": ["POST"], "paths": ["/charge"],
//!                             "conditions": "POST /charge" } ],
//!                "crosses_nodes": [ { "from": "edge-1", "to": ["pay-1", "pay-2"] } ] } ]
//! }
//! ```
//!
//! `cluster` is the manifest's placement (`[cluster]` and `[node.*]`), compiled: `septa node`
//! runs by it, while `septa up` runs every place in one process whatever it says. The gateway
//! runs on every node; an egress destination has no `nodes`. An edge's `crosses_nodes` lists the
//! calls its flows make over mutual TLS: each node that runs the source and not the
//! destination (`from`) calls one of the nodes that run the destination (`to`), which decides
//! the flow again. It is empty when every node that runs the source also runs the destination,
//! for egress, and without a cluster.
//!
//! `kind` of an edge or rule is `route`, `allow`, `egress` or `audit` (no rule: one end is in
//! audit mode, so enforcement is off for the flow). `methods` or `paths` is `null` when any is
//! admitted. A node's `rules` are grouped by rule and direction (`in` or `out`), with the nodes
//! at the other end; `blast_radius.reaches` lists at most [`LISTED_REACH`] nodes, `count` all.
//! A policy past [`Limits::DASHBOARD`] gets its segments, nodes and routes only: `edges` and
//! each node's `rules` are empty, `blast_radius` is `null`, and `truncated` says why.

mod edges;
mod nodes;

use septa_manifest::{AuthMethod, Selector};
use septa_policy::Policy;
use serde_json::{Value, json};

use crate::cluster::Cluster;
use crate::declared;
use crate::graph::Graph;
use edges::{RulePaths, grouped_edges, methods_json};
use nodes::{mode_text, names, rules_touching};

/// The most nodes a blast radius lists; `count` says how many there are.
pub const LISTED_REACH: usize = 200;

/// How big a policy the model draws in full. Past either limit it leaves out the edges, the
/// rules per node and the blast radius (`truncated` says so): expanding every pair of
/// functions a wide rule connects grows with their product, and no page draws that anyway.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Places: the gateway, functions, endpoints and egress destinations.
    pub places: usize,
    /// Allowed flows between two places, as counted before expanding them.
    pub edges: usize,
}

impl Limits {
    /// What the dashboard draws.
    pub const DASHBOARD: Self = Self {
        places: 2_000,
        edges: 20_000,
    };
}

/// The dashboard's model of `policy`, serving as `generation` with manifest hash `policy_hash`.
pub fn dashboard_model(policy: &Policy, policy_hash: &str, generation: u64) -> Value {
    model_within(policy, policy_hash, generation, Limits::DASHBOARD)
}

/// The model of `policy`, in full when it is within `limits`.
pub fn model_within(policy: &Policy, policy_hash: &str, generation: u64, limits: Limits) -> Value {
    let graph = Graph::build(policy);
    let truncated = too_big(policy, &graph, limits);
    let edges = if truncated.is_none() {
        grouped_edges(&graph)
    } else {
        Vec::new()
    };
    let touching = rules_touching(&edges);
    let reach = truncated.is_none().then(|| graph.reach());
    let cluster = Cluster::of(policy);
    let nodes: Vec<Value> = (0..graph.nodes.len())
        .map(|n| nodes::node_json(&graph, cluster, n, touching.get(&n), reach.as_ref()))
        .collect();
    let paths = RulePaths::of(policy);
    let edges: Vec<Value> = edges
        .iter()
        .map(|(ends, rules)| edges::edge_json(&graph, cluster, &paths, *ends, rules))
        .collect();
    json!({
        "version": 1,
        "application": declared::application(policy),
        "policy_hash": policy_hash,
        "generation": generation,
        "truncated": truncated,
        "cluster": cluster.map(|c| cluster_json(policy, c)),
        "segments": segments_json(policy),
        "nodes": nodes,
        "routes": routes_json(policy),
        "edges": edges,
    })
}

/// Why `policy` is too big to model in full, if it is. The flows are counted from the sizes of
/// each rule's two sides, without expanding them.
fn too_big(policy: &Policy, graph: &Graph<'_>, limits: Limits) -> Option<String> {
    let side = |selector: &Selector| match selector {
        Selector::Gateway => 1,
        other => policy.selected(other).len(),
    };
    let functions = policy.functions().len();
    let audited = policy.functions().iter().filter(|f| f.audit).count();
    let flows = [
        policy.routes().count(),
        policy
            .allow_rules()
            .map(|r| side(r.from).saturating_mul(side(r.to)))
            .fold(0, usize::saturating_add),
        policy
            .egress_rules()
            .map(|r| side(r.from).saturating_mul(r.targets.len()))
            .fold(0, usize::saturating_add),
        audited.saturating_mul(functions).saturating_mul(2),
    ]
    .into_iter()
    .fold(0, usize::saturating_add);
    let places = graph.nodes.len();
    (places > limits.places || flows > limits.edges).then(|| {
        format!(
            "{places} places and up to {flows} allowed flows are more than the dashboard draws ({} places, {} flows): edges, rules and blast radius are left out; `septa audit` and `septa query` answer for this policy",
            limits.places, limits.edges
        )
    })
}

/// The trust domain, and every node with the functions and endpoints it runs.
fn cluster_json(policy: &Policy, cluster: Cluster<'_>) -> Value {
    let nodes: Vec<Value> = cluster
        .nodes()
        .map(|node| {
            let hosts: Vec<&str> = cluster
                .hosted_by(node)
                .into_iter()
                .map(|f| policy.function(f).identity.as_str())
                .collect();
            json!({ "name": node, "hosts": hosts })
        })
        .collect();
    json!({ "trust_domain": cluster.trust_domain(), "nodes": nodes })
}

/// Every segment with its labels, mode and subnets, in name order.
fn segments_json(policy: &Policy) -> Vec<Value> {
    declared::segments(policy)
        .map(|s| {
            let subnets: Vec<Value> = s
                .subnets
                .iter()
                .map(|(name, tier)| json!({ "name": name.as_str(), "tier": tier.to_string() }))
                .collect();
            json!({
                "name": s.name.as_str(),
                "labels": names(&s.labels),
                "mode": mode_text(s.mode),
                "subnets": subnets,
            })
        })
        .collect()
}

/// Every route with its methods, function, mode and authentication, in path order.
fn routes_json(policy: &Policy) -> Vec<Value> {
    policy
        .routes()
        .map(|r| {
            let auth = r.auth.as_ref().map(|a| {
                let (kind, name) = match &a.method {
                    AuthMethod::Jwt(name) => ("jwt", name),
                    AuthMethod::ApiKey(name) => ("api_key", name),
                };
                json!({ "kind": kind, "name": name.as_str(), "scopes": a.scopes })
            });
            json!({
                "id": r.id.as_str(),
                "path": r.pattern.as_str(),
                "methods": methods_json(&r.methods),
                "function": policy.function(r.function).identity,
                "mode": mode_text(r.mode),
                "auth": auth,
            })
        })
        .collect()
}
