//! The callee's side of calls between nodes: the mesh listener, where a peer node proves who it
//! is with its certificate and this node decides the call again with its own revision.
//!
//! Nothing a peer sends is believed beyond what its certificate allows. The node is the SPIFFE id
//! of the verified certificate; the caller it names must be a function this node's policy places
//! on that node ([`septa_policy::Policy::decide_peer`]); then the call is decided by
//! [`septa_policy::Policy::decide_mesh`] exactly as on one machine, and delivered to a fresh
//! instance with the host's identity headers. A handshake that fails, and every refusal, is one
//! flow record naming the peer.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use septa_flows::{FlowGuard, FlowKind};
use septa_identity::tls::NodeTls;
use septa_identity::{NodeId, PeerError, node_id_of};
use septa_policy::path::{normalize_path, split_path_query};
use septa_policy::{Decision, PeerCaller, PeerRefusal, Principal, Reason};
use septa_runtime::{Caller, Chain, ForwardedFrom, ForwardedIngress, WasiBody};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::door::{AcceptBackoff, Door, MeshLimits};
use crate::internal::{Admitted, deliver, internal_name, json_response, probe_answer, refuse};
use crate::remote::{
    CLIENT_HEADER, DEADLINE_HEADER, DEPTH_HEADER, PRINCIPAL_FORWARD_HEADER, PROBE_HEADER,
    TRACE_HEADER,
};
use crate::{CALLER_HEADER, MAX_DEPTH, Mesh};

/// How long a peer has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// What decides a call when it arrives: the current generation's mesh, and its gateway for
/// requests another node's gateway forwarded. A reload replaces both.
pub type CurrentMesh = Arc<dyn Fn() -> Option<InboundTargets> + Send + Sync>;

/// The mesh and gateway of the generation in force.
#[derive(Clone)]
pub struct InboundTargets {
    /// Decides and delivers calls from functions on other nodes.
    pub mesh: Mesh,
    /// Decides again and serves requests other nodes' gateways forwarded.
    pub ingress: Option<Arc<dyn ForwardedIngress>>,
}

/// Accepts calls from other nodes on `listener` until the task is dropped, holding at most
/// `limits` connections (see [`crate::door`]).
pub async fn serve(
    listener: TcpListener,
    tls: Arc<NodeTls>,
    current: CurrentMesh,
    limits: MeshLimits,
) {
    let door = Arc::new(Door::new(limits));
    let mut backoff = AcceptBackoff::default();
    loop {
        let (tcp, addr) = match listener.accept().await {
            Ok(accepted) => {
                backoff.succeeded();
                accepted
            }
            Err(error) => {
                backoff.failed(&error).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = TlsAcceptor::from(tls.current().server.clone());
        let current = current.clone();
        let door = door.clone();
        let mut handshake = door.handshake();
        tokio::spawn(async move {
            let accepted = tokio::select! {
                accepted = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)) => accepted,
                _ = &mut handshake.evicted => {
                    return refused_handshake(&door, &current, &addr.to_string(),
                        "dropped for a newer connection while the listener had its fill of handshakes");
                }
            };
            drop(handshake);
            let stream = match accepted {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => {
                    return refused_handshake(
                        &door,
                        &current,
                        &addr.to_string(),
                        &error.to_string(),
                    );
                }
                Err(_) => {
                    return refused_handshake(&door, &current, &addr.to_string(), "timed out");
                }
            };
            let Some(_place) = door.connection() else {
                tracing::warn!(%addr, "mesh listener holds its fill of node connections; closing a new one");
                return;
            };
            let peer = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .ok_or(PeerError::NoCertificate)
                .and_then(|cert| node_id_of(cert));
            let peer = Arc::new(peer);
            let service = service_fn(move |request| {
                let peer = peer.clone();
                let targets = current();
                async move { Ok::<_, Infallible>(handle(targets, &peer, request).await) }
            });
            let served = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .max_concurrent_streams(256)
                // A forwarded request carries its client's headers and, hex-encoded, the claims
                // its gateway verified: more than hyper's 16 KiB default may be legitimate from
                // an authenticated node (the gateway bounds what a client sends).
                .max_header_list_size(256 * 1024)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(error) = served {
                tracing::debug!(%addr, %error, "node connection ended");
            }
        });
    }
}

/// Records a peer that did not complete the handshake (no certificate, another CA, expired).
fn refused_handshake(door: &Door, current: &CurrentMesh, addr: &str, why: &str) {
    if !door.may_record_refusal() {
        return;
    }
    let Some(targets) = current() else { return };
    let inner = &targets.mesh.inner;
    let local = inner.node.as_ref().map_or("", |n| n.name.as_str());
    let mut flow = inner.flows.guard(
        FlowKind::Mesh,
        format!("peer:{addr}"),
        format!("node:{local}"),
    );
    let refusal = PeerRefusal::NoIdentity(format!("tls handshake failed: {why}"));
    flow.set_decision(&Decision::refuse(Reason::Peer(refusal), false))
        .set_policy(inner.policy.revision());
}

/// Decides and serves one call from a peer node.
async fn handle(
    targets: Option<InboundTargets>,
    peer: &Result<NodeId, PeerError>,
    request: Request<Incoming>,
) -> Response<WasiBody> {
    let Some(InboundTargets { mesh, ingress }) = targets else {
        return json_response(StatusCode::SERVICE_UNAVAILABLE, None, "no revision applied");
    };
    let inner = &mesh.inner;
    let policy = &inner.policy;
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let caller_named = header(CALLER_HEADER);
    let callee_name = internal_name(request.uri()).unwrap_or_default();
    let target = request
        .uri()
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_owned();
    let (raw_path, query) = split_path_query(&target);
    let mut flow = inner.flows.guard(
        FlowKind::Mesh,
        if caller_named.is_empty() {
            "unknown"
        } else {
            &caller_named
        },
        format!("function:{callee_name}"),
    );
    flow.set_method(request.method().as_str())
        .set_path(raw_path)
        .set_policy(policy.revision());
    let trace = u64::from_str_radix(&header(TRACE_HEADER), 16).ok();
    if let Some(trace) = trace {
        flow.set_trace(trace);
    }
    // Only a verified peer's word makes a call a probe, and a probe is only ever delivered less.
    let probe = header(PROBE_HEADER) == "1";
    if probe {
        flow.set_probe();
    }
    let peer = match peer {
        Ok(peer) => {
            flow.set_peer(peer.node.clone());
            peer
        }
        Err(e) => return refuse_peer(&mut flow, PeerRefusal::NoIdentity(e.to_string())),
    };
    let local = inner.node.as_ref().map_or("", |n| n.name.as_str());
    let callee = match policy.mesh_destination(&callee_name) {
        Ok(callee) => callee,
        Err(refused) => return refuse(&mut flow, &refused),
    };
    if policy.function(callee).spec.is_endpoint() {
        flow.set_kind(FlowKind::Endpoint)
            .set_destination(policy.function(callee).identity.clone());
    }
    let caller = match policy.decide_peer(
        local,
        &peer.trust_domain,
        &peer.node,
        &caller_named,
        callee,
    ) {
        Ok(PeerCaller::Function(caller)) => caller,
        Ok(PeerCaller::Gateway) => {
            let client = header(CLIENT_HEADER).parse().ok();
            let principal = match header(PRINCIPAL_FORWARD_HEADER).as_str() {
                "" => Ok(None),
                text => Principal::from_forwarded(text).map(Some).ok_or(()),
            };
            let (Some(ingress), Some(client), Ok(principal)) = (ingress, client, principal) else {
                flow.set_error(
                        "a forwarded gateway request without a client address or with a malformed principal",
                    )
                    .set_status(400);
                return json_response(StatusCode::BAD_REQUEST, None, "Bad Request");
            };
            // The gateway records the request as the ingress flow it is.
            flow.discard();
            let from = ForwardedFrom {
                node: peer.node.clone(),
                local: local.to_owned(),
                function: callee,
                client,
                trace,
                principal,
            };
            return ingress.serve_forwarded(from, request).await;
        }
        Err(refused) => return refuse(&mut flow, &refused),
    };
    flow.set_segment(policy.function(caller).spec.placement.segment.as_str());
    let path = match normalize_path(raw_path) {
        Ok(path) => path,
        Err(e) => {
            let refused = Decision::refuse(Reason::InvalidPath(e.to_string()), false);
            flow.set_decision(&refused).set_status(400);
            return json_response(StatusCode::BAD_REQUEST, None, &refused.reason.to_string());
        }
    };
    let depth = header(DEPTH_HEADER).parse::<u8>().unwrap_or(MAX_DEPTH);
    if depth > MAX_DEPTH {
        let refused = Decision::refuse(Reason::CallChainTooDeep { max: MAX_DEPTH }, false);
        return refuse(&mut flow, &refused);
    }
    // The callee's node decides again, with its own revision.
    let decision = policy.decide_mesh(caller, callee, request.method().as_str(), path.as_str());
    if !decision.verdict.permits() {
        return refuse(&mut flow, &decision);
    }
    flow.set_decision(&decision);
    if probe {
        flow.set_status(200);
        flow.finish();
        return probe_answer(&decision);
    }
    let admitted = Admitted {
        callee,
        authority: format!("{callee_name}.internal"),
        path_and_query: match query {
            Some(q) => format!("{}?{q}", path.as_str()),
            None => path.as_str().to_owned(),
        },
    };
    // What the calling node's chain has left bounds the call here too (and the callee's own
    // timeout, whichever ends first), so a callee never works on for a caller that stopped
    // waiting. Without the header, the callee's timeout alone.
    let deadline = header(DEADLINE_HEADER)
        .parse::<u64>()
        .ok()
        .and_then(|ms| Instant::now().checked_add(Duration::from_millis(ms)));
    let caller = Caller {
        function: caller,
        chain: Chain {
            depth: depth.saturating_sub(1),
            trace: trace.unwrap_or_default(),
            probe,
            deadline,
        },
    };
    let request = request.map(|body| body.map_err(wasmtime_wasi_http::Error::from).boxed_unsync());
    match deliver(inner, caller, admitted, request, flow).await {
        Ok(response) => response,
        Err(e) => json_response(StatusCode::INTERNAL_SERVER_ERROR, None, &e.to_string()),
    }
}

fn refuse_peer(flow: &mut FlowGuard, refusal: PeerRefusal) -> Response<WasiBody> {
    refuse(flow, &Decision::refuse(Reason::Peer(refusal), false))
}
