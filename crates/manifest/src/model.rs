//! The validated manifest: every reference resolved, every name checked.
//!
//! Values of these types only come out of [`crate::load`] / [`crate::parse`], so code that holds
//! a [`Manifest`] never re-checks what loading already proved.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use ipnet::IpNet;

use crate::alert::Alert;
use crate::diagnostic::Location;
use crate::egress::EgressTarget;
use crate::https_url::HttpsUrl;
use crate::selector::Selector;

/// A validated name: a segment, subnet, group, function, label or rule id.
///
/// Names are lowercase ASCII letters, digits and `-`, start with a letter or digit and are at
/// most 63 characters, so a function name is always a valid DNS label for `NAME.internal`.
///
/// Copied rather than shared when short: every allowed flow hands its rule's name on in its
/// decision, and a name of up to 22 characters (most are) is then a copy of a few
/// words, with no reference count to touch on another cache line. Longer names are shared.
#[derive(Clone)]
pub struct Name(NameRepr);

/// The longest name [`Name`] holds without a heap allocation.
const INLINE_NAME: usize = 22;

#[derive(Clone)]
enum NameRepr {
    /// The first `len` bytes are the name.
    Inline {
        len: u8,
        bytes: [u8; INLINE_NAME],
    },
    Shared(Arc<str>),
}

impl Name {
    /// Checks `s` against the naming rules.
    pub fn new(s: &str) -> Result<Self, String> {
        let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
        if s.is_empty() {
            return Err("a name must not be empty".to_owned());
        }
        if s.len() > 63 {
            return Err(format!("name `{s}` is longer than 63 characters"));
        }
        if !s.chars().all(ok_char) {
            return Err(format!(
                "name `{s}` may only contain lowercase letters, digits and `-`"
            ));
        }
        if s.starts_with('-') || s.ends_with('-') {
            return Err(format!("name `{s}` must not start or end with `-`"));
        }
        let mut bytes = [0; INLINE_NAME];
        Ok(Self(match bytes.get_mut(..s.len()) {
            Some(fits) => {
                fits.copy_from_slice(s.as_bytes());
                NameRepr::Inline {
                    len: s.len() as u8,
                    bytes,
                }
            }
            None => NameRepr::Shared(Arc::from(s)),
        }))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            // Always ASCII, checked by `new`, so the conversion never fails.
            NameRepr::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default()
            }
            NameRepr::Shared(s) => s,
        }
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Name").field(&self.as_str()).finish()
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Name {}

impl PartialOrd for Name {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Name {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

/// Hashes as the text does, as [`std::borrow::Borrow`] requires.
impl std::hash::Hash for Name {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl std::borrow::Borrow<str> for Name {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

/// The tier of a subnet, which bounds what its functions may do whatever the rules say.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SubnetKind {
    /// The gateway may route to functions here.
    Public,
    /// Reachable by mesh rules only; egress only as declared.
    Private,
    /// Reachable by mesh rules only; no egress at all, not even declared.
    Isolated,
}

impl fmt::Display for SubnetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Public => "public",
            Self::Private => "private",
            Self::Isolated => "isolated",
        })
    }
}

/// Whether denials are enforced or only recorded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Denied flows are refused.
    #[default]
    Enforce,
    /// Denied flows are let through and recorded as `audit`.
    Audit,
}

/// A segment: an isolation boundary that nothing crosses unless a rule allows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Its name.
    pub name: Name,
    /// Its subnets and their tiers.
    pub subnets: BTreeMap<Name, SubnetKind>,
    /// Labels that selectors such as `label:pci` match.
    pub labels: Vec<Name>,
    /// Enforce or audit; functions inherit it unless they set their own.
    pub mode: Mode,
    /// Requests its functions and endpoints may serve at once, together (a bulkhead: past it,
    /// 503 at once); `None` leaves only each function's own `max_concurrency`.
    pub max_concurrency: Option<u32>,
    /// Where it is declared.
    pub location: Location,
}

/// A security group: a named set of functions that rules can refer to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    /// Its name.
    pub name: Name,
    /// What it is for.
    pub description: Option<String>,
    /// Where it is declared.
    pub location: Location,
}

/// Where a function lives.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Placement {
    /// The segment.
    pub segment: Name,
    /// The subnet within the segment.
    pub subnet: Name,
}

impl fmt::Display for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.segment, self.subnet)
    }
}

/// Per-instance resource limits of a function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Linear memory ceiling of one instance, in MiB.
    pub memory_mb: u32,
    /// Wall-clock time one request may run, in milliseconds.
    pub timeout_ms: u32,
    /// Instances of this function that may run at once; more are refused with 503.
    pub max_concurrency: u32,
}

impl Limits {
    /// Largest memory a manifest may ask for.
    pub const MAX_MEMORY_MB: u32 = 4096;
    /// Longest timeout a manifest may ask for.
    pub const MAX_TIMEOUT_MS: u32 = 300_000;
    /// Most concurrent instances a manifest may ask for.
    pub const MAX_CONCURRENCY: u32 = 10_000;
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_mb: 64,
            timeout_ms: 10_000,
            max_concurrency: 64,
        }
    }
}

/// How `septa up --build` builds a function's component.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Build {
    /// A shell command.
    pub command: String,
    /// The directory it runs in, resolved against the manifest's directory.
    pub workdir: PathBuf,
}

/// What answers at a mesh name: a component septa runs, or a private endpoint to a data store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FunctionKind {
    /// A `wasi:http/proxy` component (`[function.NAME]`).
    Component,
    /// A private endpoint (`[endpoint.NAME]`): a key-value store reached only through the mesh.
    Endpoint(EndpointBackend),
}

/// Where a private endpoint keeps its data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndpointBackend {
    /// An embedded store, one file per endpoint under the data directory (the default).
    Embedded,
    /// A Redis server.
    Redis(Connection),
    /// A PostgreSQL server (a table per endpoint).
    Postgres(Connection),
}

/// Where a backend's connection URL comes from. Credentials never live in the manifest: a URL
/// written inline may not carry a password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Connection {
    /// A URL without credentials, written in the manifest.
    Url(String),
    /// An environment variable holding the URL.
    Env(String),
    /// A file holding the URL (resolved against the manifest's directory).
    File(PathBuf),
}

/// A function: something placed in one segment and subnet that the mesh reaches at
/// `NAME.internal` — a `wasi:http/proxy` component, or a private endpoint to a data store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Function {
    /// Its name, also its mesh host name `NAME.internal`.
    pub name: Name,
    /// A component or an endpoint.
    pub kind: FunctionKind,
    /// The component file, resolved against the manifest's directory; empty for an endpoint.
    pub source: PathBuf,
    /// Its segment and subnet.
    pub placement: Placement,
    /// The tier of its subnet.
    pub subnet_kind: SubnetKind,
    /// Security groups it belongs to.
    pub groups: Vec<Name>,
    /// Its own labels; the segment's labels apply too.
    pub labels: Vec<Name>,
    /// The effective mode: its own if set, otherwise its segment's.
    pub mode: Mode,
    /// Resource limits.
    pub limits: Limits,
    /// How to build it, if declared.
    pub build: Option<Build>,
    /// Where it is declared.
    pub location: Location,
}

/// An HTTP method as written in a rule, upper-case.
pub type Method = String;

/// Methods a rule admits.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Methods {
    /// Any method (the field was omitted or is `["*"]`).
    Any,
    /// Only these (possibly none: an empty list allows nothing).
    Only(Vec<Method>),
}

impl Methods {
    /// Whether `method` is admitted.
    pub fn admits(&self, method: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Only(list) => list.iter().any(|m| m == method),
        }
    }
}

/// A path pattern as written, with where it was written so later stages can point at it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PathText {
    /// The pattern text, e.g. `/orders/{id}` or `/static/...`.
    pub text: String,
    /// Where it is written.
    pub location: Location,
}

/// Paths a rule admits.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Paths {
    /// Any path (the field was omitted).
    Any,
    /// Only paths matching one of these patterns (possibly none: allows nothing).
    Only(Vec<PathText>),
}

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

/// `[gateway]`: settings of the gateway as a whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewaySpec {
    /// Proxies in front of septa whose client-address header is believed. Empty (the default):
    /// the peer address is the client, whatever the request says.
    pub trusted_proxies: Vec<IpNet>,
    /// The header trusted proxies append the client's address to.
    pub client_ip_header: String,
    /// A ceiling on requests per second across every route, checked before authentication.
    pub rate_limit: Option<RateLimit>,
}

impl Default for GatewaySpec {
    fn default() -> Self {
        Self {
            trusted_proxies: Vec::new(),
            client_ip_header: "x-forwarded-for".to_owned(),
            rate_limit: None,
        }
    }
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

/// One API key, stored as the SHA-256 of the key, never the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKey {
    /// Who holds it; the function sees it as the principal.
    pub consumer: String,
    /// SHA-256 of the key.
    pub sha256: [u8; 32],
}

impl ApiKey {
    /// 64 hex digits as the 32 bytes of a SHA-256.
    pub fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
        if hex.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(out)
    }
}

/// A set of API keys routes can require.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKeySet {
    /// Its name, as routes' `auth.api_key` names it.
    pub name: Name,
    /// Keys written in the manifest.
    pub keys: Vec<ApiKey>,
    /// A file of `CONSUMER SHA256HEX` lines, read at start, resolved against the manifest's
    /// directory.
    pub keys_file: Option<PathBuf>,
    /// Where it is declared.
    pub location: Location,
}

/// A JWT signature algorithm septa accepts. `none` and HMAC are never accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JwtAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256, 2048-bit keys or larger.
    Rs256,
    /// ECDSA on P-256 with SHA-256.
    Es256,
    /// Ed25519.
    EdDsa,
}

impl JwtAlgorithm {
    /// The `alg` header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rs256 => "RS256",
            Self::Es256 => "ES256",
            Self::EdDsa => "EdDSA",
        }
    }
}

/// Where an issuer's JSON Web Key Set comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JwksSource {
    /// A file read once at start-up, resolved against the manifest's directory.
    File(PathBuf),
    /// An `https://` URL the gateway fetches through the operator ceiling, before it listens and
    /// then every `refresh_s` seconds (and early when a token names an unknown key).
    Url {
        /// The URL; it counts as the issuer's own egress and opens nothing else.
        url: HttpsUrl,
        /// Seconds between refreshes (10 to 86400).
        refresh_s: u32,
        /// A PEM bundle of the certificate authorities to trust, resolved against the manifest's
        /// directory; `None` trusts the system's roots.
        ca_file: Option<PathBuf>,
    },
}

/// A JWT issuer routes can require.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwtIssuer {
    /// Its name, as routes' `auth.jwt` names it.
    pub name: Name,
    /// The `iss` every token must carry.
    pub issuer: String,
    /// Tokens must name one of these in `aud`.
    pub audiences: Vec<String>,
    /// Accepted algorithms.
    pub algorithms: Vec<JwtAlgorithm>,
    /// Where its keys come from.
    pub jwks: JwksSource,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub leeway_s: u32,
    /// Where it is declared.
    pub location: Location,
}

/// An allow rule: the only thing that opens a flow inside the platform.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowRule {
    /// Its id, named by every decision it makes.
    pub id: Name,
    /// Who may call.
    pub from: Selector,
    /// Whom they may call.
    pub to: Selector,
    /// Which methods.
    pub methods: Methods,
    /// Which paths.
    pub paths: Paths,
    /// Where it is declared.
    pub location: Location,
}

/// An egress rule: what functions may reach outside the platform.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EgressRule {
    /// Its id, named by every decision it makes.
    pub id: Name,
    /// Which functions.
    pub from: Selector,
    /// The destinations.
    pub to: Vec<EgressTarget>,
    /// Where it is declared.
    pub location: Location,
}

/// A property the policy must satisfy, checked before the platform starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invariant {
    /// Its id, named by every violation.
    pub id: Name,
    /// What it requires.
    pub rule: InvariantRule,
    /// Where it is declared.
    pub location: Location,
}

/// The kinds of invariant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InvariantRule {
    /// No path of allowed flows leads from `from` to anything `to` selects without passing
    /// through (or ending at) something `except_through` selects.
    DenyPath {
        /// Where paths start (`gateway` is the internet).
        from: Selector,
        /// What they must not reach.
        to: Selector,
        /// The only gates paths may go through.
        except_through: Vec<Selector>,
    },
}

/// The operator ceiling as declared: changes to the default blocked networks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CeilingSpec {
    /// Networks carved out of the default blocked set (for example a test's loopback listener).
    pub relax: Vec<IpNet>,
    /// Networks blocked on top of the defaults; a block always wins over a relaxation.
    pub block: Vec<IpNet>,
}

/// A validated `septa.toml`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// The file it was read from.
    pub file: PathBuf,
    /// The directory relative paths are resolved against.
    pub dir: PathBuf,
    /// The application name.
    pub application: Name,
    /// The operator ceiling.
    pub ceiling: CeilingSpec,
    /// Gateway-wide settings.
    pub gateway: GatewaySpec,
    /// Segments by name.
    pub segments: BTreeMap<Name, Segment>,
    /// Security groups by name.
    pub groups: BTreeMap<Name, Group>,
    /// Functions by name: the components, and the endpoints (`kind` tells them apart; they
    /// share the `NAME.internal` namespace).
    pub functions: BTreeMap<Name, Function>,
    /// Gateway routes, in file order.
    pub routes: Vec<Route>,
    /// Allow rules, in file order.
    pub allows: Vec<AllowRule>,
    /// Egress rules, in file order.
    pub egress: Vec<EgressRule>,
    /// Invariants, in file order.
    pub invariants: Vec<Invariant>,
    /// JWT issuers by name.
    pub jwt: BTreeMap<Name, JwtIssuer>,
    /// API key sets by name.
    pub api_keys: BTreeMap<Name, ApiKeySet>,
    /// The operator's alerts, in file order.
    pub alerts: Vec<Alert>,
}

impl Function {
    /// The identity flows name it by: `function:NAME` or `endpoint:NAME`.
    pub fn identity(&self) -> String {
        match self.kind {
            FunctionKind::Component => format!("function:{}", self.name),
            FunctionKind::Endpoint(_) => format!("endpoint:{}", self.name),
        }
    }

    /// Whether it is a private endpoint rather than a component.
    pub fn is_endpoint(&self) -> bool {
        matches!(self.kind, FunctionKind::Endpoint(_))
    }
}

impl Manifest {
    /// The components septa runs, without the endpoints.
    pub fn components(&self) -> impl Iterator<Item = &Function> {
        self.functions.values().filter(|f| !f.is_endpoint())
    }

    /// Labels that apply to a function: its own and its segment's.
    pub fn function_labels<'a>(&'a self, function: &'a Function) -> impl Iterator<Item = &'a Name> {
        let segment_labels = self
            .segments
            .get(&function.placement.segment)
            .map(|s| s.labels.as_slice())
            .unwrap_or_default();
        function.labels.iter().chain(segment_labels)
    }
}
