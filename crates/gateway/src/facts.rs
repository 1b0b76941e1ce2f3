//! What the gateway establishes about a request for `Policy::decide_ingress`: whether its
//! credential verifies, and what the rate limiters say. The policy asks, in its order, only for
//! what a check needs.

use std::net::IpAddr;

use http::HeaderMap;
use septa_manifest::{RateLimit, RouteAuth};
use septa_policy::{Authentication, CompiledRoute, IngressFacts, LimitOutcome, Principal};

use crate::auth::Credentials;
use crate::limits::{LimitHeaders, RateLimits, key_of};

/// The facts of one request, from the gateway's verifiers and buckets.
pub(crate) struct RequestFacts<'g, 'r> {
    credentials: &'g Credentials,
    limits: &'g RateLimits,
    client: IpAddr,
    headers: &'r HeaderMap,
    /// What the limiters want sent with the response or the refusal.
    pub(crate) limit_headers: LimitHeaders,
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
            client,
            headers,
            limit_headers: LimitHeaders::default(),
        }
    }
}

impl IngressFacts for RequestFacts<'_, '_> {
    fn gateway_limit(&mut self, _: &RateLimit) -> LimitOutcome {
        self.limits.count_gateway()
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
        let key = key_of(limit, self.client, principal, self.headers);
        self.limits
            .count_route(route.id.as_str(), &key, &mut self.limit_headers)
    }
}
