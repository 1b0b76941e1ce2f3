//! What the gateway establishes about a request for `Policy::decide_ingress`: whether its
//! credential verifies, and what the rate limiters and the client's refusal budget say. The
//! policy asks, in its order, only for what a check needs.

use std::net::IpAddr;

use http::HeaderMap;
use septa_manifest::{AuthMethod, RateLimit, RouteAuth};
use septa_policy::{
    Authentication, Authenticator, CompiledRoute, CredentialProblem, IngressFacts, LimitOutcome,
    Principal,
};

use crate::auth::Credentials;
use crate::limits::{LimitHeaders, RateLimits, key_of};

/// The facts of one request, from the gateway's verifiers and buckets.
pub(crate) struct RequestFacts<'g, 'r> {
    credentials: &'g Credentials,
    limits: &'g RateLimits,
    /// The client's key in the tables keyed by client (`ip:…`).
    client: String,
    headers: &'r HeaderMap,
    /// What the limiters want sent with the response or the refusal.
    pub(crate) limit_headers: LimitHeaders,
    /// False when the client is past its refusal budget and this refusal is one the flow log
    /// counts in a later aggregate record instead of recording it.
    pub(crate) recorded: bool,
}

impl<'g, 'r> RequestFacts<'g, 'r> {
    /// The facts of a request from `client` with `headers` (its `septa-*` headers already
    /// stripped).
    pub(crate) fn new(
        credentials: &'g Credentials,
        limits: &'g RateLimits,
        client: IpAddr,
        headers: &'r HeaderMap,
    ) -> Self {
        Self {
            credentials,
            limits,
            client: limits.client_key(client),
            headers,
            limit_headers: LimitHeaders::default(),
            recorded: true,
        }
    }
}

impl IngressFacts for RequestFacts<'_, '_> {
    fn gateway_limit(&mut self, _: &RateLimit) -> LimitOutcome {
        self.limits
            .count_gateway(&self.client, &mut self.limit_headers)
    }

    fn refusal_budget(&mut self, _: &RateLimit) -> LimitOutcome {
        let budget = self
            .limits
            .count_refusal(&self.client, &mut self.limit_headers);
        self.recorded = budget.recorded;
        budget.outcome
    }

    fn authenticate(&mut self, _: &CompiledRoute, auth: &RouteAuth) -> Authentication {
        self.credentials.authenticate(auth, self.headers)
    }

    fn route_limit(
        &mut self,
        route: &CompiledRoute,
        limit: &RateLimit,
        principal: Option<&Principal>,
    ) -> LimitOutcome {
        let key = key_of(limit, &self.client, principal, self.headers);
        self.limits
            .count_route(route.id.as_str(), &key, &mut self.limit_headers)
    }
}

/// The credential of a request another node's gateway admitted and forwarded: the principal
/// that gateway verified, handed over inside the mutual-TLS session (never read from a client's
/// headers, and the credential not verified twice). Its rate limits and refusal budget were
/// counted by the gateway that received it (limits are per node: a request counts on the node
/// its client reached), so it is decided as
/// [`LimitsCountedElsewhere`](septa_policy::LimitsCountedElsewhere). Scopes and claims are
/// checked again against this node's revision.
pub(crate) struct ForwardedPrincipal<'f> {
    pub(crate) principal: Option<&'f Principal>,
}

impl Authenticator for ForwardedPrincipal<'_> {
    fn authenticate(&mut self, _: &CompiledRoute, auth: &RouteAuth) -> Authentication {
        // A token's principal carries claims, an API key's does not: one verified by the other
        // kind of credential than this node's route asks for is none.
        let wants_claims = matches!(auth.method, AuthMethod::Jwt(_));
        match self.principal {
            Some(p) if p.claims.is_some() == wants_claims => Authentication::Verified(p.clone()),
            _ => Authentication::Failed(CredentialProblem::Missing),
        }
    }
}
