//! Why a flow was allowed or refused: one typed reason per refusal, worded here and nowhere else,
//! so a flow record, a metric, an alert and a probe all say the same thing.

use std::fmt;
use std::net::IpAddr;

use septa_manifest::{ClaimValue, Name, RateLimit};

use crate::ceiling::CeilingBlock;
use crate::decision::Identity;
use crate::event::EventRefusal;

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
    /// A call from another node that this node refuses before consulting any rule.
    Peer(PeerRefusal),
    /// A request an AWS service delivered as a Lambda event, refused before any rule is
    /// consulted.
    Event(EventRefusal),
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

/// Why a node refuses a call another node forwards to it, before any rule is consulted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerRefusal {
    /// The peer's certificate names no node.
    NoIdentity(String),
    /// The peer is a node of another trust domain.
    OtherTrustDomain {
        /// The peer's id as its certificate states it.
        peer: String,
        /// This cluster's trust domain.
        expected: String,
    },
    /// The peer is not a node of this revision's cluster.
    UnknownNode(String),
    /// The peer names a caller that this revision does not place on it: it speaks for a
    /// function it does not host, a spoofing attempt.
    CallerNotOnPeer {
        /// The caller the peer named.
        caller: String,
        /// The peer node.
        node: String,
    },
    /// The callee does not run on this node.
    NotHostedHere {
        /// The callee.
        function: String,
        /// This node.
        node: String,
    },
    /// A gateway request forwarded for one function matched a route of another here.
    RoutedElsewhere {
        /// The route this node's policy matched.
        route: String,
        /// The function that route leads to.
        function: String,
        /// The function the request was forwarded for.
        forwarded_for: String,
    },
}

impl fmt::Display for PeerRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoIdentity(why) => write!(f, "the peer proved no node identity: {why}"),
            Self::OtherTrustDomain { peer, expected } => {
                write!(f, "peer `{peer}` is not in trust domain `{expected}`")
            }
            Self::UnknownNode(node) => {
                write!(f, "node `{node}` is not a node of this revision's cluster")
            }
            Self::CallerNotOnPeer { caller, node } => write!(
                f,
                "node `{node}` named caller `{caller}`, which this revision does not place on it (spoofing attempt)"
            ),
            Self::NotHostedHere { function, node } => {
                write!(f, "`{function}` does not run on node `{node}`")
            }
            Self::RoutedElsewhere {
                route,
                function,
                forwarded_for,
            } => write!(
                f,
                "forwarded for `{forwarded_for}`, the request takes route `{route}` to `{function}` here"
            ),
        }
    }
}

/// Whose rate limit refused a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LimitScope {
    /// `[gateway] rate_limit`, a client's requests across every route; enforced in audit mode
    /// too.
    Gateway(RateLimit),
    /// `[gateway] refusal_budget`: the requests of a client refused before any route's checks
    /// (a path that does not normalize, no route, a method not admitted, a request that cannot
    /// be read).
    Refusals(RateLimit),
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
    /// The key has used its burst and must wait; this refusal stands for itself and for
    /// `unrecorded` more of the key's since the last one recorded, which were not recorded one
    /// by one (a client past its refusal budget cannot flood the flow log).
    Aggregated {
        /// The key the request was counted under.
        key: String,
        /// Refusals of the key since its last record that have no record of their own.
        unrecorded: u64,
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
            Self::Peer(refusal) => refusal.fmt(f),
            Self::Event(refusal) => refusal.fmt(f),
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
                    LimitScope::Gateway(limit) => ("rate limit of the gateway".to_owned(), limit),
                    LimitScope::Refusals(limit) => {
                        ("refusal budget of the gateway".to_owned(), limit)
                    }
                    LimitScope::Route { route, limit } => {
                        (format!("rate limit of route `{route}`"), limit)
                    }
                };
                let (per_second, burst, by) = (limit.per_second, limit.burst, &limit.key);
                match refusal {
                    LimitRefusal::Exceeded { key } => write!(
                        f,
                        "{what}: {per_second} per second, burst {burst}, by {by} (`{key}`)"
                    ),
                    LimitRefusal::Aggregated { key, unrecorded } => write!(
                        f,
                        "{what}: {per_second} per second, burst {burst}, by {by} (`{key}`); \
                         {unrecorded} more refused since the last record, not recorded one by one"
                    ),
                    LimitRefusal::TableFull => write!(f, "{what}: its key table is full"),
                    LimitRefusal::Unavailable => write!(f, "{what}: the limiter is unavailable"),
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
