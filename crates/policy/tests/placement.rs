//! Which node hosts what: the compiled placement agrees with the manifest's `[node.*]` selectors,
//! and a manifest without nodes has no placement at all.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use septa_policy::Policy;

fn compile(text: &str) -> Policy {
    let manifest = septa_manifest::parse(Path::new("septa.toml"), text).unwrap();
    Policy::compile(manifest).unwrap()
}

const PLACES: &str = r#"septa_manifest_version = 1
[application]
name = "t"
[segment.edge]
subnets = { web = "public" }
[segment.pay]
subnets = { app = "private", vault = "isolated" }
labels = ["pci"]
[function.web]
source = "w.wasm"
placement = "edge/web"
[function.checkout]
source = "c.wasm"
placement = "pay/app"
[function.ledger]
source = "l.wasm"
placement = "pay/vault"
[endpoint.cache]
placement = "pay/app"
backend = "redis"
url = "redis://127.0.0.1:6379"
"#;

fn hosting(policy: &Policy, function: &str) -> Vec<String> {
    let id = policy.function_id(function).unwrap();
    let placement = policy.placement().unwrap();
    placement.hosting(id).map(|n| n.to_string()).collect()
}

#[test]
fn each_function_is_hosted_where_its_selectors_say() {
    let policy = compile(&format!(
        r#"{PLACES}
[cluster]
trust_domain = "shop.example"
[node.edge-1]
hosts = ["segment:edge"]
[node.pay-1]
hosts = ["label:pci"]
[node.pay-2]
hosts = ["subnet:pay/app", "function:web"]
"#
    ));
    let placement = policy.placement().unwrap();
    assert_eq!(placement.trust_domain().as_str(), "shop.example");
    assert_eq!(
        placement.trust_domain().node_id("pay-1"),
        "spiffe://shop.example/node/pay-1"
    );
    assert_eq!(hosting(&policy, "web"), ["edge-1", "pay-2"]);
    assert_eq!(hosting(&policy, "checkout"), ["pay-1", "pay-2"]);
    assert_eq!(hosting(&policy, "ledger"), ["pay-1"]);
    assert_eq!(hosting(&policy, "cache"), ["pay-1", "pay-2"]);
    let ledger = policy.function_id("ledger").unwrap();
    assert!(placement.hosts("pay-1", ledger));
    assert!(!placement.hosts("pay-2", ledger));
    assert!(!placement.hosts("nobody", ledger));
    let on_pay2: Vec<&str> = placement
        .hosted_by("pay-2")
        .map(|id| policy.function(id).spec.name.as_str())
        .collect();
    assert_eq!(on_pay2, ["cache", "checkout", "web"]);
    assert!(placement.has_node("edge-1") && !placement.has_node("edge-2"));
}

#[test]
fn without_nodes_there_is_no_placement() {
    assert!(compile(PLACES).placement().is_none());
}
