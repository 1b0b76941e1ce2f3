//! The dashboard's model of the compiled policy (`GET /model` on the admin listener): every
//! place of the example shop where the manifest puts it, each flow on its edge with its rules,
//! each node's rules and blast radius, what a policy too big to draw keeps, and the shop's
//! placement on its three nodes (or none, without `[node.*]` tables).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use septa_audit::model::{Limits, dashboard_model, model_within};
use septa_policy::Policy;
use serde_json::{Value, json};

/// The example shop's compiled policy.
fn shop_policy() -> Policy {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/shop");
    Policy::compile(septa_manifest::load(&dir).unwrap()).unwrap()
}

fn shop() -> Value {
    dashboard_model(&shop_policy(), "abc123", 7)
}

/// The example shop's manifest with its `[cluster]` and `[node.*]` tables cut off: one process.
fn shop_in_one_process() -> Value {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/shop");
    let text = std::fs::read_to_string(dir.join("septa.toml")).unwrap();
    let (single, cluster) = text.split_once("\n[cluster]").unwrap();
    assert!(cluster.contains("[node.pay-1]"), "{cluster}");
    let manifest = septa_manifest::parse(&dir.join("septa.toml"), single).unwrap();
    dashboard_model(&Policy::compile(manifest).unwrap(), "abc123", 7)
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
    let policy = shop_policy();
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
    let manifest = septa_manifest::parse(
        Path::new("septa.toml"),
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
    let policy = Policy::compile(manifest).unwrap();
    let model = dashboard_model(&policy, "h", 1);
    assert_eq!(model["segments"][0]["mode"], "audit");
    assert_eq!(node(&model, "function:front")["mode"], "audit");
    let open = edge(&model, "function:front", "function:back").unwrap();
    assert_eq!(open["kind"], "audit");
    assert_eq!(open["rules"][0]["methods"], Value::Null);
    assert!(model["routes"].as_array().unwrap().is_empty());
}

#[test]
fn the_cluster_says_what_each_node_runs_and_each_place_where_it_runs() {
    let model = shop();
    assert_eq!(
        model["cluster"],
        json!({
            "trust_domain": "shop.example",
            "nodes": [
                { "name": "edge-1",
                  "hosts": ["function:catalog", "function:relay", "function:storefront"] },
                { "name": "pay-1",
                  "hosts": ["endpoint:carts", "function:checkout", "function:ledger"] },
                { "name": "pay-2", "hosts": ["function:checkout", "function:ledger"] },
            ],
        })
    );
    for (id, nodes) in [
        ("gateway", json!(["edge-1", "pay-1", "pay-2"])),
        ("function:storefront", json!(["edge-1"])),
        ("function:checkout", json!(["pay-1", "pay-2"])),
        ("function:ledger", json!(["pay-1", "pay-2"])),
        ("endpoint:carts", json!(["pay-1"])),
    ] {
        assert_eq!(node(&model, id)["nodes"], nodes, "{id}");
    }
    // A destination outside runs on no node of ours.
    assert!(
        node(&model, "https://api.payments.example:443")
            .get("nodes")
            .is_none()
    );
}

#[test]
fn an_edge_lists_the_calls_it_makes_between_nodes() {
    let model = shop();
    let crosses = |from: &str, to: &str| edge(&model, from, to).unwrap()["crosses_nodes"].clone();
    // Storefront runs on edge-1 only; checkout on both payment nodes, either of which may answer.
    assert_eq!(
        crosses("function:storefront", "function:checkout"),
        json!([{ "from": "edge-1", "to": ["pay-1", "pay-2"] }])
    );
    assert_eq!(
        crosses("function:storefront", "endpoint:carts"),
        json!([{ "from": "edge-1", "to": ["pay-1"] }])
    );
    // Every node runs a gateway: the payment nodes forward the storefront's routes to edge-1.
    assert_eq!(
        crosses("gateway", "function:storefront"),
        json!([{ "from": "pay-1", "to": ["edge-1"] }, { "from": "pay-2", "to": ["edge-1"] }])
    );
    // Every node that runs the source runs the destination too: nothing goes between nodes.
    assert_eq!(
        crosses("function:storefront", "function:catalog"),
        json!([])
    );
    assert_eq!(crosses("function:checkout", "function:ledger"), json!([]));
    // Egress leaves from the node that runs the function.
    assert_eq!(
        crosses("function:checkout", "https://api.payments.example:443"),
        json!([])
    );
}

#[test]
fn without_node_tables_there_is_no_cluster_and_nothing_crosses() {
    let model = shop_in_one_process();
    assert_eq!(model["cluster"], Value::Null);
    for n in model["nodes"].as_array().unwrap() {
        if n["kind"] != "egress" {
            assert_eq!(n["nodes"], json!([]), "{n}");
        }
    }
    let edges = model["edges"].as_array().unwrap();
    assert_eq!(edges.len(), shop()["edges"].as_array().unwrap().len());
    for e in edges {
        assert_eq!(e["crosses_nodes"], json!([]), "{e}");
    }
}
