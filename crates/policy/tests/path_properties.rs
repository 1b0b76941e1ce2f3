//! Properties of path normalization, patterns and the router, checked against simple models.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use septa_policy::path::{PathPattern, PathRouter, normalize_path};

/// Strings built from the pieces that make normalization interesting.
fn path_like() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("/".to_owned()),
        Just("//".to_owned()),
        Just(".".to_owned()),
        Just("..".to_owned()),
        Just("...".to_owned()),
        Just("%".to_owned()),
        "%[0-9a-fA-FgG]{0,2}",
        "[a-zA-Z0-9_~-]{1,3}",
        "[!$&'()*+,;=:@|{}<>\\[\\]^`\"]",
        "[ #?\\\\\0\t\n\u{7f}]",
        "\\PC",
    ];
    (any::<bool>(), prop::collection::vec(piece, 0..12)).prop_map(|(absolute, pieces)| {
        let body = pieces.concat();
        if absolute { format!("/{body}") } else { body }
    })
}

/// Paths made of segments that are mostly valid, so that most of them normalize and the
/// rewriting (decoding, uppercasing, encoding) is exercised.
fn mostly_valid_path() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => "[a-zA-Z0-9._~-]{1,4}",
        2 => "%[0-9a-fA-F]{2}",
        1 => "[!$&'()*+,;=:@|{}<>\\[\\]^`\"]",
    ];
    let segment = prop::collection::vec(piece, 1..4).prop_map(|pieces| pieces.concat());
    (prop::collection::vec(segment, 0..5), any::<bool>()).prop_map(|(segments, trailing)| {
        let mut path: String = segments.iter().map(|s| format!("/{s}")).collect();
        if trailing || path.is_empty() {
            path.push('/');
        }
        path
    })
}

/// A segment of a generated pattern.
#[derive(Debug, Clone)]
enum Piece {
    Literal(&'static str),
    Param(&'static str),
}

/// How a generated pattern ends.
#[derive(Debug, Clone, Copy)]
enum Ending {
    Plain,
    TrailingSlash,
    Wildcard,
}

/// Patterns over a small alphabet, so that overlaps and ties are common.
fn small_pattern() -> impl Strategy<Value = PathPattern> {
    let piece = prop_oneof![
        3 => prop::sample::select(vec!["a", "b", "c"]).prop_map(Piece::Literal),
        2 => prop::sample::select(vec!["x", "y"]).prop_map(Piece::Param),
    ];
    let ending = prop_oneof![
        Just(Ending::Plain),
        Just(Ending::TrailingSlash),
        Just(Ending::Wildcard)
    ];
    (prop::collection::vec(piece, 0..4), ending).prop_map(|(pieces, ending)| {
        let mut text = String::new();
        for (index, piece) in pieces.iter().enumerate() {
            match piece {
                Piece::Literal(literal) => text.push_str(&format!("/{literal}")),
                Piece::Param(name) => text.push_str(&format!("/{{{name}{index}}}")),
            }
        }
        match ending {
            Ending::Plain if text.is_empty() => text.push('/'),
            Ending::Plain => {}
            Ending::TrailingSlash => text.push('/'),
            Ending::Wildcard => text.push_str("/..."),
        }
        PathPattern::parse(&text).unwrap()
    })
}

/// Normalized paths over the same alphabet plus a segment no pattern names.
fn small_path() -> impl Strategy<Value = String> {
    let segment = prop::sample::select(vec!["a", "b", "c", "z"]);
    (prop::collection::vec(segment, 0..6), any::<bool>()).prop_map(|(segments, trailing)| {
        let mut path: String = segments.iter().map(|s| format!("/{s}")).collect();
        if trailing || path.is_empty() {
            path.push('/');
        }
        path
    })
}

/// Every normalized path over `a`, `b`, `c`, `z` with up to `depth` segments.
fn every_small_path(depth: usize) -> Vec<String> {
    let mut paths = vec!["/".to_owned()];
    let mut frontier = vec![String::new()];
    for _ in 0..depth {
        let mut next = Vec::new();
        for prefix in &frontier {
            for segment in ["a", "b", "c", "z"] {
                let path = format!("{prefix}/{segment}");
                paths.push(format!("{path}/"));
                paths.push(path.clone());
                next.push(path);
            }
        }
        frontier = next;
    }
    paths
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn normalize_never_panics_on_any_string(raw in any::<String>()) {
        let _ = normalize_path(&raw);
    }

    #[test]
    fn normalize_never_panics_on_path_like_strings(raw in path_like()) {
        let _ = normalize_path(&raw);
    }

    #[test]
    fn normalization_is_idempotent(raw in prop_oneof![path_like(), mostly_valid_path()]) {
        if let Ok(normalized) = normalize_path(&raw) {
            let again = normalize_path(normalized.as_str());
            prop_assert_eq!(again.as_ref().map(|p| p.as_str()), Ok(normalized.as_str()));
            prop_assert!(again.unwrap().is_borrowed(), "a canonical path must not be copied");
        }
    }

    #[test]
    fn a_normalized_path_is_an_exact_pattern_matching_itself(
        raw in prop_oneof![path_like(), mostly_valid_path()],
    ) {
        if let Ok(normalized) = normalize_path(&raw) {
            let path = normalized.as_str();
            // `*` and a `...` segment are the two spellings patterns give another meaning.
            if !path.contains('*') && !path.split('/').any(|segment| segment == "...") {
                let pattern = PathPattern::parse(path);
                prop_assert!(pattern.is_ok(), "`{}`: {:?}", path, pattern);
                let pattern = pattern.unwrap();
                prop_assert!(pattern.is_exact());
                prop_assert!(pattern.matches(path));
            }
        }
    }

    #[test]
    fn router_lookup_agrees_with_a_naive_scan(
        patterns in prop::collection::vec(small_pattern(), 0..10),
        paths in prop::collection::vec(small_path(), 1..20),
    ) {
        let built = PathRouter::new(patterns.iter().cloned().enumerate().map(|(i, p)| (p, i)));
        let Ok(router) = built else {
            // Refused: there must be a duplicate or an equally specific overlapping pair.
            let justified = patterns.iter().enumerate().any(|(i, a)| {
                patterns.iter().skip(i + 1).any(|b| {
                    a == b || (a.specificity() == b.specificity() && a.overlaps(b))
                })
            });
            prop_assert!(justified, "refused without cause: {:?}", built.err());
            return Ok(());
        };
        for path in &paths {
            let matching: Vec<usize> =
                (0..patterns.len()).filter(|&i| patterns[i].matches(path)).collect();
            let best = matching.iter().map(|&i| patterns[i].specificity()).max();
            let winners: Vec<usize> = matching
                .iter()
                .copied()
                .filter(|&i| Some(patterns[i].specificity()) == best)
                .collect();
            prop_assert!(winners.len() <= 1, "tie on `{}` in a router that was built", path);
            let found = router.lookup(path).map(|found| *found.value);
            prop_assert_eq!(found, winners.first().copied(), "looking up `{}`", path);
        }
    }

    #[test]
    fn covers_and_overlaps_agree_with_brute_force(a in small_pattern(), b in small_pattern()) {
        // Patterns have at most three segments, so paths of up to five decide every question.
        let universe = every_small_path(5);
        let only_b = universe.iter().find(|path| b.matches(path) && !a.matches(path));
        prop_assert_eq!(a.covers(&b), only_b.is_none(), "`{}` covers `{}`; witness {:?}", a, b, only_b);
        let both = universe.iter().any(|path| a.matches(path) && b.matches(path));
        prop_assert_eq!(a.overlaps(&b), both, "`{}` overlaps `{}`", a, b);
        if let Some(example) = a.overlap_example(&b) {
            prop_assert!(a.matches(&example) && b.matches(&example), "example `{}`", example);
        }
    }
}
