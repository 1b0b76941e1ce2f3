//! What a matching pattern captured from a path, read lazily so a lookup allocates nothing.

use super::pattern::{PathPattern, Segment};

/// The parameters a pattern captured from a path, read lazily without allocating.
///
/// Obtained from [`PathPattern::captures`] or a router lookup, so the path is known to match.
#[derive(Debug, Clone, Copy)]
pub struct Captures<'p, 'a> {
    pattern: &'p PathPattern,
    path: &'a str,
}

/// Iterator over `(name, value)` pairs of [`Captures`], in pattern order.
#[derive(Debug, Clone)]
pub struct CapturesIter<'p, 'a> {
    segments: std::slice::Iter<'p, Segment>,
    path: PathSegments<'a>,
}

/// The segments of a path that starts with `/`: `/` is one empty segment, `/a/` is `a` and an
/// empty segment.
#[derive(Debug, Clone)]
pub(crate) struct PathSegments<'a> {
    path: &'a str,
    /// Offset of the `/` before the next segment, or the path length when none is left.
    position: usize,
}

impl<'a> PathSegments<'a> {
    pub(crate) fn new(path: &'a str) -> Self {
        Self { path, position: 0 }
    }

    /// Offset just past the last segment returned.
    pub(crate) fn position(&self) -> usize {
        self.position
    }
}

impl<'a> Iterator for PathSegments<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let rest = self.path.get(self.position..)?.strip_prefix('/')?;
        // A byte search: `/` is ASCII, so it never falls inside a character.
        let end = rest.bytes().position(|b| b == b'/').unwrap_or(rest.len());
        let segment = rest.get(..end).unwrap_or(rest);
        self.position += 1 + segment.len();
        Some(segment)
    }
}

impl<'p, 'a> Captures<'p, 'a> {
    pub(crate) fn new(pattern: &'p PathPattern, path: &'a str) -> Self {
        Self { pattern, path }
    }

    /// The value captured for the parameter `name`.
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.iter()
            .find_map(|(found, value)| (found == name).then_some(value))
    }

    /// The `(name, value)` pairs, in pattern order.
    pub fn iter(&self) -> CapturesIter<'p, 'a> {
        CapturesIter {
            segments: self.pattern.segments().iter(),
            path: PathSegments::new(self.path),
        }
    }

    /// The number of parameters captured.
    pub fn len(&self) -> usize {
        self.pattern.param_count()
    }

    /// Whether the pattern has no parameters.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What the wildcard matched, from the `/` after the prefix (`/a/b` for `/static/...` on
    /// `/static/a/b`, `""` on `/static`); `None` when the pattern has no wildcard.
    pub fn rest(&self) -> Option<&'a str> {
        if !self.pattern.has_wildcard() {
            return None;
        }
        let end = self.pattern.match_end(self.path)?;
        self.path.get(end..)
    }
}

impl<'p, 'a> IntoIterator for Captures<'p, 'a> {
    type Item = (&'p str, &'a str);
    type IntoIter = CapturesIter<'p, 'a>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<'p, 'a> IntoIterator for &Captures<'p, 'a> {
    type Item = (&'p str, &'a str);
    type IntoIter = CapturesIter<'p, 'a>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<'p, 'a> Iterator for CapturesIter<'p, 'a> {
    type Item = (&'p str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let segment = self.segments.next()?;
            let value = self.path.next()?;
            if let Segment::Param(name) = segment {
                return Some((name, value));
            }
        }
    }
}
