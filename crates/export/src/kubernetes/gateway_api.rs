//! Routes as Gateway API objects: one `Gateway` in its own namespace, and an `HTTPRoute` per
//! route in its function's namespace, matching the route's methods and path and sending the
//! request to the cell's Service, whose `septa node` authenticates, limits and decides it again.

use septa_manifest::Methods;
use serde_json::{Value, json};

use super::names::{GATEWAY_NAMESPACE, GATEWAY_PORT, metadata};
use super::routes_by_cell;
use crate::truth::TruthTable;

/// The name of the exported `Gateway`.
pub(crate) const GATEWAY_NAME: &str = "septa";

/// A namespace of the export's own: the `Gateway`'s, or the control plane's.
pub(crate) fn namespace(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": { "name": name, "labels": { "app.kubernetes.io/managed-by": "septa" } },
    })
}

/// The `Gateway`, of class `class` (`istio` or `cilium`).
pub(crate) fn gateway(class: &str) -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": metadata(GATEWAY_NAMESPACE, GATEWAY_NAME),
        "spec": {
            "gatewayClassName": class,
            "listeners": [{
                "name": "http",
                "protocol": "HTTP",
                "port": 80,
                "allowedRoutes": { "namespaces": { "from": "All" } },
            }],
        },
    })
}

/// A Gateway API path match for a septa route pattern: exact, a prefix for `/...`, a regular
/// expression for `{param}` segments.
fn path_match(pattern: &str) -> Value {
    if let Some(prefix) = pattern.strip_suffix("/...")
        && !prefix.contains('{')
    {
        let prefix = if prefix.is_empty() { "/" } else { prefix };
        return json!({ "type": "PathPrefix", "value": prefix });
    }
    if pattern.contains('{') {
        return json!({ "type": "RegularExpression", "value": format!("^{}$", super::paths::cilium_regex(pattern)) });
    }
    json!({ "type": "Exact", "value": pattern })
}

/// One `HTTPRoute` per route.
pub(crate) fn http_routes(truth: &TruthTable<'_>) -> Vec<Value> {
    let mut out = Vec::new();
    for (cell_id, routes) in routes_by_cell(truth) {
        let cell = truth.cells().get(cell_id);
        for route in routes {
            let path = path_match(route.pattern.as_str());
            let matches: Vec<Value> = match &route.methods {
                Methods::Any => vec![json!({ "path": path })],
                Methods::Only(list) => list
                    .iter()
                    .map(|m| json!({ "path": path, "method": m }))
                    .collect(),
            };
            out.push(json!({
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "HTTPRoute",
                "metadata": metadata(cell.segment.as_str(), &format!("route-{}", route.id)),
                "spec": {
                    "parentRefs": [{ "name": GATEWAY_NAME, "namespace": GATEWAY_NAMESPACE }],
                    "rules": [{
                        "matches": matches,
                        "backendRefs": [{ "name": cell.name.as_str(), "port": GATEWAY_PORT }],
                    }],
                },
            }));
        }
    }
    out
}
