//! Outgoing calls over wasi:http: to another function (`http://NAME.internal/...`) or
//! to an outside host, blocking until the whole response is read.

use std::fmt;

use serde_json::Value;
use wasi::http::outgoing_handler;
use wasi::http::types::{
    ErrorCode, Fields, FutureIncomingResponse, HeaderError, IncomingResponse, Method,
    OutgoingRequest, Scheme,
};

use crate::body::{read_body, write_body};
use crate::headers::{DENY_REASON_HEADER, HeaderList};

/// How much of a response body a call keeps unless told otherwise.
const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// The URL that reaches function `name` through the mesh; `path` should start with `/`.
pub fn mesh_url(name: &str, path: &str) -> String {
    format!("http://{name}.internal{path}")
}

/// An outgoing request to build up and [`send`](Call::send).
#[derive(Debug, Clone)]
pub struct Call {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    body_limit: usize,
}

/// A response read whole (or up to the call's body limit).
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The response status.
    pub status: u16,
    /// All response headers.
    pub headers: HeaderList,
    /// The body, cut at the call's body limit.
    pub body: Vec<u8>,
    /// The body went on past the limit.
    pub truncated: bool,
}

/// Why a call produced no response.
#[derive(Debug, Clone)]
pub enum CallError {
    /// The call could not be built from what the guest gave (bad URL or method); nothing
    /// was sent.
    Invalid(String),
    /// The host refused a request header.
    Header {
        /// The header name as given.
        name: String,
        /// What the host said.
        error: HeaderError,
    },
    /// wasi:http failed the request. `ErrorCode::HttpRequestDenied` is septa denying
    /// egress to an outside host.
    Http(ErrorCode),
    /// The host broke its side of the resource protocol (a body taken twice and such).
    Host(String),
}

impl CallError {
    /// `true` when septa's egress policy refused the request.
    pub fn is_denied(&self) -> bool {
        matches!(self, Self::Http(ErrorCode::HttpRequestDenied))
    }
}

impl fmt::Display for CallError {
    /// The wasi error's own debug text (`ErrorCode::HttpRequestDenied`), so tests can
    /// match on the variant name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid(message) | Self::Host(message) => f.write_str(message),
            Self::Header { name, error } => write!(f, "{error:?} (header `{name}`)"),
            Self::Http(code) => write!(f, "{code:?}"),
        }
    }
}

impl Call {
    /// A request of `method` (e.g. `GET`) to `url`, with no headers and no body.
    pub fn new(method: &str, url: impl Into<String>) -> Self {
        Self {
            method: method.to_string(),
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
            body_limit: DEFAULT_BODY_LIMIT,
        }
    }

    /// `GET url`.
    pub fn get(url: impl Into<String>) -> Self {
        Self::new("GET", url)
    }

    /// `POST url` with a JSON body.
    pub fn post_json(url: impl Into<String>, body: &Value) -> Self {
        Self::new("POST", url)
            .header("content-type", "application/json")
            .body(body.to_string().into_bytes())
    }

    /// Adds a request header (repeatable).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Sets the request body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Keeps at most `limit` bytes of the response body.
    pub fn body_limit(mut self, limit: usize) -> Self {
        self.body_limit = limit;
        self
    }

    /// Sends the request and waits for the whole response.
    pub fn send(&self) -> Result<Fetched, CallError> {
        let target = Target::parse(&self.url)?;
        let headers = Fields::new();
        for (name, value) in &self.headers {
            headers
                .append(name, value.as_bytes())
                .map_err(|error| CallError::Header {
                    name: name.clone(),
                    error,
                })?;
        }
        let request = OutgoingRequest::new(headers);
        request
            .set_method(&parse_method(&self.method)?)
            .map_err(|()| CallError::Invalid(format!("invalid method `{}`", self.method)))?;
        request
            .set_scheme(Some(&target.scheme))
            .map_err(|()| CallError::Invalid(format!("invalid scheme in `{}`", self.url)))?;
        request
            .set_authority(Some(&target.authority))
            .map_err(|()| CallError::Invalid(format!("invalid authority in `{}`", self.url)))?;
        request
            .set_path_with_query(Some(&target.path_with_query))
            .map_err(|()| CallError::Invalid(format!("invalid path in `{}`", self.url)))?;
        let body = request
            .body()
            .map_err(|()| CallError::Host("the request body was already taken".to_string()))?;
        let pending = outgoing_handler::handle(request, None).map_err(CallError::Http)?;
        // The body is written after `handle` so the host is already sending while we
        // write; writing first could fill the host's buffer with no one draining it.
        // A write error is not returned: the server may answer without reading the
        // body (a policy 403 does), and when it does not answer, the response future
        // carries the real reason.
        let _ = write_body(body, &self.body);
        let response = wait_for(pending)?;
        self.read_response(response)
    }

    fn read_response(&self, response: IncomingResponse) -> Result<Fetched, CallError> {
        let status = response.status();
        let headers = HeaderList::new(response.headers().entries());
        let body = response
            .consume()
            .map_err(|()| CallError::Host("the response body was already taken".to_string()))?;
        let read = read_body(body, self.body_limit).map_err(CallError::Host)?;
        Ok(Fetched {
            status,
            headers,
            body: read.bytes,
            truncated: read.truncated,
        })
    }
}

impl Fetched {
    /// `true` for a 2xx status.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The reason the host gave for a policy denial, if this response is one.
    pub fn deny_reason(&self) -> Option<String> {
        self.headers.get(DENY_REASON_HEADER)
    }

    /// `true` when this is the host's policy denial: a 403 carrying
    /// [`DENY_REASON_HEADER`]. A plain 403 from the called function is not one.
    pub fn is_denied(&self) -> bool {
        self.status == 403 && self.deny_reason().is_some()
    }

    /// The body as text, with bytes that are not UTF-8 replaced.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON, or else as a JSON string holding its text, so a reply
    /// can always embed what came back.
    pub fn body_json_or_text(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| Value::String(self.body_text()))
    }
}

/// Blocks until the host resolves the response future.
fn wait_for(pending: FutureIncomingResponse) -> Result<IncomingResponse, CallError> {
    loop {
        match pending.get() {
            Some(Ok(Ok(response))) => return Ok(response),
            Some(Ok(Err(code))) => return Err(CallError::Http(code)),
            Some(Err(())) => {
                return Err(CallError::Host(
                    "the response was already taken".to_string(),
                ));
            }
            // The pollable is a child of the future and is dropped right after blocking.
            None => pending.subscribe().block(),
        }
    }
}

/// A URL split into the parts wasi:http sets one by one.
struct Target {
    scheme: Scheme,
    authority: String,
    path_with_query: String,
}

impl Target {
    /// Accepts `http://` and `https://` URLs with a non-empty authority; anything after
    /// `#` is dropped since fragments are never sent.
    fn parse(url: &str) -> Result<Self, CallError> {
        let invalid = |why: &str| CallError::Invalid(format!("invalid url `{url}`: {why}"));
        let (scheme_text, rest) = url
            .split_once("://")
            .ok_or_else(|| invalid("expected `http://` or `https://`"))?;
        let scheme = if scheme_text.eq_ignore_ascii_case("http") {
            Scheme::Http
        } else if scheme_text.eq_ignore_ascii_case("https") {
            Scheme::Https
        } else {
            return Err(invalid("expected `http://` or `https://`"));
        };
        let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        if authority.is_empty() {
            return Err(invalid("no host"));
        }
        let path_with_query = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        Ok(Self {
            scheme,
            authority: authority.to_string(),
            path_with_query,
        })
    }
}

/// Maps a method name to wasi's enum; any other token goes through as `Other` so
/// tests can send unusual methods and see how the host treats them.
fn parse_method(method: &str) -> Result<Method, CallError> {
    let upper = method.to_ascii_uppercase();
    Ok(match upper.as_str() {
        "" => return Err(CallError::Invalid("empty method".to_string())),
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "CONNECT" => Method::Connect,
        "OPTIONS" => Method::Options,
        "TRACE" => Method::Trace,
        "PATCH" => Method::Patch,
        _ => Method::Other(method.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(url: &str) -> Option<(String, String)> {
        Target::parse(url)
            .ok()
            .map(|target| (target.authority, target.path_with_query))
    }

    #[test]
    fn splits_urls() {
        let expect = |a: &str, p: &str| Some((a.to_string(), p.to_string()));
        assert_eq!(
            parts("http://catalog.internal/products"),
            expect("catalog.internal", "/products")
        );
        assert_eq!(
            parts("http://127.0.0.1:8080"),
            expect("127.0.0.1:8080", "/")
        );
        assert_eq!(parts("HTTPS://x.test?q=1#frag"), expect("x.test", "/?q=1"));
        assert_eq!(parts("http://[::1]:80/a?b"), expect("[::1]:80", "/a?b"));
    }

    #[test]
    fn rejects_bad_urls() {
        assert!(parts("ftp://x/").is_none());
        assert!(parts("http:///path").is_none());
        assert!(parts("catalog.internal/products").is_none());
    }
}
