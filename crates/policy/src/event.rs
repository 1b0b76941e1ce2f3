//! Requests an AWS service delivers as Lambda events (`septa lambda`): decided again here, as a
//! callee's node decides a call another node forwards, so a function on AWS serves only what it
//! would serve on a node.
//!
//! - An API Gateway request is decided as the gateway decides it ([`Policy::decide_ingress`]:
//!   path, route, sources, credential, scopes and claims, body size), with the facts the Lambda
//!   runtime establishes (it verifies the credential the request carries itself; API Gateway's
//!   throttling and usage plans are the rate limits on AWS), and the route must lead to the
//!   function the event was delivered to.
//! - VPC Lattice has applied its auth policy; [`Policy::decide_lattice_event`] decides the call
//!   again with [`Policy::decide_mesh`], taking the caller from the IAM principal Lattice
//!   verified (never from a header the caller sets).

use std::fmt;

use crate::decision::Decision;
use crate::engine::Policy;
use crate::functions::FunctionId;
use crate::ingress::{IngressDecision, IngressFacts, IngressRequest};
use crate::path::{NormalizedPath, normalize_path};
use crate::reason::Reason;

/// Why a delivered event is refused before any rule is consulted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventRefusal {
    /// An API Gateway event whose route leads to another function than the one it was
    /// delivered to: API Gateway and the manifest disagree.
    RoutedElsewhere {
        /// The route the path took.
        route: String,
        /// The function that route leads to.
        function: String,
        /// The function the event was delivered to.
        delivered_to: String,
    },
    /// A VPC Lattice event whose verified principal names no function of the application.
    UnknownCaller {
        /// The principal as Lattice gave it, or what was missing.
        principal: String,
    },
}

impl fmt::Display for EventRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RoutedElsewhere {
                route,
                function,
                delivered_to,
            } => write!(
                f,
                "delivered to `{delivered_to}`, the request takes route `{route}` to `{function}`"
            ),
            Self::UnknownCaller { principal } => write!(
                f,
                "the VPC Lattice caller `{principal}` is no function of this application"
            ),
        }
    }
}

/// What [`Policy::decide_lattice_event`] decided.
#[derive(Debug)]
pub struct LatticeDecision<'a> {
    /// The decision.
    pub decision: Decision,
    /// The calling function, when the principal named one.
    pub caller: Option<FunctionId>,
    /// The path in the one form the policy and the function see, when it normalized.
    pub path: Option<NormalizedPath<'a>>,
}

impl Policy {
    /// Decides an API Gateway event delivered to `function` as the gateway decides `request`,
    /// asking `facts`; a route that leads to another function is refused.
    pub fn decide_gateway_event<'p, 'a>(
        &'p self,
        function: FunctionId,
        request: &IngressRequest<'a>,
        facts: &mut impl IngressFacts,
    ) -> IngressDecision<'p, 'a> {
        let mut decided = self.decide_ingress(request, facts);
        if let Some(route) = decided.route
            && decided.decision.verdict.permits()
            && route.function != function
        {
            let refusal = EventRefusal::RoutedElsewhere {
                route: route.id.to_string(),
                function: self.function(route.function).identity.clone(),
                delivered_to: self.function(function).identity.clone(),
            };
            decided.decision = Decision::refuse(Reason::Event(refusal), false);
        }
        decided
    }

    /// Decides a VPC Lattice event for `method` on `path` delivered to `callee`, from the
    /// Lambda function whose role session Lattice verified as `session` (`None` when the event
    /// names no IAM principal; `principal` is what it named, for the refusal). The session is
    /// a function of the application by its name, or by `APPLICATION-NAME`, as the AWS export
    /// names Lambda functions; then the call is decided as a mesh call.
    pub fn decide_lattice_event<'a>(
        &self,
        session: Option<&str>,
        principal: &str,
        callee: FunctionId,
        method: &str,
        path: &'a str,
    ) -> LatticeDecision<'a> {
        let caller = session.and_then(|s| self.lattice_caller(s));
        let Some(caller) = caller else {
            let refusal = EventRefusal::UnknownCaller {
                principal: principal.to_owned(),
            };
            return LatticeDecision {
                decision: Decision::refuse(Reason::Event(refusal), false),
                caller: None,
                path: None,
            };
        };
        let path = match normalize_path(path) {
            Ok(path) => path,
            Err(e) => {
                return LatticeDecision {
                    decision: Decision::refuse(Reason::InvalidPath(e.to_string()), false),
                    caller: Some(caller),
                    path: None,
                };
            }
        };
        LatticeDecision {
            decision: self.decide_mesh(caller, callee, method, path.as_str()),
            caller: Some(caller),
            path: Some(path),
        }
    }

    /// The function (never an endpoint, which makes no calls) a Lambda role session names.
    fn lattice_caller(&self, session: &str) -> Option<FunctionId> {
        let application = self.manifest().application.as_str();
        let name = session
            .strip_prefix(application)
            .and_then(|rest| rest.strip_prefix('-'))
            .filter(|name| self.function_id(name).is_some())
            .unwrap_or(session);
        self.function_id(name)
            .filter(|&id| !self.function(id).spec.is_endpoint())
    }
}
