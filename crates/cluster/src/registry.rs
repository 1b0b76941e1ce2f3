//! What a node says about itself in the registry, renewed by every heartbeat.

use serde::{Deserialize, Serialize};

/// One node's entry in the registry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The node's name, as in `[node.NAME]`.
    pub name: String,
    /// Where its gateway listens.
    pub address: String,
    /// Where it accepts calls from other nodes (mutual TLS).
    pub mesh_address: String,
    /// SHA-256 of its certificate, lowercase hex.
    pub fingerprint: String,
    /// The revision it serves; `None` before it applied any.
    pub revision: Option<String>,
    /// The functions and endpoints it hosts under that revision.
    pub hosts: Vec<String>,
    /// A later revision it refused, and why: it keeps serving `revision`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<RevisionFailure>,
    /// When it started, in milliseconds since the Unix epoch.
    pub started_at_ms: u64,
    /// Its last heartbeat, in milliseconds since the Unix epoch.
    pub heartbeat_at_ms: u64,
}

/// A revision a node could not apply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionFailure {
    /// The revision's id.
    pub revision: String,
    /// What was wrong, as `septa check` would say it or as loading failed.
    pub reason: String,
}
