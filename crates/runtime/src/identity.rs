//! Identity on requests: set by the host, never carried in from a client or a guest.

use http::{HeaderMap, HeaderValue};

/// The header carrying the caller identity the host set: `gateway` or `function:NAME`.
pub const CALLER_HEADER: &str = "septa-caller";

/// Removes every `septa-*` header, so no client or guest can claim an identity.
pub fn strip_identity_headers(headers: &mut HeaderMap) {
    let names: Vec<_> = headers
        .keys()
        .filter(|k| k.as_str().starts_with("septa-"))
        .cloned()
        .collect();
    for name in names {
        headers.remove(name);
    }
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
