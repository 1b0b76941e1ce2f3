//! The admin paths, behind the token.

use bytes::Bytes;
use http::header::{ALLOW, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::json;

use super::{Admin, AdminBody, stream};
use crate::exposition::CONTENT_TYPE as PROMETHEUS;
use crate::filter::{FilterError, FlowFilter};

const JSON: &str = "application/json";

impl Admin {
    /// Answers one admin request: 401 without the right token, whatever the path.
    pub fn handle<B>(&self, request: &Request<B>) -> Response<AdminBody> {
        if let Some(refusal) = self.refuse_unauthorized(request) {
            return refusal;
        }
        let path = request.uri().path();
        let known = matches!(path, "/healthz" | "/metrics" | "/flows" | "/flows/stream");
        if !known {
            return json_response(
                StatusCode::NOT_FOUND,
                &json!({ "error": format!("no admin endpoint `{path}`"), "endpoints": ["/healthz", "/metrics", "/flows", "/flows/stream"] }),
            );
        }
        if request.method() != Method::GET && request.method() != Method::HEAD {
            let mut response = json_response(
                StatusCode::METHOD_NOT_ALLOWED,
                &json!({ "error": format!("`{path}` answers GET only") }),
            );
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }
        let query = request.uri().query();
        match path {
            "/healthz" => self.health(),
            "/metrics" => text_response(PROMETHEUS, self.metrics.render()),
            "/flows" => match FlowFilter::from_query(query) {
                Ok(filter) => {
                    let records = self.recent.query(&filter);
                    let records: Vec<&septa_flows::FlowRecord> =
                        records.iter().map(|r| &**r).collect();
                    // Serializing plain records cannot fail; an empty list says so if it did.
                    let body = serde_json::to_string(&records).unwrap_or_else(|_| "[]".to_owned());
                    text_response(JSON, body)
                }
                Err(error) => bad_filter(&error),
            },
            _ => match FlowFilter::from_query(query) {
                Ok(filter) => stream::respond(&self.recent, filter, self.heartbeat),
                Err(error) => bad_filter(&error),
            },
        }
    }

    /// The 401 for a request without the token, `None` for one with it.
    fn refuse_unauthorized<B>(&self, request: &Request<B>) -> Option<Response<AdminBody>> {
        let Some(header) = request.headers().get(AUTHORIZATION) else {
            return Some(unauthorized(
                "this admin endpoint needs `Authorization: Bearer TOKEN`",
                r#"Bearer realm="septa-admin""#,
            ));
        };
        let presented = header
            .as_bytes()
            .split_at_checked(7)
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case(b"bearer "))
            .map(|(_, token)| token.trim_ascii());
        match presented {
            Some(token) if self.token.verify(token) => None,
            _ => Some(unauthorized(
                "the admin token is not valid",
                r#"Bearer realm="septa-admin", error="invalid_token""#,
            )),
        }
    }

    fn health(&self) -> Response<AdminBody> {
        let body = match self.metrics.loaded_policy() {
            Some(policy) => json!({
                "status": "ok",
                "application": policy.application,
                "policy_hash": policy.hash,
                "functions": policy.functions,
            }),
            None => json!({ "status": "ok" }),
        };
        json_response(StatusCode::OK, &body)
    }
}

fn bad_filter(error: &FilterError) -> Response<AdminBody> {
    json_response(
        StatusCode::BAD_REQUEST,
        &json!({ "error": error.to_string(), "parameter": error.parameter }),
    )
}

fn unauthorized(message: &str, challenge: &'static str) -> Response<AdminBody> {
    let mut response = json_response(StatusCode::UNAUTHORIZED, &json!({ "error": message }));
    response
        .headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    response
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<AdminBody> {
    let mut response = text_response(JSON, body.to_string());
    *response.status_mut() = status;
    response
}

fn text_response(content_type: &'static str, body: String) -> Response<AdminBody> {
    let mut response = Response::new(full(body));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

pub(super) fn full(body: impl Into<Bytes>) -> AdminBody {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}
