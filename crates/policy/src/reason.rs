//! Why a flow was allowed or refused: one typed reason per refusal, worded here and nowhere else,
//! so a flow record, a metric, an alert and a probe all say the same thing.

use std::fmt;
use std::net::IpAddr;

use septa_manifest::{ClaimValue, Name, RateLimit};

use crate::ceiling::CeilingBlock;
use crate::decision::Identity;

/// Why a flow was allowed or refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// A rule admitted it; [`crate::Decision::rule`] names the rule.
    Allowed,
    /// No rule connects this source to this destination at all.
    NoRule {
        /// The source identity, e.g. `function:storefront`.
        from: Identity,
        /// The destination, e.g. `function:ledger`.
        to: Identity,
    },
    /// Rules connect source and destination, but none admits this method.
    MethodNotAllowed {
        /// The refused method.
        method: String,
        /// The rules that connect the two, whose `methods` would have to change.
        nearest: Vec<Name>,
    },
    /// Rules connect source and destination and admit the method, but not this path.
    PathNotAllowed {
        /// The refused path.
        path: String,
        /// The rules whose `paths` would have to change.
        nearest: Vec<Name>,
    },
    /// The destination name is not a function of this application.
    UnknownDestination(String),
    /// Egress from a function in an isolated subnet, which no rule can open.
    IsolatedSubnet {
        /// The function's placement, `SEGMENT/SUBNET`.
        placement: String,
    },
    /// No egress rule of the function admits this scheme, host and port.
    NoEgressRule {
        /// `scheme://host:port` as requested.
        target: String,
    },
    /// The address that would be dialled is inside the operator ceiling.
    Ceiling(CeilingBlock),
    /// A protocol that no rule kind can open (for example UDP or listening sockets).
    UnsupportedProtocol(String),
    /// The gateway fetches a JWT issuer's keys from its declared `jwks_url`.
    IssuerKeys {
        /// The issuer.
        issuer: Name,
    },
    /// The host a guest asked for is neither an IP address nor a valid DNS name.
    InvalidHost(String),
    /// A segmentation probe named a destination outside the platform: a probe decides flows
    /// inside it and never sends anything out.
    ProbeEgress {
        /// `scheme://host:port` as named.
        target: String,
    },
    /// The request path is ambiguous or malformed (encoded slashes, dot segments, ...), so no
    /// rule can be checked against it.
    InvalidPath(String),
    /// The request was refused before routing because its framing is ambiguous (a smuggling
    /// attempt, say); what the parser found.
    MalformedRequest(String),
    /// A chain of in-process calls went deeper than the mesh allows (a loop, most likely).
    CallChainTooDeep {
        /// The deepest chain allowed.
        max: u8,
    },
    /// The path matches a route, but a function's router that folds case, a trailing slash or
    /// `;` parameters could read it as the path of a route that guards more.
    AmbiguousPath {
        /// The normalized path.
        path: String,
        /// The route the path matches.
        route: Name,
        /// The more guarded route it could be read as.
        other: Name,
    },
    /// No gateway route matches the path.
    NoRoute {
        /// The normalized path.
        path: String,
    },
    /// A route matches the path, but not the method.
    RouteMethodNotAllowed {
        /// The route.
        route: Name,
        /// The refused method.
        method: String,
    },
    /// The client's address is outside the route's `sources`.
    SourceNotAdmitted {
        /// The route.
        route: Name,
        /// The client address the gateway established.
        client: IpAddr,
    },
    /// The route wants credentials the request does not carry, or carries invalid ones.
    Unauthenticated {
        /// The kind of credential the route wants.
        credential: CredentialKind,
        /// What was wrong with it.
        problem: CredentialProblem,
    },
    /// A valid token lacks a scope the route requires.
    MissingScope {
        /// The first missing scope.
        scope: String,
        /// The token's subject.
        subject: String,
    },
    /// A valid token's claim does not match what the route requires.
    ClaimMismatch {
        /// The claim.
        claim: String,
        /// The values the route accepts.
        wanted: Vec<ClaimValue>,
        /// The token's subject.
        subject: String,
    },
    /// A rate limit refused the request.
    RateLimited {
        /// Whose limit: the gateway's or a route's (boxed: a rare refusal should not make
        /// every decision larger).
        scope: Box<LimitScope>,
        /// What the limiter said.
        refusal: LimitRefusal,
    },
    /// The declared body is larger than the route accepts.
    BodyTooLarge {
        /// The route.
        route: Name,
        /// The declared length, in bytes.
        length: u64,
        /// The route's `max_body_bytes`.
        limit: u64,
    },
}

/// The kind of credential a route asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredentialKind {
    /// A bearer JWT.
    Jwt,
    /// An `x-api-key`.
    ApiKey,
}

/// What was wrong with a request's credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CredentialProblem {
    /// The request carries none.
    Missing,
    /// The request carries one that does not verify; what the verifier found (`token
    /// expired`, `unknown key`, ...).
    Invalid(String),
}

/// Whose rate limit refused a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LimitScope {
    /// `[gateway] rate_limit`, across every route; enforced in audit mode too.
    Gateway(RateLimit),
    /// A route's own `rate_limit`.
    Route {
        /// The route.
        route: Name,
        /// Its limit.
        limit: RateLimit,
    },
}

/// What a rate limiter said when it refused a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LimitRefusal {
    /// The key has used its burst and must wait.
    Exceeded {
        /// The key the request was counted under (`ip:203.0.113.9`, `principal:alice`, ...).
        key: String,
    },
    /// The limiter remembers as many keys as it may and none has expired: a new key is refused
    /// rather than an old bucket reset.
    TableFull,
    /// The limiter could not be consulted.
    Unavailable,
}

impl Reason {
    /// Whether audit mode may let this through. Operator limits (the ceiling, isolated
    /// subnets, the gateway's own rate limit, body sizes), destinations and routes that do not
    /// exist, and requests that cannot be read are refused in every mode.
    pub fn is_auditable(&self) -> bool {
        match self {
            Self::NoRule { .. }
            | Self::MethodNotAllowed { .. }
            | Self::PathNotAllowed { .. }
            | Self::NoEgressRule { .. }
            | Self::SourceNotAdmitted { .. }
            | Self::Unauthenticated { .. }
            | Self::MissingScope { .. }
            | Self::ClaimMismatch { .. } => true,
            Self::RateLimited { scope, .. } => matches!(**scope, LimitScope::Route { .. }),
            _ => false,
        }
    }
}

fn ids(list: &[Name]) -> String {
    list.iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Allowed => f.write_str("allowed"),
            Self::NoRule { from, to } => write!(f, "no allow rule from `{from}` to `{to}`"),
            Self::MethodNotAllowed { method, nearest } => {
                write!(
                    f,
                    "method `{method}` is not admitted by rule {}",
                    ids(nearest)
                )
            }
            Self::PathNotAllowed { path, nearest } => {
                write!(f, "path `{path}` is not admitted by rule {}", ids(nearest))
            }
            Self::UnknownDestination(name) => write!(f, "unknown destination `{name}`"),
            Self::IsolatedSubnet { placement } => {
                write!(
                    f,
                    "functions in isolated subnet `{placement}` have no egress"
                )
            }
            Self::NoEgressRule { target } => write!(f, "no egress rule admits `{target}`"),
            Self::Ceiling(block) => write!(f, "{block}"),
            Self::UnsupportedProtocol(what) => write!(f, "{what} is not allowed by any rule kind"),
            Self::IssuerKeys { issuer } => write!(f, "the keys of jwt issuer `{issuer}`"),
            Self::InvalidHost(e) => write!(f, "invalid host: {e}"),
            Self::ProbeEgress { target } => write!(
                f,
                "a probe never leaves the platform: `{target}` would be egress, and is not sent"
            ),
            Self::InvalidPath(e) => write!(f, "invalid path: {e}"),
            Self::MalformedRequest(e) => f.write_str(e),
            Self::CallChainTooDeep { max } => {
                write!(f, "call chain deeper than {max} hops (a loop?)")
            }
            Self::AmbiguousPath { path, route, other } => write!(
                f,
                "ambiguous path: `{path}` matches route `{route}`, but a lenient router reads it as the path of route `{other}`, which guards more"
            ),
            Self::NoRoute { path } => write!(f, "no route for `{path}`"),
            Self::RouteMethodNotAllowed { route, method } => {
                write!(f, "route `{route}` does not admit method `{method}`")
            }
            Self::SourceNotAdmitted { route, client } => {
                write!(
                    f,
                    "client address {client} is not in route `{route}`'s sources"
                )
            }
            Self::Unauthenticated {
                credential,
                problem,
            } => match (credential, problem) {
                (CredentialKind::Jwt, CredentialProblem::Missing) => {
                    f.write_str("jwt: no bearer token")
                }
                (CredentialKind::ApiKey, CredentialProblem::Missing) => {
                    f.write_str("api key: none presented")
                }
                (CredentialKind::Jwt, CredentialProblem::Invalid(e)) => write!(f, "jwt: {e}"),
                (CredentialKind::ApiKey, CredentialProblem::Invalid(e)) => {
                    write!(f, "api key: {e}")
                }
            },
            Self::MissingScope { scope, subject } => {
                write!(f, "jwt: missing scope `{scope}` (subject `{subject}`)")
            }
            Self::ClaimMismatch {
                claim,
                wanted,
                subject,
            } => {
                let wanted: Vec<String> = wanted.iter().map(ToString::to_string).collect();
                write!(
                    f,
                    "jwt: claim `{claim}` is not {} (subject `{subject}`)",
                    wanted.join(" or ")
                )
            }
            Self::RateLimited { scope, refusal } => {
                let (what, limit) = match &**scope {
                    LimitScope::Gateway(limit) => ("the gateway".to_owned(), limit),
                    LimitScope::Route { route, limit } => (format!("route `{route}`"), limit),
                };
                match refusal {
                    LimitRefusal::Exceeded { key } => write!(
                        f,
                        "rate limit of {what}: {} per second, burst {}, by {} (`{key}`)",
                        limit.per_second, limit.burst, limit.key
                    ),
                    LimitRefusal::TableFull => {
                        write!(f, "rate limit of {what}: its key table is full")
                    }
                    LimitRefusal::Unavailable => {
                        write!(f, "rate limit of {what}: the limiter is unavailable")
                    }
                }
            }
            Self::BodyTooLarge {
                route,
                length,
                limit,
            } => write!(
                f,
                "request body of {length} bytes is over route `{route}`'s limit of {limit} bytes"
            ),
        }
    }
}
