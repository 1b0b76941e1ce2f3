//! What the policy says each selector selects and each rule connects: the same functions
//! [`Selector::selects`] names, with endpoints never on the calling side — in the policy's
//! selection, in its view of the rules and in its decisions alike.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use septa_manifest::{EgressScheme, Selector};
use septa_policy::{EgressHost, FunctionId, Policy};

fn compile(text: &str) -> Policy {
    let manifest = septa_manifest::parse(Path::new("septa.toml"), text).unwrap();
    Policy::compile(manifest).unwrap()
}

fn id(policy: &Policy, identity: &str) -> FunctionId {
    policy
        .functions()
        .iter()
        .find(|f| f.identity == identity)
        .unwrap()
        .id
}

#[test]
fn agrees_with_the_one_definition_of_a_selector() {
    let policy = compile(
        r#"septa_manifest_version = 1
[application]
name = "t"
[segment.a]
subnets = { web = "public", app = "private" }
labels = ["pci"]
[segment.b]
subnets = { app = "private" }
[group.g]
[group.h]
[function.f1]
source = "f.wasm"
placement = "a/web"
groups = ["g"]
labels = ["pci", "ops"]
[function.f2]
source = "f.wasm"
placement = "a/app"
groups = ["g", "h"]
[function.f3]
source = "f.wasm"
placement = "b/app"
labels = ["ops"]
[endpoint.store]
placement = "b/app"
"#,
    );
    let manifest = policy.manifest();
    for s in [
        "gateway",
        "segment:a",
        "segment:b",
        "subnet:a/web",
        "subnet:a/app",
        "subnet:b/app",
        "group:g",
        "group:h",
        "function:f1",
        "function:f3",
        "function:store",
        "endpoint:store",
        "endpoint:f1",
        "label:pci",
        "label:ops",
    ] {
        let selector = Selector::parse(s).unwrap();
        let scanned: Vec<FunctionId> = policy
            .functions()
            .iter()
            .filter(|f| selector.selects(&manifest.segments, &f.spec))
            .map(|f| f.id)
            .collect();
        assert_eq!(policy.selected(&selector), scanned, "{s}");
        let callers: Vec<FunctionId> = scanned
            .iter()
            .copied()
            .filter(|&f| !policy.function(f).spec.is_endpoint())
            .collect();
        assert_eq!(policy.sources(&selector), callers, "{s}");
    }
}

#[test]
fn an_endpoint_is_never_the_source_of_a_flow_in_the_selection_the_rules_or_the_decisions() {
    let policy = compile(
        r#"septa_manifest_version = 1
[application]
name = "endpoints"
[segment.data]
subnets = { app = "private" }
[segment.edge]
subnets = { web = "public" }
[function.worker]
source = "worker.wasm"
placement = "data/app"
[function.front]
source = "front.wasm"
placement = "edge/web"
[endpoint.kv]
placement = "data/app"
[[allow]]
id = "data-to-front"
from = "segment:data"
to = "function:front"
[[egress]]
id = "data-out"
from = "segment:data"
to = ["https://api.example.com:443"]
"#,
    );
    let (worker, front, kv) = (
        id(&policy, "function:worker"),
        id(&policy, "function:front"),
        id(&policy, "endpoint:kv"),
    );
    let data = Selector::parse("segment:data").unwrap();
    assert_eq!(
        policy.selected(&data),
        [kv, worker],
        "in id order, which is name order"
    );
    assert_eq!(policy.sources(&data), [worker]);
    assert!(!policy.reaches_outside(kv));

    let allow = policy.allow_rules().next().unwrap();
    assert_eq!(
        (allow.sources, allow.destinations),
        (&[worker][..], &[front][..])
    );
    let egress = policy.egress_rules().next().unwrap();
    assert_eq!(egress.sources, [worker]);

    assert!(
        policy
            .decide_mesh(worker, front, "GET", "/")
            .verdict
            .permits()
    );
    assert!(!policy.decide_mesh(kv, front, "GET", "/").verdict.permits());
    assert!(policy.mesh_edges().iter().all(|e| e.from != kv));
    let out = |f| {
        let host = EgressHost::Name("api.example.com");
        policy
            .decide_egress(f, EgressScheme::Https, host, 443)
            .verdict
    };
    assert!(out(worker).permits());
    assert!(!out(kv).permits());
    assert!(policy.egress_edges().iter().all(|e| e.from != kv));
}

#[test]
fn every_rule_says_where_it_is_declared() {
    let policy = compile(
        r#"septa_manifest_version = 1
[application]
name = "declared"
[segment.edge]
subnets = { web = "public" }
[function.front]
source = "front.wasm"
placement = "edge/web"
[[route]]
id = "home"
path = "/"
function = "front"
[[allow]]
id = "self"
from = "function:front"
to = "function:front"
paths = ["/a/{id}", "/b/..."]
[[egress]]
id = "out"
from = "function:front"
to = ["https://api.example.com:443"]
"#,
    );
    let allow = policy.allow_rules().next().unwrap();
    assert_eq!(allow.id.as_str(), "self");
    assert_eq!(allow.location.line, 13);
    let paths: Vec<&str> = allow.paths.unwrap().iter().map(|p| p.as_str()).collect();
    assert_eq!(paths, ["/a/{id}", "/b/..."]);
    let egress = policy.egress_rules().next().unwrap();
    assert_eq!((egress.id.as_str(), egress.location.line), ("out", 18));
    let route = policy.routes().next().unwrap();
    let at = policy.declared_at(&septa_policy::RuleId::Route(route.id.clone()));
    assert_eq!(at.map(|l| l.line), Some(9));
}
