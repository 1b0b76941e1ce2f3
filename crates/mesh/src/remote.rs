//! Calls to functions that another node hosts: HTTP/2 over mutual TLS, one pooled connection per
//! peer node, to one of the callee's nodes in turn.
//!
//! The caller's node has already decided the call. The request leaves with the headers only a
//! node sets ([`CALLER_HEADER`], [`TRACE_HEADER`], [`DEPTH_HEADER`]); the callee's node believes
//! them only as far as the peer certificate allows (see `inbound`). A node that cannot be reached
//! is skipped for the next hosting node; when none answers, the call is a 503 `node unavailable`.
//!
//! A node's mesh address may be a DNS name ([`PeerAddress::Name`]), such as the Kubernetes
//! Service in front of its pods: it is resolved when a connection is dialled, within
//! [`DNS_TIMEOUT`], and the TLS server name stays the node's name, so the certificate is checked
//! against the node whichever pod the name leads to.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use septa_identity::tls::NodeTls;
use septa_runtime::{Chain, WasiBody, header_text};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::peer::PeerAddress;

/// How long resolving a peer's mesh name may take before the peer counts as unreachable.
pub const DNS_TIMEOUT: Duration = Duration::from_secs(2);

/// The header carrying the trace id of a call between nodes (16 hex digits).
pub const TRACE_HEADER: &str = "septa-trace";
/// The header carrying how many hops deep a call between nodes is.
pub const DEPTH_HEADER: &str = "septa-depth";
/// The header marking a call between nodes as a segmentation probe: decided, never delivered.
pub const PROBE_HEADER: &str = "septa-probe";
/// The header carrying the client address of a gateway request forwarded to another node.
pub const CLIENT_HEADER: &str = "septa-client";
/// The header carrying who the forwarding gateway verified a request came from
/// (`Principal::to_forwarded`).
pub const PRINCIPAL_FORWARD_HEADER: &str = "septa-forwarded-principal";
/// The header carrying how many milliseconds a call between nodes has left before its chain's
/// deadline: a duration, as gRPC's `grpc-timeout`, so the nodes' clocks need not agree.
pub const DEADLINE_HEADER: &str = "septa-deadline-ms";

/// Sets the headers that carry `chain` (the callee's: one hop deeper than the caller's) to the
/// septa that runs the callee: its trace, its depth, whether it is a probe and how many
/// milliseconds it has left. The receiving septa bounds the call by them (`inbound`, and
/// `septa lambda` for a call that came through VPC Lattice).
pub fn set_chain_headers(headers: &mut http::HeaderMap, chain: Chain) {
    headers.insert(TRACE_HEADER, header_text(&format!("{:016x}", chain.trace)));
    headers.insert(DEPTH_HEADER, header_text(&chain.depth.to_string()));
    if chain.probe {
        headers.insert(PROBE_HEADER, header_text("1"));
    }
    if let Some(deadline) = chain.deadline {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .as_millis();
        headers.insert(DEADLINE_HEADER, header_text(&left.to_string()));
    }
}

/// Where the other nodes accept calls, as the registry has it.
pub trait PeerDirectory: Send + Sync + 'static {
    /// The mesh address of `node`, if it is registered and alive.
    fn mesh_address(&self, node: &str) -> Option<PeerAddress>;
}

/// Why no hosting node answered.
#[derive(Debug, thiserror::Error)]
#[error("node unavailable: {}", .tried.join("; "))]
pub struct Unavailable {
    /// Each node tried, with what went wrong.
    pub tried: Vec<String>,
}

/// The client side of node-to-node calls.
pub struct RemoteNodes {
    tls: Arc<NodeTls>,
    directory: Arc<dyn PeerDirectory>,
    connections: Mutex<HashMap<String, SendRequest<WasiBody>>>,
    /// Attempts to reach each node that failed, for the metrics.
    unreachable: Mutex<HashMap<String, u64>>,
    turn: AtomicUsize,
    connect_timeout: Duration,
}

impl RemoteNodes {
    /// Calls other nodes with this node's certificates, finding them in `directory`.
    pub fn new(tls: Arc<NodeTls>, directory: Arc<dyn PeerDirectory>) -> Self {
        Self {
            tls,
            directory,
            connections: Mutex::new(HashMap::new()),
            unreachable: Mutex::new(HashMap::new()),
            turn: AtomicUsize::new(0),
            connect_timeout: Duration::from_secs(2),
        }
    }

    /// Sends `request` to one of `nodes` (the callee's, in the policy's order), starting with the
    /// next in turn and moving on while a node cannot be reached. Returns the node that answered.
    pub async fn send(
        &self,
        nodes: &[String],
        mut request: Request<WasiBody>,
    ) -> Result<(String, Response<Incoming>), Unavailable> {
        let mut tried = Vec::new();
        let start = self.turn.fetch_add(1, Ordering::Relaxed);
        for i in 0..nodes.len() {
            let node = &nodes[(start + i) % nodes.len()];
            let mut sender = match self.connection(node).await {
                Ok(sender) => sender,
                Err(why) => {
                    self.count_unreachable(node);
                    tried.push(format!("{node}: {why}"));
                    continue;
                }
            };
            match sender.try_send_request(request).await {
                Ok(response) => return Ok((node.clone(), response)),
                Err(mut error) => {
                    self.forget(node);
                    self.count_unreachable(node);
                    tried.push(format!("{node}: {}", error.error()));
                    // A request the connection never took can go to the next node; one it
                    // started to send cannot be sent twice.
                    match error.take_message() {
                        Some(unsent) => request = unsent,
                        None => break,
                    }
                }
            }
        }
        if tried.is_empty() {
            tried.push("no node hosts it".to_owned());
        }
        Err(Unavailable { tried })
    }

    async fn connection(&self, node: &str) -> Result<SendRequest<WasiBody>, String> {
        if let Some(sender) = self.pooled(node) {
            return Ok(sender);
        }
        let addr = self
            .directory
            .mesh_address(node)
            .ok_or_else(|| "not registered".to_owned())?;
        // Resolved at every dial, never cached here: a Service's address may move.
        let addrs = addr.resolve(DNS_TIMEOUT).await.map_err(|e| e.to_string())?;
        let name = ServerName::try_from(node.to_owned()).map_err(|e| e.to_string())?;
        let connector = TlsConnector::from(self.tls.current().client.clone());
        let connect = async {
            // Each address in the resolver's order, as a name may resolve to `::1` and
            // `127.0.0.1` with the node listening on one of them.
            let tcp = TcpStream::connect(&addrs[..])
                .await
                .map_err(|e| format!("{addr}: {e}"))?;
            let _ = tcp.set_nodelay(true);
            connector
                .connect(name, tcp)
                .await
                .map_err(|e| format!("tls: {e}"))
        };
        let tls = tokio::time::timeout(self.connect_timeout, connect)
            .await
            .map_err(|_| format!("no connection within {:?}", self.connect_timeout))??;
        let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .handshake(TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
        let node_name = node.to_owned();
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(node = %node_name, %error, "connection to node ended");
            }
        });
        if let Ok(mut pool) = self.connections.lock() {
            pool.insert(node.to_owned(), sender.clone());
        }
        Ok(sender)
    }

    fn pooled(&self, node: &str) -> Option<SendRequest<WasiBody>> {
        let mut pool = self.connections.lock().ok()?;
        match pool.get(node) {
            Some(sender) if sender.is_ready() || !sender.is_closed() => Some(sender.clone()),
            Some(_) => {
                pool.remove(node);
                None
            }
            None => None,
        }
    }

    /// How many attempts to reach each node failed so far.
    pub fn unreachable(&self) -> Vec<(String, u64)> {
        self.unreachable
            .lock()
            .map(|counts| counts.iter().map(|(n, c)| (n.clone(), *c)).collect())
            .unwrap_or_default()
    }

    fn count_unreachable(&self, node: &str) {
        if let Ok(mut counts) = self.unreachable.lock() {
            *counts.entry(node.to_owned()).or_default() += 1;
        }
    }

    fn forget(&self, node: &str) {
        if let Ok(mut pool) = self.connections.lock() {
            pool.remove(node);
        }
    }
}
