//! Mesh calls: `http://NAME.internal/...` from one function to another, in process.

use std::mem::Discriminant;

use http::header::HOST;
use http::{Response, StatusCode, Uri};
use http_body_util::BodyExt;
use septa_flows::{FlowGuard, FlowKind, LogThrottle};
use septa_policy::path::{normalize_path, split_path_query};
use septa_policy::{Decision, FunctionId, Reason};
use septa_runtime::{Caller, CountedBody, InvokeError, RecordedBody, WasiBody};

use crate::{
    CALLER_HEADER, DENY_REASON_HEADER, Inner, MAX_DEPTH, header_text, strip_identity_headers,
};

/// The function name of an `http://NAME.internal` URI, in canonical form (lowercase, no
/// trailing dot), or `None` when the URI is not a mesh address.
pub(crate) fn internal_name(uri: &Uri) -> Option<String> {
    let host = uri.host()?.to_ascii_lowercase();
    let host = host.strip_suffix('.').unwrap_or(&host);
    host.strip_suffix(".internal").map(str::to_owned)
}

/// A mesh call the policy admitted, on its way to the callee.
pub(crate) struct Admitted {
    pub(crate) callee: FunctionId,
    /// `NAME.internal`.
    pub(crate) authority: String,
    /// The path the policy decided on, and the query to hand on with it.
    pub(crate) path_and_query: String,
}

/// What the decision phase of a call came to.
enum Decided {
    /// The policy admitted the call to `callee` on the normalized `path`.
    Admitted {
        callee: FunctionId,
        decision: Decision,
        path: String,
    },
    /// The guest's answer, the call refused.
    Refused(Response<WasiBody>),
}

/// Decides and delivers a call from `caller` to `NAME.internal`: one flow record, whatever
/// happens.
pub(crate) async fn call(
    inner: &Inner,
    caller: Caller,
    name: String,
    request: http::Request<WasiBody>,
) -> Result<Response<WasiBody>, wasmtime_wasi_http::Error> {
    let policy = &inner.policy;
    let source = policy.function(caller.function);
    let target = request
        .uri()
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_owned();
    let (raw_path, query) = split_path_query(&target);
    let mut flow = inner.flows.guard(
        FlowKind::Mesh,
        source.identity.clone(),
        format!("function:{name}"),
    );
    flow.set_method(request.method().as_str())
        .set_path(raw_path)
        .set_segment(source.spec.placement.segment.as_str())
        .set_trace(caller.chain.trace)
        .set_policy(policy.revision());
    if caller.chain.probe {
        flow.set_probe();
    }
    let method = request.method().as_str();
    let (callee, decision, path) = match decide(inner, caller, &name, method, raw_path, &mut flow)?
    {
        Decided::Admitted {
            callee,
            decision,
            path,
        } => (callee, decision, path),
        Decided::Refused(answer) => return Ok(answer),
    };
    let admitted = Admitted {
        callee,
        authority: format!("{name}.internal"),
        path_and_query: match query {
            Some(q) => format!("{path}?{q}"),
            None => path,
        },
    };
    let remote = inner.node.as_ref().filter(|node| {
        !node.hosts(policy, callee)
            // Another node believes this one only for the callers it hosts, so a probe as a
            // caller this node does not run is decided here alone.
            && (!caller.chain.probe || node.hosts(policy, caller.function))
    });
    match remote {
        // A probe of a call to another node goes there too, marked as a probe: the callee's node
        // decides it again and answers with its decision, delivering nothing.
        Some(node) => {
            crate::remote_call::deliver(inner, node, caller, admitted, request, flow).await
        }
        None if caller.chain.probe => {
            // A probe stops here, where the call would be delivered: nothing runs, nothing is
            // stored (the record says it was a probe). It says what allowed it, as a guest
            // could not.
            flow.set_status(200);
            flow.finish();
            Ok(probe_answer(&decision))
        }
        None => deliver(inner, caller, admitted, request, flow).await,
    }
}

/// Has the policy decide the call and records the decision: the callee when it is admitted, the
/// answer to the guest when it is refused, or the error of a chain too deep to go on.
fn decide(
    inner: &Inner,
    caller: Caller,
    name: &str,
    method: &str,
    raw_path: &str,
    flow: &mut FlowGuard,
) -> Result<Decided, wasmtime_wasi_http::Error> {
    let policy = &inner.policy;
    let callee = match policy.mesh_destination(name) {
        Ok(callee) => callee,
        Err(refused) => return Ok(Decided::Refused(refuse(flow, &refused))),
    };
    let destination = policy.function(callee);
    if destination.spec.is_endpoint() {
        flow.set_kind(FlowKind::Endpoint)
            .set_destination(destination.identity.clone());
    }
    let path = match normalize_path(raw_path) {
        Ok(path) => path,
        Err(e) => {
            let refused = Decision::refuse(Reason::InvalidPath(e.to_string()), false);
            flow.set_decision(&refused).set_status(400);
            let message = refused.reason.to_string();
            let answer = json_response(StatusCode::BAD_REQUEST, None, &message);
            return Ok(Decided::Refused(answer));
        }
    };
    if caller.chain.depth >= MAX_DEPTH {
        let refused = Decision::refuse(Reason::CallChainTooDeep { max: MAX_DEPTH }, false);
        flow.set_decision(&refused);
        return Err(wasmtime_wasi_http::Error::LoopDetected);
    }
    // The one decision for this flow.
    let decision = policy.decide_mesh(caller.function, callee, method, path.as_str());
    if !decision.verdict.permits() {
        return Ok(Decided::Refused(refuse(flow, &decision)));
    }
    flow.set_decision(&decision);
    Ok(Decided::Admitted {
        callee,
        decision,
        path: path.as_str().to_owned(),
    })
}

/// Hands an admitted call to the callee, with the identity the host sets: a fresh instance of a
/// function, or the endpoint service for a data store.
pub(crate) async fn deliver(
    inner: &Inner,
    caller: Caller,
    admitted: Admitted,
    request: http::Request<WasiBody>,
    mut flow: FlowGuard,
) -> Result<Response<WasiBody>, wasmtime_wasi_http::Error> {
    let source = inner.policy.function(caller.function);
    let (mut parts, body) = request.into_parts();
    strip_identity_headers(&mut parts.headers);
    parts
        .headers
        .insert(CALLER_HEADER, header_text(&source.identity));
    parts.headers.insert(HOST, header_text(&admitted.authority));
    parts.uri = Uri::builder()
        .scheme("http")
        .authority(admitted.authority)
        .path_and_query(admitted.path_and_query)
        .build()
        .map_err(|e| wasmtime_wasi_http::Error::InternalError(Some(e.to_string())))?;

    if inner.policy.function(admitted.callee).spec.is_endpoint() {
        let Some(endpoints) = &inner.endpoints else {
            flow.set_error("no endpoint service is running")
                .set_status(503);
            return Ok(json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                "endpoints are not served by this septa",
            ));
        };
        let (body, bytes_in) = CountedBody::new(body);
        let request = http::Request::from_parts(parts, body.boxed_unsync());
        let response = endpoints.call(admitted.callee, request).await;
        flow.set_status(response.status().as_u16());
        let (parts, body) = response.into_parts();
        let body = RecordedBody::new(body, flow)
            .with_bytes_in(bytes_in)
            .boxed_unsync();
        return Ok(Response::from_parts(parts, body));
    }

    if let Some(external) = &inner.external
        && inner
            .host
            .upgrade()
            .is_some_and(|host| !host.runs(admitted.callee))
    {
        // Not this process's to run: the callee's own septa trusts who signed the call, not a
        // header, so septa's identity headers stay behind.
        strip_identity_headers(&mut parts.headers);
        let request = http::Request::from_parts(parts, body);
        return match external
            .call(admitted.callee, caller.chain.next(), request)
            .await
        {
            Ok(response) => {
                flow.set_status(response.status().as_u16());
                let (parts, body) = response.into_parts();
                let body = RecordedBody::new(body, flow).boxed_unsync();
                Ok(Response::from_parts(parts, body))
            }
            Err(why) => {
                flow.set_error(why.clone()).set_status(503);
                Ok(json_response(StatusCode::SERVICE_UNAVAILABLE, None, &why))
            }
        };
    }

    let Some(host) = inner.host.upgrade() else {
        flow.set_error("the host is shutting down").set_status(503);
        return Ok(json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            "septa is shutting down",
        ));
    };
    let request = http::Request::from_parts(parts, body);
    match host
        .handle_flow(admitted.callee, caller.chain.next(), request, None, flow)
        .await
    {
        Ok(response) => Ok(response),
        // The caller hears what a client would: the status and the trace, never the callee's
        // trap or limits (the flow record and the log keep those).
        Err(e) => {
            // As many as calls are made: a few lines of each kind, the others counted.
            static FAILED: LogThrottle<Discriminant<InvokeError>> = LogThrottle::per_request();
            if let Some(suppressed) = FAILED.admit(std::mem::discriminant(&e)) {
                let trace = septa_runtime::trace_id(caller.chain.trace);
                tracing::warn!(%trace, error = %e, suppressed, "mesh call failed");
            }
            Ok(septa_runtime::json_error(
                e.status(),
                e.public_message(),
                Some(caller.chain.trace),
                None,
            ))
        }
    }
}

/// What a probe that was allowed hears: the verdict, rule and reason, as JSON.
pub(crate) fn probe_answer(decision: &Decision) -> Response<WasiBody> {
    let body = serde_json::json!({
        "verdict": decision.verdict.as_str(),
        "rule": decision.rule.as_ref().map(ToString::to_string),
        "reason": decision.reason.to_string(),
    });
    septa_runtime::json_response(StatusCode::OK, &body)
}

/// Records a refusal and answers the guest with a 403 it can read, like Istio's RBAC denial.
pub(crate) fn refuse(flow: &mut FlowGuard, decision: &Decision) -> Response<WasiBody> {
    let reason = decision.reason.to_string();
    flow.set_decision(decision).set_status(403);
    json_response(StatusCode::FORBIDDEN, Some(&reason), &reason)
}

pub(crate) fn json_response(
    status: StatusCode,
    deny_reason: Option<&str>,
    message: &str,
) -> Response<WasiBody> {
    let error = if status == StatusCode::FORBIDDEN {
        "denied"
    } else {
        "error"
    };
    let mut response = septa_runtime::json_error(status, error, None, Some(message));
    if let Some(reason) = deny_reason {
        response
            .headers_mut()
            .insert(DENY_REASON_HEADER, header_text(reason));
    }
    response
}
