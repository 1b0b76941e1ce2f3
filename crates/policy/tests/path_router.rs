//! The path router: the most specific pattern wins, and ties are refused when it is built.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use septa_policy::path::{PathPattern, PathRouter, RouterError};

fn router(patterns: &[&str]) -> Result<PathRouter<String>, RouterError> {
    PathRouter::new(
        patterns
            .iter()
            .map(|text| (PathPattern::parse(text).unwrap(), (*text).to_owned())),
    )
}

/// The pattern that wins for `path`, or `None`.
fn winner<'r>(router: &'r PathRouter<String>, path: &str) -> Option<&'r str> {
    router.lookup(path).map(|found| found.value.as_str())
}

#[test]
fn the_most_specific_pattern_wins() {
    let routes = router(&[
        "/a/...", "/a/{x}", "/a/b", "/...", "/a/{x}/c", "/a/b/...", "/{x}",
    ])
    .unwrap();
    let cases = [
        ("/a/b", Some("/a/b")),
        ("/a/z", Some("/a/{x}")),
        ("/a/z/c", Some("/a/{x}/c")),
        ("/a/b/c", Some("/a/{x}/c")),
        ("/a/z/d", Some("/a/...")),
        ("/a/b/d", Some("/a/b/...")),
        ("/a/b/", Some("/a/b/...")),
        ("/a", Some("/a/...")),
        ("/a/", Some("/a/...")),
        ("/b", Some("/{x}")),
        ("/b/c", Some("/...")),
        ("/", Some("/...")),
    ];
    for (path, expected) in cases {
        assert_eq!(winner(&routes, path), expected, "looking up `{path}`");
    }
}

#[test]
fn precedence_does_not_depend_on_insertion_order() {
    let patterns = ["/a/b", "/a/{x}", "/a/..."];
    let forward = router(&patterns).unwrap();
    let mut reversed = patterns;
    reversed.reverse();
    let backward = router(&reversed).unwrap();
    for path in ["/a/b", "/a/c", "/a/b/c", "/a"] {
        assert_eq!(
            winner(&forward, path),
            winner(&backward, path),
            "looking up `{path}`"
        );
    }
    assert_eq!(winner(&forward, "/a/b"), Some("/a/b"));
    assert_eq!(winner(&forward, "/a/c"), Some("/a/{x}"));
    assert_eq!(winner(&forward, "/a/c/d"), Some("/a/..."));
}

#[test]
fn no_match_is_none() {
    let routes = router(&["/api/checkout", "/static/...", "/orders/{id}"]).unwrap();
    for path in [
        "/",
        "/api",
        "/api/checkout/",
        "/staticx",
        "/orders/",
        "/orders",
        "",
        "api",
    ] {
        assert!(routes.lookup(path).is_none(), "`{path}` should not match");
    }
    assert!(router(&[]).unwrap().lookup("/").is_none());
}

#[test]
fn trailing_slashes_route_separately() {
    let routes = router(&["/a", "/a/"]).unwrap();
    assert_eq!(winner(&routes, "/a"), Some("/a"));
    assert_eq!(winner(&routes, "/a/"), Some("/a/"));
    assert_eq!(winner(&routes, "/a/b"), None);
}

#[test]
fn lookup_returns_the_pattern_and_its_captures() {
    let routes = router(&["/orders/{id}/items/{item}", "/static/..."]).unwrap();
    let found = routes.lookup("/orders/42/items/7").unwrap();
    assert_eq!(found.pattern.as_str(), "/orders/{id}/items/{item}");
    assert_eq!(
        found.captures.iter().collect::<Vec<_>>(),
        [("id", "42"), ("item", "7")]
    );
    let found = routes.lookup("/static/css/site.css").unwrap();
    assert!(found.captures.is_empty());
    assert_eq!(found.captures.rest(), Some("/css/site.css"));
}

#[test]
fn duplicates_are_refused() {
    let error = router(&["/a/{x}", "/b", "/a/{x}"]).unwrap_err();
    assert_eq!(
        error,
        RouterError::DuplicatePattern(PathPattern::parse("/a/{x}").unwrap())
    );
    assert_eq!(error.to_string(), "duplicate path pattern `/a/{x}`");
    let error = router(&["/b", "/b"]).unwrap_err();
    assert_eq!(
        error,
        RouterError::DuplicatePattern(PathPattern::parse("/b").unwrap())
    );
}

#[test]
fn equally_specific_overlapping_patterns_are_refused() {
    let cases = [
        (["/a/{x}", "/a/{y}"], "/a/x"),
        (["/a/{x}/c", "/a/b/{y}"], "/a/b/c"),
        (["/{x}/b/...", "/a/{y}/..."], "/a/b"),
        (["/a/{x}/...", "/a/{y}/..."], "/a/x"),
    ];
    for (patterns, example) in cases {
        let error = router(&patterns).unwrap_err();
        assert_eq!(
            error,
            RouterError::AmbiguousRoutes {
                first: PathPattern::parse(patterns[0]).unwrap(),
                second: PathPattern::parse(patterns[1]).unwrap(),
                example: example.to_owned(),
            },
            "{patterns:?}"
        );
    }
    assert_eq!(
        router(&["/a/{x}", "/a/{y}"]).unwrap_err().to_string(),
        "path patterns `/a/{x}` and `/a/{y}` are equally specific and both match `/a/x`"
    );
}

#[test]
fn equally_specific_disjoint_patterns_are_fine() {
    let routes = router(&["/a/{x}", "/b/{y}", "/a/{x}/", "/c/{x}/d", "/c/{x}/e"]).unwrap();
    assert_eq!(routes.len(), 5);
    assert_eq!(winner(&routes, "/b/1"), Some("/b/{y}"));
    assert_eq!(winner(&routes, "/a/1/"), Some("/a/{x}/"));
    assert_eq!(winner(&routes, "/c/1/e"), Some("/c/{x}/e"));
}

#[test]
fn routes_are_listed_in_input_order() {
    let routes = router(&["/b", "/a/...", "/c/{x}"]).unwrap();
    let listed: Vec<_> = routes
        .routes()
        .map(|(pattern, _)| pattern.as_str())
        .collect();
    assert_eq!(listed, ["/b", "/a/...", "/c/{x}"]);
    assert!(!routes.is_empty());
}
