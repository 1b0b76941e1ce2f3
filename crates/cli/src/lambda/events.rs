//! The events `septa lambda` serves, read into one HTTP request: API Gateway's HTTP API payload
//! 2.0, its REST (payload 1.0) shape, and VPC Lattice's events v2 and v1.
//!
//! The shape is told from the fields each one alone has (`requestContext.http` for HTTP API 2.0,
//! `httpMethod` for REST, `raw_path` for Lattice v1, `method` and `path` beside `version: "2.0"`
//! for Lattice v2), never from what a client could put in a header; anything else is an
//! [`EventError`] naming the fields it had.

use base64::Engine as _;
use serde_json::{Map, Value};

/// Where an event came from, which is also the shape its response must take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EventSource {
    /// API Gateway HTTP API, payload format 2.0.
    HttpApiV2,
    /// API Gateway REST API (and HTTP API payload format 1.0).
    RestV1,
    /// VPC Lattice, event structure version 2.0.
    LatticeV2,
    /// VPC Lattice, the first event structure.
    LatticeV1,
}

impl EventSource {
    /// The shape's name, as errors and the docs say it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::HttpApiV2 => "API Gateway HTTP API payload 2.0",
            Self::RestV1 => "API Gateway REST payload 1.0",
            Self::LatticeV2 => "VPC Lattice event v2",
            Self::LatticeV1 => "VPC Lattice event v1",
        }
    }

    /// Whether the request came through API Gateway (else through VPC Lattice).
    pub(crate) fn is_gateway(self) -> bool {
        matches!(self, Self::HttpApiV2 | Self::RestV1)
    }
}

/// One request, as an event delivered it.
#[derive(Debug)]
pub(crate) struct HttpEvent {
    pub(crate) source: EventSource,
    pub(crate) method: String,
    /// The path as received, without its query.
    pub(crate) path: String,
    /// The query, percent-encoded, without its `?`.
    pub(crate) query: Option<String>,
    /// Every header, repeated ones once per value; cookies of HTTP API 2.0 as one `cookie`.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
    /// The client's address, as API Gateway saw it.
    pub(crate) client: Option<String>,
    /// The IAM principal VPC Lattice verified, and its role session (a Lambda function's name).
    pub(crate) principal: Option<String>,
    pub(crate) session: Option<String>,
}

/// Why an event cannot be served.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EventError {
    #[error("the event is not JSON: {0}")]
    NotJson(String),
    #[error(
        "the event is none of the shapes septa lambda serves (API Gateway HTTP API payload 2.0, API Gateway REST payload 1.0, VPC Lattice event v1 or v2); its fields are {0}"
    )]
    UnknownShape(String),
    #[error("{shape} event: field `{field}` {problem}", shape = .shape.name())]
    Field {
        shape: EventSource,
        field: &'static str,
        problem: &'static str,
    },
}

/// Reads `bytes` as one of the events septa serves.
pub(crate) fn parse(bytes: &[u8]) -> Result<HttpEvent, EventError> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| EventError::NotJson(e.to_string()))?;
    let Some(event) = value.as_object() else {
        return Err(EventError::UnknownShape(
            "none (not a JSON object)".to_owned(),
        ));
    };
    let fields = Fields {
        value: &value,
        event,
        source: detect(event)?,
    };
    match fields.source {
        EventSource::HttpApiV2 => http_api_v2(&fields),
        EventSource::RestV1 => rest_v1(&fields),
        EventSource::LatticeV2 => lattice_v2(&fields),
        EventSource::LatticeV1 => lattice_v1(&fields),
    }
}

fn detect(event: &Map<String, Value>) -> Result<EventSource, EventError> {
    let has = |name: &str| event.get(name).is_some_and(|v| !v.is_null());
    let v2 = event.get("version").and_then(Value::as_str) == Some("2.0");
    let http_context = event
        .get("requestContext")
        .and_then(|c| c.get("http"))
        .is_some_and(Value::is_object);
    if v2 && http_context && has("rawPath") {
        Ok(EventSource::HttpApiV2)
    } else if has("httpMethod") && has("path") {
        Ok(EventSource::RestV1)
    } else if has("raw_path") && has("method") {
        Ok(EventSource::LatticeV1)
    } else if v2 && has("method") && has("path") {
        Ok(EventSource::LatticeV2)
    } else {
        let mut names: Vec<&str> = event.keys().map(String::as_str).take(12).collect();
        names.sort_unstable();
        let list = names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>();
        Err(EventError::UnknownShape(if list.is_empty() {
            "none".to_owned()
        } else {
            list.join(", ")
        }))
    }
}

/// An event of a known shape, read field by field.
struct Fields<'e> {
    value: &'e Value,
    event: &'e Map<String, Value>,
    source: EventSource,
}

impl<'e> Fields<'e> {
    fn error(&self, field: &'static str, problem: &'static str) -> EventError {
        EventError::Field {
            shape: self.source,
            field,
            problem,
        }
    }

    fn text(&self, field: &'static str) -> Result<String, EventError> {
        match self.event.get(field) {
            Some(Value::String(s)) => Ok(s.clone()),
            None | Some(Value::Null) => Err(self.error(field, "is missing")),
            Some(_) => Err(self.error(field, "is not a string")),
        }
    }

    fn at(&self, pointer: &str) -> Option<&'e Value> {
        self.value.pointer(pointer).filter(|v| !v.is_null())
    }

    /// A map of strings, or of lists of strings, as `(name, value)` pairs in order.
    fn pairs(&self, field: &'static str) -> Result<Vec<(String, String)>, EventError> {
        let object = match self.event.get(field) {
            None | Some(Value::Null) => return Ok(Vec::new()),
            Some(Value::Object(object)) => object,
            Some(_) => return Err(self.error(field, "is not an object")),
        };
        let mut pairs = Vec::with_capacity(object.len());
        for (name, value) in object {
            match value {
                Value::String(s) => pairs.push((name.clone(), s.clone())),
                Value::Array(items) => {
                    for item in items {
                        let Value::String(s) = item else {
                            return Err(
                                self.error(field, "holds a list with a value that is not a string")
                            );
                        };
                        pairs.push((name.clone(), s.clone()));
                    }
                }
                Value::Null => {}
                _ => {
                    return Err(self.error(
                        field,
                        "holds a value that is neither a string nor a list of strings",
                    ));
                }
            }
        }
        Ok(pairs)
    }

    /// The body, decoded when the event says it is base64.
    fn body(&self, flag: &'static str) -> Result<Vec<u8>, EventError> {
        let encoded = self
            .event
            .get(flag)
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let text = match self.event.get("body") {
            None | Some(Value::Null) => return Ok(Vec::new()),
            Some(Value::String(s)) => s,
            Some(_) => return Err(self.error("body", "is not a string")),
        };
        if !encoded {
            return Ok(text.as_bytes().to_vec());
        }
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|_| self.error("body", "is marked base64 but is not valid base64"))
    }

    fn string_at(&self, pointer: &str) -> Option<String> {
        self.at(pointer).and_then(Value::as_str).map(str::to_owned)
    }
}

fn http_api_v2(f: &Fields<'_>) -> Result<HttpEvent, EventError> {
    let method = f
        .string_at("/requestContext/http/method")
        .ok_or_else(|| f.error("requestContext.http.method", "is missing"))?;
    let mut headers = f.pairs("headers")?;
    let cookies = match f.event.get("cookies") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|c| c.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| f.error("cookies", "holds a value that is not a string"))?,
        Some(_) => return Err(f.error("cookies", "is not a list")),
    };
    if !cookies.is_empty() {
        headers.retain(|(name, _)| !name.eq_ignore_ascii_case("cookie"));
        headers.push(("cookie".to_owned(), cookies.join("; ")));
    }
    let query = f.text("rawQueryString").ok().filter(|q| !q.is_empty());
    Ok(HttpEvent {
        source: f.source,
        method,
        path: f.text("rawPath")?,
        query,
        headers,
        body: f.body("isBase64Encoded")?,
        client: f.string_at("/requestContext/http/sourceIp"),
        principal: None,
        session: None,
    })
}

fn rest_v1(f: &Fields<'_>) -> Result<HttpEvent, EventError> {
    // The multi-value maps hold every value; the single-value ones only the last.
    let mut headers = f.pairs("multiValueHeaders")?;
    if headers.is_empty() {
        headers = f.pairs("headers")?;
    }
    let mut query = f.pairs("multiValueQueryStringParameters")?;
    if query.is_empty() {
        query = f.pairs("queryStringParameters")?;
    }
    Ok(HttpEvent {
        source: f.source,
        method: f.text("httpMethod")?,
        path: f.text("path")?,
        query: encode_query(&query),
        headers,
        body: f.body("isBase64Encoded")?,
        client: f.string_at("/requestContext/identity/sourceIp"),
        principal: None,
        session: None,
    })
}

fn lattice_v2(f: &Fields<'_>) -> Result<HttpEvent, EventError> {
    let principal = f.string_at("/requestContext/identity/principal");
    let session = f
        .string_at("/requestContext/identity/sessionName")
        .or_else(|| principal.as_deref().and_then(role_session));
    Ok(HttpEvent {
        source: f.source,
        method: f.text("method")?,
        path: f.text("path")?,
        query: encode_query(&f.pairs("queryStringParameters")?),
        headers: f.pairs("headers")?,
        body: f.body("isBase64Encoded")?,
        client: None,
        principal,
        session,
    })
}

fn lattice_v1(f: &Fields<'_>) -> Result<HttpEvent, EventError> {
    let headers = f.pairs("headers")?;
    // The first event structure has no request context: Lattice states the caller it
    // verified in a header of its own, which it sets whatever the caller sent.
    let identity = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("x-amzn-lattice-identity"))
        .map(|(_, value)| value.as_str());
    let field = |key: &str| {
        identity?
            .split(';')
            .filter_map(|part| part.trim().split_once('='))
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.to_owned())
    };
    let principal = field("Principal");
    let session = field("SessionName").or_else(|| principal.as_deref().and_then(role_session));
    // `raw_path` carries the query as the client sent it.
    let raw = f.text("raw_path")?;
    let (path, query) = match raw.split_once('?') {
        Some((path, query)) => (path.to_owned(), Some(query.to_owned())),
        None => (raw, encode_query(&f.pairs("query_string_parameters")?)),
    };
    Ok(HttpEvent {
        source: f.source,
        method: f.text("method")?,
        path,
        query: query.filter(|q| !q.is_empty()),
        headers,
        body: f.body("is_base64_encoded")?,
        client: None,
        principal,
        session,
    })
}

/// The session of an assumed-role ARN (`arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`),
/// which for a Lambda function's execution role is the function's name.
fn role_session(principal: &str) -> Option<String> {
    let resource = principal.split(':').nth(5)?;
    let mut parts = resource.split('/');
    (parts.next()? == "assumed-role").then_some(())?;
    let _role = parts.next()?;
    parts.next().filter(|s| !s.is_empty()).map(str::to_owned)
}

/// `name=value&...`, each percent-encoded, or `None` for no parameters.
fn encode_query(pairs: &[(String, String)]) -> Option<String> {
    let encoded: Vec<String> = pairs
        .iter()
        .map(|(name, value)| format!("{}={}", percent_encode(name), percent_encode(value)))
        .collect();
    (!encoded.is_empty()).then(|| encoded.join("&"))
}

/// Every byte but RFC 3986's unreserved characters as `%XX`.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn the_role_session_of_an_assumed_role_is_the_lambda_function() {
        let arn = "arn:aws:sts::123456789012:assumed-role/shop-role/shop-storefront";
        assert_eq!(role_session(arn).as_deref(), Some("shop-storefront"));
        assert_eq!(role_session("arn:aws:iam::123456789012:role/x"), None);
        assert_eq!(role_session("not an arn"), None);
    }

    #[test]
    fn queries_are_encoded_back() {
        let pairs = [
            ("q".to_owned(), "a b&c".to_owned()),
            ("k".to_owned(), "ü".to_owned()),
        ];
        assert_eq!(encode_query(&pairs).unwrap(), "q=a%20b%26c&k=%C3%BC");
        assert_eq!(encode_query(&[]), None);
    }

    #[test]
    fn an_unknown_shape_names_its_fields() {
        let e = parse(br#"{"Records": [], "source": "aws.events"}"#).unwrap_err();
        assert!(e.to_string().contains("`Records`, `source`"), "{e}");
        let e = parse(b"[1]").unwrap_err();
        assert!(e.to_string().contains("not a JSON object"), "{e}");
        let e = parse(b"{").unwrap_err();
        assert!(e.to_string().contains("not JSON"), "{e}");
    }

    #[test]
    fn a_bad_field_is_named() {
        let e =
            parse(br#"{"httpMethod": "GET", "path": "/", "body": "%%", "isBase64Encoded": true}"#)
                .unwrap_err();
        assert_eq!(
            e.to_string(),
            "API Gateway REST payload 1.0 event: field `body` is marked base64 but is not valid base64"
        );
    }
}
