//! Path patterns: what parses, what is refused and where, what matches, and how patterns compare.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use septa_policy::path::{PathError, PathPattern, PatternError};

fn pattern(text: &str) -> PathPattern {
    let parsed = PathPattern::parse(text);
    assert!(parsed.is_ok(), "`{text}` should parse: {parsed:?}");
    parsed.unwrap()
}

#[test]
fn valid_patterns_parse_and_display_as_written() {
    let valid = [
        "/",
        "/api/checkout",
        "/a/",
        "/orders/{id}",
        "/orders/{id}/items/{item}",
        "/orders/{id}/",
        "/static/...",
        "/...",
        "/{tenant}/...",
        "/_/{_private9}",
        "/a%3Ab",
        "/%C3%A9",
        "/a:b@c!$&'()+,;=-._~",
        "/.well-known/acme",
        "/a.../....",
    ];
    for text in valid {
        let parsed = pattern(text);
        assert_eq!(parsed.to_string(), text);
        assert_eq!(parsed.as_str(), text);
        assert_eq!(text.parse::<PathPattern>().unwrap(), parsed);
    }
}

#[test]
fn invalid_patterns_name_the_problem_and_its_position() {
    let name = |s: &str| s.to_owned();
    let cases: Vec<(&str, PatternError)> = vec![
        ("", PatternError::NotAbsolute),
        ("api", PatternError::NotAbsolute),
        ("...", PatternError::NotAbsolute),
        ("//", PatternError::EmptySegment { offset: 1 }),
        ("/a//b", PatternError::EmptySegment { offset: 3 }),
        ("/a//", PatternError::EmptySegment { offset: 3 }),
        ("//...", PatternError::EmptySegment { offset: 1 }),
        ("/a/./b", PatternError::DotSegment { offset: 3 }),
        ("/a/..", PatternError::DotSegment { offset: 3 }),
        ("/.", PatternError::DotSegment { offset: 1 }),
        ("/.../a", PatternError::WildcardNotLast { offset: 1 }),
        ("/a/.../", PatternError::WildcardNotLast { offset: 3 }),
        (
            "/a/{id}x",
            PatternError::BraceNotWholeSegment {
                offset: 3,
                brace: '{',
            },
        ),
        (
            "/a/x{id}",
            PatternError::BraceNotWholeSegment {
                offset: 4,
                brace: '{',
            },
        ),
        (
            "/a/id}",
            PatternError::BraceNotWholeSegment {
                offset: 5,
                brace: '}',
            },
        ),
        (
            "/a/{i{d}",
            PatternError::BraceNotWholeSegment {
                offset: 5,
                brace: '{',
            },
        ),
        (
            "/a/{",
            PatternError::BraceNotWholeSegment {
                offset: 3,
                brace: '{',
            },
        ),
        (
            "/a/{}",
            PatternError::InvalidParamName {
                offset: 4,
                name: name(""),
            },
        ),
        (
            "/a/{Id}",
            PatternError::InvalidParamName {
                offset: 4,
                name: name("Id"),
            },
        ),
        (
            "/a/{1d}",
            PatternError::InvalidParamName {
                offset: 4,
                name: name("1d"),
            },
        ),
        (
            "/a/{i-d}",
            PatternError::InvalidParamName {
                offset: 4,
                name: name("i-d"),
            },
        ),
        (
            "/{id}/{id}",
            PatternError::DuplicateParam {
                offset: 7,
                name: name("id"),
            },
        ),
        ("/static/*", PatternError::Asterisk { offset: 8 }),
        ("/a*", PatternError::Asterisk { offset: 2 }),
        (
            "/a b",
            PatternError::InvalidCharacter {
                offset: 2,
                character: ' ',
            },
        ),
        (
            "/a|b",
            PatternError::InvalidCharacter {
                offset: 2,
                character: '|',
            },
        ),
        (
            "/a?b",
            PatternError::InvalidCharacter {
                offset: 2,
                character: '?',
            },
        ),
        (
            "/a#b",
            PatternError::InvalidCharacter {
                offset: 2,
                character: '#',
            },
        ),
        (
            "/a\\b",
            PatternError::InvalidCharacter {
                offset: 2,
                character: '\\',
            },
        ),
        (
            "/caf\u{e9}",
            PatternError::InvalidCharacter {
                offset: 4,
                character: '\u{e9}',
            },
        ),
        ("/a%", PatternError::InvalidPercentEncoding { offset: 2 }),
        ("/a%4g", PatternError::InvalidPercentEncoding { offset: 2 }),
        (
            "/a%3a",
            PatternError::NonCanonicalEscape {
                offset: 2,
                escape: name("%3a"),
                canonical: name("%3A"),
            },
        ),
        (
            "/a%62c",
            PatternError::NonCanonicalEscape {
                offset: 2,
                escape: name("%62"),
                canonical: name("b"),
            },
        ),
        (
            "/a%2Fb",
            PatternError::ForbiddenEscape {
                offset: 2,
                escape: name("%2F"),
                reason: PathError::EncodedSlash,
            },
        ),
        (
            "/%2e%2e",
            PatternError::ForbiddenEscape {
                offset: 1,
                escape: name("%2e"),
                reason: PathError::EncodedDot,
            },
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(PathPattern::parse(text), Err(expected), "parsing `{text}`");
    }
}

/// Found by `fuzz/fuzz_targets/path_pattern.rs`: these parsed, but normalization refuses every
/// request path that could match them (a segment that is empty or a dot segment once read up to
/// its `;` parameter), so a route or rule written this way silently never matched.
#[test]
fn segments_empty_or_dot_before_their_parameters_are_refused() {
    use septa_policy::path::normalize_path;
    let cases = [
        ("/..;x", PatternError::DotSegment { offset: 1 }),
        ("/a/.;v=1/b", PatternError::DotSegment { offset: 3 }),
        ("/a/..%3Bx/...", PatternError::DotSegment { offset: 3 }),
        ("/;x", PatternError::EmptySegment { offset: 1 }),
        ("/a/%3Bx/{id}", PatternError::EmptySegment { offset: 3 }),
    ];
    for (text, expected) in cases {
        assert_eq!(PathPattern::parse(text), Err(expected), "parsing `{text}`");
        assert!(normalize_path(text).is_err(), "`{text}` is a request path");
    }
    assert_eq!(
        PathPattern::parse("/api/..;v=1").unwrap_err().to_string(),
        "dot segment (`.` or `..`, also before a `;` parameter) at byte 5"
    );
    // A parameter after something else in the segment is fine, as in request paths.
    for text in ["/a;x", "/a/...;x", "/.x;y/{id}"] {
        pattern(text);
        assert!(normalize_path(text).is_ok(), "`{text}`");
    }
}

#[test]
fn error_messages_name_the_position_and_the_input() {
    assert_eq!(
        PathPattern::parse("/a/{Id}").unwrap_err().to_string(),
        "invalid parameter name `Id` at byte 4 (expected `[a-z_][a-z0-9_]*`)"
    );
    assert_eq!(
        PathPattern::parse("/.../a").unwrap_err().to_string(),
        "wildcard `...` at byte 1 is not the last segment"
    );
    assert_eq!(
        PathPattern::parse("/a%2Fb").unwrap_err().to_string(),
        "escape `%2F` at byte 2 never appears in a request path \
         (path contains an encoded slash (`%2F`))"
    );
    assert_eq!(
        PathPattern::parse("/static/*").unwrap_err().to_string(),
        "`*` at byte 8 is not a wildcard; end the pattern with `/...` to match a prefix"
    );
}

#[test]
fn matching() {
    // (pattern, path, matches)
    let cases = [
        ("/api/checkout", "/api/checkout", true),
        ("/api/checkout", "/api/checkout/", false),
        ("/api/checkout", "/api/checkouts", false),
        ("/api/checkout", "/api", false),
        ("/a/", "/a/", true),
        ("/a/", "/a", false),
        ("/a", "/a/", false),
        ("/", "/", true),
        ("/", "/a", false),
        ("/orders/{id}", "/orders/42", true),
        ("/orders/{id}", "/orders/", false),
        ("/orders/{id}", "/orders", false),
        ("/orders/{id}", "/orders/42/", false),
        ("/orders/{id}", "/orders/42/items", false),
        ("/orders/{id}/", "/orders/42/", true),
        ("/orders/{id}/items/{item}", "/orders/1/items/2", true),
        ("/orders/{id}/items/{item}", "/orders/1/items/", false),
        ("/static/...", "/static", true),
        ("/static/...", "/static/", true),
        ("/static/...", "/static/a", true),
        ("/static/...", "/static/a/b/", true),
        ("/static/...", "/staticx", false),
        ("/static/...", "/staticx/a", false),
        ("/static/...", "/stati", false),
        ("/static/...", "/", false),
        ("/...", "/", true),
        ("/...", "/anything/at/all", true),
        ("/{tenant}/...", "/acme", true),
        ("/{tenant}/...", "/acme/x/y", true),
        ("/{tenant}/...", "/", false),
        ("/a%3Ab", "/a%3Ab", true),
        // Matching is on normalized paths; anything else does not match.
        ("/...", "", false),
        ("/...", "a", false),
    ];
    for (text, path, expected) in cases {
        assert_eq!(
            pattern(text).matches(path),
            expected,
            "`{text}` on `{path}`"
        );
        assert_eq!(
            pattern(text).captures(path).is_some(),
            expected,
            "`{text}` on `{path}`"
        );
    }
}

#[test]
fn captures_name_each_parameter() {
    let items = pattern("/orders/{id}/items/{item}");
    let captures = items.captures("/orders/42/items/7").unwrap();
    assert_eq!(
        captures.iter().collect::<Vec<_>>(),
        [("id", "42"), ("item", "7")]
    );
    assert_eq!(captures.get("item"), Some("7"));
    assert_eq!(captures.get("other"), None);
    assert_eq!(captures.len(), 2);
    assert_eq!(captures.rest(), None);
    assert!(items.captures("/orders/42").is_none());
    assert!(pattern("/a").captures("/a").unwrap().is_empty());
}

#[test]
fn the_wildcard_remainder_starts_at_the_segment_boundary() {
    let static_files = pattern("/static/...");
    let rest = |path| static_files.captures(path).unwrap().rest();
    assert_eq!(rest("/static"), Some(""));
    assert_eq!(rest("/static/"), Some("/"));
    assert_eq!(rest("/static/a/b"), Some("/a/b"));
    assert_eq!(pattern("/...").captures("/x").unwrap().rest(), Some("/x"));
    let tenant_pattern = pattern("/{tenant}/...");
    let tenant = tenant_pattern.captures("/acme/a").unwrap();
    assert_eq!(tenant.get("tenant"), Some("acme"));
    assert_eq!(tenant.rest(), Some("/a"));
}

#[test]
fn literal_prefix_and_exactness() {
    let cases = [
        ("/api/checkout", "/api/checkout", true),
        ("/", "/", true),
        ("/a/", "/a/", true),
        ("/orders/{id}", "/orders/", false),
        ("/orders/{id}/items", "/orders/", false),
        ("/{id}", "/", false),
        ("/static/...", "/static", false),
        ("/a/b/...", "/a/b", false),
        ("/...", "/", false),
    ];
    for (text, prefix, exact) in cases {
        let parsed = pattern(text);
        assert_eq!(parsed.literal_prefix(), prefix, "prefix of `{text}`");
        assert_eq!(parsed.is_exact(), exact, "exactness of `{text}`");
    }
}

#[test]
fn specificity_orders_exact_then_literals_then_params_then_wildcards() {
    // Most specific first.
    let ordered = [
        "/a/b",
        "/a/{x}/c",
        "/a/{x}",
        "/a/{x}/...",
        "/a/...",
        "/{x}",
        "/...",
    ];
    for pair in ordered.windows(2) {
        assert!(
            pattern(pair[0]).specificity() > pattern(pair[1]).specificity(),
            "`{}` should be more specific than `{}`",
            pair[0],
            pair[1]
        );
    }
    assert_eq!(
        pattern("/a/{x}").specificity(),
        pattern("/a/{y}").specificity()
    );
}

#[test]
fn covers() {
    // (broader, narrower, covers)
    let cases = [
        ("/...", "/", true),
        ("/...", "/a/{b}/...", true),
        ("/a/...", "/a", true),
        ("/a/...", "/a/", true),
        ("/a/...", "/a/b/...", true),
        ("/a/...", "/a/{x}", true),
        ("/a/...", "/...", false),
        ("/a/...", "/ab", false),
        ("/a/b/...", "/a/...", false),
        ("/a/{x}", "/a/b", true),
        ("/a/{x}", "/a/{y}", true),
        ("/a/{x}", "/a/", false),
        ("/a/{x}", "/a/b/...", false),
        ("/a/{x}", "/a", false),
        ("/a/b", "/a/{x}", false),
        ("/a/b", "/a/b", true),
        ("/a/b", "/a/b/", false),
        ("/{x}/...", "/...", false),
        ("/{x}/...", "/a/...", true),
        ("/{x}/...", "/", false),
        ("/", "/...", false),
    ];
    for (broader, narrower, expected) in cases {
        assert_eq!(
            pattern(broader).covers(&pattern(narrower)),
            expected,
            "`{broader}` covers `{narrower}`"
        );
    }
}

#[test]
fn overlaps_come_with_an_example_both_match() {
    let cases = [
        ("/a/{x}/c", "/a/b/{y}", Some("/a/b/c")),
        ("/a/{x}", "/a/{y}", Some("/a/x")),
        ("/...", "/", Some("/")),
        ("/static/...", "/static/{file}", Some("/static/x")),
        ("/a/{x}", "/a/", None),
        ("/a/b", "/a/c", None),
        ("/a", "/a/{x}/...", None),
        ("/a/...", "/b/...", None),
    ];
    for (first, second, example) in cases {
        let (first, second) = (pattern(first), pattern(second));
        assert_eq!(
            first.overlap_example(&second).as_deref(),
            example,
            "`{first}` and `{second}`"
        );
        assert_eq!(
            second.overlap_example(&first).as_deref(),
            example,
            "`{second}` and `{first}`"
        );
        if let Some(example) = example {
            assert!(first.matches(example) && second.matches(example));
        }
    }
}
