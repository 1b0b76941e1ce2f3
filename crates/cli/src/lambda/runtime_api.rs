//! The Lambda Runtime API, as a custom runtime speaks it: long-poll
//! `GET /2018-06-01/runtime/invocation/next` for the next event, then post its response or its
//! error; at start-up, post what stopped the runtime from starting.
//!
//! The API is plain HTTP/1.1 on the address Lambda gives in `AWS_LAMBDA_RUNTIME_API`; each call
//! opens its own connection, which costs nothing on loopback and leaves no state to go stale
//! while Lambda freezes the process between invocations.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;

/// The Runtime API's version prefix.
const PREFIX: &str = "/2018-06-01/runtime";

/// The largest event read: Lambda's 6 MB for a synchronous invocation's payload, and room to
/// spare for its JSON.
const MAX_EVENT_BYTES: usize = 7 * 1024 * 1024;

/// The most of an answer to a post that is read (it is a short JSON status).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// How long a post to the API may take; `next` waits as long as Lambda has no event.
const POST_TIMEOUT: Duration = Duration::from_secs(30);

/// The Runtime API at one address.
pub(crate) struct RuntimeApi {
    /// `host:port`.
    authority: String,
}

/// One invocation, as `next` delivered it.
#[derive(Debug)]
pub(crate) struct Invocation {
    /// `Lambda-Runtime-Aws-Request-Id`.
    pub(crate) request_id: String,
    /// `Lambda-Runtime-Deadline-Ms`: when Lambda stops the invocation, in Unix milliseconds.
    pub(crate) deadline_ms: Option<u64>,
    /// `Lambda-Runtime-Trace-Id` (X-Ray), handed to the function as `x-amzn-trace-id` when its
    /// request has none.
    pub(crate) xray_trace: Option<String>,
    /// The event's bytes, or why they were not read.
    pub(crate) event: Result<Bytes, String>,
}

/// An error to report to Lambda: its `errorType` (also the `Lambda-Runtime-Function-Error-Type`
/// header) and `errorMessage`.
#[derive(Debug, Clone)]
pub(crate) struct ReportedError {
    pub(crate) error_type: &'static str,
    pub(crate) message: String,
}

/// Why a call to the Runtime API failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    #[error("cannot reach the Lambda Runtime API at `{authority}`: {message}")]
    Connect { authority: String, message: String },
    #[error("`{method} {path}` on the Lambda Runtime API failed: {message}")]
    Exchange {
        method: Method,
        path: String,
        message: String,
    },
    #[error("`{method} {path}` on the Lambda Runtime API answered {status}: {body}")]
    Status {
        method: Method,
        path: String,
        status: StatusCode,
        body: String,
    },
    #[error("the Lambda Runtime API gave an invocation without a usable request id ({0})")]
    RequestId(String),
}

impl RuntimeApi {
    /// The API at `authority` (`host:port`, as `AWS_LAMBDA_RUNTIME_API` gives it).
    pub(crate) fn new(authority: &str) -> Self {
        Self {
            authority: authority.trim_end_matches('/').to_owned(),
        }
    }

    /// Waits for the next invocation.
    pub(crate) async fn next(&self) -> Result<Invocation, ApiError> {
        let path = format!("{PREFIX}/invocation/next");
        let (headers, body) = self
            .call(Method::GET, &path, &[], Bytes::new(), MAX_EVENT_BYTES, None)
            .await?;
        let text = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let request_id = text("lambda-runtime-aws-request-id")
            .ok_or_else(|| ApiError::RequestId("none given".to_owned()))?;
        // It goes into the path of the answer: anything but a plain id is refused.
        let plain = !request_id.is_empty()
            && request_id.len() <= 128
            && request_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !plain {
            return Err(ApiError::RequestId(format!(
                "`{}`",
                request_id.escape_debug()
            )));
        }
        Ok(Invocation {
            request_id,
            deadline_ms: text("lambda-runtime-deadline-ms").and_then(|d| d.parse().ok()),
            xray_trace: text("lambda-runtime-trace-id"),
            event: body,
        })
    }

    /// Posts the response to invocation `request_id`.
    pub(crate) async fn respond(
        &self,
        request_id: &str,
        document: Vec<u8>,
    ) -> Result<(), ApiError> {
        let path = format!("{PREFIX}/invocation/{request_id}/response");
        self.post(&path, &[], Bytes::from(document)).await
    }

    /// Reports that invocation `request_id` failed.
    pub(crate) async fn fail(
        &self,
        request_id: &str,
        error: &ReportedError,
    ) -> Result<(), ApiError> {
        let path = format!("{PREFIX}/invocation/{request_id}/error");
        self.post_error(&path, error).await
    }

    /// Reports that the runtime could not start.
    pub(crate) async fn init_error(&self, error: &ReportedError) -> Result<(), ApiError> {
        self.post_error(&format!("{PREFIX}/init/error"), error)
            .await
    }

    async fn post_error(&self, path: &str, error: &ReportedError) -> Result<(), ApiError> {
        let body = serde_json::json!({
            "errorMessage": error.message,
            "errorType": error.error_type,
            "stackTrace": [],
        });
        let headers = [("lambda-runtime-function-error-type", error.error_type)];
        self.post(path, &headers, Bytes::from(body.to_string()))
            .await
    }

    async fn post(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<(), ApiError> {
        let (_, answer) = self
            .call(
                Method::POST,
                path,
                headers,
                body,
                MAX_ANSWER_BYTES,
                Some(POST_TIMEOUT),
            )
            .await?;
        answer.map(drop).map_err(|message| ApiError::Exchange {
            method: Method::POST,
            path: path.to_owned(),
            message,
        })
    }

    /// One exchange on a connection of its own: the answer's headers and its body (or why the
    /// body was not read), when the status is a success.
    async fn call(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
        limit: usize,
        timeout: Option<Duration>,
    ) -> Result<(HeaderMap, Result<Bytes, String>), ApiError> {
        let exchange = self.exchange(method.clone(), path, headers, body, limit);
        match timeout {
            None => exchange.await,
            Some(timeout) => tokio::time::timeout(timeout, exchange)
                .await
                .unwrap_or_else(|_| {
                    Err(ApiError::Exchange {
                        method,
                        path: path.to_owned(),
                        message: format!("no answer within {} s", timeout.as_secs()),
                    })
                }),
        }
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
        limit: usize,
    ) -> Result<(HeaderMap, Result<Bytes, String>), ApiError> {
        let failed = |message: String| ApiError::Exchange {
            method: method.clone(),
            path: path.to_owned(),
            message,
        };
        let stream = tokio::net::TcpStream::connect(&self.authority)
            .await
            .map_err(|e| ApiError::Connect {
                authority: self.authority.clone(),
                message: e.to_string(),
            })?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| failed(e.to_string()))?;
        tokio::spawn(connection);
        let mut request = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(http::header::HOST, self.authority.as_str());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(body))
            .map_err(|e| failed(e.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, limit)
            .collect()
            .await
            .map(|collected| collected.to_bytes())
            .map_err(|e| format!("cannot read the body (at most {limit} bytes): {e}"));
        if !parts.status.is_success() {
            let text = body
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_else(Clone::clone);
            return Err(ApiError::Status {
                method,
                path: path.to_owned(),
                status: parts.status,
                body: text,
            });
        }
        Ok((parts.headers, body))
    }
}
