//! `pattern\npath` → `PathPattern::parse`, then `matches`.
//!
//! The input is split at its first `\n`: the pattern before it, the path after it. Without a
//! `\n` the text is both, so a pattern is also checked against its own spelling.
//!
//! An exact pattern (no parameter, no wildcard) matches one normalized path: its own text. Its
//! literals are in canonical form, so normalizing the pattern text returns it unchanged.

#![no_main]

use libfuzzer_sys::fuzz_target;
use septa_policy::path::{PathPattern, normalize_path};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (pattern_text, path) = text.split_once('\n').unwrap_or((text, text));
    let Ok(pattern) = PathPattern::parse(pattern_text) else {
        return;
    };
    assert_eq!(pattern.as_str(), pattern_text);
    // Documented for normalized paths only, but must not panic on anything.
    let _ = pattern.matches(path);
    let _ = pattern
        .captures(path)
        .map(|captures| captures.iter().count());

    if pattern.is_exact() {
        match normalize_path(pattern_text) {
            Ok(normalized) => assert_eq!(
                normalized.as_str(),
                pattern_text,
                "exact pattern {pattern_text:?} is not in normalized form"
            ),
            Err(error) => panic!("exact pattern {pattern_text:?} can never match: {error}"),
        }
    }

    let Ok(normalized) = normalize_path(path) else {
        return;
    };
    let matched = pattern.matches(&normalized);
    if pattern.is_exact() {
        assert_eq!(
            matched,
            normalized.as_str() == pattern_text,
            "exact pattern {pattern_text:?} against normalized path {:?}",
            normalized.as_str()
        );
    }
    if matched {
        let captures = pattern.captures(&normalized).unwrap_or_else(|| {
            panic!("{pattern_text:?} matches {normalized:?} but captures nothing")
        });
        assert_eq!(captures.iter().count(), pattern.param_names().count());
    }
});
