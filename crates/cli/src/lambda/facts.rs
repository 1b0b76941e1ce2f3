//! The facts of an API Gateway event, as `Policy::decide_ingress` asks for them: the credential
//! the request carries, verified here by the gateway's own verifiers, exactly as on a node.
//!
//! Rate limits are not counted here. On AWS, API Gateway's throttling and usage plans are the
//! limits (the AWS export writes septa's there), and one execution environment sees only the
//! share of the traffic Lambda happens to give it, so a bucket here would limit nothing anyone
//! declared.

use http::HeaderMap;
use septa_gateway::auth::Credentials;
use septa_manifest::{RateLimit, RouteAuth};
use septa_policy::{Authentication, CompiledRoute, IngressFacts, LimitOutcome, Principal};

/// What an API Gateway event establishes.
pub(crate) struct EventFacts<'a> {
    pub(crate) credentials: &'a Credentials,
    pub(crate) headers: &'a HeaderMap,
}

impl IngressFacts for EventFacts<'_> {
    fn gateway_limit(&mut self, _: &RateLimit) -> LimitOutcome {
        LimitOutcome::Admitted
    }

    fn refusal_budget(&mut self, _: &RateLimit) -> LimitOutcome {
        LimitOutcome::Admitted
    }

    fn authenticate(&mut self, _: &CompiledRoute, auth: &RouteAuth) -> Authentication {
        self.credentials.authenticate(auth, self.headers)
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
