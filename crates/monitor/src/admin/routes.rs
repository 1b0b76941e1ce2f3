//! The admin paths, behind the token.

use bytes::Bytes;
use http::header::{ALLOW, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::json;

use std::sync::Arc;

use super::{Admin, AdminBody, stream};
use crate::control::ReloadTrigger;
use crate::exposition::CONTENT_TYPE as PROMETHEUS;
use crate::filter::{FilterError, FlowFilter};

const JSON: &str = "application/json";

/// Every admin path, and the methods it answers.
const ENDPOINTS: &[(&str, &str)] = &[
    ("/healthz", "GET, HEAD"),
    ("/metrics", "GET, HEAD"),
    ("/flows", "GET, HEAD"),
    ("/flows/stream", "GET, HEAD"),
    ("/model", "GET, HEAD"),
    ("/reload", "GET, HEAD, POST"),
];

impl Admin {
    /// Answers one admin request: 401 without the right token, whatever the path. A reload runs
    /// on a blocking thread, so the listener keeps answering while components compile.
    pub async fn respond<B>(self: Arc<Self>, request: Request<B>) -> Response<AdminBody> {
        let is_reload = request.method() == Method::POST && request.uri().path() == "/reload";
        if !is_reload || self.refuse_unauthorized(&request).is_some() {
            return self.handle(&request);
        }
        let Some(control) = self.control.clone() else {
            return no_control();
        };
        match tokio::task::spawn_blocking(move || control.reload(ReloadTrigger::Admin)).await {
            Ok(attempt) => {
                let status = if attempt.applied {
                    StatusCode::OK
                } else {
                    StatusCode::UNPROCESSABLE_ENTITY
                };
                json_response(status, &json!(attempt))
            }
            Err(error) => json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &json!({ "error": format!("the reload did not finish: {error}") }),
            ),
        }
    }

    /// Answers one admin request that needs no waiting: 401 without the right token, whatever
    /// the path. `POST /reload` goes through [`Admin::respond`].
    pub fn handle<B>(&self, request: &Request<B>) -> Response<AdminBody> {
        if let Some(refusal) = self.refuse_unauthorized(request) {
            return refusal;
        }
        let path = request.uri().path();
        let Some((_, allowed)) = ENDPOINTS.iter().find(|(p, _)| *p == path) else {
            let endpoints: Vec<&str> = ENDPOINTS.iter().map(|(p, _)| *p).collect();
            return json_response(
                StatusCode::NOT_FOUND,
                &json!({ "error": format!("no admin endpoint `{path}`"), "endpoints": endpoints }),
            );
        };
        if !allowed.split(", ").any(|m| m == request.method().as_str()) {
            let mut response = json_response(
                StatusCode::METHOD_NOT_ALLOWED,
                &json!({ "error": format!("`{path}` answers {allowed} only") }),
            );
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static(allowed));
            return response;
        }
        let query = request.uri().query();
        match path {
            "/healthz" => self.health(),
            "/model" => match &self.control {
                Some(control) => json_response(StatusCode::OK, &control.model()),
                None => no_control(),
            },
            "/reload" => match self.control.as_ref().map(|c| c.last_reload()) {
                Some(Some(attempt)) => json_response(StatusCode::OK, &json!(attempt)),
                Some(None) => json_response(StatusCode::OK, &json!({ "last_reload": null })),
                None => no_control(),
            },
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

fn no_control() -> Response<AdminBody> {
    json_response(
        StatusCode::NOT_FOUND,
        &json!({ "error": "this admin listener has no platform to control" }),
    )
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
