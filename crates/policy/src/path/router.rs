//! A path router: the most specific of a set of [`PathPattern`]s that matches a path, found
//! through a segment trie instead of a scan of every pattern.
//!
//! Precedence is [`PathPattern::specificity`]. Two patterns that are equally specific and match
//! a common path would make the winner depend on build order, so the router refuses them when it
//! is built; then the most specific match of any path is unique.

use std::collections::HashMap;

use super::captures::{Captures, PathSegments};
use super::pattern::{PathPattern, Segment, Specificity};

/// Why a [`PathRouter`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouterError {
    /// The same pattern was given twice.
    #[error("duplicate path pattern `{0}`")]
    DuplicatePattern(PathPattern),
    /// Two patterns are equally specific and both match `example`, so neither can win.
    #[error(
        "path patterns `{first}` and `{second}` are equally specific and both match `{example}`"
    )]
    AmbiguousRoutes {
        /// The pattern given first.
        first: PathPattern,
        /// The pattern given second.
        second: PathPattern,
        /// A path both match.
        example: String,
    },
}

/// The result of [`PathRouter::lookup`].
#[derive(Debug)]
pub struct PathMatch<'r, 'a, T> {
    /// The value stored with the winning pattern.
    pub value: &'r T,
    /// The winning pattern.
    pub pattern: &'r PathPattern,
    /// The parameters it captured from the path.
    pub captures: Captures<'r, 'a>,
}

#[derive(Debug, Clone)]
struct Route<T> {
    pattern: PathPattern,
    value: T,
    specificity: Specificity,
}

/// A trie node: the routes reachable after the segments on the way here.
#[derive(Debug, Clone, Default)]
struct Node {
    /// Children by literal segment, sorted for binary search.
    literals: Vec<(Box<str>, usize)>,
    /// The child for a parameter segment, whatever its name.
    param: Option<usize>,
    /// The route whose pattern ends here.
    exact: Option<usize>,
    /// The route whose pattern ends here with `/...`.
    wildcard: Option<usize>,
}

impl Node {
    fn literal(&self, segment: &str) -> Option<usize> {
        self.literals
            .binary_search_by(|(literal, _)| (**literal).cmp(segment))
            .ok()
            .and_then(|index| self.literals.get(index))
            .map(|&(_, child)| child)
    }
}

/// Maps paths to values by the most specific matching [`PathPattern`].
#[derive(Debug, Clone)]
pub struct PathRouter<T> {
    routes: Vec<Route<T>>,
    nodes: Vec<Node>,
}

impl<T> PathRouter<T> {
    /// Builds a router from `(pattern, value)` pairs.
    ///
    /// # Errors
    ///
    /// [`RouterError::DuplicatePattern`] when a pattern repeats, and
    /// [`RouterError::AmbiguousRoutes`] when two patterns are equally specific and overlap (such
    /// as `/a/{x}` and `/a/{y}`, or `/a/{x}/c` and `/a/b/{y}`).
    pub fn new(routes: impl IntoIterator<Item = (PathPattern, T)>) -> Result<Self, RouterError> {
        let routes: Vec<Route<T>> = routes
            .into_iter()
            .map(|(pattern, value)| Route {
                specificity: pattern.specificity(),
                pattern,
                value,
            })
            .collect();
        check_unambiguous(&routes)?;
        let mut router = PathRouter {
            routes,
            nodes: vec![Node::default()],
        };
        for index in 0..router.routes.len() {
            router.insert(index)?;
        }
        Ok(router)
    }

    fn insert(&mut self, index: usize) -> Result<(), RouterError> {
        let Some(route) = self.routes.get(index) else {
            return Ok(());
        };
        let mut node = 0;
        for segment in route.pattern.segments() {
            let next_free = self.nodes.len();
            let Some(current) = self.nodes.get_mut(node) else {
                return Ok(());
            };
            node = match segment {
                Segment::Param(_) => *current.param.get_or_insert(next_free),
                Segment::Literal(literal) => {
                    match current
                        .literals
                        .binary_search_by(|(l, _)| (**l).cmp(literal))
                    {
                        Ok(found) => current.literals.get(found).map_or(next_free, |&(_, c)| c),
                        Err(at) => {
                            current.literals.insert(at, (literal.clone(), next_free));
                            next_free
                        }
                    }
                }
            };
            if node == next_free {
                self.nodes.push(Node::default());
            }
        }
        let Some(end) = self.nodes.get_mut(node) else {
            return Ok(());
        };
        let slot = if route.pattern.has_wildcard() {
            &mut end.wildcard
        } else {
            &mut end.exact
        };
        match (*slot, route) {
            // Same shape as an earlier pattern; `check_unambiguous` reports this first, so this
            // is only a guard against the two checks drifting apart.
            (Some(earlier), route) => match self.routes.get(earlier) {
                Some(earlier) => Err(ambiguous(earlier, route)),
                None => Ok(()),
            },
            (None, _) => {
                *slot = Some(index);
                Ok(())
            }
        }
    }

    /// The value of the most specific pattern matching `path`, a path returned by
    /// [`normalize_path`](super::normalize_path), with the parameters it captured.
    pub fn lookup<'r, 'a>(&'r self, path: &'a str) -> Option<PathMatch<'r, 'a, T>> {
        if !path.starts_with('/') {
            return None;
        }
        let mut best = None;
        self.search(0, path, 0, &mut best);
        let route = self.routes.get(best?)?;
        Some(PathMatch {
            value: &route.value,
            pattern: &route.pattern,
            captures: Captures::new(&route.pattern, path),
        })
    }

    /// Visits every trie node the path can reach from `node`, `position` being where the
    /// unconsumed part of the path starts, and keeps the most specific route seen. Each node is
    /// visited at most once, so the cost is bounded by the patterns that share the path's shape,
    /// not by the number of patterns.
    fn search(&self, node: usize, path: &str, position: usize, best: &mut Option<usize>) {
        let Some(current) = self.nodes.get(node) else {
            return;
        };
        if let Some(route) = current.wildcard {
            self.offer(route, best);
        }
        let mut rest = PathSegments::new(path.get(position..).unwrap_or_default());
        let Some(segment) = rest.next() else {
            if let Some(route) = current.exact {
                self.offer(route, best);
            }
            return;
        };
        let next = position + rest.position();
        if let Some(child) = current.literal(segment) {
            self.search(child, path, next, best);
        }
        if let (Some(child), false) = (current.param, segment.is_empty()) {
            self.search(child, path, next, best);
        }
    }

    fn offer(&self, candidate: usize, best: &mut Option<usize>) {
        let specificity = |index: usize| self.routes.get(index).map(|route| route.specificity);
        if best.is_none_or(|current| specificity(candidate) > specificity(current)) {
            *best = Some(candidate);
        }
    }

    /// The `(pattern, value)` pairs, in the order given to [`PathRouter::new`].
    pub fn routes(&self) -> impl Iterator<Item = (&PathPattern, &T)> {
        self.routes
            .iter()
            .map(|route| (&route.pattern, &route.value))
    }

    /// The `index`th `(pattern, value)` pair, in the order given to [`PathRouter::new`].
    pub fn route(&self, index: usize) -> Option<(&PathPattern, &T)> {
        self.routes
            .get(index)
            .map(|route| (&route.pattern, &route.value))
    }

    /// The number of patterns.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether the router has no patterns.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

fn ambiguous<T>(first: &Route<T>, second: &Route<T>) -> RouterError {
    if first.pattern == second.pattern {
        return RouterError::DuplicatePattern(first.pattern.clone());
    }
    RouterError::AmbiguousRoutes {
        first: first.pattern.clone(),
        second: second.pattern.clone(),
        example: first
            .pattern
            .overlap_example(&second.pattern)
            .unwrap_or_default(),
    }
}

/// Refuses duplicates, and equally specific patterns that overlap.
///
/// Exact patterns overlap only when they are equal (literals are canonical), so they are checked
/// with a set; the others are compared pairwise within their specificity class, at build time.
fn check_unambiguous<T>(routes: &[Route<T>]) -> Result<(), RouterError> {
    let mut exact: HashMap<&str, &Route<T>> = HashMap::new();
    let mut classes: HashMap<Specificity, Vec<(usize, &Route<T>)>> = HashMap::new();
    for (index, route) in routes.iter().enumerate() {
        if route.pattern.is_exact() {
            if let Some(earlier) = exact.insert(route.pattern.as_str(), route) {
                return Err(ambiguous(earlier, route));
            }
        } else {
            classes
                .entry(route.specificity)
                .or_default()
                .push((index, route));
        }
    }
    // Report the conflict whose later pattern comes first in the input, whatever the map order.
    let mut conflict: Option<(usize, RouterError)> = None;
    for class in classes.values() {
        for (position, &(index, later)) in class.iter().enumerate() {
            if conflict.as_ref().is_some_and(|(first, _)| *first <= index) {
                break;
            }
            let clash = class.iter().take(position).find(|(_, earlier)| {
                earlier.pattern == later.pattern || earlier.pattern.overlaps(&later.pattern)
            });
            if let Some((_, earlier)) = clash {
                conflict = Some((index, ambiguous(earlier, later)));
                break;
            }
        }
    }
    conflict.map_or(Ok(()), |(_, error)| Err(error))
}
