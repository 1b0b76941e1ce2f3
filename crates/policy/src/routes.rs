//! The gateway's routes, compiled: a path trie of routes, each with the checks it asks for, and
//! the lookup that finds a request's route.

use std::time::Duration;

use ipnet::IpNet;
use septa_manifest::{Manifest, Methods, Mode, Name, RateLimit, RouteAuth};

use crate::engine::{CompileError, pattern};
use crate::functions::FunctionId;
use crate::path::{PathPattern, PathRouter, RouterError};

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
    /// No route matched the path.
    NotFound,
}

/// The routes, by path pattern; routes sharing a pattern are told apart by method.
pub(crate) type RouteTable = PathRouter<Vec<CompiledRoute>>;

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
    match PathRouter::new(by_pattern) {
        Ok(router) => Some(router),
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
            None
        }
    }
}

/// Finds the route of `method` on the normalized `path`.
pub(crate) fn lookup<'p>(routes: &'p RouteTable, method: &str, path: &str) -> RouteLookup<'p> {
    let Some(found) = routes.lookup(path) else {
        return RouteLookup::NotFound;
    };
    let Some(route) = found.value.iter().find(|r| r.methods.admits(method)) else {
        return match found.value.first() {
            Some(route) => RouteLookup::MethodNotAllowed { route },
            None => RouteLookup::NotFound,
        };
    };
    RouteLookup::Matched { route }
}

fn methods_overlap(a: &Methods, b: &Methods) -> bool {
    match (a, b) {
        (Methods::Any, _) | (_, Methods::Any) => true,
        (Methods::Only(a), Methods::Only(b)) => a.iter().any(|m| b.contains(m)),
    }
}
