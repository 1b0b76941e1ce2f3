//! The facts of an API Gateway event, as `Policy::decide_ingress` asks for them: the credential
//! the request carries, verified here by the gateway's own verifiers, exactly as on a node.
//!
//! Rate limits are not counted here: an event is decided as
//! [`LimitsCountedElsewhere`](septa_policy::LimitsCountedElsewhere). On AWS, API Gateway's
//! throttling and usage plans are the limits (the AWS export writes septa's there), and one
//! execution environment sees only the share of the traffic Lambda happens to give it, so a
//! bucket here would limit nothing anyone declared.

use http::HeaderMap;
use septa_gateway::auth::Credentials;
use septa_manifest::RouteAuth;
use septa_policy::{Authentication, Authenticator, CompiledRoute};

/// The credential an API Gateway event carries, and the verifiers that check it.
pub(crate) struct EventCredential<'a> {
    pub(crate) credentials: &'a Credentials,
    pub(crate) headers: &'a HeaderMap,
}

impl Authenticator for EventCredential<'_> {
    fn authenticate(&mut self, _: &CompiledRoute, auth: &RouteAuth) -> Authentication {
        self.credentials.authenticate(auth, self.headers)
    }
}
