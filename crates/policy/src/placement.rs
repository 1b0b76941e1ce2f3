//! Which node hosts which function: the compiled form of `[cluster]` and `[node.*]`.
//!
//! Without a cluster every function is local to the one process that runs the policy. With one,
//! a node runs only what it hosts, forwards calls to the rest, and takes a peer node's word only
//! for the functions this table places on that peer.

use septa_manifest::{Manifest, Name, TrustDomain};

use crate::decision::Decision;
use crate::engine::Policy;
use crate::functions::{FunctionId, FunctionInfo};
use crate::reason::{PeerRefusal, Reason};
use crate::routes::CompiledRoute;

/// Who a call from another node comes from, once the node that forwarded it is trusted to speak
/// for that caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerCaller {
    /// A function the policy places on the peer node: decide the call with
    /// [`Policy::decide_mesh`].
    Function(FunctionId),
    /// The peer's gateway, forwarding a request it routed and authenticated.
    Gateway,
}

/// The cluster's trust domain, its nodes, and for each function the nodes that host it.
#[derive(Debug)]
pub struct Placement {
    trust_domain: TrustDomain,
    /// Node names in name order.
    nodes: Vec<Name>,
    /// For each function (by [`FunctionId::index`]), the indexes into `nodes` that host it.
    hosting: Vec<Vec<usize>>,
}

impl Placement {
    pub(crate) fn compile(manifest: &Manifest, functions: &[FunctionInfo]) -> Option<Self> {
        let cluster = manifest.cluster.as_ref()?;
        let nodes: Vec<Name> = cluster.nodes.keys().cloned().collect();
        let hosting = functions
            .iter()
            .map(|f| {
                cluster
                    .nodes
                    .values()
                    .enumerate()
                    .filter(|(_, n)| n.hosts(&manifest.segments, &f.spec))
                    .map(|(i, _)| i)
                    .collect()
            })
            .collect();
        Some(Self {
            trust_domain: cluster.trust_domain.clone(),
            nodes,
            hosting,
        })
    }

    /// The SPIFFE trust domain node certificates must belong to.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// Every node, in name order.
    pub fn nodes(&self) -> &[Name] {
        &self.nodes
    }

    /// Whether `node` is one of the cluster's nodes.
    pub fn has_node(&self, node: &str) -> bool {
        self.nodes.iter().any(|n| n.as_str() == node)
    }

    /// The nodes that host function `id`, in name order.
    pub fn hosting(&self, id: FunctionId) -> impl Iterator<Item = &Name> {
        self.hosting
            .get(id.index())
            .into_iter()
            .flatten()
            .filter_map(|&i| self.nodes.get(i))
    }

    /// Whether `node` hosts function `id`.
    pub fn hosts(&self, node: &str, id: FunctionId) -> bool {
        self.hosting(id).any(|n| n.as_str() == node)
    }

    /// The functions `node` hosts.
    pub fn hosted_by<'a>(&'a self, node: &'a str) -> impl Iterator<Item = FunctionId> + 'a {
        self.hosting
            .iter()
            .enumerate()
            .filter_map(move |(i, nodes)| {
                let hosted = nodes
                    .iter()
                    .any(|&n| self.nodes.get(n).is_some_and(|name| name.as_str() == node));
                hosted.then_some(FunctionId(i as u32))
            })
    }
}

impl Policy {
    /// Decides whether node `local` accepts a call to `callee` that peer node `peer_node` (of
    /// trust domain `peer_domain`, as its verified certificate says) forwards on behalf of
    /// `caller` (`function:NAME` or `gateway`). The peer speaks only for what this policy places
    /// on it; anything else is refused here, before a rule is consulted. What the caller may do
    /// is then decided as on one machine.
    pub fn decide_peer(
        &self,
        local: &str,
        peer_domain: &str,
        peer_node: &str,
        caller: &str,
        callee: FunctionId,
    ) -> Result<PeerCaller, Decision> {
        let refuse = |refusal| Err(Decision::refuse(Reason::Peer(refusal), false));
        let Some(placement) = &self.placement else {
            return refuse(PeerRefusal::UnknownNode(peer_node.to_owned()));
        };
        if peer_domain != placement.trust_domain.as_str() {
            return refuse(PeerRefusal::OtherTrustDomain {
                peer: format!("spiffe://{peer_domain}/node/{peer_node}"),
                expected: placement.trust_domain.to_string(),
            });
        }
        if !placement.has_node(peer_node) {
            return refuse(PeerRefusal::UnknownNode(peer_node.to_owned()));
        }
        if !placement.hosts(local, callee) {
            return refuse(PeerRefusal::NotHostedHere {
                function: self.function(callee).identity.clone(),
                node: local.to_owned(),
            });
        }
        if caller == "gateway" {
            return Ok(PeerCaller::Gateway);
        }
        let on_peer = caller
            .strip_prefix("function:")
            .and_then(|name| self.function_id(name))
            .filter(|&id| !self.function(id).spec.is_endpoint() && placement.hosts(peer_node, id));
        match on_peer {
            Some(id) => Ok(PeerCaller::Function(id)),
            None => refuse(PeerRefusal::CallerNotOnPeer {
                caller: caller.to_owned(),
                node: peer_node.to_owned(),
            }),
        }
    }

    /// Decides whether node `local` serves a gateway request another node forwarded for
    /// `forwarded_for`, now that this node's own decision matched `route`: the route must lead to
    /// that very function, and it must run here. A peer cannot use forwarding to reach a function
    /// it did not name, nor have this node forward again.
    pub fn decide_forwarded_route(
        &self,
        local: &str,
        forwarded_for: FunctionId,
        route: &CompiledRoute,
    ) -> Result<(), Decision> {
        let refuse = |refusal| Err(Decision::refuse(Reason::Peer(refusal), false));
        if route.function != forwarded_for {
            return refuse(PeerRefusal::RoutedElsewhere {
                route: route.id.to_string(),
                function: self.function(route.function).identity.clone(),
                forwarded_for: self.function(forwarded_for).identity.clone(),
            });
        }
        let hosted = self
            .placement
            .as_ref()
            .is_some_and(|p| p.hosts(local, route.function));
        if !hosted {
            return refuse(PeerRefusal::NotHostedHere {
                function: self.function(route.function).identity.clone(),
                node: local.to_owned(),
            });
        }
        Ok(())
    }

    /// Where functions run when the application spans several nodes; `None` when it runs in
    /// one process (no `[node.*]` tables).
    pub fn placement(&self) -> Option<&Placement> {
        self.placement.as_ref()
    }
}
