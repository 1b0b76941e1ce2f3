//! The dashboard's model of the compiled policy (`GET /model` on the admin listener): every
//! place of the example shop where the manifest puts it, each flow on its edge with its rules,
//! each node's rules and blast radius, and what a policy too big to draw keeps.

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
