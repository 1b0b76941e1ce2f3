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

const CLUSTER: &str = r#"
[function.help]
source = "h.wasm"
placement = "edge/web"
[[route]]
id = "home"
path = "/"
methods = ["GET"]
function = "web"
[[route]]
id = "help"
path = "/help"
methods = ["GET"]
function = "help"
[cluster]
trust_domain = "shop.example"
[node.edge-1]
hosts = ["function:web"]
[node.pay-1]
hosts = ["segment:pay", "function:help"]
"#;

fn refusal(result: Result<impl std::fmt::Debug, septa_policy::Decision>) -> String {
    match result {
        Ok(ok) => panic!("expected a refusal, got {ok:?}"),
        Err(decision) => {
            assert!(!decision.verdict.permits());
            decision.reason.to_string()
        }
    }
}

#[test]
fn a_peer_speaks_only_for_what_the_policy_places_on_it() {
    let policy = compile(&format!("{PLACES}{CLUSTER}"));
    let id = |name| policy.function_id(name).unwrap();
    // edge-1 runs web: it may call checkout on pay-1 for web, and forward gateway requests.
    assert_eq!(
        policy.decide_peer(
            "pay-1",
            "shop.example",
            "edge-1",
            "function:web",
            id("checkout")
        ),
        Ok(septa_policy::PeerCaller::Function(id("web")))
    );
    assert_eq!(
        policy.decide_peer("pay-1", "shop.example", "edge-1", "gateway", id("checkout")),
        Ok(septa_policy::PeerCaller::Gateway)
    );
    // It cannot speak for ledger, which runs on pay-1 only: a spoofing attempt.
    let spoof = policy.decide_peer(
        "pay-1",
        "shop.example",
        "edge-1",
        "function:ledger",
        id("checkout"),
    );
    assert!(refusal(spoof).contains("spoofing attempt"));
    // Nor for an endpoint, nor for a name that is no function.
    let endpoint = policy.decide_peer(
        "pay-1",
        "shop.example",
        "pay-1",
        "endpoint:cache",
        id("checkout"),
    );
    assert!(refusal(endpoint).contains("does not place on it"));
    // A node of another trust domain, or none of this cluster, is refused before any rule.
    let other = policy.decide_peer(
        "pay-1",
        "evil.example",
        "edge-1",
        "function:web",
        id("checkout"),
    );
    assert!(refusal(other).contains("not in trust domain `shop.example`"));
    let stranger = policy.decide_peer(
        "pay-1",
        "shop.example",
        "edge-9",
        "function:web",
        id("checkout"),
    );
    assert!(refusal(stranger).contains("`edge-9` is not a node"));
    // A call for a function the receiving node does not run is refused there.
    let elsewhere = policy.decide_peer(
        "edge-1",
        "shop.example",
        "pay-1",
        "function:checkout",
        id("ledger"),
    );
    assert!(refusal(elsewhere).contains("does not run on node `edge-1`"));
}

#[test]
fn a_forwarded_gateway_request_is_served_only_by_the_route_it_was_forwarded_for() {
    let policy = compile(&format!("{PLACES}{CLUSTER}"));
    let id = |name| policy.function_id(name).unwrap();
    let route = |name: &str| policy.routes().find(|r| r.id.as_str() == name).unwrap();
    assert!(
        policy
            .decide_forwarded_route("pay-1", id("help"), route("help"))
            .is_ok()
    );
    // Forwarded "for help", the request matched the route to web here: refused, so a peer
    // cannot reach a function through a route it did not name.
    let respelled = policy.decide_forwarded_route("pay-1", id("help"), route("home"));
    assert!(refusal(respelled).contains("takes route `home` to `function:web`"));
    // Nor can a node be asked to forward again what it does not run.
    let not_here = policy.decide_forwarded_route("pay-1", id("web"), route("home"));
    assert!(refusal(not_here).contains("does not run on node `pay-1`"));
}
