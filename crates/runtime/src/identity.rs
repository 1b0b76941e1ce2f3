//! Identity on requests: set by the host, never carried in from a client or a guest.

use http::{HeaderMap, HeaderName, HeaderValue};
use septa_policy::Principal;

/// The header carrying the caller identity the host set: `gateway` or `function:NAME`.
pub const CALLER_HEADER: &str = "septa-caller";

/// Removes every header a function could read as a `septa-*` one, so no client or guest can
/// claim an identity.
///
/// Header names arrive lowercased, but a guest's HTTP adapter may fold more than case: CGI and
/// WSGI turn `-` into `_` (`septa_caller` and `septa-caller` both become `HTTP_SEPTA_CALLER`),
/// and some frameworks treat `.` or `_` as `-`. So any name that is `septa` followed by a
/// character other than a letter or a digit is the host's, whatever that character is.
pub fn strip_identity_headers(headers: &mut HeaderMap) {
    let names: Vec<_> = headers
        .keys()
        .filter(|k| is_identity_header(k.as_str()))
        .cloned()
        .collect();
    for name in names {
        headers.remove(name);
    }
}

/// Whether `name` (lowercase, as [`HeaderMap`] holds it) could be read as a `septa-*` header.
fn is_identity_header(name: &str) -> bool {
    let bytes = name.as_bytes();
    bytes.len() > 5
        && bytes[..5].eq_ignore_ascii_case(b"septa")
        && !bytes[5].is_ascii_alphanumeric()
}

/// The header carrying the authenticated principal (`sub`) to the function.
pub const PRINCIPAL_HEADER: &str = "septa-principal";

/// The prefix of the headers carrying a route's `forward_claims` to the function.
pub const CLAIM_HEADER_PREFIX: &str = "septa-claim-";

/// The headers the function gets for `principal`: who it is, and each of `forward` its token
/// carries.
pub fn principal_headers(
    principal: &Principal,
    forward: &[String],
) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::new();
    if let Ok(value) = HeaderValue::from_str(&principal.name) {
        out.push((HeaderName::from_static(PRINCIPAL_HEADER), value));
    }
    let Some(claims) = &principal.claims else {
        return out;
    };
    for claim in forward {
        let name = format!("{CLAIM_HEADER_PREFIX}{}", claim.to_ascii_lowercase());
        let (Ok(name), Some(Ok(value))) = (
            HeaderName::from_bytes(name.as_bytes()),
            claims.text(claim).map(|t| HeaderValue::from_str(&t)),
        ) else {
            continue;
        };
        out.push((name, value));
    }
    out
}

/// A header value that always parses: control and non-ASCII characters become `?`.
pub fn header_text(text: &str) -> HeaderValue {
    let clean: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    HeaderValue::from_str(&clean).unwrap_or_else(|_| HeaderValue::from_static("?"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn every_spelling_an_adapter_could_fold_into_septa_is_stripped() {
        let mut headers = HeaderMap::new();
        for name in [
            "septa-caller",
            "Septa-Principal",
            "septa_caller",
            "SEPTA_CLAIM_TENANT",
            "septa.caller",
            "septa~caller",
            "septacaller",
            "septa",
            "x-septa-caller",
        ] {
            headers.insert(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_static("x"),
            );
        }
        strip_identity_headers(&mut headers);
        let mut left: Vec<_> = headers.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["septa", "septacaller", "x-septa-caller"]);
    }
}
