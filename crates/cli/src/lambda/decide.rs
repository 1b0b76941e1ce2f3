//! The decision phase of an invocation: the event decided again as its source calls for, and
//! recorded. An API Gateway request is decided as the gateway decides it (route, credential,
//! scopes, claims, sources, body size) and must take a route to this function; a VPC Lattice
//! request is a mesh call from the function its verified role session names. A refusal is
//! answered here, as the gateway or the mesh answers it.

use std::net::IpAddr;

use http::{HeaderMap, HeaderName, HeaderValue};
use septa_flows::{FlowGuard, FlowKind};
use septa_gateway::ingress::GATEWAY_IDENTITY;
use septa_policy::{CompiledRoute, Decision, IngressRequest, LimitsCountedElsewhere, Reason};
use septa_runtime::principal_headers;

use super::events::HttpEvent;
use super::facts::EventCredential;
use super::invoke::Function;
use super::reply::Reply;

/// A request the policy admitted, ready to hand to the function.
pub(super) struct Admitted {
    pub(super) flow: FlowGuard,
    /// The path the policy decided on, and the query to hand on with it.
    pub(super) path_and_query: String,
    /// `septa-caller`, and who the request authenticated as, as the host sets them.
    pub(super) identity: Vec<(HeaderName, HeaderValue)>,
}

/// How the decision phase ended.
pub(super) enum Decided {
    /// Boxed: the flow record it carries is large.
    Admitted(Box<Admitted>),
    /// Refused: the answer.
    Refused(Reply),
}

/// What deciding one source's request came to, before it is carried out.
struct Verdict<'p> {
    flow: FlowGuard,
    decision: Decision,
    /// The normalized path, when it normalized.
    path: Option<String>,
    identity: Vec<(HeaderName, HeaderValue)>,
    /// The route an API Gateway request matched.
    route: Option<&'p CompiledRoute>,
}

impl Function {
    /// Has the policy decide `event` (whose headers are `headers`) and records the decision.
    pub(super) fn decide(&self, event: &HttpEvent, headers: &HeaderMap, trace: u64) -> Decided {
        let gateway = event.source.is_gateway();
        let mut verdict = if gateway {
            self.decide_gateway(event, headers)
        } else {
            self.decide_lattice(event)
        };
        let decision = &verdict.decision;
        verdict
            .flow
            .set_method(event.method.as_str())
            .set_path(event.path.as_str())
            .set_trace(trace)
            .set_policy(self.policy.revision())
            .set_decision(decision);
        let (Some(path), true) = (verdict.path, decision.verdict.permits()) else {
            let reason = &decision.reason;
            let (status, reply) = if gateway {
                // A client of the gateway is told what the status and standard headers say.
                let status = septa_gateway::status_of(reason).as_u16();
                let headers = septa_gateway::refusal_headers(&self.policy, reason, verdict.route);
                (status, refusal(status, trace, None, headers))
            } else {
                // A caller through the mesh is told why, as a guest on a node is.
                let status = if matches!(reason, Reason::InvalidPath(_)) {
                    400
                } else {
                    403
                };
                let why = reason.to_string();
                let header = HeaderValue::from_str(&why)
                    .ok()
                    .map(|v| (HeaderName::from_static(septa_mesh::DENY_REASON_HEADER), v));
                (
                    status,
                    refusal(status, trace, Some(&why), header.into_iter().collect()),
                )
            };
            verdict.flow.set_status(status);
            verdict.flow.finish();
            return Decided::Refused(reply);
        };
        let path_and_query = match &event.query {
            Some(query) => format!("{path}?{query}"),
            None => path,
        };
        Decided::Admitted(Box::new(Admitted {
            flow: verdict.flow,
            path_and_query,
            identity: verdict.identity,
        }))
    }

    fn decide_gateway(&self, event: &HttpEvent, headers: &HeaderMap) -> Verdict<'_> {
        let policy = &self.policy;
        let mut flow = self
            .flows
            .guard(FlowKind::Ingress, GATEWAY_IDENTITY, "unrouted");
        // Without an address API Gateway vouches for, no `sources` list admits the request.
        let client = event
            .client
            .as_deref()
            .and_then(|c| c.parse::<IpAddr>().ok())
            .unwrap_or(IpAddr::from([0, 0, 0, 0]));
        flow.set_client(client.to_string());
        let request = IngressRequest {
            method: &event.method,
            path: &event.path,
            client,
            declared_length: u64::try_from(event.body.len()).ok(),
            probe: false,
        };
        let mut facts = LimitsCountedElsewhere(EventCredential {
            credentials: &self.credentials,
            headers,
        });
        let decided = policy.decide_gateway_event(self.id, &request, &mut facts);
        let mut identity = vec![caller(GATEWAY_IDENTITY)];
        if let Some(route) = decided.route {
            flow.set_route(route.id.as_str());
            if !matches!(
                decided.decision.reason,
                Reason::RouteMethodNotAllowed { .. }
            ) {
                let to = policy.function(route.function);
                flow.set_destination(to.identity.as_str())
                    .set_segment(to.spec.placement.segment.as_str());
            }
            if let Some(principal) = &decided.principal {
                let forward = route.auth.as_ref().map_or(&[][..], |a| &a.forward_claims);
                identity.extend(principal_headers(principal, forward));
            }
        }
        Verdict {
            flow,
            decision: decided.decision,
            path: decided.path.map(|p| p.as_str().to_owned()),
            identity,
            route: decided.route,
        }
    }

    fn decide_lattice(&self, event: &HttpEvent) -> Verdict<'_> {
        let policy = &self.policy;
        let own = policy.function(self.id);
        let principal = event.principal.as_deref().unwrap_or("no IAM principal");
        let decided = policy.decide_lattice_event(
            event.session.as_deref(),
            principal,
            self.id,
            &event.method,
            &event.path,
        );
        let source = match decided.caller {
            Some(caller) => policy.function(caller).identity.clone(),
            None => format!("lattice:{principal}"),
        };
        let mut flow = self
            .flows
            .guard(FlowKind::Mesh, source.as_str(), own.identity.as_str());
        flow.set_segment(own.spec.placement.segment.as_str());
        Verdict {
            flow,
            decision: decided.decision,
            path: decided.path.map(|p| p.as_str().to_owned()),
            identity: vec![caller(&source)],
            route: None,
        }
    }
}

/// `septa-caller: IDENTITY`.
fn caller(identity: &str) -> (HeaderName, HeaderValue) {
    let value =
        HeaderValue::from_str(identity).unwrap_or_else(|_| septa_runtime::header_text(identity));
    (HeaderName::from_static(septa_runtime::CALLER_HEADER), value)
}

/// septa's JSON error body for a refused event, with `reason` when its caller may know it.
fn refusal(
    status: u16,
    trace: u64,
    reason: Option<&str>,
    headers: Vec<(HeaderName, HeaderValue)>,
) -> Reply {
    let text = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("refused");
    let mut body = serde_json::json!({
        "error": text,
        "status": status,
        "trace_id": septa_runtime::trace_id(trace),
    });
    if let Some(reason) = reason {
        body["reason"] = serde_json::Value::from(reason);
    }
    let mut reply_headers = vec![("content-type".to_owned(), "application/json".to_owned())];
    reply_headers.extend(headers.into_iter().map(|(name, value)| {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        (name.as_str().to_owned(), value)
    }));
    Reply {
        status,
        headers: reply_headers,
        body: body.to_string().into_bytes(),
    }
}
