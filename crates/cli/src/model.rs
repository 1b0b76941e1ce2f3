//! The platform as the dashboard draws it (`GET /model` on the admin listener): segments and
//! subnets, the functions, endpoints and routes inside them, the gateway and the egress
//! destinations outside them, and the allowed flows between them, each with its rules.
//!
//! Everything comes from the compiled policy and the auditor's reachability graph
//! ([`septa_audit::Graph`]), the same graph `septa audit` and `septa query` read: the edges are
//! the graph's, and a node's blast radius is what the graph says it reaches. Nothing here
//! decides a flow.
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
//!   "segments": [ { "name": "payments", "labels": ["pci"], "mode": "enforce",
//!                   "subnets": [ { "name": "app", "tier": "private" },
//!                                { "name": "vault", "tier": "isolated" } ] } ],
//!   "nodes": [
//!     { "id": "gateway", "kind": "gateway", "name": "gateway", "rules": […], "blast_radius": {…} },
//!     { "id": "function:checkout", "kind": "function", "name": "checkout",
//!       "segment": "payments", "subnet": "app", "tier": "private",
//!       "labels": ["pci"], "groups": ["pci-app"], "mode": "enforce",
//!       "routes": [],                     // ids of the routes that reach it
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
//!                             "conditions": "POST /charge" } ] } ]
//! }
//! ```
//!
//! `kind` of an edge or rule is `route`, `allow`, `egress` or `audit` (no rule: one end is in
//! audit mode, so enforcement is off for the flow). `methods` or `paths` is `null` when any is
//! admitted. A node's `rules` are grouped by rule and direction (`in` or `out`), with the nodes
//! at the other end; `blast_radius.reaches` lists at most [`LISTED_REACH`] nodes, `count` all.
//! A policy past [`Limits::DASHBOARD`] gets its segments, nodes and routes only: `edges` and
//! each node's `rules` are empty, `blast_radius` is `null`, and `truncated` says why.

use std::collections::BTreeMap;

use septa_audit::{Edge, EdgeKind, Graph, Node};
use septa_manifest::{AuthMethod, EndpointBackend, FunctionKind, Methods, Paths};
use septa_policy::Policy;
use serde_json::{Value, json};

/// The most nodes a blast radius lists; `count` says how many there are.
pub(crate) const LISTED_REACH: usize = 200;

/// How big a policy the model draws in full. Past either limit it leaves out the edges, the
/// rules per node and the blast radius (`truncated` says so): expanding every pair of
/// functions a wide rule connects grows with their product, and no page draws that anyway.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// Places: the gateway, functions, endpoints and egress destinations.
    pub(crate) places: usize,
    /// Allowed flows between two places, as counted before expanding them.
    pub(crate) edges: usize,
}

impl Limits {
    /// What the dashboard draws.
    pub(crate) const DASHBOARD: Self = Self {
        places: 2_000,
        edges: 20_000,
    };
}

/// The dashboard's model of `policy`, serving as `generation` with manifest hash `policy_hash`.
pub(crate) fn dashboard_model(policy: &Policy, policy_hash: &str, generation: u64) -> Value {
    model_within(policy, policy_hash, generation, Limits::DASHBOARD)
}

/// The model of `policy`, in full when it is within `limits`.
pub(crate) fn model_within(
    policy: &Policy,
    policy_hash: &str,
    generation: u64,
    limits: Limits,
) -> Value {
    let graph = Graph::build(policy);
    let truncated = too_big(policy, &graph, limits);
    let edges = if truncated.is_none() {
        grouped_edges(&graph)
    } else {
        Vec::new()
    };
    let touching = rules_touching(&edges);
    let reach = truncated.is_none().then(|| graph.reach());
    let nodes: Vec<Value> = (0..graph.nodes.len())
        .map(|n| {
            let mut node = describe_node(policy, &graph, n);
            node["rules"] = touching
                .get(&n)
                .map_or_else(|| json!([]), |rules| rules_json(&graph, rules));
            node["blast_radius"] = reach.as_ref().map_or(Value::Null, |reach| {
                let reaches: Vec<&str> = reach
                    .from(n)
                    .take(LISTED_REACH)
                    .map(|r| graph.name(r))
                    .collect();
                json!({ "count": reach.count(n), "reaches": reaches })
            });
            node
        })
        .collect();
    let manifest = policy.manifest();
    let segments: Vec<Value> = manifest
        .segments
        .values()
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
        .collect();
    let routes: Vec<Value> = policy
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
        .collect();
    let edges: Vec<Value> = edges
        .iter()
        .map(|((from, to), rules)| edge_json(policy, &graph, *from, *to, rules))
        .collect();
    json!({
        "version": 1,
        "application": manifest.application.as_str(),
        "policy_hash": policy_hash,
        "generation": generation,
        "truncated": truncated,
        "segments": segments,
        "nodes": nodes,
        "routes": routes,
        "edges": edges,
    })
}

/// Why `policy` is too big to model in full, if it is. The flows are counted from the sizes of
/// each rule's two sides, without expanding them.
fn too_big(policy: &Policy, graph: &Graph, limits: Limits) -> Option<String> {
    let manifest = policy.manifest();
    let side = |selector| graph.select(policy, selector).len();
    let functions = policy.functions().len();
    let audited = policy.functions().iter().filter(|f| f.audit).count();
    let flows = [
        policy.routes().count(),
        manifest
            .allows
            .iter()
            .map(|r| side(&r.from).saturating_mul(side(&r.to)))
            .fold(0, usize::saturating_add),
        manifest
            .egress
            .iter()
            .map(|r| side(&r.from).saturating_mul(r.to.len()))
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

/// The graph's edges, one entry per (from, to) pair with every rule that opens it, in the
/// graph's order.
fn grouped_edges(graph: &Graph) -> Vec<((usize, usize), Vec<&Edge>)> {
    let mut out: Vec<((usize, usize), Vec<&Edge>)> = Vec::new();
    let mut index: BTreeMap<(usize, usize), usize> = BTreeMap::new();
    for edge in graph.edges() {
        let key = (edge.from, edge.to);
        match index.get(&key) {
            Some(&i) => out[i].1.push(edge),
            None => {
                index.insert(key, out.len());
                out.push((key, vec![edge]));
            }
        }
    }
    out
}

/// Per node: (direction, rule) → (kind, the nodes at the other end).
type Touching<'g> = BTreeMap<usize, BTreeMap<(&'static str, &'g str), (EdgeKind, Vec<usize>)>>;

fn rules_touching<'g>(edges: &[((usize, usize), Vec<&'g Edge>)]) -> Touching<'g> {
    let mut touching: Touching<'g> = BTreeMap::new();
    for ((from, to), rules) in edges {
        for rule in rules {
            for (node, direction, peer) in [(*from, "out", *to), (*to, "in", *from)] {
                let entry = touching
                    .entry(node)
                    .or_default()
                    .entry((direction, rule.rule.as_str()))
                    .or_insert_with(|| (rule.kind, Vec::new()));
                if !entry.1.contains(&peer) {
                    entry.1.push(peer);
                }
            }
        }
    }
    touching
}

fn rules_json(
    graph: &Graph,
    rules: &BTreeMap<(&'static str, &str), (EdgeKind, Vec<usize>)>,
) -> Value {
    Value::Array(
        rules
            .iter()
            .map(|((direction, id), (kind, peers))| {
                let peers: Vec<&str> = peers.iter().map(|&p| graph.name(p)).collect();
                json!({ "id": id, "kind": kind, "direction": direction, "peers": peers })
            })
            .collect(),
    )
}

fn describe_node(policy: &Policy, graph: &Graph, n: usize) -> Value {
    let id = graph.name(n);
    match &graph.nodes[n] {
        Node::Gateway => json!({ "id": id, "kind": "gateway", "name": "gateway" }),
        Node::Egress(target) => json!({ "id": id, "kind": "egress", "name": target }),
        Node::Function(f) => {
            let info = policy.function(*f);
            let spec = &info.spec;
            let manifest = policy.manifest();
            let labels: Vec<&str> = manifest.function_labels(spec).map(|l| l.as_str()).collect();
            let routes: Vec<&str> = policy
                .routes()
                .filter(|r| r.function == *f)
                .map(|r| r.id.as_str())
                .collect();
            let mut node = json!({
                "id": id,
                "kind": if spec.is_endpoint() { "endpoint" } else { "function" },
                "name": spec.name.as_str(),
                "segment": spec.placement.segment.as_str(),
                "subnet": spec.placement.subnet.as_str(),
                "tier": spec.subnet_kind.to_string(),
                "labels": labels,
                "groups": names(&spec.groups),
                "mode": if info.audit { "audit" } else { "enforce" },
                "routes": routes,
            });
            if let FunctionKind::Endpoint(backend) = &spec.kind {
                node["backend"] = json!(match backend {
                    EndpointBackend::Embedded => "embedded",
                    EndpointBackend::Redis(_) => "redis",
                    EndpointBackend::Postgres(_) => "postgres",
                });
            }
            node
        }
    }
}

fn edge_json(policy: &Policy, graph: &Graph, from: usize, to: usize, rules: &[&Edge]) -> Value {
    let (from, to) = (graph.name(from), graph.name(to));
    let kind = rules.first().map_or(EdgeKind::Allow, |r| r.kind);
    let rules: Vec<Value> = rules
        .iter()
        .map(|r| {
            json!({
                "id": r.rule,
                "kind": r.kind,
                "methods": methods_json(&r.methods),
                "paths": paths_of(policy, r),
                "conditions": r.conditions,
            })
        })
        .collect();
    json!({ "id": format!("{from} -> {to}"), "from": from, "to": to, "kind": kind, "rules": rules })
}

/// The paths an edge's rule admits, as written; `null` for any.
fn paths_of(policy: &Policy, edge: &Edge) -> Value {
    match edge.kind {
        EdgeKind::Route => policy
            .routes()
            .find(|r| r.id.as_str() == edge.rule)
            .map_or(Value::Null, |r| json!([r.pattern.as_str()])),
        EdgeKind::Allow => policy
            .manifest()
            .allows
            .iter()
            .find(|a| a.id.as_str() == edge.rule)
            .map_or(Value::Null, |a| match &a.paths {
                Paths::Any => Value::Null,
                Paths::Only(list) => json!(list.iter().map(|p| &p.text).collect::<Vec<_>>()),
            }),
        EdgeKind::Egress | EdgeKind::Audit => Value::Null,
    }
}

fn methods_json(methods: &Methods) -> Value {
    match methods {
        Methods::Any => Value::Null,
        Methods::Only(list) => json!(list),
    }
}

fn mode_text(mode: septa_manifest::Mode) -> &'static str {
    match mode {
        septa_manifest::Mode::Enforce => "enforce",
        septa_manifest::Mode::Audit => "audit",
    }
}

fn names(list: &[septa_manifest::Name]) -> Vec<&str> {
    list.iter().map(|n| n.as_str()).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::path::Path;

    use super::*;

    fn shop() -> Value {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/shop");
        let policy = crate::check::load_policy(&dir).unwrap();
        dashboard_model(&policy, "abc123", 7)
    }

    fn node<'m>(model: &'m Value, id: &str) -> &'m Value {
        model["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["id"] == id)
            .unwrap_or_else(|| panic!("no node `{id}` in {model:#}"))
    }

    fn edge<'m>(model: &'m Value, from: &str, to: &str) -> Option<&'m Value> {
        model["edges"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["from"] == from && e["to"] == to)
    }

    #[test]
    fn every_segment_subnet_function_and_endpoint_of_the_shop_is_placed() {
        let model = shop();
        assert_eq!(model["version"], 1);
        assert_eq!(model["application"], "shop");
        assert_eq!(model["policy_hash"], "abc123");
        assert_eq!(model["generation"], 7);
        let segments: Vec<&str> = model["segments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        assert_eq!(segments, ["catalog", "data", "edge", "payments"]);
        let payments = &model["segments"][3];
        assert_eq!(payments["labels"], json!(["pci"]));
        assert_eq!(
            payments["subnets"],
            json!([{ "name": "app", "tier": "private" }, { "name": "vault", "tier": "isolated" }])
        );
        for (id, segment, subnet, tier) in [
            ("function:storefront", "edge", "web", "public"),
            ("function:relay", "edge", "web", "public"),
            ("function:catalog", "catalog", "app", "private"),
            ("function:checkout", "payments", "app", "private"),
            ("function:ledger", "payments", "vault", "isolated"),
            ("endpoint:carts", "data", "store", "isolated"),
        ] {
            let n = node(&model, id);
            assert_eq!(
                (&n["segment"], &n["subnet"], &n["tier"]),
                (&json!(segment), &json!(subnet), &json!(tier)),
                "{id}"
            );
            assert_eq!(n["mode"], "enforce");
        }
        let carts = node(&model, "endpoint:carts");
        assert_eq!(carts["kind"], "endpoint");
        assert_eq!(carts["backend"], "embedded");
        assert_eq!(carts["labels"], json!(["pii"]));
        let checkout = node(&model, "function:checkout");
        assert_eq!(checkout["groups"], json!(["pci-app"]));
        assert_eq!(checkout["labels"], json!(["pci"]));
        assert_eq!(node(&model, "gateway")["kind"], "gateway");
        let destination = node(&model, "https://api.payments.example:443");
        assert_eq!(destination["kind"], "egress");
        assert_eq!(
            node(&model, "function:storefront")["routes"],
            json!(["home", "api", "orders", "partner-products"])
        );
    }

    #[test]
    fn a_rule_is_on_its_edge_with_its_methods_and_paths() {
        let model = shop();
        let charge = edge(&model, "function:storefront", "function:checkout").unwrap();
        assert_eq!(charge["id"], "function:storefront -> function:checkout");
        assert_eq!(charge["kind"], "allow");
        assert_eq!(
            charge["rules"],
            json!([{
                "id": "storefront-to-checkout",
                "kind": "allow",
                "methods": ["POST"],
                "paths": ["/charge"],
                "conditions": "POST /charge",
            }])
        );
        let home = edge(&model, "gateway", "function:storefront").unwrap();
        assert_eq!(home["kind"], "route");
        let ids: Vec<&str> = home["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["home", "api", "orders", "partner-products"]);
        assert_eq!(home["rules"][1]["paths"], json!(["/api/..."]));
        let egress = edge(
            &model,
            "function:checkout",
            "https://api.payments.example:443",
        )
        .unwrap();
        assert_eq!(egress["kind"], "egress");
        assert_eq!(egress["rules"][0]["id"], "checkout-to-processor");
        // Nothing crosses a boundary without a rule.
        assert!(edge(&model, "gateway", "function:ledger").is_none());
        assert!(edge(&model, "function:storefront", "function:ledger").is_none());
        assert!(
            edge(
                &model,
                "function:ledger",
                "https://api.payments.example:443"
            )
            .is_none()
        );
    }

    #[test]
    fn each_node_names_the_rules_that_touch_it_and_its_blast_radius() {
        let model = shop();
        let checkout = node(&model, "function:checkout");
        let rules = checkout["rules"].as_array().unwrap();
        assert!(rules.contains(&json!({
            "id": "storefront-to-checkout", "kind": "allow", "direction": "in",
            "peers": ["function:storefront"],
        })));
        assert!(rules.contains(&json!({
            "id": "checkout-to-ledger", "kind": "allow", "direction": "out",
            "peers": ["function:ledger"],
        })));
        assert!(rules.contains(&json!({
            "id": "checkout-to-processor", "kind": "egress", "direction": "out",
            "peers": ["https://api.payments.example:443"],
        })));
        assert_eq!(
            checkout["blast_radius"],
            json!({ "count": 2, "reaches": ["function:ledger", "https://api.payments.example:443"] })
        );
        // The ledger is isolated and calls nobody.
        assert_eq!(
            node(&model, "function:ledger")["blast_radius"],
            json!({ "count": 0, "reaches": [] })
        );
        // The internet reaches, through storefront and checkout, the ledger too.
        let gateway = &node(&model, "gateway")["blast_radius"]["reaches"];
        assert!(
            gateway
                .as_array()
                .unwrap()
                .contains(&json!("function:ledger"))
        );
    }

    #[test]
    fn a_policy_too_big_to_draw_keeps_its_places_and_says_what_is_left_out() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/shop");
        let policy = crate::check::load_policy(&dir).unwrap();
        assert_eq!(shop()["truncated"], Value::Null);
        let small = Limits {
            places: 100,
            edges: 5,
        };
        let model = model_within(&policy, "h", 1, small);
        let why = model["truncated"].as_str().unwrap();
        assert!(why.contains("8 places and up to 11 allowed flows"), "{why}");
        assert!(model["edges"].as_array().unwrap().is_empty());
        let checkout = node(&model, "function:checkout");
        assert_eq!(checkout["segment"], "payments");
        assert_eq!(checkout["rules"], json!([]));
        assert_eq!(checkout["blast_radius"], Value::Null);
        assert_eq!(model["segments"].as_array().unwrap().len(), 4);
    }

    #[test]
    fn audit_mode_opens_edges_without_a_rule() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("septa.toml"),
            r#"septa_manifest_version = 1
[application]
name = "audited"
[segment.a]
subnets = { web = "public" }
mode = "audit"
[segment.b]
subnets = { app = "private" }
[function.front]
source = "front.wasm"
placement = "a/web"
[function.back]
source = "back.wasm"
placement = "b/app"
"#,
        )
        .unwrap();
        let policy = crate::check::load_policy(dir.path()).unwrap();
        let model = dashboard_model(&policy, "h", 1);
        assert_eq!(model["segments"][0]["mode"], "audit");
        assert_eq!(node(&model, "function:front")["mode"], "audit");
        let open = edge(&model, "function:front", "function:back").unwrap();
        assert_eq!(open["kind"], "audit");
        assert_eq!(open["rules"][0]["methods"], Value::Null);
        assert!(model["routes"].as_array().unwrap().is_empty());
    }
}
