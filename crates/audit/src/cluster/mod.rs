//! Where the places of an application spread over several nodes run, and which allowed flows go
//! from one node to another over mutual TLS, read from the compiled placement
//! ([`Policy::placement`]): the same table the nodes forward by and decide peers' calls by.
//!
//! A flow crosses nodes when a node that runs its source does not run its destination: that node
//! then calls one of the nodes that do, over mutual TLS, and the receiving node decides the flow
//! again. The gateway runs on every node, so a route crosses from every node that does not host
//! its function. Egress leaves from the node that runs the function, so it never crosses. A
//! [`Hop`] names every node that runs the destination: which one a call reaches is chosen at
//! run time, among those that answer.
//!
//! `findings` words the placement for `septa audit`.

pub(crate) mod findings;

use std::collections::BTreeSet;
use std::fmt;

use septa_manifest::{Location, Name};
use septa_policy::{FunctionId, Placement, Policy, RuleId};
use serde::Serialize;

use crate::graph::{EdgeKind, Node};

/// The calls one node makes over mutual TLS for a flow: from a node that runs the source and not
/// the destination, to the nodes that run the destination, in name order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Hop {
    /// The calling node.
    pub from: String,
    /// The nodes that run the destination, any of which may answer.
    pub to: Vec<String>,
}

/// Hops in words, those calling the same nodes together: `pay-1, pay-2 → edge-1`, or
/// `edge-1 → pay-1, pay-2; pay-2 → pay-1`.
pub struct HopsText<'h>(pub &'h [Hop]);

impl fmt::Display for HopsText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut targets: Vec<(&[String], Vec<&str>)> = Vec::new();
        for hop in self.0 {
            match targets.iter_mut().find(|(to, _)| *to == hop.to.as_slice()) {
                Some((_, from)) => from.push(&hop.from),
                None => targets.push((&hop.to, vec![&hop.from])),
            }
        }
        for (i, (to, from)) in targets.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{} → {}", from.join(", "), to.join(", "))?;
        }
        Ok(())
    }
}

/// The route or allow rule of a [`Crossing`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Opener<'p> {
    /// A gateway route, by id.
    Route(&'p str),
    /// An allow rule, by id.
    Allow(&'p str),
}

impl Opener<'_> {
    /// The route's or rule's id.
    pub fn id(&self) -> &str {
        match self {
            Self::Route(id) | Self::Allow(id) => id,
        }
    }

    /// What opens the flows, as an edge kind.
    pub fn kind(&self) -> EdgeKind {
        match self {
            Self::Route(_) => EdgeKind::Route,
            Self::Allow(_) => EdgeKind::Allow,
        }
    }
}

impl fmt::Display for Opener<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Route(id) => write!(f, "route `{id}`"),
            Self::Allow(id) => write!(f, "allow rule `{id}`"),
        }
    }
}

/// A route or allow rule some of whose flows cross nodes.
#[derive(Clone, Debug)]
pub struct Crossing<'p> {
    /// The route or rule.
    pub opener: Opener<'p>,
    /// Its source as written: `gateway` or the rule's `from` selector.
    pub from: String,
    /// Its destination: the route's function, or the rule's `to` selector.
    pub to: String,
    /// Every call between nodes its flows make.
    pub hops: Vec<Hop>,
    /// Its destinations that run on one node only, each with the other nodes its flows come
    /// from: while that node is down, those flows find no node to answer.
    pub single_node: Vec<(FunctionId, Vec<&'p str>)>,
    /// Where it is declared.
    pub location: Option<Location>,
}

/// The placement of a policy whose application spans several nodes.
#[derive(Clone, Copy, Debug)]
pub struct Cluster<'p> {
    policy: &'p Policy,
    placement: &'p Placement,
}

impl<'p> Cluster<'p> {
    /// The placement of `policy`; `None` when it runs in one process (no `[node.*]` tables).
    pub fn of(policy: &'p Policy) -> Option<Self> {
        policy
            .placement()
            .map(|placement| Self { policy, placement })
    }

    /// The trust domain node certificates are issued in.
    pub fn trust_domain(&self) -> &'p str {
        self.placement.trust_domain().as_str()
    }

    /// The SPIFFE id of `node`'s certificate.
    pub fn spiffe_id(&self, node: &str) -> String {
        self.placement.trust_domain().node_id(node)
    }

    /// Every node, in name order.
    pub fn nodes(&self) -> impl Iterator<Item = &'p str> + use<'p> {
        self.placement.nodes().iter().map(Name::as_str)
    }

    /// The functions and endpoints `node` runs, in the policy's order.
    pub fn hosted_by(&self, node: &str) -> Vec<FunctionId> {
        self.placement.hosted_by(node).collect()
    }

    /// The nodes that run function or endpoint `id`, in name order.
    pub fn hosting(&self, id: FunctionId) -> Vec<&'p str> {
        self.placement.hosting(id).map(Name::as_str).collect()
    }

    /// The nodes `place` runs on: every node for the gateway, none for a destination outside.
    pub fn runs_on(&self, place: &Node) -> Vec<&'p str> {
        match place {
            Node::Gateway => self.nodes().collect(),
            Node::Function(id) => self.hosting(*id),
            Node::Egress(_) => Vec::new(),
        }
    }

    /// The calls between nodes of the flow from `from` to `to`; none when every node that runs
    /// `from` also runs `to`, and none for egress.
    pub fn flow_hops(&self, from: &Node, to: &Node) -> Vec<Hop> {
        let Node::Function(to) = to else {
            return Vec::new();
        };
        self.hops(&self.runs_on(from), &[*to])
    }

    /// The calls between nodes of flows from sources running on `source_nodes` to any of
    /// `destinations`: each source node that does not run some destination calls every node
    /// that runs one it lacks.
    fn hops(&self, source_nodes: &[&'p str], destinations: &[FunctionId]) -> Vec<Hop> {
        let hosting: Vec<Vec<&str>> = destinations.iter().map(|&d| self.hosting(d)).collect();
        source_nodes
            .iter()
            .filter_map(|&node| {
                let to: BTreeSet<&str> = hosting
                    .iter()
                    .filter(|nodes| !nodes.contains(&node))
                    .flatten()
                    .copied()
                    .collect();
                (!to.is_empty()).then(|| Hop {
                    from: node.to_owned(),
                    to: to.into_iter().map(str::to_owned).collect(),
                })
            })
            .collect()
    }

    /// Every route, then every allow rule in file order, whose flows cross nodes. Worked out
    /// from each rule's two sides, without listing the pairs of functions it connects. Flows
    /// that audit mode opens without a rule are left out: the audit-mode finding covers them.
    pub fn crossings(&self) -> Vec<Crossing<'p>> {
        self.sides()
            .into_iter()
            .filter_map(|sides| self.crossing(sides))
            .collect()
    }

    /// The two sides of every route and of every allow rule that admits something.
    fn sides(&self) -> Vec<Sides<'p>> {
        let policy = self.policy;
        let routes = policy.routes().map(|route| Sides {
            opener: Opener::Route(route.id.as_str()),
            from: "gateway".to_owned(),
            to: policy.function(route.function).identity.clone(),
            source_nodes: self.nodes().collect(),
            destinations: vec![route.function],
            location: policy.declared_at(&RuleId::Route(route.id.clone())),
        });
        let allows = policy
            .allow_rules()
            .filter(|rule| !rule.admits_nothing())
            .map(|rule| {
                let nodes: BTreeSet<&str> =
                    rule.sources.iter().flat_map(|&s| self.hosting(s)).collect();
                Sides {
                    opener: Opener::Allow(rule.id.as_str()),
                    from: rule.from.to_string(),
                    to: rule.to.to_string(),
                    source_nodes: nodes.into_iter().collect(),
                    destinations: rule.destinations.to_vec(),
                    location: Some(rule.location),
                }
            });
        routes.chain(allows).collect()
    }

    /// The crossing of one route or rule, if its flows cross nodes.
    fn crossing(&self, sides: Sides<'p>) -> Option<Crossing<'p>> {
        let hops = self.hops(&sides.source_nodes, &sides.destinations);
        if hops.is_empty() {
            return None;
        }
        let single_node = sides
            .destinations
            .iter()
            .filter_map(|&d| {
                let [only] = self.hosting(d)[..] else {
                    return None;
                };
                let callers: Vec<&str> = sides
                    .source_nodes
                    .iter()
                    .copied()
                    .filter(|&n| n != only)
                    .collect();
                (!callers.is_empty()).then_some((d, callers))
            })
            .collect();
        Some(Crossing {
            opener: sides.opener,
            from: sides.from,
            to: sides.to,
            hops,
            single_node,
            location: sides.location,
        })
    }
}

/// A route or allow rule by its two sides: the nodes its sources run on, and its destinations.
struct Sides<'p> {
    opener: Opener<'p>,
    from: String,
    to: String,
    source_nodes: Vec<&'p str>,
    destinations: Vec<FunctionId>,
    location: Option<Location>,
}
