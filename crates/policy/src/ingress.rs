//! Requests from the internet: [`Policy::decide_ingress`], the one decision of every request the
//! gateway receives, and the facts it asks the gateway for.
//!
//! The checks run in the order a request meets them: normalize the path, find the route (and
//! refuse a path a lenient router could read as a more guarded route's; a request refused so far
//! counts against its client's refusal budget), the gateway's own rate limit per client (before
//! anything costly), the route's source networks,
//! authentication, required scopes and claims, the route's rate limit (after authentication, so
//! a limit by principal or claim counts what the host established), and the declared body size.
//! The gateway owns the machinery that establishes facts — signature verification, key sets,
//! rate-limit buckets — and hands over what it found through [`IngressFacts`]; every verdict and
//! every word of a refusal is decided here.

use std::net::IpAddr;

use septa_manifest::{AuthMethod, Mode, RateLimit, RouteAuth};

use crate::decision::{Decision, RuleId, Verdict};
use crate::engine::Policy;
use crate::path::{NormalizedPath, normalize_path};
use crate::principal::Principal;
use crate::reason::{CredentialKind, CredentialProblem, LimitRefusal, LimitScope, Reason};
use crate::routes::{CompiledRoute, RouteLookup, lookup};

/// A request as the gateway received it.
#[derive(Clone, Copy, Debug)]
pub struct IngressRequest<'a> {
    /// The method.
    pub method: &'a str,
    /// The path as received, without its query; normalized by the decision.
    pub path: &'a str,
    /// The client address the gateway established (the peer, or what trusted proxies forwarded
    /// for).
    pub client: IpAddr,
    /// The body length the request declares, if it declares one.
    pub declared_length: Option<u64>,
    /// A segmentation probe: decided up to its route (where the network lets a request go, not
    /// whose credentials it carries), and never counted against a limit.
    pub probe: bool,
}

impl<'a> IngressRequest<'a> {
    /// A probe of where `method` on `path` from the internet would go.
    pub fn probe(method: &'a str, path: &'a str) -> Self {
        Self {
            method,
            path,
            client: IpAddr::from([0, 0, 0, 0]),
            declared_length: None,
            probe: true,
        }
    }
}

/// Whether a request authenticated, as the gateway's verifiers found.
#[derive(Clone, Debug)]
pub enum Authentication {
    /// The credential verified; this is who presented it.
    Verified(Principal),
    /// No credential, or one that did not verify.
    Failed(CredentialProblem),
}

/// What a rate limiter said about one more request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LimitOutcome {
    /// Counted and admitted.
    Admitted,
    /// Refused.
    Refused(LimitRefusal),
}

/// The facts only the gateway can establish, asked for by [`Policy::decide_ingress`] when, and
/// only when, a check needs them. A front end whose requests were counted against their limits
/// before they reached it establishes only the credential, through
/// [`LimitsCountedElsewhere`](crate::LimitsCountedElsewhere).
pub trait IngressFacts {
    /// Counts the request against `[gateway] rate_limit`, under its client's key.
    fn gateway_limit(&mut self, limit: &RateLimit) -> LimitOutcome;

    /// Counts a refusal of the request before any route's checks against its client's
    /// `[gateway] refusal_budget`.
    fn refusal_budget(&mut self, budget: &RateLimit) -> LimitOutcome;

    /// Verifies the credential the request carries for `route`, as `auth` asks.
    fn authenticate(&mut self, route: &CompiledRoute, auth: &RouteAuth) -> Authentication;

    /// Counts the request against `route`'s `limit`, keyed by `principal` when the key asks for
    /// what authentication established.
    fn route_limit(
        &mut self,
        route: &CompiledRoute,
        limit: &RateLimit,
        principal: Option<&Principal>,
    ) -> LimitOutcome;
}

/// The facts of a request that carries no credential and counts against no limit: what a probe
/// or an auditor decides with, for whom [`IngressRequest::probe`] consults no facts at all.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoFacts;

impl IngressFacts for NoFacts {
    fn gateway_limit(&mut self, _: &RateLimit) -> LimitOutcome {
        LimitOutcome::Admitted
    }

    fn refusal_budget(&mut self, _: &RateLimit) -> LimitOutcome {
        LimitOutcome::Admitted
    }

    fn authenticate(&mut self, _: &CompiledRoute, _: &RouteAuth) -> Authentication {
        Authentication::Failed(CredentialProblem::Missing)
    }

    fn route_limit(
        &mut self,
        _: &CompiledRoute,
        _: &RateLimit,
        _: Option<&Principal>,
    ) -> LimitOutcome {
        LimitOutcome::Admitted
    }
}

/// What [`Policy::decide_ingress`] decided, with what the gateway needs to carry it out.
#[derive(Debug)]
pub struct IngressDecision<'p, 'a> {
    /// The decision; its rule is the route whenever one matched the path, refusals included.
    pub decision: Decision,
    /// The route that matched the path, if any (for a method it does not admit, too).
    pub route: Option<&'p CompiledRoute>,
    /// The path in the one form routing, policy and the function see, when it normalized.
    pub path: Option<NormalizedPath<'a>>,
    /// Who authenticated, when the route asked and the credential verified.
    pub principal: Option<Principal>,
}

impl Policy {
    /// Decides a request from the internet: where it goes, and whether it may.
    ///
    /// Deny by default: the path must normalize and match a route that admits the method, and
    /// the request must pass each of the route's checks. A route in audit mode lets a request
    /// its own checks would refuse through as `audit`, naming the first such refusal; the path,
    /// the route, the gateway's rate limit and the body size are enforced in every mode.
    pub fn decide_ingress<'p, 'a>(
        &'p self,
        request: &IngressRequest<'a>,
        facts: &mut impl IngressFacts,
    ) -> IngressDecision<'p, 'a> {
        // A decision that hands nobody on: a refusal, or a probe, which carries no credential.
        let unauthenticated = |decision, route, path| IngressDecision {
            decision,
            route,
            path,
            principal: None,
        };
        let path = match normalize_path(request.path) {
            Ok(path) => path,
            Err(e) => {
                let reason = Reason::InvalidPath(e.to_string());
                let decision = self.unrouted_refusal(request.probe, reason, None, facts);
                return unauthenticated(decision, None, None);
            }
        };
        let route = match lookup(&self.routes, request.method, path.as_str()) {
            RouteLookup::Matched { route } => route,
            RouteLookup::MethodNotAllowed { route } => {
                let reason = Reason::RouteMethodNotAllowed {
                    route: route.id.clone(),
                    method: request.method.to_owned(),
                };
                let decision = self.unrouted_refusal(request.probe, reason, Some(route), facts);
                return unauthenticated(decision, Some(route), Some(path));
            }
            RouteLookup::Ambiguous { route, other } => {
                let reason = Reason::AmbiguousPath {
                    path: path.as_str().to_owned(),
                    route: route.id.clone(),
                    other: other.id.clone(),
                };
                return unauthenticated(refusal(route, reason), Some(route), Some(path));
            }
            RouteLookup::NotFound => {
                let reason = Reason::NoRoute {
                    path: path.as_str().to_owned(),
                };
                let decision = self.unrouted_refusal(request.probe, reason, None, facts);
                return unauthenticated(decision, None, Some(path));
            }
        };
        if request.probe {
            let decision = Decision::allow(RuleId::Route(route.id.clone()));
            return unauthenticated(decision, Some(route), Some(path));
        }
        let mut checks = Checks {
            audit: route.mode == Mode::Audit,
            would_refuse: None,
        };
        let mut principal = None;
        let decision = match self.check_route(request, route, facts, &mut checks, &mut principal) {
            Err(reason) => {
                return unauthenticated(refusal(route, reason), Some(route), Some(path));
            }
            Ok(()) => match checks.would_refuse {
                Some(reason) => Decision {
                    verdict: Verdict::Audit,
                    rule: Some(RuleId::Route(route.id.clone())),
                    reason,
                },
                None => Decision::allow(RuleId::Route(route.id.clone())),
            },
        };
        IngressDecision {
            decision,
            route: Some(route),
            path: Some(path),
            principal,
        }
    }

    /// Decides a request the connection layer could not read safely (ambiguous framing, say),
    /// described by `problem`: refused, and counted against its client's refusal budget like a
    /// request for no route. The connection layer has answered it already; the decision is what
    /// the flow log records.
    pub fn decide_unreadable(&self, problem: String, facts: &mut impl IngressFacts) -> Decision {
        self.unrouted_refusal(false, Reason::MalformedRequest(problem), None, facts)
    }

    /// A refusal of `reason`, found before any route's checks (the request names no route, or
    /// none that admits it), counted against the client's refusal budget: a client past it is
    /// refused `429` instead, so that scanning costs it something and the gateway can record
    /// its refusals in aggregate. A probe counts against nothing.
    fn unrouted_refusal(
        &self,
        probe: bool,
        reason: Reason,
        route: Option<&CompiledRoute>,
        facts: &mut impl IngressFacts,
    ) -> Decision {
        let budget = &self.gateway.refusal_budget;
        let outcome = match probe {
            true => LimitOutcome::Admitted,
            false => facts.refusal_budget(budget),
        };
        let reason = match outcome {
            LimitOutcome::Admitted => reason,
            LimitOutcome::Refused(refusal) => Reason::RateLimited {
                scope: Box::new(LimitScope::Refusals(budget.clone())),
                refusal,
            },
        };
        match route {
            Some(route) => refusal(route, reason),
            None => Decision::refuse(reason, false),
        }
    }

    /// Runs `route`'s checks in order, up to the first refusal audit mode does not let through.
    fn check_route(
        &self,
        request: &IngressRequest<'_>,
        route: &CompiledRoute,
        facts: &mut impl IngressFacts,
        checks: &mut Checks,
        principal: &mut Option<Principal>,
    ) -> Result<(), Reason> {
        if let Some(limit) = &self.gateway.rate_limit
            && let LimitOutcome::Refused(refusal) = facts.gateway_limit(limit)
        {
            let scope = Box::new(LimitScope::Gateway(limit.clone()));
            checks.fail(Reason::RateLimited { scope, refusal })?;
        }
        if !route.sources.is_empty() && !route.sources.iter().any(|n| n.contains(&request.client)) {
            checks.fail(Reason::SourceNotAdmitted {
                route: route.id.clone(),
                client: request.client,
            })?;
        }
        if let Some(auth) = &route.auth {
            match authorize(route, auth, facts) {
                Ok(who) => *principal = Some(who),
                Err(reason) => checks.fail(reason)?,
            }
        }
        if let Some(limit) = &route.rate_limit
            && let LimitOutcome::Refused(refusal) =
                facts.route_limit(route, limit, principal.as_ref())
        {
            let scope = Box::new(LimitScope::Route {
                route: route.id.clone(),
                limit: limit.clone(),
            });
            checks.fail(Reason::RateLimited { scope, refusal })?;
        }
        if let Some(length) = request
            .declared_length
            .filter(|l| *l > route.max_body_bytes)
        {
            checks.fail(Reason::BodyTooLarge {
                route: route.id.clone(),
                length,
                limit: route.max_body_bytes,
            })?;
        }
        Ok(())
    }
}

/// The checks of one routed request, folding what audit mode lets through.
struct Checks {
    /// Whether the route is in audit mode.
    audit: bool,
    /// The first refusal audit mode let through.
    would_refuse: Option<Reason>,
}

impl Checks {
    /// A check refused for `reason`: the refusal, unless the route is in audit mode and audit
    /// mode may let `reason` through, in which case it is remembered and the checks go on.
    fn fail(&mut self, reason: Reason) -> Result<(), Reason> {
        if self.audit && reason.is_auditable() {
            self.would_refuse.get_or_insert(reason);
            return Ok(());
        }
        Err(reason)
    }
}

/// A refusal of a request `route` matched: the route is its rule.
fn refusal(route: &CompiledRoute, reason: Reason) -> Decision {
    Decision {
        verdict: Verdict::Deny,
        rule: Some(RuleId::Route(route.id.clone())),
        reason,
    }
}

/// Authenticates and authorizes a request for `route`: the credential must verify, and a
/// token must carry every required scope and match every required claim.
fn authorize(
    route: &CompiledRoute,
    auth: &RouteAuth,
    facts: &mut impl IngressFacts,
) -> Result<Principal, Reason> {
    let credential = match auth.method {
        AuthMethod::Jwt(_) => CredentialKind::Jwt,
        AuthMethod::ApiKey(_) => CredentialKind::ApiKey,
    };
    let principal = match facts.authenticate(route, auth) {
        Authentication::Verified(principal) => principal,
        Authentication::Failed(problem) => {
            return Err(Reason::Unauthenticated {
                credential,
                problem,
            });
        }
    };
    let Some(claims) = &principal.claims else {
        return Ok(principal);
    };
    if let Some(missing) = auth
        .scopes
        .iter()
        .find(|s| !claims.scopes().any(|g| g == *s))
    {
        return Err(Reason::MissingScope {
            scope: missing.clone(),
            subject: claims.subject().to_owned(),
        });
    }
    if let Some(failed) = auth.claims.iter().find(|m| !claims.matches(m)) {
        return Err(Reason::ClaimMismatch {
            claim: failed.claim.clone(),
            wanted: failed.any_of.clone(),
            subject: claims.subject().to_owned(),
        });
    }
    Ok(principal)
}
