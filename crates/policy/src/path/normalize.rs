//! Request path normalization: one canonical spelling per path, and a refusal for every path
//! whose meaning depends on which decoder reads it.
//!
//! The gateway and the mesh route and decide on the normalized path, and the function receives
//! it, so the path that policy checked is the path that runs. Anything two decoders could read
//! differently (`%2F`, `..`, `\`, `//`, raw non-ASCII) is refused rather than guessed at.
//!
//! The accepted alphabet of a normalized path is `/`, the RFC 3986 `pchar` set, and `%XX` escapes
//! with uppercase hex digits that do not encode an unreserved character. Path patterns use the
//! same alphabet for their literal parts, so a literal compares byte for byte.

use std::borrow::Cow;
use std::fmt;
use std::ops::Deref;

/// Why a request path was refused by [`normalize_path`].
///
/// Each variant names the first problem found, scanning left to right.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum PathError {
    /// The path is empty or does not start with `/`.
    #[error("path does not start with `/`")]
    NotAbsolute,
    /// The path contains a raw `#`; a fragment is never sent to a server.
    #[error("path contains a fragment delimiter (`#`)")]
    Fragment,
    /// The path contains a raw `?`; the caller must split the query off first.
    #[error("path contains a query delimiter (`?`); split the query off before normalizing")]
    QueryDelimiter,
    /// The path contains a raw NUL byte.
    #[error("path contains a NUL byte")]
    Nul,
    /// The path contains `%00`.
    #[error("path contains an encoded NUL (`%00`)")]
    EncodedNul,
    /// The path contains a raw ASCII control character other than NUL.
    #[error("path contains an ASCII control character")]
    ControlCharacter,
    /// The path contains a raw space.
    #[error("path contains a space (encode it as `%20`)")]
    Space,
    /// The path contains a raw backslash, which some servers read as a segment separator.
    #[error("path contains a backslash (`\\`)")]
    Backslash,
    /// The path contains `%5C`, an encoded backslash.
    #[error("path contains an encoded backslash (`%5C`)")]
    EncodedBackslash,
    /// The path contains `%2F`, an encoded slash, whose segment boundary is ambiguous.
    #[error("path contains an encoded slash (`%2F`)")]
    EncodedSlash,
    /// The path contains `%2E`, an encoded dot, which could hide a dot segment.
    #[error("path contains an encoded dot (`%2E`)")]
    EncodedDot,
    /// A `%` is not followed by two hexadecimal digits.
    #[error("path contains an invalid percent-encoding (`%` not followed by two hex digits)")]
    InvalidPercentEncoding,
    /// The path contains a raw byte outside ASCII; clients must percent-encode it.
    #[error("path contains a non-ASCII character (percent-encode it)")]
    NonAscii,
    /// A whole segment is `.` or `..`, or is once a `;` parameter is stripped (`..;x`), as
    /// servlet containers and some proxies read it.
    #[error("path contains a dot segment (`.`, `..`, or either followed by `;`)")]
    DotSegment,
    /// Two slashes in a row (`//`), including at the start of the path.
    #[error("path contains an empty segment (`//`)")]
    EmptySegment,
}

/// A request path in canonical form, as returned by [`normalize_path`].
///
/// Borrows the input when it was already canonical, which is the common case, so normalizing a
/// well-formed path does not allocate.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NormalizedPath<'a>(Cow<'a, str>);

impl<'a> NormalizedPath<'a> {
    /// The canonical path text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the input was already canonical and is borrowed unchanged.
    pub fn is_borrowed(&self) -> bool {
        matches!(self.0, Cow::Borrowed(_))
    }

    /// Detaches the path from the input it may borrow.
    pub fn into_owned(self) -> NormalizedPath<'static> {
        NormalizedPath(Cow::Owned(self.0.into_owned()))
    }

    /// The canonical path as a `Cow`, borrowed when the input was already canonical.
    pub fn into_cow(self) -> Cow<'a, str> {
        self.0
    }
}

impl Deref for NormalizedPath<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for NormalizedPath<'_> {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NormalizedPath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<str> for NormalizedPath<'_> {
    fn eq(&self, other: &str) -> bool {
        *self.0 == *other
    }
}

impl PartialEq<&str> for NormalizedPath<'_> {
    fn eq(&self, other: &&str) -> bool {
        *self.0 == **other
    }
}

/// Splits an origin-form request target (`/path?query`) at the first `?`.
///
/// The query is `None` when there is no `?`, and `Some("")` for a bare trailing `?`. A `#` is
/// left where it is: in the path [`normalize_path`] refuses it; in the query it is the query's.
pub fn split_path_query(target: &str) -> (&str, Option<&str>) {
    match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    }
}

/// What a raw byte of a path is, for the single left-to-right scan.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ByteClass {
    /// Kept as it is: unreserved, sub-delims, `:` and `@`.
    Plain,
    Slash,
    Percent,
    /// Printable ASCII that RFC 3986 does not allow raw in a path (`"` `<` `>` `[` `]` `^`
    /// `` ` `` `{` `|` `}`): its only possible meaning is the byte itself, so it is encoded.
    Encode,
    Refuse(PathError),
}

const fn classify(byte: u8) -> ByteClass {
    match byte {
        b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => ByteClass::Plain,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=' => {
            ByteClass::Plain
        }
        b':' | b'@' => ByteClass::Plain,
        b'/' => ByteClass::Slash,
        b'%' => ByteClass::Percent,
        b'"' | b'<' | b'>' | b'[' | b']' | b'^' | b'`' | b'{' | b'|' | b'}' => ByteClass::Encode,
        b'#' => ByteClass::Refuse(PathError::Fragment),
        b'?' => ByteClass::Refuse(PathError::QueryDelimiter),
        b'\\' => ByteClass::Refuse(PathError::Backslash),
        b' ' => ByteClass::Refuse(PathError::Space),
        0 => ByteClass::Refuse(PathError::Nul),
        0x01..=0x1f | 0x7f => ByteClass::Refuse(PathError::ControlCharacter),
        0x80..=0xff => ByteClass::Refuse(PathError::NonAscii),
    }
}

/// The class of every byte, computed at compile time so the scan is one table load a byte.
static BYTE_CLASSES: [ByteClass; 256] = {
    let mut table = [ByteClass::Plain; 256];
    let mut byte = 0;
    while byte < 256 {
        table[byte] = classify(byte as u8);
        byte += 1;
    }
    table
};

const UPPER_HEX: &[u8; 16] = b"0123456789ABCDEF";

/// `%XX` for `byte`, with uppercase hex digits.
pub(crate) fn canonical_escape(byte: u8) -> [u8; 3] {
    [
        b'%',
        UPPER_HEX[usize::from(byte >> 4)],
        UPPER_HEX[usize::from(byte & 0xf)],
    ]
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// Whether `byte` is an RFC 3986 unreserved character, whose escape is decoded.
pub(crate) fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// How a `%XX` escape appears in canonical form.
pub(crate) enum Escape {
    /// An unreserved character, written literally.
    Decoded(u8),
    /// Any other byte, written as `%XX` with uppercase hex digits.
    Kept(u8),
}

/// Reads the escape starting at `bytes[at]` (which is `%`) and decides its canonical form.
pub(crate) fn read_escape(bytes: &[u8], at: usize) -> Result<Escape, PathError> {
    let high = bytes.get(at + 1).copied().and_then(hex_value);
    let low = bytes.get(at + 2).copied().and_then(hex_value);
    let (Some(high), Some(low)) = (high, low) else {
        return Err(PathError::InvalidPercentEncoding);
    };
    match high << 4 | low {
        b'/' => Err(PathError::EncodedSlash),
        b'\\' => Err(PathError::EncodedBackslash),
        b'.' => Err(PathError::EncodedDot),
        0 => Err(PathError::EncodedNul),
        byte if is_unreserved(byte) => Ok(Escape::Decoded(byte)),
        byte => Ok(Escape::Kept(byte)),
    }
}

/// Copy-on-write output: stays a borrow of the input until the first byte that must change.
struct Rewriter<'a> {
    raw: &'a str,
    out: Option<String>,
    /// Bytes of `raw` before this offset are already in `out`.
    copied: usize,
}

impl<'a> Rewriter<'a> {
    /// Replaces `raw[at..at + len]` with `replacement`.
    fn replace(&mut self, at: usize, len: usize, replacement: &[u8]) {
        let out = self
            .out
            .get_or_insert_with(|| String::with_capacity(self.raw.len() + 4));
        out.push_str(&self.raw[self.copied..at]);
        for &byte in replacement {
            // Replacements are ASCII by construction.
            out.push(char::from(byte));
        }
        self.copied = at + len;
    }

    fn finish(self) -> NormalizedPath<'a> {
        match self.out {
            None => NormalizedPath(Cow::Borrowed(self.raw)),
            Some(mut out) => {
                out.push_str(&self.raw[self.copied..]);
                NormalizedPath(Cow::Owned(out))
            }
        }
    }
}

/// Refuses the segment `raw[start..end]` when it is empty (and not the final segment after a
/// trailing slash) or a dot segment, also when read up to its first `;` as servlet containers
/// read `..;/` or `/;x/`, or up to its first `%3B`, as a router that decodes before it strips
/// parameters reads `..%3B/`.
fn check_segment(raw: &[u8], start: usize, end: usize, last: bool) -> Result<(), PathError> {
    let segment = &raw[start..end];
    let before_params = &segment[..params_start(segment)];
    match (segment, before_params) {
        (b"", _) if !last => Err(PathError::EmptySegment),
        (_, b"." | b"..") => Err(PathError::DotSegment),
        ([_, ..], b"") => Err(PathError::EmptySegment),
        _ => Ok(()),
    }
}

/// Where a segment's parameters start: its first `;` or `%3B` (either case), or its end.
pub(crate) fn params_start(segment: &[u8]) -> usize {
    let encoded = segment
        .windows(3)
        .position(|w| w[0] == b'%' && w[1] == b'3' && w[2].eq_ignore_ascii_case(&b'b'));
    let raw = segment.iter().position(|&b| b == b';');
    [encoded, raw]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(segment.len())
}

/// Normalizes the path part of a request target (the query already split off, see
/// [`split_path_query`]) into the canonical form used for routing and policy.
///
/// Percent-encoded unreserved characters are decoded (`/a%62c` becomes `/abc`), other escapes
/// get uppercase hex digits (`%3a` becomes `%3A`), and printable ASCII that is not allowed raw
/// in a path is encoded (`|` becomes `%7C`). A single trailing slash is kept: `/a/` and `/a` are
/// different paths. Everything ambiguous is an error, see [`PathError`].
///
/// Returns a borrow of `raw` when it was already canonical.
///
/// # Errors
///
/// The first problem found scanning left to right, as a [`PathError`].
pub fn normalize_path(raw: &str) -> Result<NormalizedPath<'_>, PathError> {
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    let mut rewriter = Rewriter {
        raw,
        out: None,
        copied: 0,
    };
    let mut segment_start = 1;
    let mut at = 1;
    while let Some(&byte) = bytes.get(at) {
        match BYTE_CLASSES[usize::from(byte)] {
            ByteClass::Plain => at += 1,
            ByteClass::Slash => {
                check_segment(bytes, segment_start, at, false)?;
                at += 1;
                segment_start = at;
            }
            ByteClass::Percent => {
                match read_escape(bytes, at)? {
                    Escape::Decoded(decoded) => rewriter.replace(at, 3, &[decoded]),
                    Escape::Kept(byte) => {
                        let canonical = canonical_escape(byte);
                        if bytes.get(at..at + 3) != Some(&canonical[..]) {
                            rewriter.replace(at, 3, &canonical);
                        }
                    }
                }
                at += 3;
            }
            ByteClass::Encode => {
                rewriter.replace(at, 1, &canonical_escape(byte));
                at += 1;
            }
            ByteClass::Refuse(error) => return Err(error),
        }
    }
    check_segment(bytes, segment_start, bytes.len(), true)?;
    Ok(rewriter.finish())
}
