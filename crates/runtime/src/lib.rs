//! The wasmtime host: engine, compiled-component cache, per-request stores with limits, and the
//! hooks through which every guest egress leaves.
//!
//! A guest never reaches anything directly. Its outgoing wasi:http requests and its socket
//! connections go through [`Outbound`], a trait this crate defines and the mesh implements, so
//! the dependency arrows stay one way: the runtime knows nothing of policy decisions.

mod body;
mod bulkhead;
mod cache;
mod component_check;
mod engine;
mod error_response;
mod guest_output;
mod host;
mod identity;
mod invoke_error;
mod pool;
mod run;
mod scheduler;
mod state;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::time::Instant;

pub use body::{CountedBody, DeadlineBody, GuestBody, RecordedBody};
pub use bulkhead::{Admitted, Bulkheads};
pub use cache::{CacheOutcome, ComponentCache};
pub use component_check::{ComponentProblem, check_component};
pub use engine::{EPOCH_TICK, EpochTicker, build_engine};
pub use error_response::{json_error, json_response, trace_id};
pub use host::{Host, LoadError, LoadReport};
pub use identity::{
    CALLER_HEADER, CLAIM_HEADER_PREFIX, PRINCIPAL_HEADER, header_text, principal_headers,
    strip_identity_headers,
};
pub use invoke_error::InvokeError;
pub use pool::{InstanceNeeds, NeedsError, PoolSize, promised_instances};
pub use scheduler::{CpuUsage, ScheduledThread, cpu_usage, schedule_this_thread};
use septa_policy::{FunctionId, Principal};
pub use wasmtime::Engine;
pub use wasmtime_wasi::sockets::SocketAddrUse;
pub use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
pub use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody};

/// Who makes an outbound call: the function, as the host knows it, and the chain of calls it is
/// part of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The calling function.
    pub function: FunctionId,
    /// The calls that led here.
    pub chain: Chain,
}

/// Where a call sits in the chain of calls one gateway request set off: how many in-process
/// hops deep it is (so a cycle of allowed calls cannot recurse without end), the request's
/// trace id, which every flow of the chain records, and the deadline every call of the chain
/// ends by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chain {
    /// 0 for a request from the gateway, one more for each mesh hop.
    pub depth: u8,
    /// The id the gateway gave the request.
    pub trace: u64,
    /// Whether this is a segmentation probe, which the mesh decides and records like any call
    /// but does not deliver. Only the host sets it (for `septa probe`); no guest can.
    pub probe: bool,
    /// When the request must be over, whatever waits on what: set by the host when the first
    /// function of the chain starts (its timeout), and kept by every call it makes, so a
    /// callee ends by its caller's deadline when that comes before its own. `None` until a
    /// function runs.
    pub deadline: Option<Instant>,
}

impl Chain {
    /// The start of a chain: a request the gateway dispatches, traced as `trace`.
    pub fn start(trace: u64) -> Self {
        Self {
            depth: 0,
            trace,
            probe: false,
            deadline: None,
        }
    }

    /// A segmentation probe's call, traced as `trace`.
    pub fn probe(trace: u64) -> Self {
        Self {
            depth: 0,
            trace,
            probe: true,
            deadline: None,
        }
    }

    /// The same chain, over by `deadline` at the latest.
    pub fn within(self, deadline: Instant) -> Self {
        Self {
            deadline: Some(self.deadline.map_or(deadline, |d| d.min(deadline))),
            ..self
        }
    }

    /// The chain one mesh hop further.
    pub fn next(self) -> Self {
        Self {
            depth: self.depth.saturating_add(1),
            ..self
        }
    }
}

/// A boxed future of an outbound response.
pub type ResponseFuture = Pin<
    Box<dyn Future<Output = Result<http::Response<WasiBody>, wasmtime_wasi_http::Error>> + Send>,
>;

/// Where a guest's outbound traffic goes. The mesh implements it; the runtime calls it with the
/// identity of the guest, which the guest cannot influence.
pub trait Outbound: Send + Sync + 'static {
    /// Sends an outgoing wasi:http request made by function `caller`.
    fn send_request(
        &self,
        caller: Caller,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> ResponseFuture;

    /// Whether function `caller` may use socket address `addr` for `use_` (wasi:sockets).
    fn check_socket(
        &self,
        caller: Caller,
        addr: SocketAddr,
        use_: SocketAddrUse,
    ) -> Pin<Box<dyn Future<Output = bool> + Send + Sync>>;

    /// Hands a request the gateway admitted for `forward.function`, which this node does not
    /// run, to a node that does; that node decides it again. `None` when there is no such node
    /// to hand it to (septa runs as one process, or the function runs here).
    fn forward(&self, forward: Forward, request: http::Request<WasiBody>) -> Option<ForwardFuture> {
        let _ = (forward, request);
        None
    }
}

/// A gateway request on its way to the node that runs its function.
#[derive(Clone, Debug)]
pub struct Forward {
    /// The route's function.
    pub function: FunctionId,
    /// The request's trace.
    pub chain: Chain,
    /// The client address the gateway established.
    pub client: IpAddr,
    /// Who the gateway verified the request came from, if its route asks.
    pub principal: Option<Principal>,
}

/// What a forwarded request met: the node that answered and its response, or why no node did.
pub type ForwardFuture = Pin<Box<dyn Future<Output = Result<Forwarded, String>> + Send>>;

/// The answer of the node a request was forwarded to.
pub struct Forwarded {
    /// The node that answered.
    pub node: String,
    /// Its response.
    pub response: http::Response<WasiBody>,
}

/// A request another node's gateway admitted and forwarded here, as the verified peer
/// certificate and the forwarding headers say.
#[derive(Clone, Debug)]
pub struct ForwardedFrom {
    /// The forwarding node, from its certificate.
    pub node: String,
    /// This node, which the request was forwarded to.
    pub local: String,
    /// The function the request was sent for (the one this node runs).
    pub function: FunctionId,
    /// The client address the forwarding gateway established.
    pub client: IpAddr,
    /// The request's trace, when the forwarding node sent one.
    pub trace: Option<u64>,
    /// Who the forwarding gateway verified the request came from; the credential is not
    /// verified again.
    pub principal: Option<Principal>,
}

/// This node's gateway, deciding again a request another node's gateway forwarded: the gateway
/// implements it, the mesh listener calls it for requests whose caller is `gateway`.
pub trait ForwardedIngress: Send + Sync + 'static {
    /// Decides `request` again (route, credential, authorization) and serves it here or refuses
    /// it; the rate limits were counted by the forwarding gateway.
    fn serve_forwarded(
        &self,
        from: ForwardedFrom,
        request: hyper::Request<hyper::body::Incoming>,
    ) -> Pin<Box<dyn Future<Output = hyper::Response<HyperOutgoingBody>> + Send + '_>>;
}
