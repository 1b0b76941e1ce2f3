//! Mesh calls: `http://NAME.internal/...` from one function to another, in process.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST};
use http::{HeaderValue, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use septa_flows::FlowKind;
use septa_policy::Decision;
use septa_policy::path::{normalize_path, split_path_query};
use septa_runtime::{Caller, CountedBody, RecordedBody, WasiBody};

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

pub(crate) async fn call(
    inner: &Inner,
    caller: Caller,
    name: String,
    request: http::Request<WasiBody>,
) -> Result<Response<WasiBody>, wasmtime_wasi_http::Error> {
    let policy = &inner.policy;
    let source = policy.function(caller.function);
    let method = request.method().as_str().to_owned();
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
    flow.set_method(method.clone())
        .set_path(raw_path)
        .set_segment(source.spec.placement.segment.as_str())
        .set_trace(caller.chain.trace)
        .set_policy(policy.revision());
    if caller.chain.probe {
        flow.set_probe();
    }

    let callee = match policy.mesh_destination(&name) {
        Ok(callee) => callee,
        Err(refused) => return Ok(refuse(flow, refused)),
    };
    let destination = policy.function(callee);
    let to_endpoint = destination.spec.is_endpoint();
    if to_endpoint {
        flow.set_kind(FlowKind::Endpoint)
            .set_destination(destination.identity.clone());
    }
    let path = match normalize_path(raw_path) {
        Ok(path) => path,
        Err(e) => {
            flow.set_decision(
                septa_flows::FlowVerdict::Deny,
                None,
                format!("invalid path: {e}"),
            )
            .set_status(400);
            return Ok(json_response(
                StatusCode::BAD_REQUEST,
                None,
                &format!("invalid path: {e}"),
            ));
        }
    };
    if caller.chain.depth >= MAX_DEPTH {
        flow.set_decision(
            septa_flows::FlowVerdict::Deny,
            None,
            format!("call chain deeper than {MAX_DEPTH} hops (a loop?)"),
        );
        return Err(wasmtime_wasi_http::Error::LoopDetected);
    }

    // The one decision for this flow.
    let decision = policy.decide_mesh(caller.function, callee, &method, path.as_str());
    if !decision.verdict.permits() {
        return Ok(refuse(flow, decision));
    }
    let reason = decision.reason.to_string();
    flow.set_decision(
        verdict(&decision),
        decision.rule.as_ref().map(ToString::to_string),
        reason.clone(),
    );

    if caller.chain.probe {
        // A probe stops here, where the call would be delivered: nothing runs, nothing is
        // stored. It says what allowed it, as a guest could not.
        flow.set_reason(format!("{reason}; probe, not delivered"))
            .set_status(200);
        flow.finish();
        return Ok(probe_answer(&decision));
    }

    let (mut parts, body) = request.into_parts();
    strip_identity_headers(&mut parts.headers);
    parts
        .headers
        .insert(CALLER_HEADER, header_text(&source.identity));
    let authority = format!("{name}.internal");
    parts.headers.insert(HOST, header_text(&authority));
    let path_and_query = match query {
        Some(q) => format!("{}?{q}", path.as_str()),
        None => path.as_str().to_owned(),
    };
    parts.uri = Uri::builder()
        .scheme("http")
        .authority(authority)
        .path_and_query(path_and_query)
        .build()
        .map_err(|e| wasmtime_wasi_http::Error::InternalError(Some(e.to_string())))?;

    if to_endpoint {
        let Some(endpoints) = &inner.endpoints else {
            flow.set_reason(format!("{reason}; no endpoint service is running"))
                .set_status(503);
            return Ok(json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                "endpoints are not served by this septa",
            ));
        };
        let (body, bytes_in) = CountedBody::new(body);
        let request = http::Request::from_parts(parts, body.boxed_unsync());
        let response = endpoints.call(callee, request).await;
        flow.set_status(response.status().as_u16());
        let (parts, body) = response.into_parts();
        let body = RecordedBody::new(body, flow)
            .with_bytes_in(bytes_in)
            .boxed_unsync();
        return Ok(Response::from_parts(parts, body));
    }

    let Some(host) = inner.host.upgrade() else {
        flow.set_reason("the host is shutting down").set_status(503);
        return Ok(json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            "septa is shutting down",
        ));
    };
    let request = http::Request::from_parts(parts, body);
    match host
        .handle_flow(callee, caller.chain.next(), request, None, flow)
        .await
    {
        Ok(response) => Ok(response),
        Err(e) => Ok(json_response(e.status(), None, &e.to_string())),
    }
}

fn verdict(decision: &Decision) -> septa_flows::FlowVerdict {
    match decision.verdict {
        septa_policy::Verdict::Allow => septa_flows::FlowVerdict::Allow,
        septa_policy::Verdict::Deny => septa_flows::FlowVerdict::Deny,
        septa_policy::Verdict::Audit => septa_flows::FlowVerdict::Audit,
    }
}

/// What a probe that was allowed hears: the verdict, rule and reason, as JSON.
fn probe_answer(decision: &Decision) -> Response<WasiBody> {
    json_body(
        StatusCode::OK,
        &serde_json::json!({
            "verdict": verdict(decision).as_str(),
            "rule": decision.rule.as_ref().map(ToString::to_string),
            "reason": decision.reason.to_string(),
        }),
    )
}

/// Records a refusal and answers the guest with a 403 it can read, like Istio's RBAC denial.
fn refuse(mut flow: septa_flows::FlowGuard, decision: Decision) -> Response<WasiBody> {
    let reason = decision.reason.to_string();
    flow.set_decision(verdict(&decision), None, reason.clone())
        .set_status(403);
    flow.finish();
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
    let mut response = json_body(
        status,
        &serde_json::json!({ "error": error, "reason": message }),
    );
    if let Some(reason) = deny_reason {
        response
            .headers_mut()
            .insert(DENY_REASON_HEADER, header_text(reason));
    }
    response
}

fn json_body(status: StatusCode, body: &serde_json::Value) -> Response<WasiBody> {
    let mut response = Response::new(
        Full::new(Bytes::from(body.to_string()))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
