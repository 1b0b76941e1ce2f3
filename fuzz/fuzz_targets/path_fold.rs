//! A request path (and optionally a pattern) → `fold_path` and `fold_pattern`: how the gateway
//! reads a path as a lenient function router would, to refuse respellings of a guarded route.
//!
//! The input is split at its first `\n`: a pattern before it, a path after it; without a `\n`
//! the text is both. The path is normalized first, as the gateway does before folding.
//!
//! A folded path is absolute, has no empty or dot segment, and is in normalized form where it is
//! a path a request could send. Folding is idempotent, since a lenient router that reads a path twice
//! reads it the same way. An exact pattern folds to what its text folds to as a path, so the
//! folded route table finds the route a respelling means; or, when that path has a `...`
//! segment, which no pattern can spell, to nothing (and `septa check` refuses the route).

#![no_main]

use libfuzzer_sys::fuzz_target;
use septa_policy::path::{PathPattern, fold_path, fold_pattern, normalize_path};

fn check_folded(from: &str, folded: &str) {
    assert!(folded.starts_with('/'), "{from:?} folded to {folded:?}");
    if folded != "/" {
        for segment in folded[1..].split('/') {
            assert!(
                !matches!(segment, "" | "." | ".."),
                "{from:?} folded to {folded:?}, which has an empty or dot segment"
            );
        }
    }
    // A folded path may hold an escape no request sends (`%2500` folds to `%00`): it matches no
    // pattern's literal, so that is harmless. One that normalization would respell is not.
    if let Ok(normalized) = normalize_path(folded) {
        assert_eq!(
            normalized.as_str(),
            folded,
            "{from:?} folded to {folded:?}, which is not in normalized form"
        );
    }
    let again = fold_path(folded);
    assert_eq!(again, folded, "folding {from:?} is not idempotent");
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (pattern_text, path) = text.split_once('\n').unwrap_or((text, text));

    if let Ok(normalized) = normalize_path(path) {
        let folded = fold_path(&normalized);
        check_folded(&normalized, &folded);
    }

    let Ok(pattern) = PathPattern::parse(pattern_text) else {
        return;
    };
    let folded = fold_pattern(&pattern);
    if pattern.is_exact() {
        let Ok(as_path) = normalize_path(pattern_text) else {
            // `path_pattern` checks that exact patterns are normalized paths.
            return;
        };
        let expected = fold_path(&as_path);
        // A pattern can spell a `...` segment only as its wildcard: such a route has no folded
        // form, and `septa check` refuses it.
        let spellable = !expected.split('/').any(|segment| segment == "...");
        assert_eq!(
            folded.as_ref().map(PathPattern::as_str),
            spellable.then_some(&*expected),
            "exact pattern {pattern_text:?} folds apart from its path"
        );
    }
    if let Some(folded) = folded {
        let again = fold_pattern(&folded);
        assert_eq!(
            again.as_ref(),
            Some(&folded),
            "folding pattern {pattern_text:?} is not idempotent"
        );
    }
});
