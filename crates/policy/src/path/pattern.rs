//! Path patterns shared by gateway routes and mesh allow rules.
//!
//! A pattern is a normalized path in which a whole segment may be a named parameter
//! (`/orders/{id}`), and whose last segment may be the wildcard `...` (`/static/...`: the prefix
//! itself and everything below it at a segment boundary). Patterns are validated once, when the
//! manifest is loaded; matching is then a walk over segments with no allocation.
//!
//! Literal segments are written in the canonical form [`normalize_path`] produces, so a literal
//! compares byte for byte with a normalized request path. A literal that normalization would
//! change, or could never produce, is refused at parse time rather than silently never matching.
//!
//! [`normalize_path`]: super::normalize_path

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use super::captures::{Captures, PathSegments};
use super::normalize::{Escape, PathError, canonical_escape, params_start, read_escape};

/// Why a path pattern was refused by [`PathPattern::parse`].
///
/// Offsets are byte offsets into the pattern text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, thiserror::Error)]
pub enum PatternError {
    /// The pattern is empty or does not start with `/`.
    #[error("path pattern does not start with `/`")]
    NotAbsolute,
    /// Two slashes in a row (`//`), or a segment that is empty before its `;` parameter
    /// (`/;x`), which request paths never contain.
    #[error("empty segment (`//`, or `;` opening a segment) at byte {offset}")]
    EmptySegment {
        /// Where the empty segment starts.
        offset: usize,
    },
    /// A whole segment is `.` or `..`, or is once its `;` parameter is stripped (`..;x`);
    /// request paths never contain one.
    #[error("dot segment (`.` or `..`, also before a `;` parameter) at byte {offset}")]
    DotSegment {
        /// Where the segment starts.
        offset: usize,
    },
    /// The wildcard `...` is followed by more of the pattern.
    #[error("wildcard `...` at byte {offset} is not the last segment")]
    WildcardNotLast {
        /// Where the wildcard starts.
        offset: usize,
    },
    /// A `{` or `}` that is not part of a whole-segment parameter such as `/{id}`.
    #[error("`{brace}` at byte {offset} does not enclose a whole segment (write `/{{name}}`)")]
    BraceNotWholeSegment {
        /// Where the brace is.
        offset: usize,
        /// The brace found.
        brace: char,
    },
    /// A parameter name outside `[a-z_][a-z0-9_]*`.
    #[error("invalid parameter name `{name}` at byte {offset} (expected `[a-z_][a-z0-9_]*`)")]
    InvalidParamName {
        /// Where the name starts.
        offset: usize,
        /// The name found.
        name: String,
    },
    /// The same parameter name twice in one pattern.
    #[error("duplicate parameter name `{name}` at byte {offset}")]
    DuplicateParam {
        /// Where the second occurrence starts.
        offset: usize,
        /// The repeated name.
        name: String,
    },
    /// A `*`, which is not a wildcard here; refused so that `/static/*` does not silently mean a
    /// literal star.
    #[error(
        "`*` at byte {offset} is not a wildcard; end the pattern with `/...` to match a prefix"
    )]
    Asterisk {
        /// Where the `*` is.
        offset: usize,
    },
    /// A character that is not allowed in a path segment.
    #[error("character `{character}` at byte {offset} is not allowed in a path pattern")]
    InvalidCharacter {
        /// Where the character starts.
        offset: usize,
        /// The character found.
        character: char,
    },
    /// A `%` not followed by two hex digits.
    #[error("invalid percent-encoding at byte {offset} (`%` not followed by two hex digits)")]
    InvalidPercentEncoding {
        /// Where the `%` is.
        offset: usize,
    },
    /// An escape that normalization rewrites (lowercase hex digits, an encoded unreserved
    /// character), so the pattern would never match as written.
    #[error("escape `{escape}` at byte {offset} is not canonical; write `{canonical}`")]
    NonCanonicalEscape {
        /// Where the escape starts.
        offset: usize,
        /// The escape found.
        escape: String,
        /// How normalized paths spell it.
        canonical: String,
    },
    /// An escape that normalization refuses in request paths (`%2F`, `%2E`, `%5C`, `%00`), so
    /// the pattern could never match.
    #[error("escape `{escape}` at byte {offset} never appears in a request path ({reason})")]
    ForbiddenEscape {
        /// Where the escape starts.
        offset: usize,
        /// The escape found.
        escape: String,
        /// Why request paths never contain it.
        reason: PathError,
    },
}

/// One segment of a pattern, before the optional trailing wildcard.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Segment {
    /// Matches exactly this text; `""` only as the last segment, for a trailing slash.
    Literal(Box<str>),
    /// Matches any one non-empty segment and captures it under this name.
    Param(Box<str>),
}

/// A validated path pattern: exact (`/api/checkout`), with whole-segment parameters
/// (`/orders/{id}`), and/or ending in the wildcard `/...`.
///
/// Compared, hashed and displayed as the original text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PathPattern {
    text: Box<str>,
    segments: Box<[Segment]>,
    wildcard: bool,
    prefix_len: usize,
}

/// How specific a pattern is, for "the most specific route wins".
///
/// Greater is more specific. Compared in this order: exact patterns first; then more literal
/// segments; then patterns without a wildcard over patterns with one; then more parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Specificity {
    exact: bool,
    literal_segments: usize,
    bounded: bool,
    param_segments: usize,
}

fn is_param_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'_'))
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'))
}

/// Whether `byte` may appear raw in a literal segment: RFC 3986 `pchar` without `%` (checked
/// as an escape) and without `*` (refused with its own message).
fn is_literal_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric()
        || matches!(
            byte,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
        )
}

/// Checks the literal segment `text[start..end]`.
fn check_literal(text: &str, start: usize, end: usize) -> Result<(), PatternError> {
    let bytes = text.as_bytes();
    let mut at = start;
    while at < end {
        let byte = bytes.get(at).copied().unwrap_or_default();
        if byte == b'%' {
            check_escape(text, at)?;
            at += 3;
        } else if byte == b'*' {
            return Err(PatternError::Asterisk { offset: at });
        } else if is_literal_byte(byte) {
            at += 1;
        } else {
            let character = text
                .get(at..)
                .and_then(|rest| rest.chars().next())
                .unwrap_or('\u{fffd}');
            return Err(PatternError::InvalidCharacter {
                offset: at,
                character,
            });
        }
    }
    Ok(())
}

/// Checks that the escape at `text[at..]` is spelled as normalized paths spell it.
fn check_escape(text: &str, at: usize) -> Result<(), PatternError> {
    let escape = || text.get(at..at + 3).unwrap_or_default().to_owned();
    match read_escape(text.as_bytes(), at) {
        Err(PathError::InvalidPercentEncoding) => {
            Err(PatternError::InvalidPercentEncoding { offset: at })
        }
        Err(reason) => Err(PatternError::ForbiddenEscape {
            offset: at,
            escape: escape(),
            reason,
        }),
        Ok(Escape::Decoded(byte)) => Err(PatternError::NonCanonicalEscape {
            offset: at,
            escape: escape(),
            canonical: char::from(byte).to_string(),
        }),
        Ok(Escape::Kept(byte)) => {
            let canonical = canonical_escape(byte);
            if text.as_bytes().get(at..at + 3) == Some(&canonical[..]) {
                Ok(())
            } else {
                Err(PatternError::NonCanonicalEscape {
                    offset: at,
                    escape: escape(),
                    canonical: canonical.iter().map(|&b| char::from(b)).collect(),
                })
            }
        }
    }
}

/// Parses the segment `text[start..end]` that is not the wildcard.
fn parse_segment(
    text: &str,
    start: usize,
    end: usize,
    last: bool,
    names: &mut HashSet<Box<str>>,
) -> Result<Segment, PatternError> {
    let segment = text.get(start..end).unwrap_or_default();
    match segment {
        "" if !last => return Err(PatternError::EmptySegment { offset: start }),
        "." | ".." => return Err(PatternError::DotSegment { offset: start }),
        "..." => return Err(PatternError::WildcardNotLast { offset: start }),
        _ => {}
    }
    // Normalization refuses a request path whose segment is empty or a dot segment once read up
    // to its parameters (`..;x`, `;x`), so a literal like that could never match.
    match segment.get(..params_start(segment.as_bytes())) {
        Some("." | "..") => return Err(PatternError::DotSegment { offset: start }),
        Some("") if !segment.is_empty() => {
            return Err(PatternError::EmptySegment { offset: start });
        }
        _ => {}
    }
    let brace = |offset_in_segment: usize, brace: char| PatternError::BraceNotWholeSegment {
        offset: start + offset_in_segment,
        brace,
    };
    if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
        if let Some(inner) = name.find(['{', '}']) {
            let found = if name.as_bytes().get(inner) == Some(&b'{') {
                '{'
            } else {
                '}'
            };
            return Err(brace(1 + inner, found));
        }
        if !is_param_name(name) {
            return Err(PatternError::InvalidParamName {
                offset: start + 1,
                name: name.to_owned(),
            });
        }
        if !names.insert(name.into()) {
            return Err(PatternError::DuplicateParam {
                offset: start + 1,
                name: name.to_owned(),
            });
        }
        return Ok(Segment::Param(name.into()));
    }
    if let Some(offset) = segment.find(['{', '}']) {
        let found = if segment.as_bytes().get(offset) == Some(&b'{') {
            '{'
        } else {
            '}'
        };
        return Err(brace(offset, found));
    }
    check_literal(text, start, end)?;
    Ok(Segment::Literal(segment.into()))
}

impl PathPattern {
    /// Parses and validates a pattern.
    ///
    /// # Errors
    ///
    /// The first problem found, left to right, as a [`PatternError`] naming its byte offset.
    pub fn parse(text: &str) -> Result<PathPattern, PatternError> {
        if !text.starts_with('/') {
            return Err(PatternError::NotAbsolute);
        }
        let mut segments = Vec::new();
        let mut names = HashSet::new();
        let mut wildcard = false;
        let mut prefix_len = None;
        let mut start = 1;
        loop {
            let end = text
                .get(start..)
                .and_then(|rest| rest.find('/'))
                .map_or(text.len(), |i| start + i);
            let last = end == text.len();
            if last && text.get(start..end) == Some("...") {
                wildcard = true;
                // The prefix of `/static/...` is `/static`, which it matches; of `/...`, `/`.
                prefix_len.get_or_insert((start - 1).max(1));
                break;
            }
            let segment = parse_segment(text, start, end, last, &mut names)?;
            if matches!(segment, Segment::Param(_)) {
                prefix_len.get_or_insert(start);
            }
            segments.push(segment);
            if last {
                break;
            }
            start = end + 1;
        }
        Ok(PathPattern {
            text: text.into(),
            segments: segments.into_boxed_slice(),
            wildcard,
            prefix_len: prefix_len.unwrap_or(text.len()),
        })
    }

    /// The pattern text as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// What the pattern holds on the heap, in bytes.
    pub(crate) fn heap_bytes(&self) -> usize {
        let segment = |s: &Segment| match s {
            Segment::Literal(text) | Segment::Param(text) => text.len(),
        };
        self.text.len()
            + self.segments.len() * std::mem::size_of::<Segment>()
            + self.segments.iter().map(segment).sum::<usize>()
    }

    /// Whether the pattern matches one path only: no parameter, no wildcard.
    pub fn is_exact(&self) -> bool {
        !self.wildcard && self.param_count() == 0
    }

    /// Whether the pattern ends in the wildcard `/...`.
    pub fn has_wildcard(&self) -> bool {
        self.wildcard
    }

    /// The literal text every matching path starts with: the pattern up to its first parameter
    /// or wildcard (`/orders/` for `/orders/{id}`, `/static` for `/static/...`, `/` for `/...`),
    /// or the whole pattern when it is exact.
    pub fn literal_prefix(&self) -> &str {
        self.text.get(..self.prefix_len).unwrap_or("/")
    }

    /// The names of the parameters, in pattern order.
    pub fn param_names(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|segment| match segment {
            Segment::Param(name) => Some(&**name),
            Segment::Literal(_) => None,
        })
    }

    pub(crate) fn param_count(&self) -> usize {
        self.param_names().count()
    }

    /// How specific the pattern is; the greatest matching pattern wins a route lookup.
    pub fn specificity(&self) -> Specificity {
        let param_segments = self.param_count();
        Specificity {
            exact: self.is_exact(),
            literal_segments: self.segments.len() - param_segments,
            bounded: !self.wildcard,
            param_segments,
        }
    }

    pub(crate) fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Matches `path` and returns the offset where the wildcard's remainder starts.
    pub(crate) fn match_end(&self, path: &str) -> Option<usize> {
        if !path.starts_with('/') {
            return None;
        }
        let mut path_segments = PathSegments::new(path);
        for segment in &self.segments {
            let found = path_segments.next()?;
            let matched = match segment {
                Segment::Literal(literal) => **literal == *found,
                Segment::Param(_) => !found.is_empty(),
            };
            if !matched {
                return None;
            }
        }
        let end = path_segments.position();
        (self.wildcard || end == path.len()).then_some(end)
    }

    /// Whether the pattern matches `normalized_path`, a path returned by
    /// [`normalize_path`](super::normalize_path).
    pub fn matches(&self, normalized_path: &str) -> bool {
        self.match_end(normalized_path).is_some()
    }

    /// The parameters captured from `path`, or `None` when the pattern does not match it.
    pub fn captures<'a>(&self, path: &'a str) -> Option<Captures<'_, 'a>> {
        self.match_end(path).map(|_| Captures::new(self, path))
    }

    /// Whether every path `other` matches is also matched by `self`.
    ///
    /// Exact for this pattern language: `true` if and only if `other`'s paths are a subset of
    /// `self`'s. Used to find rules shadowed by broader ones.
    pub fn covers(&self, other: &PathPattern) -> bool {
        let covers_segment = |mine: &Segment, theirs: &Segment| match (mine, theirs) {
            (Segment::Literal(a), Segment::Literal(b)) => a == b,
            (Segment::Param(_), Segment::Literal(b)) => !b.is_empty(),
            (Segment::Param(_), Segment::Param(_)) => true,
            (Segment::Literal(_), Segment::Param(_)) => false,
        };
        let length_fits = if self.wildcard {
            other.segments.len() >= self.segments.len()
        } else {
            !other.wildcard && other.segments.len() == self.segments.len()
        };
        length_fits
            && self
                .segments
                .iter()
                .zip(other.segments.iter())
                .all(|(a, b)| covers_segment(a, b))
    }

    /// Whether some path is matched by both patterns.
    pub fn overlaps(&self, other: &PathPattern) -> bool {
        self.overlap_example(other).is_some()
    }

    /// A path both patterns match, or `None` when they are disjoint.
    pub fn overlap_example(&self, other: &PathPattern) -> Option<String> {
        let (short, long) = if self.segments.len() <= other.segments.len() {
            (self, other)
        } else {
            (other, self)
        };
        if short.segments.len() < long.segments.len() && !short.wildcard {
            return None;
        }
        let mut example = String::new();
        for (index, segment) in long.segments.iter().enumerate() {
            let text = match (short.segments.get(index), segment) {
                (Some(Segment::Literal(a)), Segment::Literal(b)) if a != b => return None,
                (Some(Segment::Literal(a)), Segment::Param(_))
                | (Some(Segment::Param(_)), Segment::Literal(a))
                    if a.is_empty() =>
                {
                    return None;
                }
                (Some(Segment::Literal(a)), _) => &**a,
                (_, Segment::Literal(b)) => &**b,
                (_, Segment::Param(_)) => "x",
            };
            example.push('/');
            example.push_str(text);
        }
        if example.is_empty() {
            example.push('/');
        }
        Some(example)
    }
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for PathPattern {
    type Err = PatternError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}
