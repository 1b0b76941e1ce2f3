//! `/probe/grant` and `/probe`: live segmentation tests. A probe may act as any identity, so it
//! takes the bearer token (a browser session is not enough) and a grant that ends on its own.

use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use serde_json::json;

use super::routes::json_response;
use super::{Admin, AdminBody};
use crate::control::{ProbeAttempt, ProbeRefusal};

/// The header that carries a probe grant.
pub const GRANT_HEADER: &str = "septa-probe-grant";

/// The longest a grant may last, and how long one lasts unless asked.
const MAX_TTL: Duration = Duration::from_secs(600);
const DEFAULT_TTL: Duration = Duration::from_secs(60);

/// The largest probe request: about 40,000 attempts.
const MAX_BODY: usize = 8 << 20;

impl Admin {
    /// Answers `/probe/grant` (POST grants, DELETE revokes) and `POST /probe`. The caller has
    /// checked the bearer token.
    pub(super) async fn probe_route<B>(self: Arc<Self>, request: Request<B>) -> Response<AdminBody>
    where
        B: hyper::body::Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let Some(control) = self.control.clone() else {
            return json_response(
                StatusCode::NOT_FOUND,
                &json!({ "error": "this admin listener has no platform to probe" }),
            );
        };
        let grant = request
            .headers()
            .get(GRANT_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        match (request.uri().path(), request.method().clone()) {
            ("/probe/grant", Method::POST) => {
                let ttl = match ttl_of(request.uri().query()) {
                    Ok(ttl) => ttl,
                    Err(message) => {
                        return json_response(
                            StatusCode::BAD_REQUEST,
                            &json!({ "error": message }),
                        );
                    }
                };
                json_response(StatusCode::CREATED, &json!(control.grant_probe(ttl)))
            }
            ("/probe/grant", Method::DELETE) => match grant {
                Some(id) if control.revoke_probe(&id) => {
                    json_response(StatusCode::OK, &json!({ "revoked": true }))
                }
                _ => refused(&ProbeRefusal::NoGrant),
            },
            ("/probe", Method::POST) => {
                let Some(id) = grant else {
                    return refused(&ProbeRefusal::NoGrant);
                };
                let body = match Limited::new(request.into_body(), MAX_BODY).collect().await {
                    Ok(body) => body.to_bytes(),
                    Err(error) => {
                        return json_response(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            &json!({ "error": format!("cannot read the attempts: {error}") }),
                        );
                    }
                };
                let attempts: Vec<ProbeAttempt> = match serde_json::from_slice(&body) {
                    Ok(attempts) => attempts,
                    Err(error) => {
                        return json_response(
                            StatusCode::BAD_REQUEST,
                            &json!({ "error": format!("the body must be a JSON array of {{from, to, method, path}}: {error}") }),
                        );
                    }
                };
                let run = tokio::task::spawn_blocking(move || control.probe(&id, &attempts));
                match run.await {
                    Ok(Ok(report)) => json_response(StatusCode::OK, &json!(report)),
                    Ok(Err(refusal)) => refused(&refusal),
                    Err(error) => json_response(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        &json!({ "error": format!("the probe did not finish: {error}") }),
                    ),
                }
            }
            (path, method) => json_response(
                StatusCode::METHOD_NOT_ALLOWED,
                &json!({ "error": format!("`{method} {path}`: the probe answers POST/DELETE /probe/grant and POST /probe") }),
            ),
        }
    }
}

fn ttl_of(query: Option<&str>) -> Result<Duration, String> {
    let Some(value) = query
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| pair.strip_prefix("ttl_s="))
    else {
        return Ok(DEFAULT_TTL);
    };
    match value.parse::<u64>() {
        Ok(s) if s > 0 && Duration::from_secs(s) <= MAX_TTL => Ok(Duration::from_secs(s)),
        _ => Err(format!(
            "`ttl_s` must be a number of seconds from 1 to {}, not `{value}`",
            MAX_TTL.as_secs()
        )),
    }
}

fn refused(refusal: &ProbeRefusal) -> Response<AdminBody> {
    let status = match refusal {
        ProbeRefusal::NoGrant => StatusCode::FORBIDDEN,
        ProbeRefusal::BadAttempt { .. } => StatusCode::BAD_REQUEST,
    };
    json_response(status, &json!({ "error": refusal.to_string() }))
}
