//! How a lenient router reads a path: the respellings many function routers fold onto one
//! path, so the gateway can tell when a request it routes to one route could be read by the
//! function as another route's path.
//!
//! A normalized path keeps case, a trailing slash and `;` parameters, because they may mean
//! different resources. Many routers in functions do not: they match case-insensitively, treat
//! `/a/` as `/a`, drop `;jsessionid=...`-style parameters (some after decoding `%3B`), or
//! lowercase with Unicode rules, under which `K` (KELVIN SIGN) is `k`. [`fold_path`] reads a
//! path all those ways at once; [`fold_pattern`] reads a route's pattern the same way. The gateway
//! never routes by the folded form: it only compares where the two readings lead.

use std::borrow::Cow;

use super::pattern::PathPattern;

/// Percent-encoded characters outside ASCII that common Unicode case mappings turn into an ASCII
/// letter, as normalized paths spell them (uppercase hex): KELVIN SIGN → `k`, LONG S → `s`
/// (uppercase `S`), DOTLESS I → `i` (uppercase `I`), I WITH DOT ABOVE → `i`.
const UNICODE_FOLDS: &[(&str, u8)] = &[
    ("%E2%84%AA", b'k'),
    ("%C5%BF", b's'),
    ("%C4%B1", b'i'),
    ("%C4%B0", b'i'),
];

/// `path`, a path returned by [`normalize_path`](super::normalize_path), as a lenient router
/// reads it: each segment cut at its first `;` or `%3B`, ASCII letters lowercased (not the hex
/// digits of escapes), the [`UNICODE_FOLDS`] escapes replaced by their letter, and empty segments
/// (a trailing slash, a segment that was all parameters) dropped. `/` stays `/`.
///
/// Borrows `path` when folding changes nothing, which is the common case.
pub fn fold_path(path: &str) -> Cow<'_, str> {
    if !needs_folding(path) {
        return Cow::Borrowed(path);
    }
    let mut out = String::with_capacity(path.len());
    for segment in path.split('/').skip(1) {
        let folded = fold_segment(segment);
        if !folded.is_empty() {
            out.push('/');
            out.push_str(&folded);
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    Cow::Owned(out)
}

/// `pattern` with its literal segments folded as [`fold_path`] folds a path's segments; its
/// parameters and wildcard are kept. `None` when the folded text is not a pattern (a literal
/// such as `..;x`, which no normalized path contains anyway).
pub fn fold_pattern(pattern: &PathPattern) -> Option<PathPattern> {
    let text = pattern.as_str();
    let mut out = String::with_capacity(text.len());
    for segment in text.split('/').skip(1) {
        let param = segment.starts_with('{') || segment == "...";
        let folded = if param {
            Cow::Borrowed(segment)
        } else {
            fold_segment(segment)
        };
        if !folded.is_empty() {
            out.push('/');
            out.push_str(&folded);
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    PathPattern::parse(&out).ok()
}

/// Whether [`fold_path`] would change `path`: an uppercase letter outside an escape, a `;`, an
/// escape that folding reads (`%3B` or the first byte of a [`UNICODE_FOLDS`] entry), or a
/// trailing slash.
fn needs_folding(path: &str) -> bool {
    let bytes = path.as_bytes();
    if path.len() > 1 && path.ends_with('/') {
        return true;
    }
    let mut at = 0;
    while let Some(&byte) = bytes.get(at) {
        match byte {
            b'%' => {
                if matches!(
                    bytes.get(at + 1..at + 3),
                    Some(b"3B" | b"E2" | b"C5" | b"C4")
                ) {
                    return true;
                }
                at += 3;
            }
            b'A'..=b'Z' | b';' => return true,
            _ => at += 1,
        }
    }
    false
}

/// One segment, folded: cut at its first `;` or `%3B`, lowercased outside escapes, with the
/// [`UNICODE_FOLDS`] escapes replaced.
fn fold_segment(segment: &str) -> Cow<'_, str> {
    let end = [segment.find(';'), segment.find("%3B")]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(segment.len());
    let segment = segment.get(..end).unwrap_or(segment);
    let bytes = segment.as_bytes();
    let mut out = String::with_capacity(segment.len());
    let mut at = 0;
    while let Some(&byte) = bytes.get(at) {
        let rest = segment.get(at..).unwrap_or_default();
        if let Some((escape, letter)) = UNICODE_FOLDS.iter().find(|(e, _)| rest.starts_with(e)) {
            out.push(char::from(*letter));
            at += escape.len();
        } else if byte == b'%' {
            out.push_str(rest.get(..3).unwrap_or(rest));
            at += 3;
        } else {
            out.push(char::from(byte.to_ascii_lowercase()));
            at += 1;
        }
    }
    if out == segment {
        Cow::Borrowed(segment)
    } else {
        Cow::Owned(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_what_lenient_routers_fold() {
        for (path, folded) in [
            ("/api/orders", "/api/orders"),
            ("/", "/"),
            ("/api/ORDERS", "/api/orders"),
            ("/API/Orders/", "/api/orders"),
            ("/api/orders;x", "/api/orders"),
            ("/api;v=1/orders;jsessionid=9", "/api/orders"),
            ("/api/orders%3Bx", "/api/orders"),
            ("/api/%E2%84%AAeys", "/api/keys"),
            ("/api/%C4%B0d/%C5%BF", "/api/id/s"),
            ("/api/caf%C3%A9", "/api/caf%C3%A9"),
            ("/api/%3A%7C", "/api/%3A%7C"),
            ("/api/%3Bonly/orders", "/api/orders"),
            ("/A/", "/a"),
        ] {
            assert_eq!(fold_path(path), folded, "{path}");
        }
        assert!(matches!(fold_path("/api/orders/7"), Cow::Borrowed(_)));
    }

    #[test]
    fn folds_patterns_keeping_parameters_and_wildcards() {
        for (pattern, folded) in [
            ("/API/Orders/{id}", Some("/api/orders/{id}")),
            ("/api/...", Some("/api/...")),
            ("/Static/...", Some("/static/...")),
            ("/a/", Some("/a")),
            ("/a;x/{id}/...", Some("/a/{id}/...")),
            ("/..;x", None),
        ] {
            let pattern = PathPattern::parse(pattern).unwrap();
            let got = fold_pattern(&pattern);
            assert_eq!(got.as_ref().map(PathPattern::as_str), folded, "{pattern}");
        }
    }
}
