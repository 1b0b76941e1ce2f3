//! Gateway routes: what a route admits, how it authenticates its callers, how it limits their
//! rate, and the gateway-wide settings ([`GatewaySpec`]) that apply before any route.

use std::fmt;

use ipnet::IpNet;

use super::{Methods, Mode, Name, PathText};
use crate::diagnostic::Location;

/// A public API gateway route to a function; the route is the rule that admits ingress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The rule id flows name, `route:ID`; `id` defaults to the path.
    pub id: Name,
    /// The path pattern.
    pub path: PathText,
    /// Admitted methods.
    pub methods: Methods,
    /// The function it dispatches to, which lives in a public subnet.
    pub function: Name,
    /// Who may call it; `None` admits anyone.
    pub auth: Option<RouteAuth>,
    /// The largest request body it accepts, in bytes; larger ones get 413.
    pub max_body_bytes: u64,
    /// Its rate limit, if any.
    pub rate_limit: Option<RateLimit>,
    /// Client networks it admits; empty admits every address.
    pub sources: Vec<IpNet>,
    /// `audit` lets requests its checks would refuse through, recorded as `audit`.
    pub mode: Mode,
    /// How long a client has to send the whole request body.
    pub body_timeout_ms: u32,
    /// Where it is declared.
    pub location: Location,
}

impl Route {
    /// The body limit of a route that sets none: 10 MiB.
    pub const DEFAULT_MAX_BODY_BYTES: u64 = 10 << 20;
    /// The largest `max_body_kb` a route may set: 1 GiB.
    pub const MAX_BODY_KB: u32 = 1 << 20;
    /// The time to send a body of a route that sets none: 10 s.
    pub const DEFAULT_BODY_TIMEOUT_MS: u32 = 10_000;
    /// The longest `body_timeout_ms` a route may set: 1 hour.
    pub const MAX_BODY_TIMEOUT_MS: u32 = 3_600_000;
}

/// A route's authentication and authorization.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RouteAuth {
    /// How callers prove who they are.
    pub method: AuthMethod,
    /// Scopes a JWT must all carry (`scope` or `scp` claim); empty for API keys.
    pub scopes: Vec<String>,
    /// Claims a JWT must match, all of them; empty for API keys.
    pub claims: Vec<ClaimMatch>,
    /// Claims copied to the function as `septa-claim-NAME` headers.
    pub forward_claims: Vec<String>,
}

/// How a route authenticates its callers.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    /// A bearer JWT from this `[jwt.NAME]` issuer.
    Jwt(Name),
    /// An `x-api-key` from this `[api_keys.NAME]` set.
    ApiKey(Name),
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Jwt(n) => write!(f, "jwt `{n}`"),
            Self::ApiKey(n) => write!(f, "api key `{n}`"),
        }
    }
}

/// `claim = value` or `claim = [values]`: the token's claim must equal one of the values, or,
/// when the claim is an array, contain one of them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClaimMatch {
    /// The claim's name.
    pub claim: String,
    /// The values it may take.
    pub any_of: Vec<ClaimValue>,
}

/// A value a claim is matched against.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ClaimValue {
    /// A string.
    String(String),
    /// An integer.
    Integer(i64),
    /// A boolean.
    Bool(bool),
}

impl fmt::Display for ClaimValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::String(s) => write!(f, "{s:?}"),
            Self::Integer(i) => write!(f, "{i}"),
            Self::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// A route's rate limit: a GCRA token bucket per consumer key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RateLimit {
    /// What identifies a consumer.
    pub key: RateLimitKey,
    /// Sustained requests per second per key.
    pub per_second: u32,
    /// Requests a key may send at once on top of the sustained rate.
    pub burst: u32,
}

/// What a rate limit counts requests by. Taken after authentication, from what the host
/// established, never from headers a client can vary freely unless the route says so.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RateLimitKey {
    /// The client's address as the gateway saw it (`X-Forwarded-For` is not trusted).
    Ip,
    /// The authenticated principal (`sub` of a JWT, or the API key's consumer).
    Principal,
    /// A request header's value.
    Header(String),
    /// A claim of the verified JWT (a token without it shares one bucket with the others
    /// lacking it).
    Claim(String),
    /// The consumer of the API key the route authenticated.
    ApiKey,
    /// One bucket for the whole route.
    Route,
}

impl fmt::Display for RateLimitKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ip => f.write_str("ip"),
            Self::Principal => f.write_str("principal"),
            Self::Header(h) => write!(f, "header:{h}"),
            Self::Claim(c) => write!(f, "claim:{c}"),
            Self::ApiKey => f.write_str("api_key"),
            Self::Route => f.write_str("route"),
        }
    }
}

/// `[gateway]`: settings of the gateway as a whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewaySpec {
    /// Proxies in front of septa whose client-address header is believed. Empty (the default):
    /// the peer address is the client, whatever the request says.
    pub trusted_proxies: Vec<IpNet>,
    /// The header trusted proxies append the client's address to.
    pub client_ip_header: String,
    /// A limit on requests per second of each client across every route, checked before
    /// authentication. Its key is always [`RateLimitKey::Ip`]: one client emptying it leaves
    /// the others theirs.
    pub rate_limit: Option<RateLimit>,
    /// How many leading bits of an IPv6 client address identify one client, for every limit
    /// keyed by address (`ip` route limits, `rate_limit`, `refusal_budget`). A site is usually
    /// handed a /64 or more, so keying by the full address would give one host 2^64 buckets.
    pub client_ipv6_prefix: u8,
    /// The refusals (400, 404, 405, 431) each client may cause before further refusals are
    /// answered `429` and recorded in aggregate; keyed like `rate_limit`.
    pub refusal_budget: RateLimit,
}

impl Default for GatewaySpec {
    fn default() -> Self {
        Self {
            trusted_proxies: Vec::new(),
            client_ip_header: "x-forwarded-for".to_owned(),
            rate_limit: None,
            client_ipv6_prefix: 64,
            refusal_budget: RateLimit {
                key: RateLimitKey::Ip,
                per_second: 10,
                burst: 100,
            },
        }
    }
}
