//! Function-to-function and egress dispatch for guests' outbound requests.
//!
//! [`Mesh`] implements the runtime's [`Outbound`] trait. A request to `http://NAME.internal/...`
//! is a mesh call: decided by [`Policy::decide_mesh`] with the caller identity the host knows,
//! then dispatched in process to a fresh instance of the callee with `septa-caller` set by the
//! host. Anything else is egress: decided by [`Policy::decide_egress`] before any DNS lookup,
//! then the address actually dialled is checked against the operator ceiling and pinned. A mesh
//! call to a private endpoint is decided the same way and answered by the [`EndpointService`];
//! an allowed call to a function that runs outside septa's nodes (under `septa lambda`, behind
//! VPC Lattice) is handed to [`ExternalFunctions`].
//! Every decision is one flow record.
//!
//! [`fetch`] is the same path for septa's own fetches (an issuer's JWKS), whose source is the
//! gateway.

pub mod dial;
mod door;
mod egress;
pub mod fetch;
pub mod inbound;
mod internal;
pub mod peer;
pub mod remote;
mod remote_call;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Weak};

use septa_flows::FlowLog;
use septa_policy::{FunctionId, Policy};
pub use septa_runtime::{CALLER_HEADER, header_text, strip_identity_headers};
use septa_runtime::{
    Caller, Chain, Forward, ForwardFuture, Host, Outbound, RequestOptions, ResponseFuture,
    SocketAddrUse, WasiBody,
};

pub use dial::DialTimeouts;
pub use door::MeshLimits;
pub use peer::PeerAddress;
pub use remote::{PeerDirectory, RemoteNodes};

/// The header a denied mesh call's 403 carries, saying why.
pub const DENY_REASON_HEADER: &str = "septa-deny-reason";

/// The longest chain of in-process calls; deeper calls are refused as a loop.
pub const MAX_DEPTH: u8 = 8;

/// The outbound path of every guest.
#[derive(Clone)]
pub struct Mesh {
    inner: Arc<Inner>,
}

struct Inner {
    policy: Arc<Policy>,
    host: Weak<Host>,
    flows: FlowLog,
    timeouts: DialTimeouts,
    endpoints: Option<Arc<dyn EndpointService>>,
    /// Where calls to functions this process does not run go when no node runs them.
    external: Option<Arc<dyn ExternalFunctions>>,
    /// On a node of a cluster: which node this is, and how it reaches the others.
    node: Option<LocalNode>,
}

/// The node a mesh runs on, and its way to the others.
#[derive(Clone)]
pub struct LocalNode {
    /// This node's name, as `[node.NAME]` and its certificate say.
    pub name: String,
    /// The trust domain its certificate belongs to; a revision of another one cannot run here.
    pub trust_domain: String,
    /// Calls to functions other nodes host.
    pub remote: Arc<RemoteNodes>,
}

impl LocalNode {
    /// Whether this node runs `function` itself under `policy`.
    pub(crate) fn hosts(&self, policy: &Policy, function: FunctionId) -> bool {
        policy
            .placement()
            .is_none_or(|p| p.hosts(&self.name, function))
    }
}

/// A response from a function that runs outside septa's nodes, or why the call could not be
/// sent there (what the flow record says; the guest hears 503).
pub type ExternalFuture =
    Pin<Box<dyn Future<Output = Result<http::Response<WasiBody>, String>> + Send>>;

/// What carries a mesh call, once the policy allowed it, to a function this process does not
/// run and no node of a cluster runs: under `septa lambda`, the callee's own Lambda function
/// behind its VPC Lattice service, which decides the call again.
pub trait ExternalFunctions: Send + Sync + 'static {
    /// Sends `request` (its path normalized, the guest's `septa-*` headers removed) to
    /// `callee`, as the function this process runs, one hop along the caller's `chain` (the
    /// callee's chain: its depth, trace and deadline, for the callee's septa to bound it by).
    fn call(
        &self,
        callee: FunctionId,
        chain: Chain,
        request: http::Request<WasiBody>,
    ) -> ExternalFuture;
}

/// A response to an endpoint call, boxed the way guests read responses.
pub type EndpointFuture = Pin<Box<dyn Future<Output = http::Response<WasiBody>> + Send>>;

/// What answers mesh calls to private endpoints (`[endpoint.NAME]`) once the policy allowed
/// them: the key-value stores. It never fails; a store that is down is a 503 response.
pub trait EndpointService: Send + Sync + 'static {
    /// Answers `request` (its path normalized, its `septa-*` headers the host's) for endpoint
    /// `endpoint`.
    fn call(&self, endpoint: FunctionId, request: http::Request<WasiBody>) -> EndpointFuture;
}

impl Mesh {
    /// A mesh deciding with `policy`, dispatching mesh calls to `host` and recording to `flows`.
    pub fn new(
        policy: Arc<Policy>,
        host: &Arc<Host>,
        flows: FlowLog,
        timeouts: DialTimeouts,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                policy,
                host: Arc::downgrade(host),
                flows,
                timeouts,
                endpoints: None,
                external: None,
                node: None,
            }),
        }
    }

    /// The same mesh, delivering allowed endpoint calls to `endpoints`. Without it, an allowed
    /// call to an endpoint is answered 503.
    pub fn with_endpoints(self, endpoints: Arc<dyn EndpointService>) -> Self {
        self.rebuilt(|inner| inner.endpoints = Some(endpoints))
    }

    /// The same mesh, sending allowed calls to functions its host does not run to `external`.
    /// Without it (and off a cluster), such a call fails as a callee that cannot run.
    pub fn with_external_functions(self, external: Arc<dyn ExternalFunctions>) -> Self {
        self.rebuilt(|inner| inner.external = Some(external))
    }

    /// The same mesh on node `node` of a cluster: calls to functions this node does not host go
    /// to the nodes that do, over mutual TLS.
    pub fn on_node(self, node: LocalNode) -> Self {
        self.rebuilt(|inner| inner.node = Some(node))
    }

    fn rebuilt(self, change: impl FnOnce(&mut Inner)) -> Self {
        let mut inner = Inner {
            policy: self.inner.policy.clone(),
            host: self.inner.host.clone(),
            flows: self.inner.flows.clone(),
            timeouts: self.inner.timeouts,
            endpoints: self.inner.endpoints.clone(),
            external: self.inner.external.clone(),
            node: self.inner.node.clone(),
        };
        change(&mut inner);
        Self {
            inner: Arc::new(inner),
        }
    }

    /// The policy this mesh decides with.
    pub fn policy(&self) -> &Arc<Policy> {
        &self.inner.policy
    }
}

impl Outbound for Mesh {
    fn send_request(
        &self,
        caller: Caller,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> ResponseFuture {
        let mesh = self.clone();
        Box::pin(async move {
            match internal::internal_name(request.uri()) {
                Some(name) => internal::call(&mesh.inner, caller, name, request).await,
                None => egress::send(&mesh.inner, caller, request, options).await,
            }
        })
    }

    fn check_socket(
        &self,
        caller: Caller,
        addr: SocketAddr,
        use_: SocketAddrUse,
    ) -> Pin<Box<dyn Future<Output = bool> + Send + Sync>> {
        let permitted = egress::check_socket(&self.inner, caller, addr, use_);
        Box::pin(async move { permitted })
    }

    fn forward(&self, forward: Forward, request: http::Request<WasiBody>) -> Option<ForwardFuture> {
        let node = self.inner.node.clone()?;
        if node.hosts(&self.inner.policy, forward.function) {
            return None;
        }
        let mesh = self.clone();
        Some(Box::pin(async move {
            remote_call::forward(&mesh.inner, &node, forward, request).await
        }))
    }
}
