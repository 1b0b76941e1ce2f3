//! Placement across machines: the cluster's trust domain and which node hosts what.
//!
//! Placement is policy, so the auditor, `septa query` and the exports read it here like any other
//! rule. Without `[node.*]` tables there is no cluster and `septa up` hosts everything.

use std::collections::BTreeMap;
use std::fmt;

use super::{Function, Name, Segment};
use crate::diagnostic::Location;
use crate::selector::Selector;

/// `[cluster]` with its `[node.NAME]` tables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cluster {
    /// The SPIFFE trust domain node certificates are issued in.
    pub trust_domain: TrustDomain,
    /// The nodes by name.
    pub nodes: BTreeMap<Name, Node>,
}

impl Cluster {
    /// The nodes that host `function` (a component or an endpoint), in name order.
    pub fn hosts_of<'a>(
        &'a self,
        segments: &'a BTreeMap<Name, Segment>,
        function: &'a Function,
    ) -> impl Iterator<Item = &'a Node> {
        self.nodes
            .values()
            .filter(move |n| n.hosts(segments, function))
    }
}

/// One `[node.NAME]`: a machine running `septa node`, and what it hosts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// Its name, also the last part of its SPIFFE id `spiffe://TRUST_DOMAIN/node/NAME`.
    pub name: Name,
    /// The functions and endpoints it hosts, by selector.
    pub hosts: Vec<Selector>,
    /// Where it is declared.
    pub location: Location,
}

impl Node {
    /// Whether this node hosts `function`.
    pub fn hosts(&self, segments: &BTreeMap<Name, Segment>, function: &Function) -> bool {
        self.hosts.iter().any(|s| s.selects(segments, function))
    }
}

/// A SPIFFE trust domain: lowercase letters, digits, `.`, `-` and `_`, at most 255 characters.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TrustDomain(String);

impl TrustDomain {
    /// Checks `s` against the SPIFFE specification's trust domain grammar.
    pub fn new(s: &str) -> Result<Self, String> {
        let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || ".-_".contains(c);
        if s.is_empty() {
            return Err("a trust domain must not be empty".to_owned());
        }
        if s.len() > 255 {
            return Err(format!("trust domain `{s}` is longer than 255 characters"));
        }
        if !s.chars().all(ok) {
            return Err(format!(
                "trust domain `{s}` may only contain lowercase letters, digits, `.`, `-` and `_`"
            ));
        }
        Ok(Self(s.to_owned()))
    }

    /// The trust domain as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The SPIFFE id of node `node` in this trust domain.
    pub fn node_id(&self, node: &str) -> String {
        format!("spiffe://{}/node/{node}", self.0)
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
