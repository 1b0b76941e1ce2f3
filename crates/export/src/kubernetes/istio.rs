//! The `istio` profile: mutual TLS required in every namespace, an allow-nothing
//! AuthorizationPolicy plus one ALLOW per allow rule and callee cell (principals from the
//! callers' ServiceAccounts, on the mesh port at L4), one ALLOW per route from the gateway (with
//! `requestPrincipals` and claim conditions for JWT routes, whose issuers get a
//! RequestAuthentication), a ServiceEntry per egress host with a REGISTRY_ONLY Sidecar per cell,
//! and rate limits as an Envoy local rate limit.

use std::collections::{BTreeMap, BTreeSet};

use septa_manifest::{AuthMethod, ClaimValue, HostPattern, JwksSource, Methods};
use septa_policy::{CompiledRoute, Policy};
use serde_json::{Value, json};

use super::names::{
    CONTROL_NAMESPACE, GATEWAY_PORT, MESH_PORT, cell_selector, metadata, principal,
};
use super::paths::istio_paths;
use super::{ExportError, routes_by_cell};
use crate::truth::{CellId, TruthTable};

/// The ServiceAccount Istio gives the pods of the Gateway API `Gateway` named `septa`.
pub(crate) const GATEWAY_PRINCIPAL: &str = "cluster.local/ns/septa-gateway/sa/septa-istio";

fn object(api: &str, kind: &str, namespace: &str, name: &str, spec: Value) -> Value {
    json!({ "apiVersion": api, "kind": kind, "metadata": metadata(namespace, name), "spec": spec })
}

/// PeerAuthentication STRICT and the allow-nothing AuthorizationPolicy of a namespace.
pub(crate) fn namespace_baseline(namespace: &str) -> Vec<Value> {
    vec![
        object(
            "security.istio.io/v1",
            "PeerAuthentication",
            namespace,
            "default",
            json!({ "mtls": { "mode": "STRICT" } }),
        ),
        object(
            "security.istio.io/v1",
            "AuthorizationPolicy",
            namespace,
            "allow-nothing",
            json!({}),
        ),
    ]
}

/// An operation admitting `methods` on `paths` at `port`.
pub(crate) fn operation(methods: &Methods, paths: Option<&[String]>, port: u16) -> Value {
    let mut op = json!({ "ports": [port.to_string()] });
    if let Methods::Only(list) = methods {
        op["methods"] = json!(list);
    }
    if let Some(paths) = paths {
        let spelled: BTreeSet<String> = paths.iter().flat_map(|p| istio_paths(p)).collect();
        op["paths"] = json!(spelled);
    }
    op
}

/// One ALLOW per (allow rule, callee cell): the callers' principals on the mesh port, without
/// methods or paths.
///
/// The nodes speak their own mutual TLS on the mesh port (it is the node's certificate that
/// tells the callee which node calls), so the sidecars see TLS there, not HTTP. An ALLOW rule
/// with HTTP fields never matches TCP traffic in Istio: exported with the rule's methods and
/// paths, it would refuse every call it claims to admit. At L4 it admits exactly the callers'
/// ServiceAccounts, and the callee's `septa node` decides methods and paths (`l7-in-septa-mtls`).
pub(crate) fn mesh_allows(truth: &TruthTable<'_>) -> Vec<Value> {
    let cells = truth.cells();
    // (callee cell, rule) -> (caller cells, methods, paths)
    let mut by_rule: BTreeMap<(CellId, String), BTreeSet<CellId>> = BTreeMap::new();
    for (from, to, access) in truth.flows() {
        if from == to {
            continue;
        }
        for a in access {
            by_rule
                .entry((to, a.rule.as_str().to_owned()))
                .or_default()
                .insert(from);
        }
    }
    by_rule
        .into_iter()
        .map(|((to, rule), callers)| {
            let callee = cells.get(to);
            let principals: Vec<String> =
                callers.iter().map(|&c| principal(cells.get(c))).collect();
            object(
                "security.istio.io/v1",
                "AuthorizationPolicy",
                callee.segment.as_str(),
                &format!("allow-{rule}-to-{}", callee.name),
                json!({
                    "selector": { "matchLabels": cell_selector(callee) },
                    "action": "ALLOW",
                    "rules": [{
                        "from": [{ "source": { "principals": principals } }],
                        "to": [{ "operation": operation(&Methods::Any, None, MESH_PORT) }],
                    }],
                }),
            )
        })
        .collect()
}

/// One ALLOW per route from the gateway's pods into its function's cell; JWT routes also need
/// a verified token of their issuer and its claims.
pub(crate) fn route_allows(truth: &TruthTable<'_>) -> Vec<Value> {
    let mut out = Vec::new();
    for (cell_id, routes) in routes_by_cell(truth) {
        let cell = truth.cells().get(cell_id);
        for route in routes {
            let paths = vec![route.pattern.as_str().to_owned()];
            let mut source = json!({ "principals": [GATEWAY_PRINCIPAL] });
            let mut when = Vec::new();
            if let Some(auth) = &route.auth
                && let AuthMethod::Jwt(issuer) = &auth.method
            {
                if let Some(jwt) = truth
                    .policy()
                    .jwt_issuers()
                    .iter()
                    .find(|i| &i.name == issuer)
                {
                    source["requestPrincipals"] = json!([format!("{}/*", jwt.issuer)]);
                }
                for scope in &auth.scopes {
                    when.push(json!({ "key": "request.auth.claims[scope]", "values": [scope] }));
                }
                for claim in &auth.claims {
                    let values: Vec<String> = claim
                        .any_of
                        .iter()
                        .map(|v| match v {
                            ClaimValue::String(s) => s.clone(),
                            other => other.to_string(),
                        })
                        .collect();
                    when.push(json!({ "key": format!("request.auth.claims[{}]", claim.claim), "values": values }));
                }
            }
            let mut rule = json!({
                "from": [{ "source": source }],
                "to": [{ "operation": operation(&route.methods, Some(&paths), GATEWAY_PORT) }],
            });
            if !when.is_empty() {
                rule["when"] = Value::Array(when);
            }
            out.push(object(
                "security.istio.io/v1",
                "AuthorizationPolicy",
                cell.segment.as_str(),
                &format!("route-{}", route.id),
                json!({
                    "selector": { "matchLabels": cell_selector(cell) },
                    "action": "ALLOW",
                    "rules": [rule],
                }),
            ));
        }
    }
    out
}

/// A RequestAuthentication per cell serving JWT routes, with every issuer its routes name.
pub(crate) fn request_authentications(truth: &TruthTable<'_>) -> Result<Vec<Value>, ExportError> {
    let mut out = Vec::new();
    for (cell_id, routes) in routes_by_cell(truth) {
        let cell = truth.cells().get(cell_id);
        let issuers: BTreeSet<&str> = routes
            .iter()
            .filter_map(|r| match r.auth.as_ref().map(|a| &a.method) {
                Some(AuthMethod::Jwt(name)) => Some(name.as_str()),
                _ => None,
            })
            .collect();
        if issuers.is_empty() {
            continue;
        }
        let mut rules = Vec::new();
        for issuer in truth.policy().jwt_issuers() {
            if !issuers.contains(issuer.name.as_str()) {
                continue;
            }
            let mut rule = json!({ "issuer": issuer.issuer, "audiences": issuer.audiences, "forwardOriginalToken": true });
            match &issuer.jwks {
                JwksSource::Url { url, .. } => rule["jwksUri"] = json!(url.to_string()),
                JwksSource::File(path) => {
                    let text = std::fs::read_to_string(path).map_err(|e| ExportError::Jwks {
                        issuer: issuer.name.to_string(),
                        location: super::located(truth.policy(), issuer.location),
                        path: path.display().to_string(),
                        error: e.to_string(),
                    })?;
                    rule["jwks"] = json!(text.trim_end());
                }
            }
            rules.push(rule);
        }
        out.push(object(
            "security.istio.io/v1",
            "RequestAuthentication",
            cell.segment.as_str(),
            &format!("{}-jwt", cell.name),
            json!({ "selector": { "matchLabels": cell_selector(cell) }, "jwtRules": rules }),
        ));
    }
    Ok(out)
}

/// Per cell with egress by name: a ServiceEntry per host; per cell: a REGISTRY_ONLY Sidecar that
/// lets it reach only its callee cells, its ServiceEntries and the control plane.
pub(crate) fn egress(policy: &Policy, truth: &TruthTable<'_>) -> Vec<Value> {
    let cells = truth.cells();
    let mut out = Vec::new();
    let edges = policy.egress_edges();
    for (id, cell) in cells.iter() {
        let mut hosts: BTreeMap<String, BTreeSet<(u16, u16)>> = BTreeMap::new();
        for edge in edges.iter().filter(|e| cells.of(e.from) == id) {
            let host = match &edge.target.host {
                HostPattern::Name(n) => n.clone(),
                HostPattern::Subdomain(d) => format!("*.{d}"),
                HostPattern::Cidr(_) => continue,
            };
            hosts
                .entry(host)
                .or_default()
                .insert((edge.target.port_min, edge.target.port_max));
        }
        let mut sidecar_hosts: BTreeSet<String> = BTreeSet::new();
        sidecar_hosts.insert(format!("{CONTROL_NAMESPACE}/*"));
        for (from, to, _) in truth.flows() {
            if from == id && to != id {
                let callee = cells.get(to);
                sidecar_hosts.insert(format!(
                    "{0}/{1}.{0}.svc.cluster.local",
                    callee.segment, callee.name
                ));
            }
        }
        for (host, ports) in &hosts {
            sidecar_hosts.insert(format!("./{host}"));
            let ports: Vec<Value> = ports
                .iter()
                .flat_map(|&(low, high)| (low..=high).take(16))
                .map(|p| json!({ "number": p, "name": format!("tcp-{p}"), "protocol": "TCP" }))
                .collect();
            out.push(object(
                "networking.istio.io/v1",
                "ServiceEntry",
                cell.segment.as_str(),
                &format!(
                    "{}-{}",
                    cell.name,
                    host.replace("*.", "any.").replace('.', "-")
                ),
                json!({
                    "hosts": [host],
                    "ports": ports,
                    "location": "MESH_EXTERNAL",
                    "resolution": if host.starts_with('*') { "NONE" } else { "DNS" },
                    "exportTo": ["."],
                    "workloadSelector": null,
                }),
            ));
        }
        out.push(object(
            "networking.istio.io/v1",
            "Sidecar",
            cell.segment.as_str(),
            cell.name.as_str(),
            json!({
                "workloadSelector": { "labels": cell_selector(cell) },
                "outboundTrafficPolicy": { "mode": "REGISTRY_ONLY" },
                "egress": [{ "hosts": sidecar_hosts }],
            }),
        ));
    }
    for v in &mut out {
        if let Some(spec) = v.get_mut("spec").and_then(Value::as_object_mut) {
            spec.retain(|_, v| !v.is_null());
        }
    }
    out
}

/// An Envoy local rate limit per cell serving rate-limited routes: the largest of its routes'
/// limits, per pod (approximate: septa counts per consumer key and per route).
pub(crate) fn rate_limits(truth: &TruthTable<'_>) -> Vec<Value> {
    let mut out = Vec::new();
    for (cell_id, routes) in routes_by_cell(truth) {
        let cell = truth.cells().get(cell_id);
        let Some((per_second, burst)) = routes
            .iter()
            .filter_map(|r: &&CompiledRoute| r.rate_limit.as_ref())
            .map(|l| (l.per_second, l.burst))
            .max()
        else {
            continue;
        };
        out.push(object(
            "networking.istio.io/v1alpha3",
            "EnvoyFilter",
            cell.segment.as_str(),
            &format!("{}-rate-limit", cell.name),
            json!({
                "workloadSelector": { "labels": cell_selector(cell) },
                "configPatches": [{
                    "applyTo": "HTTP_FILTER",
                    "match": {
                        "context": "SIDECAR_INBOUND",
                        "listener": { "filterChain": { "filter": { "name": "envoy.filters.network.http_connection_manager" } } },
                    },
                    "patch": {
                        "operation": "INSERT_BEFORE",
                        "value": {
                            "name": "envoy.filters.http.local_ratelimit",
                            "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
                                "stat_prefix": "septa_rate_limit",
                                "token_bucket": {
                                    "max_tokens": per_second.saturating_add(burst),
                                    "tokens_per_fill": per_second,
                                    "fill_interval": "1s",
                                },
                                "filter_enabled": { "default_value": { "numerator": 100, "denominator": "HUNDRED" } },
                                "filter_enforced": { "default_value": { "numerator": 100, "denominator": "HUNDRED" } },
                            },
                        },
                    },
                }],
            }),
        ));
    }
    out
}
