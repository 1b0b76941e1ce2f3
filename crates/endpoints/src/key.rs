//! What a key may look like, checked by the store whoever calls it.
//!
//! The mesh already refuses every path whose meaning depends on the decoder, so a key that breaks
//! these rules never comes from a normalized path; checking again here keeps a bug elsewhere from
//! turning into a key that a prefix rule did not mean to open.

use std::fmt::Write as _;

/// The longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 512;

/// Escapes that could hide a separator or a dot segment from a reader that decodes them.
const REFUSED_ESCAPES: [&str; 4] = ["%2F", "%2E", "%5C", "%00"];

/// Checks `key` against the key rules, returning why it is refused.
///
/// A key is 1 to [`MAX_KEY_BYTES`] bytes, does not start or end with `/`, has no empty, `.` or
/// `..` segment (also not before a `;` parameter, as in `..;x`), no control character, no `\`,
/// and none of the escapes `%2F`, `%2E`, `%5C`, `%00` in either case.
///
/// # Errors
///
/// A short lowercase reason naming the first rule broken.
pub fn validate_key(key: &str) -> Result<(), &'static str> {
    if key.is_empty() {
        return Err("a key must not be empty");
    }
    if key.len() > MAX_KEY_BYTES {
        return Err("a key must be at most 512 bytes");
    }
    if key.chars().any(char::is_control) {
        return Err("a key must not contain control characters");
    }
    if key.contains('\\') {
        return Err("a key must not contain `\\`");
    }
    let upper = key.to_ascii_uppercase();
    if REFUSED_ESCAPES.iter().any(|escape| upper.contains(escape)) {
        return Err("a key must not contain `%2F`, `%2E`, `%5C` or `%00`");
    }
    if key.starts_with('/') || key.ends_with('/') {
        return Err("a key must not start or end with `/`");
    }
    for segment in key.split('/') {
        if segment.is_empty() {
            return Err("a key must not contain an empty segment (`//`)");
        }
        let before_parameter = segment.split(';').next().unwrap_or(segment);
        if before_parameter == "." || before_parameter == ".." {
            return Err("a key must not contain a `.` or `..` segment");
        }
    }
    Ok(())
}

/// Checks a list prefix: empty (everything), or a key optionally followed by one `/`.
pub(crate) fn validate_prefix(prefix: &str) -> Result<(), &'static str> {
    if prefix.is_empty() {
        return Ok(());
    }
    validate_key(prefix.strip_suffix('/').unwrap_or(prefix))
}

/// The smallest string greater than every string that starts with `prefix`, or `None` when no
/// such string exists (the prefix is empty or all `char::MAX`).
///
/// Backends list a prefix as the range `[prefix, prefix_end)`. UTF-8 byte order is code point
/// order, so this bound is right for redb, Redis (`memcmp`) and PostgreSQL (`COLLATE "C"`).
pub(crate) fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        if let Some(next) = next_char(last) {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

fn next_char(c: char) -> Option<char> {
    let next = match u32::from(c) + 1 {
        0xD800 => 0xE000,
        n => n,
    };
    char::from_u32(next)
}

/// The key as it may appear in a message: control characters escaped, cut to a readable length.
pub(crate) fn shown(key: &str) -> String {
    const SHOWN_CHARS: usize = 80;
    let mut out = String::new();
    for (i, c) in key.chars().enumerate() {
        if i == SHOWN_CHARS {
            out.push('…');
            break;
        }
        if c.is_control() {
            let _ = write!(out, "{}", c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_keys_are_accepted() {
        for key in [
            "a",
            "a/b/c",
            "user:42",
            "a%20b",
            "caf%C3%A9",
            "é",
            ".hidden",
            "a..b",
            "x;y",
        ] {
            assert_eq!(validate_key(key), Ok(()), "{key}");
        }
        assert_eq!(validate_key(&"k".repeat(MAX_KEY_BYTES)), Ok(()));
    }

    #[test]
    fn ambiguous_keys_are_refused() {
        for key in [
            "", "/a", "a/", "a//b", ".", "..", "a/./b", "a/../b", "..;x/b", "a\\b", "a%2Fb",
            "a%2fb", "%2e%2e/b", "a%5Cb", "a%00", "a\u{0}b", "a\nb", "a\u{7f}b", "a\u{85}b",
        ] {
            assert!(validate_key(key).is_err(), "{key:?} was accepted");
        }
        assert!(validate_key(&"k".repeat(MAX_KEY_BYTES + 1)).is_err());
    }

    #[test]
    fn prefixes_are_keys_with_an_optional_trailing_slash() {
        for prefix in ["", "a/", "a/b/", "ab"] {
            assert_eq!(validate_prefix(prefix), Ok(()), "{prefix}");
        }
        for prefix in ["/", "../", "a//", "a/../"] {
            assert!(validate_prefix(prefix).is_err(), "{prefix:?} was accepted");
        }
    }

    #[test]
    fn prefix_end_bounds_exactly_the_keys_with_the_prefix() {
        assert_eq!(prefix_end(""), None);
        assert_eq!(prefix_end("a/").as_deref(), Some("a0"));
        assert_eq!(prefix_end("a\u{D7FF}").as_deref(), Some("a\u{E000}"));
        assert_eq!(prefix_end("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_end("\u{10FFFF}"), None);
        let end = prefix_end("a/").unwrap_or_default();
        for inside in ["a/", "a/b", "a/\u{10FFFF}\u{10FFFF}"] {
            assert!(
                inside.starts_with("a/") && inside < end.as_str(),
                "{inside}"
            );
        }
        for outside in ["a0", "a1", "b"] {
            assert!(outside >= end.as_str(), "{outside}");
        }
    }

    #[test]
    fn shown_keys_escape_control_characters_and_stay_short() {
        assert_eq!(shown("a\nb"), "a\\nb");
        assert_eq!(shown(&"k".repeat(100)).chars().count(), 81);
    }
}
