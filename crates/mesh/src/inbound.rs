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
use std::time::Duration;

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use septa_flows::{FlowGuard, FlowKind};
use septa_identity::tls::NodeTls;
use septa_identity::{NodeId, PeerError, node_id_of};
use septa_policy::path::{normalize_path, split_path_query};
use septa_policy::{Decision, PeerCaller, PeerRefusal, Reason};
use septa_runtime::{Caller, Chain, WasiBody};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::internal::{Admitted, deliver, internal_name, json_response, refuse};
use crate::remote::{DEPTH_HEADER, TRACE_HEADER};
use crate::{CALLER_HEADER, MAX_DEPTH, Mesh};

/// How long a peer has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// The mesh in force when a call arrives: the current generation's, which a reload replaces.
pub type CurrentMesh = Arc<dyn Fn() -> Option<Mesh> + Send + Sync>;

/// Accepts calls from other nodes on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, tls: Arc<NodeTls>, current: CurrentMesh) {
    loop {
        let (tcp, addr) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "mesh listener cannot accept; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = TlsAcceptor::from(tls.current().server.clone());
        let current = current.clone();
        tokio::spawn(async move {
            let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await;
            let stream = match handshake {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => {
                    return refused_handshake(&current, &addr.to_string(), &error.to_string());
                }
                Err(_) => return refused_handshake(&current, &addr.to_string(), "timed out"),
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
                let mesh = current();
                async move { Ok::<_, Infallible>(handle(mesh, &peer, request).await) }
            });
            let served = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .max_concurrent_streams(256)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(error) = served {
                tracing::debug!(%addr, %error, "node connection ended");
            }
        });
    }
}

/// Records a peer that did not complete the handshake (no certificate, another CA, expired).
fn refused_handshake(current: &CurrentMesh, addr: &str, why: &str) {
    let Some(mesh) = current() else { return };
    let inner = &mesh.inner;
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
    mesh: Option<Mesh>,
    peer: &Result<NodeId, PeerError>,
    request: Request<Incoming>,
) -> Response<WasiBody> {
    let Some(mesh) = mesh else {
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
    let caller =
        match policy.decide_peer(local, &peer.trust_domain, &peer.node, &caller_named, callee) {
            Ok(PeerCaller::Function(caller)) => caller,
            Ok(PeerCaller::Gateway) => {
                flow.set_error("requests forwarded from another node's gateway are not served yet")
                    .set_status(501);
                return json_response(
                    StatusCode::NOT_IMPLEMENTED,
                    None,
                    "forwarded gateway requests are not served by this node",
                );
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
    let admitted = Admitted {
        callee,
        authority: format!("{callee_name}.internal"),
        path_and_query: match query {
            Some(q) => format!("{}?{q}", path.as_str()),
            None => path.as_str().to_owned(),
        },
    };
    let caller = Caller {
        function: caller,
        chain: Chain {
            depth: depth.saturating_sub(1),
            trace: trace.unwrap_or_default(),
            probe: false,
            // The callee's own timeout bounds the call here; the caller's node bounds its wait.
            deadline: None,
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
