//! The ingress phases, in the order a request meets them: strip what the client claimed about
//! identity, have the policy decide (`Policy::decide_ingress`: normalize, route, authenticate,
//! authorize, limit), then carry the decision out — refuse, or dispatch to a fresh instance.

use std::convert::Infallible;
use std::future::Future;
use std::mem::Discriminant;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use http::header::{CONNECTION, CONTENT_LENGTH, HOST, RETRY_AFTER};
use http::{HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use septa_flows::{FlowGuard, FlowKind, FlowLog, LogThrottle};
use septa_manifest::JwtIssuer;
use septa_policy::path::split_path_query;
use septa_policy::{
    CompiledRoute, IngressDecision, IngressRequest, LimitsCountedElsewhere, NoFacts, Policy,
    Principal, Reason, Verdict,
};
use septa_runtime::{
    Chain, Forward, Forwarded, ForwardedFrom, ForwardedIngress, Host, HyperOutgoingBody,
    InvokeError, RecordedBody,
};

use crate::auth::jwt::JwtVerifier;
use crate::auth::refresh::{JwksFetcher, KeyRefresh};
use crate::auth::{Credentials, principal_headers};
use crate::client::ClientAddresses;
use crate::facts::{ForwardedPrincipal, RequestFacts};
use crate::limits::{LimitHeaders, RateLimits};
use crate::respond::{Headers, json_error, refusal_headers, status_of};

/// The identity the host sets on requests that came through the gateway.
pub const GATEWAY_IDENTITY: &str = "gateway";

/// Everything the ingress path needs, shared by every worker thread.
pub struct Gateway {
    policy: Arc<Policy>,
    host: Arc<Host>,
    flows: FlowLog,
    clients: ClientAddresses,
    credentials: Credentials,
    limits: RateLimits,
    jwks: Arc<dyn JwksFetcher>,
    fetched_issuers: Vec<(Arc<JwtVerifier>, JwtIssuer)>,
}

type GatewayBody = HyperOutgoingBody;

/// What a probe of the public side met (see [`Gateway::probe`]).
#[derive(Debug, Clone)]
pub struct GatewayProbe {
    /// The identity the request would reach, when the policy lets it.
    pub destination: Option<String>,
    /// The decision.
    pub verdict: Verdict,
    /// The route that took it.
    pub rule: Option<String>,
    /// Why, as the flow log says it.
    pub reason: String,
}

/// A request the policy admitted, as the dispatch phase carries it out.
struct Admitted<'p> {
    route: &'p CompiledRoute,
    principal: Option<Principal>,
    /// The path the policy decided on, and the query to hand on with it.
    path_and_query: String,
    /// Headers for the response, whatever the function answers (rate-limit state, say).
    response_headers: Headers,
    trace: u64,
    /// The client address the gateway established.
    client: IpAddr,
}

/// A new trace id for a request: unique within the process (a counter from a random start, so
/// ids from two runs do not line up).
fn next_trace() -> u64 {
    static START: OnceLock<u64> = OnceLock::new();
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let start = *START.get_or_init(|| {
        let mut bytes = [0u8; 8];
        // Without randomness the ids still differ within the run; they start at zero.
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes);
        u64::from_le_bytes(bytes)
    });
    start.wrapping_add(COUNT.fetch_add(1, Ordering::Relaxed))
}

impl Gateway {
    /// A gateway for `policy`, dispatching to `host`, recording to `flows`, with the verifiers
    /// and rate-limit buckets the policy's routes ask for. Fails if a JWKS or API key file
    /// cannot be loaded. Issuers whose keys are fetched through `jwks` start with none;
    /// [`Gateway::start_key_refresh`] fetches them.
    pub fn new(
        policy: Arc<Policy>,
        host: Arc<Host>,
        flows: FlowLog,
        jwks: Arc<dyn JwksFetcher>,
    ) -> Result<Self, crate::auth::AuthLoadError> {
        Self::build(policy, host, flows, jwks, None)
    }

    /// The gateway that replaces this one on a reload to `policy` and `host`. It carries over
    /// what must survive a reload: the rate-limit buckets of limits that did not change (a
    /// reload hands no one a fresh burst), and the verifiers, keys and verified tokens of
    /// fetched issuers whose declaration did not change (their routes never lack keys). The
    /// rest is loaded afresh, API key and JWKS files included.
    pub fn reloaded(
        &self,
        policy: Arc<Policy>,
        host: Arc<Host>,
        jwks: Arc<dyn JwksFetcher>,
    ) -> Result<Self, crate::auth::AuthLoadError> {
        Self::build(policy, host, self.flows.clone(), jwks, Some(self))
    }

    fn build(
        policy: Arc<Policy>,
        host: Arc<Host>,
        flows: FlowLog,
        jwks: Arc<dyn JwksFetcher>,
        previous: Option<&Gateway>,
    ) -> Result<Self, crate::auth::AuthLoadError> {
        // Credentials are loaded only when a route asks for them, so a key file nothing uses
        // cannot stop septa from starting.
        let (credentials, fetched_issuers) = if policy.routes().any(|r| r.auth.is_some()) {
            let carried = previous.map_or(&[][..], |g| g.fetched_issuers.as_slice());
            let credentials = Credentials::load(&policy, carried)?;
            let fetched = credentials.fetched_issuers(&policy);
            (credentials, fetched)
        } else {
            (Credentials::default(), Vec::new())
        };
        Ok(Self {
            clients: ClientAddresses::new(policy.gateway()),
            limits: RateLimits::new(&policy, previous.map(|g| &g.limits)),
            policy,
            host,
            flows,
            credentials,
            jwks,
            fetched_issuers,
        })
    }

    /// The policy this gateway decides with.
    pub fn policy(&self) -> &Arc<Policy> {
        &self.policy
    }

    /// Starts fetching the keys of every issuer with a `jwks_url` that a route uses, and keeps
    /// them fresh in the background until the returned handle is dropped. Wait for the first
    /// fetches with [`KeyRefresh::wait_first`] before listening.
    pub fn start_key_refresh(&self) -> std::io::Result<KeyRefresh> {
        KeyRefresh::start(
            self.fetched_issuers.clone(),
            self.jwks.clone(),
            self.flows.clone(),
            &self.policy,
        )
    }

    /// Records a request the connection layer refused before routing (ambiguous framing), so
    /// smuggling attempts are in the flow log like every other decision. Returns the trace id
    /// the refusal is known by.
    pub fn record_refusal<B>(
        &self,
        peer: SocketAddr,
        request: &Request<B>,
        status: StatusCode,
        reason: &str,
    ) -> u64 {
        let trace = next_trace();
        let mut flow = self.start_flow();
        let client = self.clients.resolve(peer.ip(), request.headers());
        let target = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
        let mut facts =
            RequestFacts::new(&self.credentials, &self.limits, client, request.headers());
        let refused = self.policy.decide_unreadable(reason.to_owned(), &mut facts);
        if !facts.recorded {
            flow.discard();
            return trace;
        }
        flow.set_method(request.method().as_str())
            .set_path(split_path_query(target).0)
            .set_client(client.to_string())
            .set_trace(trace)
            .set_decision(&refused)
            .set_status(status.as_u16());
        flow.finish();
        trace
    }

    /// A segmentation probe of the public side: where a request for `method` and `path` from
    /// the internet would go, decided by [`Policy::decide_ingress`] as a probe (up to its route:
    /// a probe tests where the network lets a request go, not whose credentials it carries),
    /// recorded as an ingress flow marked as a probe, and never dispatched.
    pub fn probe(&self, method: &str, path: &str, trace: u64) -> GatewayProbe {
        let mut flow = self.start_flow();
        let path = split_path_query(path).0;
        flow.set_method(method)
            .set_path(path)
            .set_trace(trace)
            .set_probe();
        let decided = self
            .policy
            .decide_ingress(&IngressRequest::probe(method, path), &mut NoFacts);
        let destination = self.record_decision(&mut flow, &decided);
        GatewayProbe {
            destination: destination.filter(|_| decided.decision.verdict.permits()),
            verdict: decided.decision.verdict,
            rule: decided.decision.rule.as_ref().map(ToString::to_string),
            reason: decided.decision.reason.to_string(),
        }
    }

    /// Handles one request from `peer`. Never fails: every refusal is a response.
    pub async fn handle(
        &self,
        peer: SocketAddr,
        request: Request<Incoming>,
    ) -> Result<Response<GatewayBody>, Infallible> {
        let client = self.clients.resolve(peer.ip(), request.headers());
        Ok(self.serve(request, client, next_trace(), None).await)
    }

    /// Decides and carries out one request from `client`: received here, or received by the
    /// gateway of node `forwarded.node` and forwarded here because this node runs its function.
    async fn serve(
        &self,
        request: Request<Incoming>,
        client: IpAddr,
        trace: u64,
        forwarded: Option<&ForwardedFrom>,
    ) -> Response<GatewayBody> {
        let mut flow = self.start_flow();
        let (mut parts, body) = request.into_parts();
        let target = parts
            .uri
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_owned();
        let (raw_path, query) = split_path_query(&target);
        flow.set_method(parts.method.as_str())
            .set_path(raw_path)
            .set_client(client.to_string())
            .set_trace(trace);
        if let Some(from) = forwarded {
            flow.set_peer(from.node.clone());
        }

        // 1. Identity is the host's to set: drop whatever the client claimed.
        septa_runtime::strip_identity_headers(&mut parts.headers);

        // 2. The policy decides, asking the gateway's verifiers and limiters what it needs. A
        //    forwarded request is decided again, its credential verified again; its limits
        //    were counted where it arrived.
        let declared_length = parts
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let request = IngressRequest {
            method: parts.method.as_str(),
            path: raw_path,
            client,
            declared_length,
            probe: false,
        };
        let (mut decided, limit_headers, recorded) = match forwarded {
            None => {
                let mut facts =
                    RequestFacts::new(&self.credentials, &self.limits, client, &parts.headers);
                let decided = self.policy.decide_ingress(&request, &mut facts);
                (decided, facts.limit_headers, facts.recorded)
            }
            Some(forwarded) => {
                let mut facts = LimitsCountedElsewhere(ForwardedPrincipal {
                    principal: forwarded.principal.as_ref(),
                });
                let decided = self.policy.decide_ingress(&request, &mut facts);
                (decided, LimitHeaders::default(), true)
            }
        };
        if let (Some(from), Some(route), true) =
            (forwarded, decided.route, decided.decision.verdict.permits())
            && let Err(refused) =
                self.policy
                    .decide_forwarded_route(&from.local, from.function, route)
        {
            decided.decision = refused;
        }
        self.record_decision(&mut flow, &decided);

        // 3. Carry it out.
        let (Some(route), Some(path), true) = (
            decided.route,
            decided.path.as_ref(),
            decided.decision.verdict.permits(),
        ) else {
            let mut headers =
                refusal_headers(&self.policy, &decided.decision.reason, decided.route);
            headers.extend(limit_headers.refused);
            if !recorded {
                // Past its refusal budget: counted in the client's next aggregate record.
                let status = status_of(&decided.decision.reason);
                flow.discard();
                let text = status.canonical_reason().unwrap_or("refused");
                return json_error(status, text, trace, &headers);
            }
            return refuse(flow, &decided.decision.reason, trace, &headers);
        };
        let admitted = Admitted {
            route,
            path_and_query: match query {
                Some(q) => format!("{}?{q}", path.as_str()),
                None => path.as_str().to_owned(),
            },
            principal: decided.principal,
            response_headers: limit_headers.admitted,
            trace,
            client,
        };
        self.dispatch(flow, parts, body, admitted).await
    }

    /// A flow guard for a request through the gateway, naming the policy that decides it.
    fn start_flow(&self) -> FlowGuard {
        let mut flow = self
            .flows
            .guard(FlowKind::Ingress, GATEWAY_IDENTITY, "unrouted");
        flow.set_policy(self.policy.revision());
        flow
    }

    /// Records `decided` on `flow`, with the route it matched and where that leads; returns the
    /// identity of the route's function.
    fn record_decision(
        &self,
        flow: &mut FlowGuard,
        decided: &IngressDecision<'_, '_>,
    ) -> Option<String> {
        flow.set_decision(&decided.decision);
        if !decided.decision.verdict.permits() {
            flow.set_status(status_of(&decided.decision.reason).as_u16());
        }
        let route = decided.route?;
        flow.set_route(route.id.as_str());
        if !matches!(
            decided.decision.reason,
            Reason::RouteMethodNotAllowed { .. }
        ) {
            let function = self.policy.function(route.function);
            flow.set_destination(function.identity.as_str())
                .set_segment(function.spec.placement.segment.as_str());
            return Some(function.identity.clone());
        }
        None
    }

    /// The last phase: hand the request, as the policy decided it, to a fresh instance of the
    /// route's function.
    async fn dispatch(
        &self,
        mut flow: FlowGuard,
        mut parts: http::request::Parts,
        body: Incoming,
        admitted: Admitted<'_>,
    ) -> Response<GatewayBody> {
        let route = admitted.route;
        if let Some(principal) = &admitted.principal {
            let forward = route.auth.as_ref().map_or(&[][..], |a| &a.forward_claims);
            for (name, value) in principal_headers(principal, forward) {
                parts.headers.insert(name, value);
            }
        }
        parts.headers.insert(
            septa_runtime::CALLER_HEADER,
            HeaderValue::from_static(GATEWAY_IDENTITY),
        );
        if !parts.headers.contains_key(HOST) {
            // HTTP/2 carries the authority in the URI instead of a `host` header.
            let host = parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
                .unwrap_or_else(|| HeaderValue::from_static("localhost"));
            parts.headers.insert(HOST, host);
        }
        parts.uri = match Uri::builder()
            .path_and_query(admitted.path_and_query)
            .build()
        {
            Ok(uri) => uri,
            Err(e) => {
                let status = StatusCode::BAD_REQUEST;
                flow.set_error(format!("invalid request target: {e}"))
                    .set_status(status.as_u16());
                let text = status.canonical_reason().unwrap_or("refused");
                return json_error(status, text, admitted.trace, &[]);
            }
        };
        // A body without a declared length is cut off at the route's limit (a declared one
        // over it was refused by the policy).
        let limit = usize::try_from(route.max_body_bytes).unwrap_or(usize::MAX);
        let body = Limited::new(body, limit).map_err(body_limit_error as fn(_) -> _);
        let chain = Chain::start(admitted.trace);
        if !self.host.runs(route.function) {
            let request = Request::from_parts(parts, body.boxed_unsync());
            let forward = Forward {
                function: route.function,
                chain,
                client: admitted.client,
                principal: admitted.principal,
            };
            return self
                .forward(flow, forward, request, admitted.response_headers)
                .await;
        }
        let request = Request::from_parts(parts, body);
        let outcome = self
            .host
            .handle_flow(
                route.function,
                chain,
                request,
                Some(route.body_timeout),
                flow,
            )
            .await;
        let mut headers = admitted.response_headers;
        match outcome {
            Ok(mut response) => {
                for (name, value) in headers {
                    response.headers_mut().insert(name, value);
                }
                response
            }
            Err(e) => {
                // The detail is for the operator (here and in the flow record), not the client.
                // Refusals and failures come at the rate requests do: a few lines of each kind
                // (a full bulkhead, a timeout, a trap...), the others counted in the next line.
                // Every one of them is in the flow log.
                static FAILED: LogThrottle<Discriminant<InvokeError>> = LogThrottle::per_request();
                if let Some(suppressed) = FAILED.admit(std::mem::discriminant(&e)) {
                    let trace = septa_runtime::trace_id(admitted.trace);
                    tracing::warn!(%trace, error = %e, suppressed, "function failed");
                }
                match e.status() {
                    // The rest of a body that did not arrive in time is not worth waiting for.
                    StatusCode::REQUEST_TIMEOUT => {
                        headers.push((CONNECTION, HeaderValue::from_static("close")));
                    }
                    StatusCode::SERVICE_UNAVAILABLE => {
                        headers.push((RETRY_AFTER, HeaderValue::from_static("1")));
                    }
                    _ => {}
                }
                json_error(e.status(), e.public_message(), admitted.trace, &headers)
            }
        }
    }
}

impl Gateway {
    /// Hands a request for a function another node runs to one that does; that node decides
    /// it again and answers. The flow records the node that answered, or why none could.
    async fn forward(
        &self,
        mut flow: FlowGuard,
        forward: Forward,
        request: Request<septa_runtime::WasiBody>,
        headers: Headers,
    ) -> Response<GatewayBody> {
        let trace = forward.chain.trace;
        // The node that runs the function stops it at its timeout; past that and the time for
        // the body to arrive, and a margin for the hop, a silent node is a gateway timeout.
        let limits = &self.policy.function(forward.function).spec.limits;
        let patience = std::time::Duration::from_millis(u64::from(limits.timeout_ms))
            + self
                .policy
                .routes()
                .find(|r| r.function == forward.function)
                .map_or(std::time::Duration::ZERO, |r| r.body_timeout)
            + std::time::Duration::from_secs(5);
        let sent = self
            .host
            .outbound()
            .and_then(|outbound| outbound.forward(forward, request));
        let Some(sent) = sent else {
            // The policy routed here, but this process cannot run or reach the function: a
            // node whose revision places it nowhere it knows of.
            let status = StatusCode::SERVICE_UNAVAILABLE;
            flow.set_error("no node to forward the request to")
                .set_status(status.as_u16());
            return json_error(status, "node unavailable", trace, &headers);
        };
        let Ok(answered) = tokio::time::timeout(patience, sent).await else {
            let status = StatusCode::GATEWAY_TIMEOUT;
            flow.set_error(format!(
                "the node the request was forwarded to did not answer within {patience:?}"
            ))
            .set_status(status.as_u16());
            return json_error(status, "Gateway Timeout", trace, &headers);
        };
        match answered {
            Ok(Forwarded { node, response }) => {
                flow.set_peer(node).set_status(response.status().as_u16());
                let (mut parts, body) = response.into_parts();
                for (name, value) in headers {
                    parts.headers.insert(name, value);
                }
                let body = RecordedBody::new(body, flow).boxed_unsync();
                Response::from_parts(parts, body)
            }
            Err(why) => {
                let status = StatusCode::SERVICE_UNAVAILABLE;
                flow.set_error(why).set_status(status.as_u16());
                json_error(status, "node unavailable", trace, &headers)
            }
        }
    }
}

impl ForwardedIngress for Gateway {
    fn serve_forwarded(
        &self,
        from: ForwardedFrom,
        request: Request<Incoming>,
    ) -> Pin<Box<dyn Future<Output = Response<GatewayBody>> + Send + '_>> {
        Box::pin(async move {
            let (client, trace) = (from.client, from.trace.unwrap_or_else(next_trace));
            self.serve(request, client, trace, Some(&from)).await
        })
    }
}

/// What the function sees when a body without a declared length runs past the route's limit.
fn body_limit_error(e: Box<dyn std::error::Error + Send + Sync>) -> septa_runtime::HttpError {
    if e.is::<http_body_util::LengthLimitError>() {
        septa_runtime::HttpError::HttpRequestBodySize(None)
    } else {
        septa_runtime::HttpError::InternalError(Some(e.to_string()))
    }
}

/// Finishes the record of a refused request and answers the client with the status, and no
/// more than the status, of `reason` (and the trace whose record says the rest).
fn refuse(
    flow: FlowGuard,
    reason: &Reason,
    trace: u64,
    headers: &[(http::HeaderName, HeaderValue)],
) -> Response<GatewayBody> {
    flow.finish();
    let status = status_of(reason);
    json_error(
        status,
        status.canonical_reason().unwrap_or("refused"),
        trace,
        headers,
    )
}
