//! Label values metrics may use, taken from the loaded policy, so that a request can never make
//! up a new series: a rule, route, segment or destination the policy does not name is counted
//! under a fixed placeholder instead.

use std::collections::HashSet;
use std::sync::Arc;

use septa_flows::FlowKind;
use septa_policy::Policy;

/// An interned label value: cloning it is a reference count, not an allocation.
pub(crate) type Label = Arc<str>;

/// The label value of a field a record leaves empty (a denial names no rule).
pub const NONE: &str = "";
/// The label value of a rule, route or segment the loaded policy does not name.
pub const OTHER: &str = "other";
/// The destination of an egress flow to anything but a declared `scheme://host:port` target
/// (a wildcard host, a CIDR, a denied address).
pub const EXTERNAL: &str = "external";
/// The destination of a flow to a name the policy does not know (a mesh call to
/// `http://nosuch.internal`).
pub const UNKNOWN: &str = "unknown";
/// The destination of an ingress request no route matched, as the gateway records it.
const UNROUTED: &str = "unrouted";

/// The label values the loaded policy allows.
#[derive(Debug)]
pub(crate) struct Vocabulary {
    rules: HashSet<Label>,
    routes: HashSet<Label>,
    segments: HashSet<Label>,
    destinations: HashSet<Label>,
    nodes: HashSet<Label>,
    none: Label,
    other: Label,
    external: Label,
    unknown: Label,
}

impl Default for Vocabulary {
    /// Before a policy is loaded every named value is [`OTHER`] or [`UNKNOWN`].
    fn default() -> Self {
        Self {
            rules: HashSet::new(),
            routes: HashSet::new(),
            segments: HashSet::new(),
            destinations: HashSet::new(),
            nodes: HashSet::new(),
            none: Label::from(NONE),
            other: Label::from(OTHER),
            external: Label::from(EXTERNAL),
            unknown: Label::from(UNKNOWN),
        }
    }
}

impl Vocabulary {
    /// The rule ids, route ids, segments and destinations `policy` declares.
    pub(crate) fn from_policy(policy: &Policy) -> Self {
        let mut vocabulary = Self::default();
        let route_ids = || policy.routes().map(|r| r.id.to_string());
        vocabulary.routes = labels(route_ids());
        vocabulary.rules = labels(
            route_ids()
                .chain(policy.allow_rules().map(|a| a.id.to_string()))
                .chain(policy.egress_rules().map(|e| e.id.to_string())),
        );
        // Segments are declarations, not rules: the manifest is where they are listed.
        let segments = policy.manifest().segments.keys();
        vocabulary.segments = labels(segments.map(ToString::to_string));
        let egress_targets = policy
            .egress_rules()
            .flat_map(|e| e.targets.iter().map(ToString::to_string));
        vocabulary.destinations = labels(
            policy
                .functions()
                .iter()
                .map(|f| f.identity.clone())
                .chain(egress_targets)
                .chain(std::iter::once(UNROUTED.to_owned())),
        );
        vocabulary.nodes = labels(
            policy
                .placement()
                .into_iter()
                .flat_map(|p| p.nodes().iter().map(ToString::to_string)),
        );
        vocabulary
    }

    /// The `peer` label of a record's peer node.
    pub(crate) fn peer(&self, peer: &str) -> Label {
        self.named(&self.nodes, Some(peer))
    }

    /// The `rule` label of a record's rule.
    pub(crate) fn rule(&self, rule: Option<&str>) -> Label {
        self.named(&self.rules, rule)
    }

    /// The `route` label of a record's route.
    pub(crate) fn route(&self, route: Option<&str>) -> Label {
        self.named(&self.routes, route)
    }

    /// The `segment` label of a record's segment.
    pub(crate) fn segment(&self, segment: Option<&str>) -> Label {
        self.named(&self.segments, segment)
    }

    /// The `destination` label of a record's destination.
    pub(crate) fn destination(&self, kind: FlowKind, dst: &str) -> Label {
        match self.destinations.get(dst) {
            Some(known) => known.clone(),
            None if kind == FlowKind::Egress => self.external.clone(),
            None => self.unknown.clone(),
        }
    }

    fn named(&self, known: &HashSet<Label>, value: Option<&str>) -> Label {
        match value {
            None => self.none.clone(),
            Some(value) => known.get(value).unwrap_or(&self.other).clone(),
        }
    }
}

fn labels(values: impl IntoIterator<Item = String>) -> HashSet<Label> {
    values.into_iter().map(Label::from).collect()
}
