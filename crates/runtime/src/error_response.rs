//! septa's one JSON error body, for every response the host answers in place of a function: the
//! gateway's refusals and failures, and the mesh's answers to guests; and the JSON response the
//! host builds it with.

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};

/// A response of `status` with the body `{"error": ERROR, "status": CODE}`, and `"reason"` when
/// the one it goes to may know why (a guest refused by the mesh; never a client of the
/// gateway, who is told only what the status and standard headers say).
pub fn json_error<E: 'static>(
    status: StatusCode,
    error: &str,
    reason: Option<&str>,
) -> Response<UnsyncBoxBody<Bytes, E>> {
    let mut body = serde_json::json!({ "error": error, "status": status.as_u16() });
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
