//! How a lenient router reads a path: the respellings many function routers fold onto one
//! path, so the gateway can tell when a request it routes to one route could be read by the
//! function as another route's path.
//!
//! A normalized path keeps case, a trailing slash, `;` parameters, a `.json`-style suffix and
//! `%25`, because they may mean different resources. Many routers in functions do not keep them:
//! they match case-insensitively, treat `/a/` as `/a`, drop `;jsessionid=...`-style parameters
//! (some after decoding `%3B`), match `/a.json` as `/a` (Spring's suffix patterns), decode twice,
//! or lowercase with Unicode rules, under which `K` (KELVIN SIGN) is `k`. [`fold_path`] reads a
//! path all those ways at once; [`fold_pattern`] reads a route's pattern the same way. The gateway
//! never routes by the folded form: it only compares where the two readings lead.

use std::borrow::Cow;

use super::normalize::is_unreserved;
use super::pattern::PathPattern;

/// Percent-encoded characters outside ASCII that common Unicode case mappings turn into an ASCII
/// letter, as normalized paths spell them (uppercase hex): KELVIN SIGN → `k`, LONG S → `s`
/// (uppercase `S`), DOTLESS I → `i` (uppercase `I`), I WITH DOT ABOVE → `i`.
const UNICODE_FOLDS: &[(&str, char)] = &[
    ("%E2%84%AA", 'k'),
    ("%C5%BF", 's'),
    ("%C4%B1", 'i'),
    ("%C4%B0", 'i'),
];

/// `path`, a path returned by [`normalize_path`](super::normalize_path), as a lenient router
/// reads it: `%25` decoded as often as it occurs (a router that decodes twice; never into
/// `%00`), then the escapes of unreserved characters, `/`, `\`, `;` and `.` decoded, each segment
/// cut at its first `;`, `.` and `..` segments resolved, empty segments (a trailing slash)
/// dropped, ASCII letters lowercased (not the hex digits of escapes), the [`UNICODE_FOLDS`]
/// escapes replaced by their letter, and the last segment cut at its first `.` after the first
/// character (`orders.json` is `orders`) unless that leaves the dot segment `.` (`..json`
/// stays). `/` stays `/`.
///
/// Borrows `path` when folding changes nothing, which is the common case.
pub fn fold_path(path: &str) -> Cow<'_, str> {
    if !needs_folding(path) {
        return Cow::Borrowed(path);
    }
    Cow::Owned(fold_text(path, true))
}

/// `pattern` with its literal segments folded as [`fold_path`] folds a path; its parameters and
/// wildcard are kept, and the suffix of its last segment is cut only when that segment is the
/// last of every path it matches (a literal, no wildcard).
///
/// `None` when no pattern can say what the folded literals read as: a literal that folds to
/// `...` (`...;v=1`, `%252E%252E%252E`), which a pattern can only spell as its wildcard.
pub fn fold_pattern(pattern: &PathPattern) -> Option<PathPattern> {
    let text = pattern.as_str();
    let folded = match text.strip_suffix("...") {
        Some(prefix) if pattern.has_wildcard() => {
            let prefix = fold_text(prefix, false);
            format!("{}/...", prefix.trim_end_matches('/'))
        }
        _ => fold_text(text, true),
    };
    PathPattern::parse(&folded)
        .ok()
        .filter(|folded| folded.has_wildcard() == pattern.has_wildcard())
}

/// Whether [`fold_path`] could change `path`: an uppercase letter outside an escape, a `;`, an
/// escape that folding decodes, a `.` in the last segment, or a trailing slash.
fn needs_folding(path: &str) -> bool {
    let bytes = path.as_bytes();
    let last_segment = path.rfind('/').map_or(path, |at| &path[at..]);
    if (path.len() > 1 && path.ends_with('/')) || last_segment.contains('.') {
        return true;
    }
    let mut at = 0;
    while let Some(&byte) = bytes.get(at) {
        match byte {
            b'%' => {
                if bytes.get(at + 1..at + 3).is_some_and(|hex| {
                    matches!(
                        hex,
                        b"25" | b"2F" | b"2E" | b"3B" | b"5C" | b"E2" | b"C5" | b"C4"
                    )
                }) {
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

/// Folds a path or a pattern's text without its wildcard (whose `{param}` segments pass
/// unchanged; a `...` segment is a literal here).
fn fold_text(text: &str, cut_suffix: bool) -> String {
    let decoded = decode_fully(text);
    let mut segments: Vec<Cow<'_, str>> = Vec::new();
    for segment in decoded.split('/') {
        let segment = segment.split(';').next().unwrap_or_default();
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            _ if segment.starts_with('{') => {
                segments.push(Cow::Borrowed(segment));
            }
            _ => segments.push(Cow::Owned(lowercase(segment))),
        }
    }
    if cut_suffix
        && let Some(last) = segments.last_mut()
        && !last.starts_with('{')
        && let Some(dot) = last.get(1..).and_then(|rest| rest.find('.'))
        // `..x` cut at its first `.` after the first character would be the dot segment `.`,
        // which the next reading would resolve away: it keeps its suffix, so folding a folded
        // path changes nothing.
        && last.get(..=dot) != Some(".")
    {
        *last = Cow::Owned(last.get(..=dot).unwrap_or_default().to_owned());
    }
    let mut out = String::with_capacity(text.len());
    for segment in &segments {
        out.push('/');
        out.push_str(segment);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// `text` as a router that decodes again and again ends up reading it: [`peel_percent`] and
/// [`decode`] until nothing changes. Once is not enough: decoding `%25%33%33` gives `%2533`, a
/// new double escape.
fn decode_fully(text: &str) -> String {
    let mut decoded = decode(&peel_percent(text));
    loop {
        // Ends: a round that changes anything decodes an escape (shorter) or only uppercases
        // hex digits, which the next round keeps.
        let again = decode(&peel_percent(&decoded));
        if again == decoded {
            return decoded;
        }
        decoded = again;
    }
}

/// `%25XX` → `%XX` until no `%25` followed by two hex digits is left: what a router that decodes
/// again and again ends up with.
fn peel_percent(text: &str) -> Cow<'_, str> {
    let mut text = Cow::Borrowed(text);
    while let Some(at) = find_double_escape(&text) {
        text.to_mut().replace_range(at + 1..at + 3, "");
    }
    text
}

/// Where `%25` followed by two hex digits starts, other than `%2500`: decoded twice that is a
/// NUL, which routers refuse and no pattern can spell, so it is left as it is.
fn find_double_escape(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    text.match_indices("%25").map(|(at, _)| at).find(|&at| {
        bytes
            .get(at + 3..at + 5)
            .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit) && hex != b"00")
    })
}

/// The escapes a lenient router decodes before matching: unreserved characters, `/`, `\`
/// (a separator too, for some), `;` and `.`, and the [`UNICODE_FOLDS`]; every other escape is
/// kept, in uppercase hex.
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    while let Some(&byte) = bytes.get(at) {
        let rest = text.get(at..).unwrap_or_default();
        if let Some((escape, letter)) = UNICODE_FOLDS
            .iter()
            .find(|(e, _)| rest.len() >= e.len() && rest[..e.len()].eq_ignore_ascii_case(e))
        {
            out.push(*letter);
            at += escape.len();
            continue;
        }
        let escaped = (byte == b'%')
            .then(|| u8::from_str_radix(rest.get(1..3)?, 16).ok())
            .flatten();
        match escaped {
            Some(b'\\') => out.push('/'),
            Some(decoded @ (b'/' | b';' | b'.')) => out.push(char::from(decoded)),
            Some(decoded) if is_unreserved(decoded) => out.push(char::from(decoded)),
            Some(_) => out.push_str(&rest[..3].to_ascii_uppercase()),
            None => out.push(char::from(byte)),
        }
        at += if escaped.is_some() { 3 } else { 1 };
    }
    out
}

/// ASCII letters lowercased, except the hex digits of escapes.
fn lowercase(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    let mut hex_left = 0;
    for c in segment.chars() {
        if hex_left > 0 {
            hex_left -= 1;
            out.push(c);
        } else {
            hex_left = if c == '%' { 2 } else { 0 };
            out.push(c.to_ascii_lowercase());
        }
    }
    out
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
            ("/api/orders.json", "/api/orders"),
            ("/api/orders.tar.gz", "/api/orders"),
            ("/api/.hidden", "/api/.hidden"),
            ("/api/v1.2/orders", "/api/v1.2/orders"),
            ("/api/%E2%84%AAeys", "/api/keys"),
            ("/api/%C4%B0d/%C5%BF", "/api/id/s"),
            ("/api/caf%C3%A9", "/api/caf%C3%A9"),
            ("/api/%3A%7C", "/api/%3A%7C"),
            ("/api/%3Bonly/orders", "/api/orders"),
            ("/api/%256Frders", "/api/orders"),
            ("/api/%25256Frders", "/api/orders"),
            ("/public/%252E%252E/admin", "/admin"),
            ("/api%252Forders", "/api/orders"),
            ("/api%255Corders", "/api/orders"),
            ("/api/%2525", "/api/%25"),
            ("/A/", "/a"),
            // Found by `fuzz/fuzz_targets/path_fold.rs`: cutting the suffix of `..dmin` left the
            // dot segment `.`, and folding that again gave `/public`.
            ("/public/%252E%252Edmin", "/public/..dmin"),
            ("/a/..json", "/a/..json"),
            ("/a/...", "/a/..."),
            ("/r.i~;1/...p", "/r.i~/...p"),
            // Found by the same target: decoding `%33` made `%2533`, which the first round left.
            ("/%25%2533ddd", "/%3Ddd"),
            ("/A%2500/%252500", "/a%2500/%2500"),
        ] {
            assert_eq!(fold_path(path), folded, "{path}");
        }
        assert!(matches!(fold_path("/api/orders/7"), Cow::Borrowed(_)));
        for path in [
            "/a/..json",
            "/public/%252E%252Edmin",
            "/API/Orders.JSON/",
            "/r.i~;1/...p",
            "/%25%2533ddd",
        ] {
            let folded = fold_path(path);
            assert_eq!(fold_path(&folded), folded, "folding {path} again");
        }
    }

    #[test]
    fn folds_patterns_keeping_parameters_and_wildcards() {
        for (pattern, folded) in [
            ("/API/Orders/{id}", Some("/api/orders/{id}")),
            ("/api/...", Some("/api/...")),
            ("/Static/...", Some("/static/...")),
            ("/a/", Some("/a")),
            ("/a;x/{id}/...", Some("/a/{id}/...")),
            ("/robots.txt", Some("/robots")),
            ("/v1.2/...", Some("/v1.2/...")),
            // Found by `fuzz/fuzz_targets/path_fold.rs`: a literal that folds to `...` was read
            // as the wildcard, and the folded text was no pattern; now no folding is claimed.
            ("/a/...;v=2/b", None),
            ("/a/...;v=2", None),
            ("/a/%252E%252E%252E/...", None),
            ("/A/....;v=2/...", Some("/a/..../...")),
            // Found by the same target: `%2500` folded to `%00`, which no pattern spells.
            ("/D%2500/C/", Some("/d%2500/c")),
        ] {
            let pattern = PathPattern::parse(pattern).unwrap();
            let got = fold_pattern(&pattern);
            assert_eq!(got.as_ref().map(PathPattern::as_str), folded, "{pattern}");
        }
    }
}
