//! The facts of a request whose rate limits were counted before it got here: one another node's
//! gateway received and forwarded, or one API Gateway admitted to a Lambda function. Counting it
//! again would count it twice, or count a share of the traffic no limit was declared for, so
//! every limit admits and only the credential is established here.
//!
//! Which front ends skip counting is said by wrapping their [`Authenticator`] in
//! [`LimitsCountedElsewhere`], in one place, rather than by each writing its own admitting
//! [`IngressFacts`]: a search for the name finds them all.

use septa_manifest::{RateLimit, RouteAuth};

use crate::ingress::{Authentication, IngressFacts, LimitOutcome};
use crate::principal::Principal;
use crate::routes::CompiledRoute;

/// Establishes whether a request's credential verifies: the one fact of [`IngressFacts`] a
/// front end whose limits are counted elsewhere still establishes itself.
pub trait Authenticator {
    /// Verifies the credential the request carries for `route`, as `auth` asks.
    fn authenticate(&mut self, route: &CompiledRoute, auth: &RouteAuth) -> Authentication;
}

/// [`IngressFacts`] for a request whose gateway limit, refusal budget and route limits were
/// counted before it arrived: every limit admits it, and `A` verifies its credential.
#[derive(Clone, Copy, Debug)]
pub struct LimitsCountedElsewhere<A>(pub A);

impl<A: Authenticator> IngressFacts for LimitsCountedElsewhere<A> {
    fn gateway_limit(&mut self, _: &RateLimit) -> LimitOutcome {
        LimitOutcome::Admitted
    }

    fn refusal_budget(&mut self, _: &RateLimit) -> LimitOutcome {
        LimitOutcome::Admitted
    }

    fn authenticate(&mut self, route: &CompiledRoute, auth: &RouteAuth) -> Authentication {
        self.0.authenticate(route, auth)
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
