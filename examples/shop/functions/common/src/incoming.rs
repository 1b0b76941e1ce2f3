//! The request a function receives, read whole before it is routed.

use std::fmt;

use serde_json::{Value, json};
use wasi::http::types::{IncomingRequest, Method};

use crate::body::read_body;
use crate::headers::{CALLER_HEADER, HeaderList};
use crate::query::parse_query;

/// The largest request body a guest accepts. The guests here deal in small JSON
/// documents; the cap keeps a careless client from filling the guest's memory.
const MAX_REQUEST_BODY: usize = 4 * 1024 * 1024;

/// An incoming request with its headers and body copied out of the wasi resources.
#[derive(Debug, Clone)]
pub struct Request {
    /// The method in upper case as sent, e.g. `GET`.
    pub method: String,
    /// Path and query as received, e.g. `/api/products?page=2`; `/` when the host gave none.
    pub path_with_query: String,
    /// All request headers.
    pub headers: HeaderList,
    /// The whole body; empty for a request without one.
    pub body: Vec<u8>,
}

/// Why a request could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// The body is larger than the guest accepts.
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The host failed to hand over the body.
    Body(String),
}

impl ReadError {
    /// The status to answer with.
    pub fn status(&self) -> u16 {
        match self {
            Self::TooLarge { .. } => 413,
            Self::Body(_) => 500,
        }
    }
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge { limit } => write!(f, "request body is larger than {limit} bytes"),
            Self::Body(message) => write!(f, "cannot read the request body: {message}"),
        }
    }
}

impl Request {
    /// Copies method, path, headers and the whole body out of `request`.
    pub fn read(request: IncomingRequest) -> Result<Self, ReadError> {
        let method = method_name(&request.method());
        let path_with_query = request.path_with_query().unwrap_or_else(|| "/".to_string());
        let headers = HeaderList::new(request.headers().entries());
        let body = request
            .consume()
            .map_err(|()| ReadError::Body("the body was already consumed".to_string()))?;
        let read = read_body(body, MAX_REQUEST_BODY).map_err(ReadError::Body)?;
        if read.truncated {
            return Err(ReadError::TooLarge {
                limit: MAX_REQUEST_BODY,
            });
        }
        Ok(Self {
            method,
            path_with_query,
            headers,
            body: read.bytes,
        })
    }

    /// The path without the query string.
    pub fn path(&self) -> &str {
        match self.path_with_query.split_once('?') {
            Some((path, _)) => path,
            None => &self.path_with_query,
        }
    }

    /// The last non-empty segment of the path (`""` for `/`).
    ///
    /// The gateway passes the full path on, so a function mounted under a route
    /// prefix (`/relay/...`) sees `/relay/tcp`, while the same function called through
    /// the mesh sees `/tcp`. Test tools route on this so they work under any prefix.
    pub fn endpoint(&self) -> &str {
        self.path()
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or_default()
    }

    /// The query string pairs, percent-decoded, in the order given.
    pub fn query(&self) -> Vec<(String, String)> {
        match self.path_with_query.split_once('?') {
            Some((_, query)) => parse_query(query),
            None => Vec::new(),
        }
    }

    /// The first value of query parameter `name`.
    pub fn query_value(&self, name: &str) -> Option<String> {
        self.query()
            .into_iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value)
    }

    /// Who the host says is calling: the [`CALLER_HEADER`] value, if any.
    pub fn caller(&self) -> Option<String> {
        self.headers.get(CALLER_HEADER)
    }

    /// The body as text, with bytes that are not UTF-8 replaced.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// `{"caller": ..., "headers": {...}}`: what several functions answer on
    /// `GET /whoami`, so tests can see exactly what the host delivered.
    pub fn whoami(&self) -> Value {
        json!({
            "caller": self.caller(),
            "headers": self.headers.to_json(),
        })
    }

    /// `true` when this is `method` on exactly `path` (query ignored).
    pub fn is(&self, method: &str, path: &str) -> bool {
        self.method == method && self.path() == path
    }
}

/// The method as it goes on the wire.
fn method_name(method: &Method) -> String {
    match method {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Delete => "DELETE",
        Method::Connect => "CONNECT",
        Method::Options => "OPTIONS",
        Method::Trace => "TRACE",
        Method::Patch => "PATCH",
        Method::Other(other) => other,
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(path_with_query: &str) -> Request {
        Request {
            method: "GET".to_string(),
            path_with_query: path_with_query.to_string(),
            headers: HeaderList::default(),
            body: Vec::new(),
        }
    }

    #[test]
    fn endpoint_is_the_last_segment_under_any_prefix() {
        assert_eq!(request("/").endpoint(), "");
        assert_eq!(request("/?to=x").endpoint(), "");
        assert_eq!(request("/tcp?to=1.2.3.4:5").endpoint(), "tcp");
        assert_eq!(request("/relay/tcp/?to=x").endpoint(), "tcp");
        assert_eq!(request("/relay/?to=x").endpoint(), "relay");
    }

    #[test]
    fn path_and_query_split() {
        let request = request("/a/b?x=1&y=%20");
        assert_eq!(request.path(), "/a/b");
        assert_eq!(request.query_value("y").as_deref(), Some(" "));
    }
}
