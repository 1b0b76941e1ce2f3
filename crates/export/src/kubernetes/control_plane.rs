//! The control plane in `septa-system`: a NATS server with JetStream (a StatefulSet on its own
//! volume, and the Service `nats` the cells' ConfigMap names), and a Job that publishes the
//! application's node manifest with `septa publish`, so the cells' nodes have a revision to run.
//!
//! The image given by `--image` carries the application at [`APP_DIR`]: its components and every
//! other file `septa.toml` names, relative to it. The Job mounts the node manifest from the
//! ConfigMap over `APP_DIR/septa.toml`, so what is published is the manifest the cells were
//! exported for, with the image's files. A Job's template cannot change once created, so the
//! Job's name carries a digest of what it publishes: a changed manifest or image is a new Job.
//!
//! The namespace is left out of any mesh (no sidecar), so the Job ends when `septa publish` does.
//! Its NetworkPolicies admit exactly the cells' nodes and the publish Job to NATS's client port,
//! and let the Job reach NATS and DNS only.

use ring::digest::{SHA256, digest};
use serde_json::{Value, json};

use super::names::{CONTROL_NAMESPACE, NATS_PORT, SEGMENT_LABEL, metadata};
use super::workloads::{CONFIG_MAP, NODE_NAME_LABEL, NODE_NAME_VALUE};

/// Where the image given by `--image` holds the application directory.
pub(crate) const APP_DIR: &str = "/app";
/// The NATS image: the official one, pinned to a minor version with JetStream's KV and object
/// stores as `septa` uses them.
pub(crate) const NATS_IMAGE: &str = "nats:2.10-alpine";
/// The name of the NATS Service and StatefulSet, as the cells' ConfigMap addresses it.
pub(crate) const NATS: &str = "nats";
/// The label value of the publish Job's pods.
const PUBLISH: &str = "septa-publish";

pub(crate) fn app_label(name: &str) -> Value {
    json!({ "app.kubernetes.io/name": name })
}

/// Every object of the control plane namespace, given the node manifest the cells run and the
/// image that holds the application.
pub(crate) fn objects(node_manifest: &str, image: &str) -> Vec<Value> {
    let mut out = vec![
        super::workloads::config_map(CONTROL_NAMESPACE, node_manifest),
        nats_service(),
        nats_stateful_set(),
        publish_service_account(),
        publish_job(node_manifest, image),
    ];
    out.extend(network_policies());
    out
}

fn nats_service() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(CONTROL_NAMESPACE, NATS),
        "spec": {
            "selector": app_label(NATS),
            "ports": [{ "name": "tcp-client", "port": NATS_PORT, "targetPort": NATS_PORT, "protocol": "TCP" }],
        },
    })
}

fn nats_stateful_set() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": metadata(CONTROL_NAMESPACE, NATS),
        "spec": {
            "serviceName": NATS,
            "replicas": 1,
            "selector": { "matchLabels": app_label(NATS) },
            "template": {
                "metadata": { "labels": app_label(NATS) },
                "spec": {
                    "automountServiceAccountToken": false,
                    "containers": [{
                        "name": NATS,
                        "image": NATS_IMAGE,
                        "command": ["nats-server"],
                        "args": ["--jetstream", "--store_dir", "/data", "--port", NATS_PORT.to_string()],
                        "ports": [{ "name": "client", "containerPort": NATS_PORT, "protocol": "TCP" }],
                        "readinessProbe": { "tcpSocket": { "port": NATS_PORT } },
                        "volumeMounts": [{ "name": "data", "mountPath": "/data" }],
                    }],
                },
            },
            "volumeClaimTemplates": [{
                "metadata": { "name": "data" },
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": { "requests": { "storage": "1Gi" } },
                },
            }],
        },
    })
}

fn publish_service_account() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata(CONTROL_NAMESPACE, PUBLISH),
        "automountServiceAccountToken": false,
    })
}

/// The Job's name: `septa-publish-` and the first 12 hex digits of the SHA-256 of the image and
/// the node manifest.
pub(crate) fn publish_job_name(node_manifest: &str, image: &str) -> String {
    let mut input = Vec::with_capacity(image.len() + 1 + node_manifest.len());
    input.extend_from_slice(image.as_bytes());
    input.push(0);
    input.extend_from_slice(node_manifest.as_bytes());
    let hex: String = digest(&SHA256, &input)
        .as_ref()
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{PUBLISH}-{hex}")
}

fn publish_job(node_manifest: &str, image: &str) -> Value {
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata(CONTROL_NAMESPACE, &publish_job_name(node_manifest, image)),
        "spec": {
            // NATS may still be starting: the Job retries, with Kubernetes' back-off.
            "backoffLimit": 10,
            "ttlSecondsAfterFinished": 86400,
            "template": {
                "metadata": { "labels": app_label(PUBLISH) },
                "spec": {
                    "serviceAccountName": PUBLISH,
                    "automountServiceAccountToken": false,
                    "restartPolicy": "Never",
                    "containers": [{
                        "name": "publish",
                        "image": image,
                        "args": ["publish", APP_DIR, "--nats", "$(SEPTA_NATS)"],
                        "env": [{
                            "name": "SEPTA_NATS",
                            "valueFrom": { "configMapKeyRef": { "name": CONFIG_MAP, "key": "nats" } },
                        }],
                        "volumeMounts": [{
                            "name": "manifest",
                            "mountPath": format!("{APP_DIR}/septa.toml"),
                            "subPath": "septa.toml",
                            "readOnly": true,
                        }],
                    }],
                    "volumes": [{ "name": "manifest", "configMap": { "name": CONFIG_MAP } }],
                },
            },
        },
    })
}

fn policy(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(CONTROL_NAMESPACE, name),
        "spec": spec,
    })
}

/// Default deny; NATS's client port from the cells' nodes (pods of `septa node` in a segment's
/// namespace) and from the publish Job; the Job's egress to NATS and DNS. NATS itself reaches
/// nothing: it runs alone.
fn network_policies() -> Vec<Value> {
    let client_port = json!([{ "protocol": "TCP", "port": NATS_PORT }]);
    vec![
        policy(
            "default-deny",
            json!({ "podSelector": {}, "policyTypes": ["Ingress", "Egress"] }),
        ),
        policy(
            "nats-from-cells-and-publish",
            json!({
                "podSelector": { "matchLabels": app_label(NATS) },
                "policyTypes": ["Ingress"],
                "ingress": [{
                    "from": [
                        {
                            "namespaceSelector": { "matchExpressions": [{ "key": SEGMENT_LABEL, "operator": "Exists" }] },
                            "podSelector": { "matchLabels": { NODE_NAME_LABEL: NODE_NAME_VALUE } },
                        },
                        { "podSelector": { "matchLabels": app_label(PUBLISH) } },
                    ],
                    "ports": client_port,
                }],
            }),
        ),
        policy(
            "publish-to-nats",
            json!({
                "podSelector": { "matchLabels": app_label(PUBLISH) },
                "policyTypes": ["Egress"],
                "egress": [
                    { "to": [{ "podSelector": { "matchLabels": app_label(NATS) } }], "ports": client_port },
                    {
                        "to": [{
                            "namespaceSelector": { "matchLabels": { "kubernetes.io/metadata.name": "kube-system" } },
                            "podSelector": { "matchLabels": { "k8s-app": "kube-dns" } },
                        }],
                        "ports": [{ "protocol": "UDP", "port": 53 }, { "protocol": "TCP", "port": 53 }],
                    },
                ],
            }),
        ),
    ]
}
