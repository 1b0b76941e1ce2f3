//! How septa's places become Kubernetes names and labels: a namespace per segment, a workload
//! per cell, the ports a `septa node` listens on, and the identities Istio sees.

use septa_manifest::Segment;

use crate::truth::Cell;

/// The label every exported namespace carries with its segment's name.
pub(crate) const SEGMENT_LABEL: &str = "septa.dev/segment";
/// The label every exported pod carries with its cell's name.
pub(crate) const CELL_LABEL: &str = "septa.dev/cell";
/// The port a cell's gateway listens on (`septa node --listen`).
pub(crate) const GATEWAY_PORT: u16 = 8080;
/// The port a cell's node accepts mesh calls on (`septa node --mesh-listen`).
pub(crate) const MESH_PORT: u16 = 8443;
/// The namespace of the Gateway API `Gateway` that routes reach the public cells through.
pub(crate) const GATEWAY_NAMESPACE: &str = "septa-gateway";
/// The namespace the control plane (NATS) runs in; cells reach it on [`NATS_PORT`].
pub(crate) const CONTROL_NAMESPACE: &str = "septa-system";
/// The NATS client port.
pub(crate) const NATS_PORT: u16 = 4222;

/// Namespaces a segment may not become: Kubernetes' own, and the two this export uses.
const RESERVED: [&str; 6] = [
    "default",
    "kube-system",
    "kube-public",
    "kube-node-lease",
    GATEWAY_NAMESPACE,
    CONTROL_NAMESPACE,
];

/// Why `segment` cannot be a namespace, if it cannot.
pub(crate) fn reserved_namespace(segment: &Segment) -> Option<String> {
    RESERVED.contains(&segment.name.as_str()).then(|| {
        format!(
            "`{}` is reserved by Kubernetes or by this export",
            segment.name
        )
    })
}

/// The node name a cell's `septa node` runs as: `SEGMENT-CELL`, unique across namespaces.
pub(crate) fn node_name(cell: &Cell) -> String {
    format!("{}-{}", cell.segment, cell.name)
}

/// The Istio principal of a cell's ServiceAccount.
pub(crate) fn principal(cell: &Cell) -> String {
    format!("cluster.local/ns/{}/sa/{}", cell.segment, cell.name)
}

/// `metadata` of a namespaced object.
pub(crate) fn metadata(namespace: &str, name: &str) -> serde_json::Value {
    serde_json::json!({
        "name": name,
        "namespace": namespace,
        "labels": { "app.kubernetes.io/managed-by": "septa" },
    })
}

/// The labels of a cell's pods, which selectors match.
pub(crate) fn cell_selector(cell: &Cell) -> serde_json::Value {
    serde_json::json!({ CELL_LABEL: cell.name.as_str() })
}

/// Selects the pods of `cell` from another namespace.
pub(crate) fn cell_peer(cell: &Cell) -> serde_json::Value {
    serde_json::json!({
        "namespaceSelector": { "matchLabels": { SEGMENT_LABEL: cell.segment.as_str() } },
        "podSelector": { "matchLabels": cell_selector(cell) },
    })
}
