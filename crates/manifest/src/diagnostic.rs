//! Errors that point into `septa.toml`: file, line, column and what was expected.
//!
//! Every problem found while loading a manifest becomes one [`Diagnostic`]; loading collects
//! them all so `septa check` can report every mistake at once instead of one per run.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// A 1-based line and column in the manifest file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    /// 1-based line number.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub col: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// Maps byte offsets in the manifest text to line and column.
#[derive(Clone, Debug)]
pub(crate) struct LineIndex {
    line_starts: Vec<usize>,
    text: String,
}

impl LineIndex {
    pub(crate) fn new(text: &str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self {
            line_starts,
            text: text.to_owned(),
        }
    }

    pub(crate) fn location(&self, offset: usize) -> Location {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let start = self
            .line_starts
            .get(line.saturating_sub(1))
            .copied()
            .unwrap_or(0);
        let col = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count())
            + 1;
        Location { line, col }
    }

    pub(crate) fn span_location(&self, span: &Range<usize>) -> Location {
        self.location(span.start)
    }
}

/// One problem in a manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Where it is, when the problem has a position.
    pub location: Option<Location>,
    /// What is wrong, lowercase, user input in backticks.
    pub message: String,
    /// What would fix it, when we can say.
    pub help: Option<String>,
}

impl Diagnostic {
    /// A problem at a position.
    pub fn at(location: Location, message: impl Into<String>) -> Self {
        Self {
            location: Some(location),
            message: message.into(),
            help: None,
        }
    }

    /// A problem with no single position (for example a missing section).
    pub fn whole_file(message: impl Into<String>) -> Self {
        Self {
            location: None,
            message: message.into(),
            help: None,
        }
    }

    /// Adds a hint that says how to fix it.
    #[must_use]
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

/// Every problem found in one manifest file, sorted by position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostics {
    /// The manifest file the problems are in.
    pub file: PathBuf,
    /// The problems, in file order.
    pub items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub(crate) fn new(file: &Path, mut items: Vec<Diagnostic>) -> Self {
        items.sort_by_key(|d| d.location.unwrap_or_default());
        items.dedup();
        Self {
            file: file.to_owned(),
            items,
        }
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.items.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            match d.location {
                Some(loc) => write!(f, "{}:{loc}: error: {}", self.file.display(), d.message)?,
                None => write!(f, "{}: error: {}", self.file.display(), d.message)?,
            }
            if let Some(help) = &d.help {
                write!(f, "\n  help: {help}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// Levenshtein distance, for "did you mean" hints on short identifiers.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The closest known name to `unknown`, if one is close enough to be a likely typo.
pub(crate) fn did_you_mean<'a>(
    unknown: &str,
    known: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    known
        .into_iter()
        .map(|k| (edit_distance(unknown, k), k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_are_one_based_and_count_characters() {
        let idx = LineIndex::new("ab\nçd = 1\n");
        assert_eq!(idx.location(0), Location { line: 1, col: 1 });
        assert_eq!(idx.location(3), Location { line: 2, col: 1 });
        // `ç` is two bytes but one column.
        assert_eq!(idx.location(5), Location { line: 2, col: 2 });
    }

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(
            did_you_mean("segmnt", ["segment", "group"]),
            Some("segment")
        );
        assert_eq!(did_you_mean("zzzzzz", ["segment", "group"]), None);
    }
}
