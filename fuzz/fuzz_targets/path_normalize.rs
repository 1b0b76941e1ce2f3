//! Request path → `normalize_path`.
//!
//! A normalized path is canonical: absolute, no empty or dot segments, no encoded slash, and
//! normalizing it again returns it unchanged (and borrowed, since nothing needs rewriting).

#![no_main]

use libfuzzer_sys::fuzz_target;
use septa_policy::path::normalize_path;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(normalized) = normalize_path(raw) else {
        return;
    };
    let path = normalized.as_str();
    assert!(path.starts_with('/'), "{raw:?} normalized to {path:?}");
    for forbidden in ["//", "/./", "/../", "%2F", "%2f"] {
        assert!(
            !path.contains(forbidden),
            "{raw:?} normalized to {path:?}, which contains {forbidden:?}"
        );
    }
    // Also a dot segment at the end, which the substrings above do not see.
    assert!(
        path.split('/')
            .all(|segment| segment != "." && segment != ".."),
        "{raw:?} normalized to {path:?}, which has a dot segment"
    );
    let again = normalize_path(path).unwrap_or_else(|error| {
        panic!("{raw:?} normalized to {path:?}, which is refused: {error}")
    });
    assert_eq!(
        again.as_str(),
        path,
        "normalizing {raw:?} is not idempotent"
    );
    assert!(
        again.is_borrowed(),
        "{path:?} (from {raw:?}) is canonical but normalizing it allocated"
    );
});
