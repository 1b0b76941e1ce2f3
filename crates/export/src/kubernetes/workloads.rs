//! The workloads: a Namespace per segment, and per cell a ServiceAccount, a Deployment running
//! `septa node` for exactly the cell's functions and endpoints (the node manifest in a
//! ConfigMap, the node certificate from a Secret), a Service, and a volume for an embedded store.

use septa_manifest::{EndpointBackend, FunctionKind};
use septa_policy::Policy;
use serde_json::{Value, json};

use super::names::{
    CELL_LABEL, GATEWAY_PORT, MESH_PORT, SEGMENT_LABEL, cell_selector, metadata, node_name,
};
use crate::truth::Cell;

/// The ConfigMap every namespace holds: the node manifest and the NATS address.
pub(crate) const CONFIG_MAP: &str = "septa";
/// The label every cell's pods carry, which the control plane's NetworkPolicy admits to NATS.
pub(crate) const NODE_NAME_LABEL: &str = "app.kubernetes.io/name";
/// Its value.
pub(crate) const NODE_NAME_VALUE: &str = "septa-node";

/// The Namespace of a segment.
pub(crate) fn namespace(segment: &str, istio: bool) -> Value {
    let mut labels = json!({
        "app.kubernetes.io/managed-by": "septa",
        SEGMENT_LABEL: segment,
    });
    if istio {
        labels["istio-injection"] = json!("enabled");
    }
    json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": { "name": segment, "labels": labels },
    })
}

/// The ConfigMap of a namespace: the node manifest `septa publish` publishes, and where NATS is.
pub(crate) fn config_map(segment: &str, node_manifest: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(segment, CONFIG_MAP),
        "data": {
            "nats": "nats://nats.septa-system.svc:4222",
            "septa.toml": node_manifest,
        },
    })
}

/// Whether `cell` runs an embedded store, which keeps its data on the cell's volume.
pub(crate) fn has_embedded_store(policy: &Policy, cell: &Cell) -> bool {
    cell.functions.iter().any(|&f| {
        matches!(
            policy.function(f).spec.kind,
            FunctionKind::Endpoint(EndpointBackend::Embedded)
        )
    })
}

/// The ServiceAccount of a cell: its identity to Istio.
pub(crate) fn service_account(cell: &Cell) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata(cell.segment.as_str(), cell.name.as_str()),
        "automountServiceAccountToken": false,
    })
}

/// The Service of a cell: its gateway port (HTTP) and its mesh port, declared `tls` since the
/// nodes speak their own mutual TLS there: a proxy in between must pass it through as it is.
pub(crate) fn service(cell: &Cell) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(cell.segment.as_str(), cell.name.as_str()),
        "spec": {
            "selector": cell_selector(cell),
            "ports": [
                { "name": "http", "port": GATEWAY_PORT, "targetPort": GATEWAY_PORT, "protocol": "TCP" },
                { "name": "tls-mesh", "port": MESH_PORT, "targetPort": MESH_PORT, "protocol": "TCP", "appProtocol": "tls" },
            ],
        },
    })
}

/// The name and port the other cells' nodes dial to reach `cell`: its Service, by the cluster
/// domain's full name, so the pod's DNS search list plays no part.
pub(crate) fn mesh_advertise(cell: &Cell) -> String {
    format!(
        "{}.{}.svc.cluster.local:{MESH_PORT}",
        cell.name, cell.segment
    )
}

/// The PersistentVolumeClaim of a cell that runs an embedded store.
pub(crate) fn volume_claim(cell: &Cell) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": metadata(cell.segment.as_str(), &format!("{}-data", cell.name)),
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": { "requests": { "storage": "1Gi" } },
        },
    })
}

/// The Deployment of a cell: `septa node` for its functions, advertising the cell's Service as
/// its mesh address, so a call from another cell to `NAME.internal` goes through that Service.
///
/// All the pods of a cell run as one node (one name, one certificate, one registry entry): what
/// other nodes read from the entry (the advertised Service, what it hosts, the trust in its
/// certificate) is the same whichever replica wrote it last, and the Service picks the pod. One
/// replica is written; a cell without an embedded store may be scaled. A cell with an embedded
/// store stays at one and is replaced, not rolled, since its data lives on one volume.
pub(crate) fn deployment(cell: &Cell, image: &str, embedded_store: bool) -> Value {
    let node = node_name(cell);
    let labels = json!({
        CELL_LABEL: cell.name.as_str(),
        SEGMENT_LABEL: cell.segment.as_str(),
        NODE_NAME_LABEL: NODE_NAME_VALUE,
    });
    let data_volume = if embedded_store {
        json!({ "name": "state", "persistentVolumeClaim": { "claimName": format!("{}-data", cell.name) } })
    } else {
        json!({ "name": "state", "emptyDir": {} })
    };
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(cell.segment.as_str(), cell.name.as_str()),
        "spec": {
            "replicas": 1,
            "strategy": { "type": if embedded_store { "Recreate" } else { "RollingUpdate" } },
            "selector": { "matchLabels": cell_selector(cell) },
            "template": {
                "metadata": { "labels": labels },
                "spec": {
                    "serviceAccountName": cell.name.as_str(),
                    "automountServiceAccountToken": false,
                    "containers": [{
                        "name": "septa",
                        "image": image,
                        "args": [
                            "node",
                            "--nats", "$(SEPTA_NATS)",
                            "--name", node,
                            "--listen", format!("0.0.0.0:{GATEWAY_PORT}"),
                            "--mesh-listen", format!("0.0.0.0:{MESH_PORT}"),
                            "--mesh-advertise", mesh_advertise(cell),
                            "--tls-dir", "/etc/septa/tls",
                            "--state-dir", "/var/lib/septa",
                            "--flow-log", "-",
                        ],
                        "env": [{
                            "name": "SEPTA_NATS",
                            "valueFrom": { "configMapKeyRef": { "name": CONFIG_MAP, "key": "nats" } },
                        }],
                        "ports": [
                            { "name": "http", "containerPort": GATEWAY_PORT, "protocol": "TCP" },
                            { "name": "mesh", "containerPort": MESH_PORT, "protocol": "TCP" },
                        ],
                        "readinessProbe": { "tcpSocket": { "port": GATEWAY_PORT } },
                        "volumeMounts": [
                            { "name": "tls", "mountPath": "/etc/septa/tls", "readOnly": true },
                            { "name": "manifest", "mountPath": "/etc/septa/app", "readOnly": true },
                            { "name": "state", "mountPath": "/var/lib/septa" },
                        ],
                    }],
                    "volumes": [
                        { "name": "tls", "secret": { "secretName": format!("septa-node-{}", cell.name) } },
                        { "name": "manifest", "configMap": { "name": CONFIG_MAP } },
                        data_volume,
                    ],
                },
            },
        },
    })
}
