//! Request path normalization: what is accepted (and how it is rewritten), and what is refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use septa_policy::path::{PathError, normalize_path, split_path_query};

/// `(input, canonical output)`; the output borrows the input exactly when they are equal.
const ACCEPTED: &[(&str, &str)] = &[
    ("/", "/"),
    ("/a", "/a"),
    ("/api/checkout", "/api/checkout"),
    ("/a/", "/a/"),
    ("/a/b/", "/a/b/"),
    ("/a%62c", "/abc"),
    ("/%41%5a%30%2d%5F%7e", "/AZ0-_~"),
    ("/a%3ab", "/a%3Ab"),
    ("/a%3Ab", "/a%3Ab"),
    ("/%c3%a9", "/%C3%A9"),
    ("/%C3%A9", "/%C3%A9"),
    ("/a%20b", "/a%20b"),
    ("/%25", "/%25"),
    ("/%252F", "/%252F"),
    ("/a|b", "/a%7Cb"),
    ("/{x}", "/%7Bx%7D"),
    ("/a\"<>[]^`", "/a%22%3C%3E%5B%5D%5E%60"),
    ("/a:b@c!$&'()*+,;=", "/a:b@c!$&'()*+,;="),
    ("/.well-known/x", "/.well-known/x"),
    ("/a.b/..c/c..", "/a.b/..c/c.."),
    ("/.../a", "/.../a"),
    ("/a/...", "/a/..."),
    ("/~user/", "/~user/"),
    ("/%0a", "/%0A"),
];

/// `(input, the error it is refused with)`.
const REJECTED: &[(&str, PathError)] = &[
    ("", PathError::NotAbsolute),
    ("a/b", PathError::NotAbsolute),
    ("*", PathError::NotAbsolute),
    ("http://host/a", PathError::NotAbsolute),
    ("/a#frag", PathError::Fragment),
    ("/a?q=1", PathError::QueryDelimiter),
    ("/a\0b", PathError::Nul),
    ("/a%00b", PathError::EncodedNul),
    ("/a\nb", PathError::ControlCharacter),
    ("/a\tb", PathError::ControlCharacter),
    ("/a\x7fb", PathError::ControlCharacter),
    ("/a b", PathError::Space),
    ("/a\\b", PathError::Backslash),
    ("/a%5Cb", PathError::EncodedBackslash),
    ("/a%5cb", PathError::EncodedBackslash),
    ("/a%2Fb", PathError::EncodedSlash),
    ("/a%2fb", PathError::EncodedSlash),
    ("/a%2Eb", PathError::EncodedDot),
    ("/%2e%2e/etc", PathError::EncodedDot),
    ("/a%", PathError::InvalidPercentEncoding),
    ("/a%4", PathError::InvalidPercentEncoding),
    ("/a%zz", PathError::InvalidPercentEncoding),
    ("/a%4g", PathError::InvalidPercentEncoding),
    ("/a%%41", PathError::InvalidPercentEncoding),
    ("/caf\u{e9}", PathError::NonAscii),
    ("/a/./b", PathError::DotSegment),
    ("/a/../b", PathError::DotSegment),
    ("/a/.", PathError::DotSegment),
    ("/a/..", PathError::DotSegment),
    ("/..", PathError::DotSegment),
    ("/.", PathError::DotSegment),
    ("/./", PathError::DotSegment),
    // Servlet containers strip `;` parameters before resolving dot segments.
    ("/a/..;/b", PathError::DotSegment),
    ("/a/..;x=1/b", PathError::DotSegment),
    ("/a/.;x", PathError::DotSegment),
    ("/..;", PathError::DotSegment),
    ("/a/;x/b", PathError::EmptySegment),
    // ... and a router that decodes before it strips reads `%3B` as `;`.
    ("/a/..%3B/b", PathError::DotSegment),
    ("/a/..%3bx=1/b", PathError::DotSegment),
    ("/a/.%3Bx", PathError::DotSegment),
    ("/a/%3Bx/b", PathError::EmptySegment),
    ("//", PathError::EmptySegment),
    ("//a", PathError::EmptySegment),
    ("/a//b", PathError::EmptySegment),
    ("/a//", PathError::EmptySegment),
    // The first problem from the left wins.
    ("/a//b%2F", PathError::EmptySegment),
    ("/a%2F/..", PathError::EncodedSlash),
    ("/../a%", PathError::DotSegment),
];

#[test]
fn accepted_paths_normalize_to_their_canonical_form() {
    for &(input, expected) in ACCEPTED {
        let normalized = normalize_path(input);
        assert!(normalized.is_ok(), "`{input}` was refused: {normalized:?}");
        let normalized = normalized.unwrap();
        assert_eq!(normalized.as_str(), expected, "normalizing `{input}`");
        assert_eq!(
            normalized.is_borrowed(),
            input == expected,
            "`{input}` should borrow exactly when unchanged"
        );
    }
}

#[test]
fn rejected_paths_name_the_problem() {
    for &(input, expected) in REJECTED {
        assert_eq!(
            normalize_path(input),
            Err(expected),
            "normalizing {input:?}"
        );
    }
}

#[test]
fn the_tables_are_large_enough() {
    assert!(ACCEPTED.len() + REJECTED.len() >= 30);
}

#[test]
fn a_trailing_slash_is_significant() {
    assert_ne!(
        normalize_path("/a/").unwrap(),
        normalize_path("/a").unwrap()
    );
}

#[test]
fn equivalent_spellings_normalize_to_the_same_path() {
    let spellings = ["/abc", "/a%62c", "/%61%62%63", "/a%62%63"];
    for spelling in spellings {
        assert_eq!(normalize_path(spelling).unwrap(), "/abc");
    }
}

#[test]
fn an_owned_path_outlives_its_input() {
    let owned = {
        let input = String::from("/a%62c");
        normalize_path(&input).unwrap().into_owned()
    };
    assert_eq!(owned.as_str(), "/abc");
    assert_eq!(owned.to_string(), "/abc");
}

#[test]
fn error_messages_are_lowercase_and_name_the_input() {
    assert_eq!(
        PathError::EncodedSlash.to_string(),
        "path contains an encoded slash (`%2F`)"
    );
    assert_eq!(
        PathError::DotSegment.to_string(),
        "path contains a dot segment (`.`, `..`, or either followed by `;`)"
    );
    for &(_, error) in REJECTED {
        let message = error.to_string();
        assert!(message.starts_with("path "), "{message}");
        assert!(!message.ends_with('.'), "{message}");
    }
}

#[test]
fn split_path_query_splits_at_the_first_question_mark() {
    let cases: &[(&str, (&str, Option<&str>))] = &[
        ("/a", ("/a", None)),
        ("/a?", ("/a", Some(""))),
        ("/a?b=1", ("/a", Some("b=1"))),
        ("/a?b=1?c", ("/a", Some("b=1?c"))),
        ("/a?b#c", ("/a", Some("b#c"))),
        ("/a#b?c", ("/a#b", Some("c"))),
        ("?x", ("", Some("x"))),
        ("", ("", None)),
    ];
    for &(target, expected) in cases {
        assert_eq!(split_path_query(target), expected, "splitting `{target}`");
    }
}
