//! The ingress phases, in the order a request meets them.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http::header::{ALLOW, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST};
use http::{HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use septa_flows::{FlowGuard, FlowKind, FlowLog, FlowVerdict};
use septa_manifest::{JwtIssuer, Mode};
use septa_policy::path::{normalize_path, split_path_query};
use septa_policy::{CompiledRoute, Decision, Policy, RouteOutcome, Verdict};
use septa_runtime::{Chain, Host, HyperOutgoingBody};

use crate::auth::jwt::JwtVerifier;
use crate::auth::refresh::{JwksFetcher, KeyRefresh};
use crate::auth::{Principal, RouteAuthAdmission};
use crate::client::{ClientAddresses, SourceAdmission};
use crate::limits::{GatewayCeiling, LimitTables, RateLimitAdmission};

/// The identity the host sets on requests that came through the gateway.
pub const GATEWAY_IDENTITY: &str = "gateway";

/// A refusal from an admission check: the status, extra headers and a message for the client.
#[derive(Debug, Clone)]
pub struct Rejection {
    /// The status the client gets (401, 403, 429, ...).
    pub status: StatusCode,
    /// Headers such as `WWW-Authenticate` or `Retry-After`.
    pub headers: Vec<(http::HeaderName, HeaderValue)>,
    /// The reason recorded in the flow log (not sent to the client).
    pub reason: String,
}

/// What the admission checks know about a routed request, and what they establish about it.
pub struct Admit<'a> {
    /// The route it matched.
    pub route: &'a CompiledRoute,
    /// The client's address: the peer, or what trusted proxies say it is.
    pub client: IpAddr,
    /// The request head, its `septa-*` headers already stripped.
    pub request: &'a mut http::request::Parts,
    /// Who authenticated, once a check has established it.
    pub principal: Option<Principal>,
    /// Headers for the response, whatever the function answers (rate-limit state, say).
    pub response_headers: Vec<(http::HeaderName, HeaderValue)>,
}

/// A check every routed request passes before dispatch: the gateway-wide ceiling, source
/// networks, authentication and authorization, and rate limits plug in here, in the order they
/// are registered.
pub trait Admission: Send + Sync + 'static {
    /// Admits the request, or says why not.
    fn admit(&self, request: &mut Admit<'_>) -> Result<(), Rejection>;

    /// Whether a route in `audit` mode still enforces this check. Only protections of the
    /// gateway itself (its request ceiling) are; a route's own checks are not.
    fn enforced_in_audit_mode(&self) -> bool {
        false
    }
}

/// Everything the ingress path needs, shared by every worker thread.
pub struct Gateway {
    policy: Arc<Policy>,
    host: Arc<Host>,
    flows: FlowLog,
    clients: ClientAddresses,
    admission: Vec<Box<dyn Admission>>,
    jwks: Arc<dyn JwksFetcher>,
    fetched_issuers: Vec<(Arc<JwtVerifier>, JwtIssuer)>,
    limit_tables: LimitTables,
}

type GatewayBody = HyperOutgoingBody;

/// A request the gateway found a route for.
struct Routed<'p, 'r> {
    route: &'p CompiledRoute,
    decision: Decision,
    path: septa_policy::path::NormalizedPath<'r>,
}

/// What a probe of the public side met (see [`Gateway::probe`]).
#[derive(Debug, Clone)]
pub struct GatewayProbe {
    /// The identity the request would reach, when a route took it.
    pub destination: Option<String>,
    /// The decision.
    pub verdict: FlowVerdict,
    /// The route that took it.
    pub rule: Option<String>,
    /// Why, as the flow log says it.
    pub reason: String,
}

/// A request the gateway found no route for: the status, why, and the route whose path matched
/// when only the method did not.
struct Unrouted<'p> {
    status: StatusCode,
    reason: String,
    route: Option<&'p CompiledRoute>,
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
    /// A gateway for `policy`, dispatching to `host`, recording to `flows`, with every check the
    /// policy asks for, in the order they run: the gateway-wide ceiling (before anything
    /// costly), route sources, authentication and authorization, then the route's rate limit
    /// (after authentication, so a limit by principal or claim counts what the host
    /// established). Fails if a JWKS or API key file cannot be loaded. Issuers whose keys are
    /// fetched through `jwks` start with none; [`Gateway::start_key_refresh`] fetches them.
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
        let manifest = policy.manifest();
        let routes = &manifest.routes;
        let mut checks: Vec<Box<dyn Admission>> = Vec::new();
        let mut fetched_issuers = Vec::new();
        let mut limit_tables = LimitTables::default();
        let previous_tables = previous.map(|g| &g.limit_tables);
        if let Some(limit) = &manifest.gateway.rate_limit {
            let ceiling = GatewayCeiling::new(limit, &mut limit_tables, previous_tables);
            checks.push(Box::new(ceiling));
        }
        if routes.iter().any(|r| !r.sources.is_empty()) {
            checks.push(Box::new(SourceAdmission));
        }
        if routes.iter().any(|r| r.auth.is_some()) {
            let carried = previous.map_or(&[][..], |g| g.fetched_issuers.as_slice());
            let auth = RouteAuthAdmission::load(manifest, carried)?;
            fetched_issuers = auth.fetched_issuers(manifest);
            checks.push(Box::new(auth));
        }
        if routes.iter().any(|r| r.rate_limit.is_some()) {
            let limits = RateLimitAdmission::new(&policy, &mut limit_tables, previous_tables);
            checks.push(Box::new(limits));
        }
        Ok(Self {
            clients: ClientAddresses::new(&manifest.gateway),
            policy,
            host,
            flows,
            admission: checks,
            jwks,
            fetched_issuers,
            limit_tables,
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
        )
    }

    /// Records a request the connection layer refused before routing (ambiguous framing), so
    /// smuggling attempts are in the flow log like every other decision.
    pub fn record_refusal<B>(
        &self,
        peer: SocketAddr,
        request: &Request<B>,
        status: StatusCode,
        reason: &str,
    ) {
        let mut flow = self
            .flows
            .guard(FlowKind::Ingress, GATEWAY_IDENTITY, "unrouted");
        let client = self.clients.resolve(peer.ip(), request.headers());
        let target = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
        flow.set_method(request.method().as_str())
            .set_path(split_path_query(target).0)
            .set_client(client.to_string())
            .set_trace(next_trace())
            .set_policy(self.policy.revision())
            .set_decision(FlowVerdict::Deny, None, reason)
            .set_status(status.as_u16());
        flow.finish();
    }

    /// The first two phases of every request: normalize the path (one canonical form for
    /// routing, policy and the function, or a 400), then find its route and the policy's
    /// decision on it.
    fn route<'r>(&self, method: &str, raw_path: &'r str) -> Result<Routed<'_, 'r>, Unrouted<'_>> {
        let path = normalize_path(raw_path).map_err(|e| Unrouted {
            status: StatusCode::BAD_REQUEST,
            reason: format!("invalid path: {e}"),
            route: None,
        })?;
        match self.policy.route(method, path.as_str()) {
            RouteOutcome::Matched {
                route, decision, ..
            } => Ok(Routed {
                route,
                decision,
                path,
            }),
            RouteOutcome::NotFound => Err(Unrouted {
                status: StatusCode::NOT_FOUND,
                reason: format!("no route for `{}`", path.as_str()),
                route: None,
            }),
            RouteOutcome::MethodNotAllowed { route } => Err(Unrouted {
                status: StatusCode::METHOD_NOT_ALLOWED,
                reason: format!("route `{}` does not admit method `{method}`", route.id),
                route: Some(route),
            }),
        }
    }

    /// A segmentation probe of the public side: where a request for `method` and `path` from
    /// the internet would go, decided by the same normalization, routing and route decision
    /// as [`Gateway::handle`], recorded as an ingress flow marked as a probe. It stops before
    /// the admission checks (a probe tests where the network lets a request go, not whose
    /// credentials it carries) and before dispatch, so nothing runs. Returns the destination
    /// identity on success.
    pub fn probe(&self, method: &str, path: &str, trace: u64) -> GatewayProbe {
        let mut flow = self
            .flows
            .guard(FlowKind::Ingress, GATEWAY_IDENTITY, "unrouted");
        flow.set_method(method)
            .set_path(split_path_query(path).0)
            .set_trace(trace)
            .set_policy(self.policy.revision())
            .set_probe();
        match self.route(method, split_path_query(path).0) {
            Ok(Routed {
                route, decision, ..
            }) => {
                let function = self.policy.function(route.function);
                let verdict = match decision.verdict {
                    Verdict::Allow => FlowVerdict::Allow,
                    Verdict::Audit => FlowVerdict::Audit,
                    Verdict::Deny => FlowVerdict::Deny,
                };
                let outcome = GatewayProbe {
                    destination: Some(function.identity.clone()),
                    verdict,
                    rule: decision.rule.as_ref().map(ToString::to_string),
                    reason: decision.reason.to_string(),
                };
                flow.set_route(route.id.as_str())
                    .set_destination(function.identity.as_str())
                    .set_segment(function.spec.placement.segment.as_str())
                    .set_decision(
                        verdict,
                        outcome.rule.clone(),
                        format!("{}; probe, not delivered", outcome.reason),
                    );
                outcome
            }
            Err(unrouted) => {
                if let Some(route) = unrouted.route {
                    flow.set_route(route.id.as_str());
                }
                flow.set_decision(FlowVerdict::Deny, None, unrouted.reason.as_str())
                    .set_status(unrouted.status.as_u16());
                GatewayProbe {
                    destination: None,
                    verdict: FlowVerdict::Deny,
                    rule: None,
                    reason: unrouted.reason,
                }
            }
        }
    }

    /// Handles one request from `peer`. Never fails: every refusal is a response.
    pub async fn handle(
        &self,
        peer: SocketAddr,
        request: Request<Incoming>,
    ) -> Result<Response<GatewayBody>, Infallible> {
        let mut flow = self
            .flows
            .guard(FlowKind::Ingress, GATEWAY_IDENTITY, "unrouted");
        let (mut parts, body) = request.into_parts();
        let client = self.clients.resolve(peer.ip(), &parts.headers);
        let trace = next_trace();
        flow.set_method(parts.method.as_str())
            .set_client(client.to_string())
            .set_trace(trace)
            .set_policy(self.policy.revision());

        // 1 and 2. Normalize, then route.
        let target = parts
            .uri
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_owned();
        let (raw_path, query) = split_path_query(&target);
        flow.set_path(raw_path);
        let Routed {
            route,
            decision,
            path,
        } = match self.route(parts.method.as_str(), raw_path) {
            Ok(routed) => routed,
            Err(unrouted) => {
                let mut headers = Vec::new();
                if let Some(route) = unrouted.route {
                    flow.set_route(route.id.as_str());
                    headers.push((ALLOW, allowed_methods(&self.policy, route)));
                }
                return Ok(refuse(flow, unrouted.status, &unrouted.reason, &headers));
            }
        };
        let function = self.policy.function(route.function);
        flow.set_route(route.id.as_str());
        flow.set_destination(function.identity.as_str());
        flow.set_segment(function.spec.placement.segment.as_str());

        // 3. Identity is the host's to set: drop whatever the client claimed.
        septa_runtime::strip_identity_headers(&mut parts.headers);

        // 4. Admit: the gateway's ceiling, source networks, authentication, authorization and
        //    rate limits. A route in audit mode records what would have been refused instead.
        let mut admit = Admit {
            route,
            client,
            request: &mut parts,
            principal: None,
            response_headers: Vec::new(),
        };
        let mut would_refuse: Option<Rejection> = None;
        for check in &self.admission {
            if let Err(rejection) = check.admit(&mut admit) {
                if route.mode == Mode::Audit && !check.enforced_in_audit_mode() {
                    would_refuse.get_or_insert(rejection);
                    continue;
                }
                let mut headers = rejection.headers;
                headers.extend(admit.response_headers);
                return Ok(refuse(flow, rejection.status, &rejection.reason, &headers));
            }
        }
        let Admit {
            principal,
            response_headers,
            ..
        } = admit;
        if let Some(principal) = &principal {
            let forward = route.auth.as_ref().map_or(&[][..], |a| &a.forward_claims);
            for (name, value) in principal.headers(forward) {
                parts.headers.insert(name, value);
            }
        }
        match would_refuse {
            Some(rejection) => flow.set_decision(
                FlowVerdict::Audit,
                Some(route.id.to_string()),
                format!(
                    "route `{}` is in audit mode; enforcing would answer {}: {}",
                    route.id,
                    rejection.status.as_u16(),
                    rejection.reason
                ),
            ),
            None => {
                let rule = decision.rule.as_ref().map(ToString::to_string);
                let verdict = match decision.verdict {
                    Verdict::Allow => FlowVerdict::Allow,
                    Verdict::Audit => FlowVerdict::Audit,
                    Verdict::Deny => FlowVerdict::Deny,
                };
                flow.set_decision(verdict, rule, decision.reason.to_string())
            }
        };

        // 5. Dispatch to a fresh instance, with the path the policy decided on.
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
        let path_and_query = match query {
            Some(q) => format!("{}?{q}", path.as_str()),
            None => path.as_str().to_owned(),
        };
        parts.uri = match Uri::builder().path_and_query(path_and_query).build() {
            Ok(uri) => uri,
            Err(e) => {
                return Ok(refuse(
                    flow,
                    StatusCode::BAD_REQUEST,
                    &format!("invalid request target: {e}"),
                    &[],
                ));
            }
        };
        // A body larger than the route admits is refused before the function starts when its
        // length is declared, and cut off when it is not.
        let declared = parts
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if let Some(length) = declared.filter(|l| *l > route.max_body_bytes) {
            let reason = format!(
                "request body of {length} bytes is over route `{}`'s limit of {} bytes",
                route.id, route.max_body_bytes
            );
            return Ok(refuse(flow, StatusCode::PAYLOAD_TOO_LARGE, &reason, &[]));
        }
        let limit = usize::try_from(route.max_body_bytes).unwrap_or(usize::MAX);
        let body = Limited::new(body, limit).map_err(body_limit_error as fn(_) -> _);
        let request = Request::from_parts(parts, body);
        match self
            .host
            .handle_flow(
                route.function,
                Chain::start(trace),
                request,
                Some(route.body_timeout),
                flow,
            )
            .await
        {
            Ok(mut response) => {
                for (name, value) in response_headers {
                    response.headers_mut().insert(name, value);
                }
                Ok(response)
            }
            Err(e) => {
                tracing::warn!(error = %e, "function failed");
                let mut headers = response_headers;
                if e.status() == StatusCode::REQUEST_TIMEOUT {
                    // The rest of a body that did not arrive in time is not worth waiting for.
                    headers.push((CONNECTION, HeaderValue::from_static("close")));
                }
                Ok(json_error(e.status(), &e.to_string(), &headers))
            }
        }
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

fn allowed_methods(policy: &Policy, matched: &CompiledRoute) -> HeaderValue {
    let mut methods: Vec<String> = Vec::new();
    for r in policy.routes().filter(|r| r.pattern == matched.pattern) {
        match &r.methods {
            septa_manifest::Methods::Any => methods.push("*".to_owned()),
            septa_manifest::Methods::Only(list) => methods.extend(list.iter().cloned()),
        }
    }
    methods.sort();
    methods.dedup();
    HeaderValue::from_str(&methods.join(", ")).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Records a refusal by the gateway and answers the client.
fn refuse(
    mut flow: FlowGuard,
    status: StatusCode,
    reason: &str,
    headers: &[(http::HeaderName, HeaderValue)],
) -> Response<GatewayBody> {
    flow.set_decision(FlowVerdict::Deny, None, reason)
        .set_status(status.as_u16());
    flow.finish();
    json_error(
        status,
        status.canonical_reason().unwrap_or("refused"),
        headers,
    )
}

fn json_error(
    status: StatusCode,
    message: &str,
    headers: &[(http::HeaderName, HeaderValue)],
) -> Response<GatewayBody> {
    let body = serde_json::json!({ "error": message, "status": status.as_u16() }).to_string();
    let mut response = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    for (name, value) in headers {
        response.headers_mut().insert(name.clone(), value.clone());
    }
    response
}
