//! The flow record: one line of the flow log, describing one decided flow.

use std::collections::BTreeMap;
use std::fmt;
use std::time::SystemTime;

use septa_policy::Verdict;
use serde::{Deserialize, Serialize};

use crate::time::format_rfc3339_millis;

/// Which enforcement point saw the flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlowKind {
    /// A request from the internet through the gateway to a function.
    Ingress,
    /// A call from one function to another through the mesh.
    Mesh,
    /// A call from a function to the outside world.
    Egress,
    /// A call from a function to a private endpoint (a data store).
    Endpoint,
}

impl FlowKind {
    /// The lowercase name used in the flow log, e.g. `ingress`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ingress => "ingress",
            Self::Mesh => "mesh",
            Self::Egress => "egress",
            Self::Endpoint => "endpoint",
        }
    }
}

impl fmt::Display for FlowKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One decided flow, written to the flow log as one JSON object on one line.
///
/// Optional fields that are `None` are left out of the JSON. Unknown fields are accepted when
/// reading, so that a log written by a newer septa can still be read by an older one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowRecord {
    /// When the flow started, RFC 3339 UTC with milliseconds (`2026-11-29T20:41:03.123Z`).
    pub time: String,
    /// Which enforcement point saw the flow.
    pub kind: FlowKind,
    /// The identity of the caller, set by the host: `gateway`, `function:storefront`, …
    pub src: String,
    /// The destination: `function:checkout`, `endpoint:cards`, `https://api.example.com:443`, …
    pub dst: String,
    /// The HTTP method, for HTTP flows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// The (normalized) request path, for HTTP flows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The `host:port` an egress flow went to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// What the policy decided.
    pub verdict: Verdict,
    /// The id of the rule that decided the flow: the rule that allowed it, or the route a
    /// refused ingress request matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Why the flow was decided as it was, for a human: the policy's reason, as it worded it.
    pub reason: String,
    /// What went wrong after the decision, when something did: a trap, a timeout, a refused
    /// connection, a failed response body. The decision stands; this says why the flow still
    /// did not complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The HTTP status returned to the caller, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Bytes received from the caller.
    #[serde(default)]
    pub bytes_in: u64,
    /// Bytes sent back to the caller.
    #[serde(default)]
    pub bytes_out: u64,
    /// How long the flow took, in microseconds.
    #[serde(default)]
    pub latency_us: u64,
    /// The gateway route that matched, for ingress flows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// The segment the flow belongs to, for filtering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<String>,
    /// The client address of an ingress flow, as the gateway established it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// The request this flow is part of: the gateway gives every request an id, and every mesh,
    /// endpoint and egress flow its functions make carries it, so a chain of flows reads as one.
    /// 16 hex digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
    /// The policy that decided the flow: the first 12 hex digits of the manifest's SHA-256, as
    /// `septa_policy_info` and `/healthz` show it in full.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Whether a segmentation probe (`septa probe`) made the flow: it was decided like any
    /// other and stopped where it would have been delivered.
    #[serde(default, skip_serializing_if = "is_false")]
    pub probe: bool,
    /// On a node of a cluster, the node that decided and wrote this record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// For a flow between nodes, the other node: the callee's node on the caller's record, the
    /// caller's (as its certificate proved it) on the callee's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// The fields that were longer than their limit (see [`FlowRecord::bound`]), each with its
    /// original length in bytes: `{"path": 70001}`. Their values end with
    /// [`CUT_MARKER`](crate::CUT_MARKER).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cut: BTreeMap<String, u64>,
}

fn is_false(b: &bool) -> bool {
    !b
}

impl FlowRecord {
    /// A record of a flow starting now, with every optional field empty and every count zero.
    pub fn new(
        kind: FlowKind,
        src: impl Into<String>,
        dst: impl Into<String>,
        verdict: Verdict,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            time: format_rfc3339_millis(SystemTime::now()),
            kind,
            src: src.into(),
            dst: dst.into(),
            method: None,
            path: None,
            target: None,
            verdict,
            rule: None,
            reason: reason.into(),
            error: None,
            status: None,
            bytes_in: 0,
            bytes_out: 0,
            latency_us: 0,
            route: None,
            segment: None,
            client: None,
            trace: None,
            policy: None,
            probe: false,
            node: None,
            peer: None,
            cut: BTreeMap::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn none_fields_are_left_out_and_enums_are_lowercase() {
        let mut record = FlowRecord::new(
            FlowKind::Egress,
            "function:checkout",
            "https://api.payments.example:443",
            Verdict::Audit,
            "no egress rule matches",
        );
        record.time = "2026-11-29T20:41:03.123Z".to_owned();
        record.target = Some("api.payments.example:443".to_owned());
        let json = serde_json::to_string(&record).unwrap();
        assert_eq!(
            json,
            r#"{"time":"2026-11-29T20:41:03.123Z","kind":"egress","src":"function:checkout","dst":"https://api.payments.example:443","target":"api.payments.example:443","verdict":"audit","reason":"no egress rule matches","bytes_in":0,"bytes_out":0,"latency_us":0}"#
        );
        let back: FlowRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(back, record);
    }

    #[test]
    fn every_field_round_trips() {
        let record = FlowRecord {
            time: "2026-11-29T20:41:03.123Z".to_owned(),
            kind: FlowKind::Ingress,
            src: "gateway".to_owned(),
            dst: "function:storefront".to_owned(),
            method: Some("POST".to_owned()),
            path: Some("/api/checkout".to_owned()),
            target: None,
            verdict: Verdict::Allow,
            rule: Some("route:/api/checkout".to_owned()),
            reason: "route matched".to_owned(),
            error: Some("the function trapped".to_owned()),
            status: Some(201),
            bytes_in: 12,
            bytes_out: 345,
            latency_us: 678,
            route: Some("/api/checkout".to_owned()),
            segment: Some("edge".to_owned()),
            client: Some("203.0.113.9".to_owned()),
            trace: Some("00c0ffee00000001".to_owned()),
            policy: Some("3f2a9c0b1d4e".to_owned()),
            probe: true,
            node: Some("pay-1".to_owned()),
            peer: Some("edge-1".to_owned()),
            cut: BTreeMap::from([("path".to_owned(), 4096)]),
        };
        let json = serde_json::to_string(&record).unwrap();
        assert_eq!(serde_json::from_str::<FlowRecord>(&json).unwrap(), record);
    }

    #[test]
    fn unknown_fields_from_newer_writers_are_accepted() {
        let json = r#"{"time":"2026-11-29T20:41:03.123Z","kind":"mesh","src":"function:a","dst":"function:b","verdict":"deny","reason":"no rule","future":1}"#;
        let record: FlowRecord = serde_json::from_str(json).unwrap();
        assert_eq!(record.kind, FlowKind::Mesh);
        assert_eq!(record.verdict, Verdict::Deny);
        assert_eq!(record.bytes_in, 0);
    }
}
