//! septa's one JSON error body, for every response the host answers in place of a function: the
//! gateway's refusals and failures, and the mesh's answers to guests; and the JSON response the
//! host builds it with.
//!
//! The body says what the status says and names the request's trace, and no more: never a
//! function's name, its limits, or what a guest trapped with. Whoever needs the detail finds it
//! in the flow record of that trace, and in septa's log.

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};

/// A response of `status` with the body `{"error": ERROR, "status": CODE, "trace_id": TRACE}`
/// (`trace_id` when the answer belongs to a traced request, as the flow records write it), and
/// `"reason"` when the one it goes to may know why (a guest refused by the mesh; never a client
/// of the gateway, who is told only what the status and standard headers say).
pub fn json_error<E: 'static>(
    status: StatusCode,
    error: &str,
    trace: Option<u64>,
    reason: Option<&str>,
) -> Response<UnsyncBoxBody<Bytes, E>> {
    let mut body = serde_json::json!({ "error": error, "status": status.as_u16() });
    if let Some(trace) = trace {
        body["trace_id"] = serde_json::Value::from(trace_id(trace));
    }
    if let Some(reason) = reason {
        body["reason"] = serde_json::Value::from(reason);
    }
    json_response(status, &body)
}

/// A response of `status` whose body is `body`, as `application/json`.
pub fn json_response<E: 'static>(
    status: StatusCode,
    body: &serde_json::Value,
) -> Response<UnsyncBoxBody<Bytes, E>> {
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

/// A trace as the flow records and error bodies write it: 16 lowercase hex digits.
pub fn trace_id(trace: u64) -> String {
    format!("{trace:016x}")
}
