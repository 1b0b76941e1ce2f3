//! NetworkPolicy, in every profile: default deny in both directions in every namespace, DNS to
//! the cluster's resolver, the control plane, one callee-ingress and one caller-egress policy per
//! flow between two cells, the gateway into public cells, and egress rules as `ipBlock`s with the
//! operator ceiling as `except`.

use std::collections::BTreeSet;

use ipnet::IpNet;
use septa_manifest::{EgressTarget, EndpointBackend, FunctionKind, HostPattern};
use septa_policy::Policy;
use serde_json::{Value, json};

use super::control_plane;
use super::names::{
    CONTROL_NAMESPACE, GATEWAY_NAMESPACE, GATEWAY_PORT, MESH_PORT, NATS_PORT, cell_peer,
    cell_selector, metadata,
};
use crate::truth::Cell;

fn policy(namespace: &str, name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(namespace, name),
        "spec": spec,
    })
}

/// The policies every namespace holds: deny all, DNS, the NATS server of the control plane.
pub(crate) fn namespace_baseline(namespace: &str) -> Vec<Value> {
    vec![
        policy(
            namespace,
            "default-deny",
            json!({ "podSelector": {}, "policyTypes": ["Ingress", "Egress"] }),
        ),
        policy(
            namespace,
            "allow-dns",
            json!({
                "podSelector": {},
                "policyTypes": ["Egress"],
                "egress": [{
                    "to": [{
                        "namespaceSelector": { "matchLabels": { "kubernetes.io/metadata.name": "kube-system" } },
                        "podSelector": { "matchLabels": { "k8s-app": "kube-dns" } },
                    }],
                    "ports": [{ "protocol": "UDP", "port": 53 }, { "protocol": "TCP", "port": 53 }],
                }],
            }),
        ),
        policy(
            namespace,
            "allow-control-plane",
            json!({
                "podSelector": {},
                "policyTypes": ["Egress"],
                "egress": [{
                    "to": [{
                        "namespaceSelector": { "matchLabels": { "kubernetes.io/metadata.name": CONTROL_NAMESPACE } },
                        "podSelector": { "matchLabels": control_plane::app_label(control_plane::NATS) },
                    }],
                    "ports": [{ "protocol": "TCP", "port": NATS_PORT }],
                }],
            }),
        ),
    ]
}

/// The names of the callee's and the caller's policies opening the flow from `from` to `to`.
pub(crate) fn flow_names(from: &Cell, to: &Cell) -> [String; 2] {
    [
        format!("in-from-{}-{}-to-{}", from.segment, from.name, to.name),
        format!("out-from-{}-to-{}-{}", from.name, to.segment, to.name),
    ]
}

/// The callee's ingress policy and the caller's egress policy for the flow `from` → `to`.
pub(crate) fn flow(from: &Cell, to: &Cell) -> [Value; 2] {
    let [ingress_name, egress_name] = flow_names(from, to);
    let port = json!([{ "protocol": "TCP", "port": MESH_PORT }]);
    [
        policy(
            to.segment.as_str(),
            &ingress_name,
            json!({
                "podSelector": { "matchLabels": cell_selector(to) },
                "policyTypes": ["Ingress"],
                "ingress": [{ "from": [cell_peer(from)], "ports": port }],
            }),
        ),
        policy(
            from.segment.as_str(),
            &egress_name,
            json!({
                "podSelector": { "matchLabels": cell_selector(from) },
                "policyTypes": ["Egress"],
                "egress": [{ "to": [cell_peer(to)], "ports": port }],
            }),
        ),
    ]
}

/// The gateway's way into a cell that serves routes.
pub(crate) fn from_gateway(cell: &Cell) -> Value {
    policy(
        cell.segment.as_str(),
        &format!("gateway-to-{}", cell.name),
        json!({
            "podSelector": { "matchLabels": cell_selector(cell) },
            "policyTypes": ["Ingress"],
            "ingress": [{
                "from": [{ "namespaceSelector": { "matchLabels": { "kubernetes.io/metadata.name": GATEWAY_NAMESPACE } } }],
                "ports": [{ "protocol": "TCP", "port": GATEWAY_PORT }],
            }],
        }),
    )
}

/// A cell's egress to the outside world, `None` when it has none: one `ipBlock` per CIDR target
/// and, for targets named by DNS, every address outside the ceiling; the ceiling as `except`.
/// Redis and PostgreSQL endpoints open their server's port.
pub(crate) fn egress(policy_: &Policy, cell: &Cell) -> Option<Value> {
    let mut rules: BTreeSet<(String, u16, u16)> = BTreeSet::new();
    let mut blocks: Vec<(Vec<Value>, u16, u16)> = Vec::new();
    let blocked: Vec<IpNet> = policy_
        .ceiling()
        .blocked_ranges()
        .map(|(net, _)| *net)
        .collect();
    for edge in policy_.egress_edges() {
        if !cell.functions.contains(&edge.from) {
            continue;
        }
        let target: &EgressTarget = edge.target;
        let peers = match &target.host {
            HostPattern::Cidr(net) => ip_block(*net, &blocked).into_iter().collect(),
            HostPattern::Name(_) | HostPattern::Subdomain(_) => anywhere(&blocked),
        };
        if peers.is_empty() {
            continue;
        }
        let key = (
            serde_json::to_string(&peers).unwrap_or_default(),
            target.port_min,
            target.port_max,
        );
        if rules.insert(key) {
            blocks.push((peers, target.port_min, target.port_max));
        }
    }
    for &f in &cell.functions {
        let port = match &policy_.function(f).spec.kind {
            FunctionKind::Endpoint(EndpointBackend::Redis(_)) => 6379,
            FunctionKind::Endpoint(EndpointBackend::Postgres(_)) => 5432,
            _ => continue,
        };
        let key = (String::new(), port, port);
        if rules.insert(key) {
            blocks.push((Vec::new(), port, port));
        }
    }
    if blocks.is_empty() {
        return None;
    }
    let egress: Vec<Value> = blocks
        .into_iter()
        .map(|(peers, low, high)| {
            let mut port = json!({ "protocol": "TCP", "port": low });
            if high > low {
                port["endPort"] = json!(high);
            }
            let mut rule = json!({ "ports": [port] });
            if !peers.is_empty() {
                rule["to"] = Value::Array(peers);
            }
            rule
        })
        .collect();
    Some(policy(
        cell.segment.as_str(),
        &format!("egress-{}", cell.name),
        json!({
            "podSelector": { "matchLabels": cell_selector(cell) },
            "policyTypes": ["Egress"],
            "egress": egress,
        }),
    ))
}

/// `net` as an `ipBlock` less the blocked ranges inside it; `None` when a blocked range covers
/// it whole, since septa would refuse every address in it.
fn ip_block(net: IpNet, blocked: &[IpNet]) -> Option<Value> {
    if blocked.iter().any(|b| b.contains(&net)) {
        return None;
    }
    let mut except: Vec<String> = blocked
        .iter()
        .filter(|b| net.contains(*b) && **b != net)
        .map(ToString::to_string)
        .collect();
    except.sort();
    except.dedup();
    let mut block = json!({ "cidr": net.trunc().to_string() });
    if !except.is_empty() {
        block["except"] = json!(except);
    }
    Some(json!({ "ipBlock": block }))
}

/// Every IPv4 and IPv6 address outside the ceiling.
fn anywhere(blocked: &[IpNet]) -> Vec<Value> {
    ["0.0.0.0/0", "::/0"]
        .iter()
        .filter_map(|net| net.parse().ok())
        .filter_map(|net| ip_block(net, blocked))
        .collect()
}
