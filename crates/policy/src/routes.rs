//! The gateway's routes, compiled: a path trie of routes, each with the checks it asks for, and
//! the lookup that finds a request's route.
//!
//! A second trie holds the same patterns as a lenient router in a function reads them
//! ([`fold_pattern`]), so the lookup can tell when the route a path matches is not the only one
//! the function behind it could take the path for: `/api/ORDERS/` matches an open `/api/...`,
//! and a router that folds case and trailing slashes serves it as `/api/orders`. When that other
//! route guards more than the matched one ([`CompiledRoute::guards_at_least`]), the lookup says
//! so ([`RouteLookup::Ambiguous`]) and the request is refused.

use std::time::Duration;

use ipnet::IpNet;
use septa_manifest::{Manifest, Methods, Mode, Name, RateLimit, RouteAuth};

use crate::engine::{CompileError, pattern};
use crate::functions::FunctionId;
use crate::path::{PathPattern, PathRouter, RouterError, fold_path, fold_pattern};

/// A route as the gateway uses it: everything the ingress decision checks, compiled from the
/// manifest's `[[route]]`, so enforcers never read the manifest's routes themselves.
#[derive(Clone, Debug)]
pub struct CompiledRoute {
    /// The rule id ingress flows name.
    pub id: Name,
    /// The pattern.
    pub pattern: PathPattern,
    /// Admitted methods.
    pub methods: Methods,
    /// The function it dispatches to.
    pub function: FunctionId,
    /// Who may call it; `None` admits anyone.
    pub auth: Option<RouteAuth>,
    /// The largest request body it accepts, in bytes.
    pub max_body_bytes: u64,
    /// Its rate limit, if any.
    pub rate_limit: Option<RateLimit>,
    /// Client networks it admits; empty admits every address.
    pub sources: Vec<IpNet>,
    /// `audit` lets requests its checks would refuse through, recorded as `audit`.
    pub mode: Mode,
    /// How long a client has to send the whole request body.
    pub body_timeout: Duration,
}

impl CompiledRoute {
    /// Whether every request this route's checks admit, `other`'s checks admit too: it asks
    /// for at least `other`'s authentication (the same issuer or key set, every scope and claim
    /// `other` requires), admits clients only from within `other`'s `sources`, is enforced
    /// when `other` is, and has `other`'s rate limit if it has one. Body limits are not
    /// compared: they bound cost, not who may read.
    pub fn guards_at_least(&self, other: &CompiledRoute) -> bool {
        let auth = match (&self.auth, &other.auth) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some(mine), Some(theirs)) => {
                mine.method == theirs.method
                    && theirs.scopes.iter().all(|s| mine.scopes.contains(s))
                    && theirs.claims.iter().all(|c| mine.claims.contains(c))
            }
        };
        let sources = other.sources.is_empty()
            || (!self.sources.is_empty()
                && self
                    .sources
                    .iter()
                    .all(|mine| other.sources.iter().any(|theirs| theirs.contains(mine))));
        let mode = other.mode == Mode::Audit || self.mode == Mode::Enforce;
        let limit = other.rate_limit.is_none() || self.rate_limit == other.rate_limit;
        auth && sources && mode && limit
    }
}

/// Where a request's method and normalized path lead.
#[derive(Debug)]
pub(crate) enum RouteLookup<'p> {
    /// A route matched path and method.
    Matched {
        /// The route.
        route: &'p CompiledRoute,
    },
    /// A route matched the path, but not the method.
    MethodNotAllowed {
        /// The first route of the path.
        route: &'p CompiledRoute,
    },
    /// A route matched path and method, but a lenient router could read the path as `other`'s,
    /// and `other` guards more than `route`.
    Ambiguous {
        /// The route the path matched.
        route: &'p CompiledRoute,
        /// The more guarded route the folded path matches.
        other: &'p CompiledRoute,
    },
    /// No route matched the path.
    NotFound,
}

/// The routes, by path pattern (routes sharing a pattern are told apart by method), and the
/// same patterns folded.
#[derive(Clone, Debug)]
pub(crate) struct RouteTable {
    exact: PathRouter<Vec<CompiledRoute>>,
    /// Each folded pattern with the positions in `exact` of the patterns that fold to it.
    folded: PathRouter<Vec<usize>>,
}

impl RouteTable {
    /// Each pattern with its routes, in the order the manifest first names the pattern.
    pub(crate) fn routes(&self) -> impl Iterator<Item = (&PathPattern, &Vec<CompiledRoute>)> {
        self.exact.routes()
    }
}

/// Compiles the manifest's routes into a trie, or records why they cannot be (a bad pattern,
/// two routes admitting one method on one path, patterns that overlap ambiguously).
pub(crate) fn compile_routes(
    manifest: &Manifest,
    function_id: impl Fn(&str) -> Option<FunctionId>,
    errors: &mut Vec<CompileError>,
) -> Option<RouteTable> {
    // Routes sharing a pattern are told apart by method, like API Gateway integrations.
    let mut by_pattern: Vec<(PathPattern, Vec<CompiledRoute>)> = Vec::new();
    for r in &manifest.routes {
        let Some(pattern) = pattern(&r.path, errors) else {
            continue;
        };
        let Some(function) = function_id(r.function.as_str()) else {
            continue;
        };
        let route = CompiledRoute {
            id: r.id.clone(),
            pattern: pattern.clone(),
            methods: r.methods.clone(),
            function,
            auth: r.auth.clone(),
            max_body_bytes: r.max_body_bytes,
            rate_limit: r.rate_limit.clone(),
            sources: r.sources.clone(),
            mode: r.mode,
            body_timeout: Duration::from_millis(u64::from(r.body_timeout_ms)),
        };
        match by_pattern.iter_mut().find(|(p, _)| *p == pattern) {
            Some((_, same)) => {
                if let Some(clash) = same
                    .iter()
                    .find(|o| methods_overlap(&o.methods, &route.methods))
                {
                    errors.push(CompileError {
                        location: Some(r.location),
                        message: format!(
                            "route `{}` and route `{}` both admit the same method on path `{}`",
                            route.id, clash.id, r.path.text
                        ),
                    });
                }
                same.push(route);
            }
            None => by_pattern.push((pattern, vec![route])),
        }
    }
    let exact = match PathRouter::new(by_pattern) {
        Ok(router) => router,
        Err(e) => {
            // Point at the later of the two routes, the one whose addition made it ambiguous.
            let culprit = match &e {
                RouterError::DuplicatePattern(p) => p.as_str().to_owned(),
                RouterError::AmbiguousRoutes { second, .. } => second.as_str().to_owned(),
            };
            let location = manifest
                .routes
                .iter()
                .rev()
                .find(|r| r.path.text == culprit)
                .map(|r| r.path.location);
            errors.push(CompileError {
                location,
                message: format!("routes: {e}"),
            });
            return None;
        }
    };
    let folded = compile_folded(manifest, &exact, errors)?;
    Some(RouteTable { exact, folded })
}

/// The folded trie of `exact`'s patterns. Patterns that fold alike share an entry; patterns
/// that fold into an ambiguous pair (`/a/{x}/C` and `/A/b/{y}`), or into no pattern at all, are
/// refused, since no route could be told to be the one a lenient router means.
fn compile_folded(
    manifest: &Manifest,
    exact: &PathRouter<Vec<CompiledRoute>>,
    errors: &mut Vec<CompileError>,
) -> Option<PathRouter<Vec<usize>>> {
    let mut by_folded: Vec<(PathPattern, Vec<usize>)> = Vec::new();
    for (index, (pattern, _)) in exact.routes().enumerate() {
        // Without its folded form, respellings of the route could not be told apart from it.
        let Some(folded) = fold_pattern(pattern) else {
            let location = manifest
                .routes
                .iter()
                .find(|r| r.path.text == pattern.as_str())
                .map(|r| r.path.location);
            errors.push(CompileError {
                location,
                message: format!(
                    "route pattern `{pattern}` has a segment that a lenient router reads as `...` (a `;` parameter stripped, or `%25` decoded twice), which no pattern can spell; spell the segment otherwise"
                ),
            });
            continue;
        };
        match by_folded.iter_mut().find(|(p, _)| *p == folded) {
            Some((_, same)) => same.push(index),
            None => by_folded.push((folded, vec![index])),
        }
    }
    match PathRouter::new(by_folded) {
        Ok(router) => Some(router),
        Err(e) => {
            // Point at the last route whose pattern folds to the later of the two.
            let culprit = match &e {
                RouterError::DuplicatePattern(p) => p,
                RouterError::AmbiguousRoutes { second, .. } => second,
            };
            let location = manifest
                .routes
                .iter()
                .rev()
                .find(|r| {
                    PathPattern::parse(&r.path.text)
                        .ok()
                        .and_then(|p| fold_pattern(&p))
                        .is_some_and(|p| p == *culprit)
                })
                .map(|r| r.path.location);
            errors.push(CompileError {
                location,
                message: format!(
                    "routes: read the way a lenient router reads them (case, `;` parameters and a trailing slash folded), {e}; spell these patterns apart"
                ),
            });
            None
        }
    }
}

/// Finds the route of `method` on the normalized `path`, and whether the path is ambiguous.
pub(crate) fn lookup<'p>(routes: &'p RouteTable, method: &str, path: &str) -> RouteLookup<'p> {
    let Some(found) = routes.exact.lookup(path) else {
        return RouteLookup::NotFound;
    };
    let Some(route) = found.value.iter().find(|r| r.methods.admits(method)) else {
        return match found.value.first() {
            Some(route) => RouteLookup::MethodNotAllowed { route },
            None => RouteLookup::NotFound,
        };
    };
    match more_guarded(routes, route, path) {
        Some(other) => RouteLookup::Ambiguous { route, other },
        None => RouteLookup::Matched { route },
    }
}

/// A route of another pattern that `path`, folded, matches best, and that guards more than
/// `route`, whatever methods it admits (a lenient router does not ask).
fn more_guarded<'p>(
    routes: &'p RouteTable,
    route: &CompiledRoute,
    path: &str,
) -> Option<&'p CompiledRoute> {
    let folded = fold_path(path);
    let group = routes.folded.lookup(&folded)?;
    group
        .value
        .iter()
        .filter_map(|&index| routes.exact.route(index))
        .filter(|(pattern, _)| **pattern != route.pattern)
        .flat_map(|(_, others)| others)
        .find(|other| !route.guards_at_least(other))
}

fn methods_overlap(a: &Methods, b: &Methods) -> bool {
    match (a, b) {
        (Methods::Any, _) | (_, Methods::Any) => true,
        (Methods::Only(a), Methods::Only(b)) => a.iter().any(|m| b.contains(m)),
    }
}
