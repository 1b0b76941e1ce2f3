//! One invocation: the event read, decided again as its source calls for (see [`super::decide`]),
//! run in a fresh instance of the function by its deadline, and answered in the event's shape,
//! with one flow record as a node writes it.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request};
use http_body_util::{BodyExt, Full, Limited};
use septa_flows::FlowLog;
use septa_gateway::auth::Credentials;
use septa_mesh::MAX_DEPTH;
use septa_mesh::remote::{DEADLINE_HEADER, DEPTH_HEADER, TRACE_HEADER};
use septa_policy::{FunctionId, Policy};
use septa_runtime::{Chain, Host, HttpError, InvokeError, strip_identity_headers};

use super::decide::{Admitted, Decided};
use super::events::{self, EventError, HttpEvent};
use super::reply::{MAX_RESPONSE_BYTES, Reply};
use super::runtime_api::{Invocation, ReportedError};

/// The header X-Ray reads a trace from; Lambda gives the invocation's in `Lambda-Runtime-Trace-Id`.
const XRAY_HEADER: &str = "x-amzn-trace-id";

/// Time kept back from Lambda's deadline, so that a function stopped by it is reported by septa
/// (as `Function.Timeout`) before Lambda stops the whole process.
const REPORT_MARGIN: Duration = Duration::from_millis(50);

/// The one function this runtime serves, and what it is served with.
pub(crate) struct Function {
    pub(crate) policy: Arc<Policy>,
    pub(crate) host: Arc<Host>,
    pub(crate) id: FunctionId,
    pub(crate) flows: FlowLog,
    /// The verifiers of the routes' credentials, as the gateway loads them.
    pub(crate) credentials: Credentials,
}

/// What to tell Lambda about an invocation.
pub(crate) enum Outcome {
    /// The response document to post.
    Respond(Vec<u8>),
    /// The error to post.
    Fail(ReportedError),
}

impl Function {
    /// Serves one invocation.
    pub(crate) async fn invoke(&self, invocation: &Invocation) -> Outcome {
        let event = invocation
            .event
            .as_ref()
            .map_err(|why| EventError::NotJson(why.clone()))
            .and_then(|bytes| events::parse(bytes));
        let event = match event {
            Ok(event) => event,
            Err(e) => return fail("Runtime.InvalidEvent", e.to_string()),
        };
        let source = event.source;
        let chain = chain_of(&event, invocation);
        let trace = chain.trace;
        let headers = match header_map(&event) {
            Ok(headers) => headers,
            Err(e) => return Outcome::Fail(e),
        };
        let reply = match self.decide(&event, &headers, trace) {
            Decided::Refused(reply) => reply,
            Decided::Admitted(admitted) => {
                let xray = invocation.xray_trace.as_deref();
                match self.run(event, headers, *admitted, chain, xray).await {
                    Ok(reply) => reply,
                    Err(error) => return Outcome::Fail(error),
                }
            }
        };
        match reply.into_event_response(source) {
            Ok(document) => Outcome::Respond(document),
            Err(too_large) => fail("Runtime.ResponseTooLarge", too_large.to_string()),
        }
    }

    /// Runs the function on the admitted request and reads its whole response.
    async fn run(
        &self,
        event: HttpEvent,
        headers: HeaderMap,
        admitted: Admitted,
        chain: Chain,
        xray: Option<&str>,
    ) -> Result<Reply, ReportedError> {
        let mut request = Request::builder()
            .method(event.method.as_str())
            .uri(admitted.path_and_query.as_str())
            .body(())
            .map_err(|e| ReportedError {
                error_type: "Runtime.InvalidEvent",
                message: format!("{} event: invalid request: {e}", event.source.name()),
            })?;
        *request.headers_mut() = headers;
        let headers = request.headers_mut();
        for (name, value) in admitted.identity {
            headers.insert(name, value);
        }
        let xray = xray.and_then(|t| HeaderValue::from_str(t).ok());
        if let (Some(xray), false) = (xray, headers.contains_key(XRAY_HEADER)) {
            headers.insert(XRAY_HEADER, xray);
        }
        if !headers.contains_key(http::header::HOST) {
            headers.insert(http::header::HOST, HeaderValue::from_static("localhost"));
        }
        let body = Full::new(Bytes::from(event.body))
            .map_err(|never: Infallible| -> HttpError { match never {} });
        let request = request.map(|()| body);
        let response = self
            .host
            .handle_flow(self.id, chain, request, None, admitted.flow)
            .await
            .map_err(|e| ReportedError {
                error_type: invoke_error_type(&e),
                message: e.to_string(),
            })?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| body_error(&*e))?
            .to_bytes();
        let headers = parts
            .headers
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                (name.as_str().to_owned(), value)
            })
            .collect();
        Ok(Reply {
            status: parts.status.as_u16(),
            headers,
            body: body.to_vec(),
        })
    }
}

/// The event's headers, less any identity header (the host's to set), or the first that is not
/// a valid HTTP header.
fn header_map(event: &HttpEvent) -> Result<HeaderMap, ReportedError> {
    let mut headers = HeaderMap::with_capacity(event.headers.len());
    for (name, value) in &event.headers {
        let header = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
            .ok()
            .zip(HeaderValue::from_str(value).ok());
        let Some((name, value)) = header else {
            return Err(ReportedError {
                error_type: "Runtime.InvalidEvent",
                message: format!(
                    "{} event: header `{}` is not a valid HTTP header",
                    event.source.name(),
                    name.escape_debug()
                ),
            });
        };
        headers.append(name, value);
    }
    strip_identity_headers(&mut headers);
    Ok(headers)
}

/// The error of a response body that did not arrive whole.
fn body_error(error: &(dyn std::error::Error + Send + Sync + 'static)) -> ReportedError {
    if error.is::<http_body_util::LengthLimitError>() {
        return ReportedError {
            error_type: "Runtime.ResponseTooLarge",
            message: format!(
                "the function's response body is over Lambda's limit of 6 MB ({MAX_RESPONSE_BYTES} bytes) for an invocation's response"
            ),
        };
    }
    ReportedError {
        error_type: "Function.ResponseFailed",
        message: format!("the function's response body failed: {error}"),
    }
}

fn fail(error_type: &'static str, message: String) -> Outcome {
    Outcome::Fail(ReportedError {
        error_type,
        message,
    })
}

/// The `errorType` a failed function is reported with.
fn invoke_error_type(error: &InvokeError) -> &'static str {
    match error {
        // Lambda's own deadline is the chain's: stopped by it, the function timed out. A CPU
        // budget stops a guest as a timeout does.
        InvokeError::Timeout { .. }
        | InvokeError::CallerDeadline { .. }
        | InvokeError::CpuBudget { .. } => "Function.Timeout",
        InvokeError::MemoryLimit { .. } => "Function.MemoryLimit",
        InvokeError::Trap { .. } => "Function.Trap",
        InvokeError::NoResponse { .. } => "Function.NoResponse",
        InvokeError::Overloaded { .. }
        | InvokeError::SegmentOverloaded { .. }
        | InvokeError::PoolExhausted { .. } => "Function.Overloaded",
        InvokeError::BodyTimeout { .. } | InvokeError::Host { .. } => "Runtime.HostError",
    }
}

/// The chain an invocation runs in: its trace, how many calls deep it is and when it must be
/// done (Lambda's deadline, less the time to report).
///
/// A VPC Lattice event continues its caller's chain, as the calling function's septa sent it
/// (`septa-trace`, `septa-depth`, `septa-deadline-ms`; the calling guest cannot set them, its
/// `septa-*` headers are removed before a call leaves, and Lattice admits only the roles septa
/// signs with). So a loop of functions calling each other through Lattice ends at `MAX_DEPTH`
/// and by the first caller's deadline, as it does within a node. A Lattice event without a
/// depth counts as at the chain's end, as a call between nodes does: the function runs, and every
/// call it makes is refused. An API Gateway event starts a chain; a client's headers of these
/// names are dropped with every identity header.
fn chain_of(event: &HttpEvent, invocation: &Invocation) -> Chain {
    let lambda = deadline_of(invocation.deadline_ms);
    let mut chain = Chain::start(trace_of(&invocation.request_id));
    if !event.source.is_gateway() {
        let header = |name: &str| {
            event
                .headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, value)| value.trim())
        };
        if let Some(trace) = header(TRACE_HEADER)
            .filter(|t| t.len() == 16)
            .and_then(|t| u64::from_str_radix(t, 16).ok())
        {
            chain.trace = trace;
        }
        chain.depth = header(DEPTH_HEADER)
            .and_then(|d| d.parse::<u8>().ok())
            .map_or(MAX_DEPTH, |d| d.min(MAX_DEPTH));
        let left = header(DEADLINE_HEADER).and_then(|ms| ms.parse::<u64>().ok());
        if let Some(deadline) =
            left.and_then(|ms| Instant::now().checked_add(Duration::from_millis(ms)))
        {
            chain = chain.within(deadline);
        }
    }
    match lambda {
        Some(deadline) => chain.within(deadline),
        None => chain,
    }
}

/// The trace of an invocation: the first 16 hex digits of its request id when that is a UUID,
/// as Lambda's are (so a flow record's trace is the start of the request id in CloudWatch),
/// else a hash of the id.
pub(crate) fn trace_of(request_id: &str) -> u64 {
    let hex: String = request_id.chars().filter(|c| *c != '-').collect();
    let uuid =
        request_id.len() == 36 && hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit());
    if uuid && let Some(Ok(trace)) = hex.get(..16).map(|h| u64::from_str_radix(h, 16)) {
        return trace;
    }
    // FNV-1a: stable across runs and platforms.
    request_id
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        })
}

/// When the function must be done: Lambda's deadline less the time to report, or `None` when
/// Lambda gave none (the function's own timeout applies either way, whichever comes first).
fn deadline_of(deadline_ms: Option<u64>) -> Option<Instant> {
    let deadline_ms = deadline_ms?;
    let now_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .ok()?
        .as_millis();
    let left = u128::from(deadline_ms).saturating_sub(now_ms);
    let left = Duration::from_millis(u64::try_from(left).unwrap_or(u64::MAX));
    Instant::now().checked_add(left.saturating_sub(REPORT_MARGIN))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn a_uuid_request_id_starts_its_trace() {
        let trace = trace_of("8476a536-e9f4-11e8-9739-2dfe598c3fcd");
        assert_eq!(septa_runtime::trace_id(trace), "8476a536e9f411e8");
        assert_eq!(trace_of("not-a-uuid"), trace_of("not-a-uuid"));
        assert_ne!(trace_of("not-a-uuid"), trace_of("not-a-uuid2"));
    }
}
