//! The `cilium` profile: a CiliumNetworkPolicy per cell admitting its callers on the mesh port
//! (L4: the nodes' own mutual TLS there is opaque to Cilium's proxy, so the callee's `septa node`
//! decides methods and paths, `l7-in-septa-mtls`), the gateway on its routes with L7 HTTP rules
//! (plain HTTP, which Cilium's Envoy reads), and its egress: the callee
//! cells, `toFQDNs` for names (with DNS visibility for Cilium's proxy), `toCIDRSet` for networks,
//! and `egressDeny` for the operator ceiling.

use std::collections::BTreeSet;

use ipnet::IpNet;
use septa_manifest::{HostPattern, Methods};
use septa_policy::Policy;
use serde_json::{Value, json};

use super::names::{
    CELL_LABEL, GATEWAY_NAMESPACE, GATEWAY_PORT, MESH_PORT, cell_selector, metadata,
};
use super::paths::cilium_regex;
use super::routes_by_cell;
use crate::truth::{Cell, CellId, TruthTable};

/// Cilium's label of a pod's namespace.
const NAMESPACE_LABEL: &str = "k8s:io.kubernetes.pod.namespace";

fn endpoint(cell: &Cell) -> Value {
    json!({ "matchLabels": { CELL_LABEL: cell.name.as_str(), NAMESPACE_LABEL: cell.segment.as_str() } })
}

/// L7 HTTP rules admitting `methods` on `paths`; empty (every request) when both are any.
fn http_rules(methods: &Methods, paths: Option<&[String]>) -> Vec<Value> {
    let methods: Vec<Option<&str>> = match methods {
        Methods::Any => vec![None],
        Methods::Only(list) => list.iter().map(|m| Some(m.as_str())).collect(),
    };
    let paths: Vec<Option<String>> = match paths {
        None => vec![None],
        Some(list) => list.iter().map(|p| Some(cilium_regex(p))).collect(),
    };
    let mut out = Vec::new();
    for m in &methods {
        for p in &paths {
            let mut rule = json!({});
            if let Some(m) = m {
                rule["method"] = json!(m);
            }
            if let Some(p) = p {
                rule["path"] = json!(p);
            }
            out.push(rule);
        }
    }
    out
}

fn port_rule(port: u16, http: Vec<Value>) -> Value {
    json!([{ "ports": [{ "port": port.to_string(), "protocol": "TCP" }], "rules": { "http": http } }])
}

/// The CiliumNetworkPolicy of every cell.
pub(crate) fn policies(policy: &Policy, truth: &TruthTable<'_>) -> Vec<Value> {
    let cells = truth.cells();
    let routes = routes_by_cell(truth);
    let blocked: BTreeSet<String> = policy
        .ceiling()
        .blocked_ranges()
        .map(|(n, _)| n.to_string())
        .collect();
    let edges = policy.egress_edges();
    let mut out = Vec::new();
    for (id, cell) in cells.iter() {
        let mut ingress = Vec::new();
        // Callers, on the mesh port at L4: an HTTP rule there would have Cilium's proxy parse
        // the nodes' TLS as HTTP, and refuse every call.
        let callers: BTreeSet<CellId> = truth
            .flows()
            .filter(|&(from, to, _)| to == id && from != id)
            .map(|(from, _, _)| from)
            .collect();
        for from in callers {
            ingress.push(json!({
                "fromEndpoints": [endpoint(cells.get(from))],
                "toPorts": [{ "ports": [{ "port": MESH_PORT.to_string(), "protocol": "TCP" }] }],
            }));
        }
        if let Some(routes) = routes.get(&id) {
            let mut http = Vec::new();
            for r in routes {
                http.extend(http_rules(
                    &r.methods,
                    Some(&[r.pattern.as_str().to_owned()]),
                ));
            }
            ingress.push(json!({
                "fromEndpoints": [{ "matchLabels": { NAMESPACE_LABEL: GATEWAY_NAMESPACE } }],
                "toPorts": port_rule(GATEWAY_PORT, http),
            }));
        }
        let mut egress = vec![json!({
            "toEndpoints": [{ "matchLabels": { NAMESPACE_LABEL: "kube-system", "k8s:k8s-app": "kube-dns" } }],
            "toPorts": [{ "ports": [{ "port": "53", "protocol": "ANY" }], "rules": { "dns": [{ "matchPattern": "*" }] } }],
        })];
        let mut callees: BTreeSet<CellId> = BTreeSet::new();
        for (from, to, _) in truth.flows() {
            if from == id && to != id {
                callees.insert(to);
            }
        }
        if !callees.is_empty() {
            egress.push(json!({
                "toEndpoints": callees.iter().map(|&c| endpoint(cells.get(c))).collect::<Vec<_>>(),
                "toPorts": [{ "ports": [{ "port": MESH_PORT.to_string(), "protocol": "TCP" }] }],
            }));
        }
        for edge in edges.iter().filter(|e| cells.of(e.from) == id) {
            let t = edge.target;
            let mut port = json!({ "port": t.port_min.to_string(), "protocol": "TCP" });
            if t.port_max > t.port_min {
                port["endPort"] = json!(t.port_max);
            }
            let to_ports = json!([{ "ports": [port] }]);
            egress.push(match &t.host {
                HostPattern::Name(n) => json!({ "toFQDNs": [{ "matchName": n }], "toPorts": to_ports }),
                HostPattern::Subdomain(d) => json!({ "toFQDNs": [{ "matchPattern": format!("*.{d}") }], "toPorts": to_ports }),
                HostPattern::Cidr(net) => {
                    let net: IpNet = net.trunc();
                    json!({ "toCIDRSet": [{ "cidr": net.to_string() }], "toPorts": to_ports })
                }
            });
        }
        let mut spec = json!({
            "endpointSelector": { "matchLabels": cell_selector(cell) },
            "ingress": ingress,
            "egress": egress,
        });
        if !blocked.is_empty() {
            spec["egressDeny"] = json!([{ "toCIDRSet": blocked.iter().map(|c| json!({ "cidr": c })).collect::<Vec<_>>() }]);
        }
        if spec["ingress"].as_array().is_some_and(Vec::is_empty) {
            // No ingress rule would mean no ingress enforcement: an empty rule denies all.
            spec["ingress"] = json!([{}]);
        }
        out.push(json!({
            "apiVersion": "cilium.io/v2",
            "kind": "CiliumNetworkPolicy",
            "metadata": metadata(cell.segment.as_str(), cell.name.as_str()),
            "spec": spec,
        }));
    }
    out
}
