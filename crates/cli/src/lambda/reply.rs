//! A function's response in the shape its event's source expects: HTTP API payload 2.0
//! (`cookies` apart), REST (`multiValueHeaders` beside `headers`) or VPC Lattice
//! (`statusDescription`), its body as text when it is UTF-8 and base64 otherwise, and never more
//! than Lambda carries back.

use base64::Engine as _;
use serde_json::{Map, Value, json};

use super::events::EventSource;

/// Lambda's limit on a synchronous invocation's response: 6 MB, as its quotas count them.
pub(crate) const MAX_RESPONSE_BYTES: usize = 6 * 1024 * 1024;

/// Headers that belong to one connection, not to the response API Gateway or Lattice sends on.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    // Recomputed by the service for the body it sends.
    "content-length",
];

/// A whole response, read from the function.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    /// In order, repeated names once per value; names lowercase.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

/// A response Lambda would refuse to carry.
#[derive(Debug, thiserror::Error)]
#[error(
    "the response is {size} bytes as {shape} JSON, over Lambda's limit of 6 MB ({MAX_RESPONSE_BYTES} bytes) for an invocation's response"
)]
pub(crate) struct TooLarge {
    pub(crate) size: usize,
    pub(crate) shape: &'static str,
}

impl Reply {
    /// The response document for `source`, serialized, or why Lambda could not carry it.
    pub(crate) fn into_event_response(self, source: EventSource) -> Result<Vec<u8>, TooLarge> {
        let headers: Vec<(String, String)> = self
            .headers
            .into_iter()
            .filter(|(name, _)| !HOP_BY_HOP.contains(&name.as_str()))
            .collect();
        let (body, encoded) = match String::from_utf8(self.body) {
            Ok(text) => (text, false),
            Err(e) => (
                base64::engine::general_purpose::STANDARD.encode(e.as_bytes()),
                true,
            ),
        };
        let mut document = json!({
            "statusCode": self.status,
            "body": body,
            "isBase64Encoded": encoded,
        });
        let fields = match source {
            EventSource::HttpApiV2 => http_api_v2(&headers),
            EventSource::RestV1 => rest_v1(&headers),
            EventSource::LatticeV1 | EventSource::LatticeV2 => lattice(self.status, &headers),
        };
        if let Value::Object(document) = &mut document {
            document.extend(fields);
        }
        let bytes = document.to_string().into_bytes();
        if bytes.len() > MAX_RESPONSE_BYTES {
            return Err(TooLarge {
                size: bytes.len(),
                shape: source.name(),
            });
        }
        Ok(bytes)
    }
}

/// `headers` with each name once, its values joined as HTTP allows, leaving out `skip`.
fn joined(headers: &[(String, String)], skip: impl Fn(&str) -> bool) -> Map<String, Value> {
    let mut map = Map::new();
    for (name, value) in headers.iter().filter(|(n, _)| !skip(n)) {
        match map.get_mut(name) {
            Some(Value::String(existing)) => {
                existing.push_str(", ");
                existing.push_str(value);
            }
            _ => {
                map.insert(name.clone(), Value::from(value.as_str()));
            }
        }
    }
    map
}

/// HTTP API 2.0: `headers` joined, and each `set-cookie` in `cookies`, which is how it sends
/// several.
fn http_api_v2(headers: &[(String, String)]) -> Map<String, Value> {
    let mut fields = Map::new();
    fields.insert(
        "headers".to_owned(),
        Value::Object(joined(headers, |n| n == "set-cookie")),
    );
    let cookies: Vec<Value> = headers
        .iter()
        .filter(|(n, _)| n == "set-cookie")
        .map(|(_, v)| Value::from(v.as_str()))
        .collect();
    if !cookies.is_empty() {
        fields.insert("cookies".to_owned(), Value::Array(cookies));
    }
    fields
}

/// REST: every value in `multiValueHeaders`; `headers` holds the names with one value only, as
/// API Gateway merges the two maps and would send a joined value as one more.
fn rest_v1(headers: &[(String, String)]) -> Map<String, Value> {
    let mut multi: Map<String, Value> = Map::new();
    for (name, value) in headers {
        let entry = multi
            .entry(name.clone())
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(values) = entry {
            values.push(Value::from(value.as_str()));
        }
    }
    let single: Map<String, Value> = multi
        .iter()
        .filter_map(
            |(name, values)| match values.as_array().map(Vec::as_slice) {
                Some([one]) => Some((name.clone(), one.clone())),
                _ => None,
            },
        )
        .collect();
    let mut fields = Map::new();
    fields.insert("headers".to_owned(), Value::Object(single));
    fields.insert("multiValueHeaders".to_owned(), Value::Object(multi));
    fields
}

/// VPC Lattice: `headers` joined (its response has no way to repeat a header) and the status
/// line's text.
fn lattice(status: u16, headers: &[(String, String)]) -> Map<String, Value> {
    let mut fields = Map::new();
    fields.insert(
        "headers".to_owned(),
        Value::Object(joined(headers, |_| false)),
    );
    let text = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    fields.insert(
        "statusDescription".to_owned(),
        Value::from(format!("{status} {text}").trim_end()),
    );
    fields
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn reply(body: Vec<u8>) -> Reply {
        Reply {
            status: 200,
            headers: vec![
                ("set-cookie".to_owned(), "a=1".to_owned()),
                ("set-cookie".to_owned(), "b=2".to_owned()),
                ("x-one".to_owned(), "1".to_owned()),
                ("transfer-encoding".to_owned(), "chunked".to_owned()),
            ],
            body,
        }
    }

    fn document(reply: Reply, source: EventSource) -> Value {
        serde_json::from_slice(&reply.into_event_response(source).unwrap()).unwrap()
    }

    #[test]
    fn each_source_gets_its_shape() {
        let v2 = document(reply(b"hi".to_vec()), EventSource::HttpApiV2);
        assert_eq!(v2["cookies"], json!(["a=1", "b=2"]));
        assert_eq!(v2["headers"], json!({"x-one": "1"}));
        assert_eq!(v2["body"], "hi");
        let rest = document(reply(b"hi".to_vec()), EventSource::RestV1);
        assert_eq!(
            rest["multiValueHeaders"]["set-cookie"],
            json!(["a=1", "b=2"])
        );
        assert_eq!(rest["headers"], json!({"x-one": "1"}));
        let lattice = document(reply(b"hi".to_vec()), EventSource::LatticeV2);
        assert_eq!(lattice["statusDescription"], "200 OK");
        assert_eq!(lattice["headers"]["set-cookie"], "a=1, b=2");
    }

    #[test]
    fn a_binary_body_is_base64() {
        let v2 = document(reply(vec![0xff, 0, 1]), EventSource::HttpApiV2);
        assert_eq!(v2["isBase64Encoded"], true);
        assert_eq!(v2["body"], "/wAB");
    }

    #[test]
    fn a_response_over_six_megabytes_is_refused() {
        let e = reply(vec![b'x'; MAX_RESPONSE_BYTES])
            .into_event_response(EventSource::RestV1)
            .unwrap_err();
        assert!(e.to_string().contains("6 MB (6291456 bytes)"), "{e}");
    }
}
