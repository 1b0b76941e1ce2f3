//! The admin paths, behind the token (or a session cookie a browser got for it at `/login`).

use bytes::Bytes;
use http::header::{
    ALLOW, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, COOKIE, SET_COOKIE, WWW_AUTHENTICATE,
};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::json;

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Admin, AdminBody, browser, stream};
use crate::control::{ReloadAttempt, ReloadTrigger};
use crate::exposition::CONTENT_TYPE as PROMETHEUS;
use crate::filter::{FilterError, FlowFilter};
use crate::metrics::GuestCpu;
use crate::session::{SESSION_COOKIE, cookie_value};

const JSON: &str = "application/json";

/// Every admin path, and the methods it answers.
const ENDPOINTS: &[(&str, &str)] = &[
    ("/healthz", "GET, HEAD"),
    ("/metrics", "GET, HEAD"),
    ("/flows", "GET, HEAD"),
    ("/flows/stream", "GET, HEAD"),
    ("/model", "GET, HEAD"),
    ("/cpu", "GET, HEAD"),
    ("/reload", "GET, HEAD, POST"),
    ("/dashboard", "GET, HEAD"),
    ("/dashboard.js", "GET, HEAD"),
    ("/dashboard.css", "GET, HEAD"),
    ("/login", "GET, POST"),
];

/// Why a request may not use the admin API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NoCredential {
    /// Neither a bearer header nor a session cookie.
    Missing,
    /// A bearer header with something other than the token.
    InvalidToken,
    /// A session cookie this process did not issue, or one that expired.
    InvalidSession,
}

impl NoCredential {
    /// The 401: a login page when `page`, JSON otherwise; an invalid cookie is also cleared.
    fn response(self, page: bool) -> Response<AdminBody> {
        const INVALID: &str = r#"Bearer realm="septa-admin", error="invalid_token""#;
        match self {
            Self::Missing => unauthorized(
                page,
                "this admin endpoint needs `Authorization: Bearer TOKEN` (or, in a browser, a session from `/login`)",
                r#"Bearer realm="septa-admin""#,
            ),
            Self::InvalidToken => unauthorized(page, "the admin token is not valid", INVALID),
            Self::InvalidSession => {
                let mut response = unauthorized(
                    page,
                    "the session is not valid or has expired; log in again at `/login`",
                    INVALID,
                );
                response
                    .headers_mut()
                    .insert(SET_COOKIE, browser::clear_session_cookie());
                response
            }
        }
    }
}

/// How a request proved it may use the admin API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Credential {
    /// `Authorization: Bearer TOKEN`.
    Bearer,
    /// The session cookie `/login` set.
    Session,
}

impl Admin {
    /// Answers one admin request: 401 without the right token or session, whatever the path.
    /// `/login` trades the token for a session cookie. A reload runs on a blocking thread, so
    /// the listener keeps answering while components compile.
    pub async fn respond<B>(self: Arc<Self>, request: Request<B>) -> Response<AdminBody>
    where
        B: hyper::body::Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if request.uri().path() == "/login" {
            return self.login(request).await;
        }
        if request.uri().path().starts_with("/probe") {
            return match self.credential(&request) {
                Ok(Credential::Bearer) => self.probe_route(request).await,
                Ok(Credential::Session) => json_response(
                    StatusCode::FORBIDDEN,
                    &json!({ "error": "probes take the bearer token, not a browser session" }),
                ),
                Err(missing) => missing.response(false),
            };
        }
        let is_reload = request.method() == Method::POST && request.uri().path() == "/reload";
        if !is_reload || self.refuse(&request).is_some() {
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

    /// Answers one admin request that needs no waiting: 401 without the right token or session,
    /// whatever the path. `POST /reload` and `/login` go through [`Admin::respond`].
    pub fn handle<B>(&self, request: &Request<B>) -> Response<AdminBody> {
        if let Some(refusal) = self.refuse(request) {
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
            "/cpu" => json_response(StatusCode::OK, &cpu_by_segment(self.metrics.guest_cpu())),
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
            "/flows/stream" => match FlowFilter::from_query(query) {
                Ok(filter) => stream::respond(&self.recent, filter, self.heartbeat),
                Err(error) => bad_filter(&error),
            },
            // `/login` is answered by `respond`, before the credential check.
            _ => browser::asset(path).unwrap_or_else(|| {
                json_response(
                    StatusCode::NOT_FOUND,
                    &json!({ "error": format!("no admin endpoint `{path}`") }),
                )
            }),
        }
    }

    /// The refusal for a request without a valid credential, or for a state-changing request
    /// carried by a session cookie alone that a page of another site may have sent; `None` when
    /// it may go on.
    fn refuse<B>(&self, request: &Request<B>) -> Option<Response<AdminBody>> {
        match self.credential(request) {
            Err(missing) => Some(missing.response(browser::wants_page(request.uri().path()))),
            Ok(Credential::Session)
                if request.method() != Method::GET && request.method() != Method::HEAD =>
            {
                browser::cross_site_refusal(request)
            }
            Ok(_) => None,
        }
    }

    /// Which credential the request carries, or why it has none. A bearer header, when there
    /// is one, is the credential: a wrong one is refused even with a good cookie.
    fn credential<B>(&self, request: &Request<B>) -> Result<Credential, NoCredential> {
        if let Some(header) = request.headers().get(AUTHORIZATION) {
            let presented = header
                .as_bytes()
                .split_at_checked(7)
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case(b"bearer "))
                .map(|(_, token)| token.trim_ascii());
            return match presented {
                Some(token) if self.token.verify(token) => Ok(Credential::Bearer),
                _ => Err(NoCredential::InvalidToken),
            };
        }
        let cookie = request
            .headers()
            .get_all(COOKIE)
            .iter()
            .filter_map(|h| h.to_str().ok())
            .find_map(|h| cookie_value(h, SESSION_COOKIE))
            .ok_or(NoCredential::Missing)?;
        let now = ReloadAttempt::now_unix_s();
        if self
            .sessions
            .as_ref()
            .is_some_and(|s| s.verify(cookie, now))
        {
            Ok(Credential::Session)
        } else {
            Err(NoCredential::InvalidSession)
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

/// The CPU the guests have used since septa started, by segment (the sum of its functions) and
/// by function, in seconds: what the dashboard turns into each segment's share of a core.
fn cpu_by_segment(usage: Vec<GuestCpu>) -> serde_json::Value {
    let mut segments: BTreeMap<&str, (f64, f64, u64)> = BTreeMap::new();
    for u in &usage {
        let total = segments.entry(u.segment.as_str()).or_default();
        total.0 += u.cpu.as_secs_f64();
        total.1 += u.waited.as_secs_f64();
        total.2 += u.preemptions;
    }
    let segments: Vec<serde_json::Value> = segments
        .into_iter()
        .map(|(segment, (cpu, waited, preemptions))| {
            json!({
                "segment": segment,
                "cpu_seconds": cpu,
                "waited_seconds": waited,
                "preemptions": preemptions,
            })
        })
        .collect();
    let mut functions: Vec<&GuestCpu> = usage.iter().collect();
    functions.sort_by(|a, b| (&a.segment, &a.function).cmp(&(&b.segment, &b.function)));
    let functions: Vec<serde_json::Value> = functions
        .into_iter()
        .map(|u| {
            json!({
                "segment": u.segment,
                "function": u.function,
                "cpu_seconds": u.cpu.as_secs_f64(),
                "waited_seconds": u.waited.as_secs_f64(),
                "preemptions": u.preemptions,
            })
        })
        .collect();
    json!({ "segments": segments, "functions": functions })
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

/// The 401: a login page for a browser's paths, JSON for the rest, with the same challenge.
pub(super) fn unauthorized(
    page: bool,
    message: &str,
    challenge: &'static str,
) -> Response<AdminBody> {
    let mut response = if page {
        browser::login_page(message)
    } else {
        json_response(StatusCode::UNAUTHORIZED, &json!({ "error": message }))
    };
    *response.status_mut() = StatusCode::UNAUTHORIZED;
    response
        .headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    response
}

pub(super) fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<AdminBody> {
    let mut response = text_response(JSON, body.to_string());
    *response.status_mut() = status;
    response
}

pub(super) fn text_response(content_type: &'static str, body: String) -> Response<AdminBody> {
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
