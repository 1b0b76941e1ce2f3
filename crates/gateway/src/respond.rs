//! How the gateway answers a request it does not dispatch: the status and standard headers each
//! refusal reason calls for, in septa's one JSON error shape. A client is told only what the
//! status and the standard headers say (RFC 6750's `invalid_token`, `insufficient_scope`) and
//! the request's trace id; the flow record of that trace says which check refused it, and for
//! a function that failed, how.

use http::header::{ALLOW, WWW_AUTHENTICATE};
use http::{HeaderName, HeaderValue, Response, StatusCode};
use septa_manifest::Methods;
use septa_policy::{
    CompiledRoute, CredentialKind, CredentialProblem, LimitRefusal, Policy, Reason,
};
use septa_runtime::HyperOutgoingBody;

/// Headers to send with a response.
pub type Headers = Vec<(HeaderName, HeaderValue)>;

/// The status a refusal of `reason` answers with.
pub fn status_of(reason: &Reason) -> StatusCode {
    match reason {
        Reason::InvalidPath(_) | Reason::AmbiguousPath { .. } | Reason::MalformedRequest(_) => {
            StatusCode::BAD_REQUEST
        }
        Reason::NoRoute { .. } => StatusCode::NOT_FOUND,
        Reason::RouteMethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
        Reason::Unauthenticated { .. } => StatusCode::UNAUTHORIZED,
        Reason::RateLimited {
            refusal: LimitRefusal::Unavailable,
            ..
        } => StatusCode::SERVICE_UNAVAILABLE,
        Reason::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        Reason::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::FORBIDDEN,
    }
}

/// The headers a refusal of `reason` carries besides the rate limiters' own: the challenge of
/// a `401` or `403`, the methods of a `405`.
pub fn refusal_headers(policy: &Policy, reason: &Reason, route: Option<&CompiledRoute>) -> Headers {
    let challenge = |value: String| {
        let value =
            HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("Bearer"));
        vec![(WWW_AUTHENTICATE, value)]
    };
    match reason {
        Reason::Unauthenticated {
            credential,
            problem,
        } => {
            let (scheme, invalid) = match credential {
                CredentialKind::Jwt => ("Bearer", "invalid_token"),
                CredentialKind::ApiKey => ("ApiKey", "invalid_key"),
            };
            challenge(match problem {
                CredentialProblem::Missing => format!("{scheme} realm=\"septa\""),
                CredentialProblem::Invalid(_) => {
                    format!("{scheme} realm=\"septa\", error=\"{invalid}\"")
                }
            })
        }
        Reason::MissingScope { .. } | Reason::ClaimMismatch { .. } => {
            challenge("Bearer realm=\"septa\", error=\"insufficient_scope\"".to_owned())
        }
        Reason::RouteMethodNotAllowed { .. } => {
            let Some(route) = route else {
                return Vec::new();
            };
            let mut methods: Vec<String> = Vec::new();
            for r in policy.routes_of_pattern(route) {
                match &r.methods {
                    Methods::Any => methods.push("*".to_owned()),
                    Methods::Only(list) => methods.extend(list.iter().cloned()),
                }
            }
            methods.sort();
            methods.dedup();
            let allow = HeaderValue::from_str(&methods.join(", "))
                .unwrap_or_else(|_| HeaderValue::from_static(""));
            vec![(ALLOW, allow)]
        }
        _ => Vec::new(),
    }
}

/// A JSON error response of `status` saying `message` about the request traced as `trace`,
/// with `headers`.
pub(crate) fn json_error(
    status: StatusCode,
    message: &str,
    trace: u64,
    headers: &[(HeaderName, HeaderValue)],
) -> Response<HyperOutgoingBody> {
    let mut response = septa_runtime::json_error(status, message, Some(trace), None);
    for (name, value) in headers {
        response.headers_mut().insert(name.clone(), value.clone());
    }
    response
}
