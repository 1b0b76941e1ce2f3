//! Events an AWS service delivers to `septa lambda`: an API Gateway request must take a route to
//! the function it was delivered to; a VPC Lattice call is a mesh call from the function its
//! verified role session names, and from nothing else.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use std::net::IpAddr;

use septa_policy::{
    EventRefusal, FunctionId, IngressDecision, IngressRequest, NoFacts, Policy, Reason, Verdict,
};

fn compile(text: &str) -> Policy {
    let manifest = septa_manifest::parse(Path::new("septa.toml"), text).unwrap();
    Policy::compile(manifest).unwrap()
}

const APP: &str = r#"septa_manifest_version = 1
[application]
name = "shop"
[segment.edge]
subnets = { web = "public" }
[function.web]
source = "w.wasm"
placement = "edge/web"
[function.api]
source = "a.wasm"
placement = "edge/web"
[function.shop-api]
source = "s.wasm"
placement = "edge/web"
[endpoint.cache]
placement = "edge/web"
[[route]]
id = "home"
path = "/..."
function = "web"
[[route]]
id = "api"
path = "/api/..."
methods = ["GET"]
function = "api"
[[allow]]
id = "web-to-api"
from = "function:web"
to = "function:api"
methods = ["GET"]
paths = ["/v1/..."]
"#;

/// A request from 203.0.113.9 carrying no credential, delivered to `function`.
fn gateway<'p, 'a>(
    policy: &'p Policy,
    function: FunctionId,
    method: &'a str,
    path: &'a str,
) -> IngressDecision<'p, 'a> {
    let request = IngressRequest {
        method,
        path,
        client: IpAddr::from([203, 0, 113, 9]),
        declared_length: None,
        probe: false,
    };
    policy.decide_gateway_event(function, &request, &mut NoFacts)
}

fn id(policy: &Policy, name: &str) -> FunctionId {
    policy.function_id(name).unwrap()
}

#[test]
fn a_gateway_event_must_take_a_route_to_its_function() {
    let policy = compile(APP);
    let api = id(&policy, "api");
    let ok = gateway(&policy, api, "GET", "/api/%6Frders");
    assert_eq!(ok.decision.verdict, Verdict::Allow);
    assert_eq!(ok.path.unwrap().as_str(), "/api/orders");
    // A path the gateway refuses is refused here too.
    let dots = gateway(&policy, api, "GET", "/api/items/../orders");
    assert!(matches!(dots.decision.reason, Reason::InvalidPath(_)));

    let elsewhere = gateway(&policy, api, "GET", "/about");
    assert_eq!(elsewhere.decision.verdict, Verdict::Deny);
    assert_eq!(
        elsewhere.decision.reason,
        Reason::Event(EventRefusal::RoutedElsewhere {
            route: "home".to_owned(),
            function: "function:web".to_owned(),
            delivered_to: "function:api".to_owned(),
        })
    );
    let method = gateway(&policy, api, "DELETE", "/api/orders");
    assert!(matches!(
        method.decision.reason,
        Reason::RouteMethodNotAllowed { .. }
    ));
}

#[test]
fn a_lattice_event_is_a_mesh_call_from_the_function_its_session_names() {
    let policy = compile(APP);
    let api = id(&policy, "api");
    let principal = "arn:aws:sts::1:assumed-role/r/shop-web";
    // As the export names it, and by its bare name.
    for session in ["shop-web", "web"] {
        let decided = policy.decide_lattice_event(Some(session), principal, api, "GET", "/v1/x");
        assert_eq!(decided.decision.verdict, Verdict::Allow, "{session}");
        assert_eq!(decided.caller, Some(id(&policy, "web")));
    }
    // `shop-api` is the export's name for `api`, even beside a function called `shop-api`,
    // whose Lambda function the export names `shop-shop-api`.
    let decided = policy.decide_lattice_event(Some("shop-api"), principal, api, "GET", "/v1/x");
    assert_eq!(decided.caller, Some(id(&policy, "api")));
    let decided = policy.decide_lattice_event(Some("shop-shop-api"), principal, api, "GET", "/");
    assert_eq!(decided.caller, Some(id(&policy, "shop-api")));

    let refused = policy.decide_lattice_event(Some("web"), principal, api, "POST", "/v1/x");
    assert_eq!(refused.decision.verdict, Verdict::Deny);
    for session in [None, Some("stranger"), Some("cache"), Some("shop-cache")] {
        let decided = policy.decide_lattice_event(session, principal, api, "GET", "/v1/x");
        assert_eq!(decided.decision.verdict, Verdict::Deny, "{session:?}");
        assert_eq!(decided.caller, None);
        assert!(
            decided
                .decision
                .reason
                .to_string()
                .contains("is no function of this application"),
            "{}",
            decided.decision.reason
        );
    }
}
