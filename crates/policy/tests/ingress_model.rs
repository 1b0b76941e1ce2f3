//! Differential test: `Policy::decide_ingress` decides exactly as a naive reading of the
//! documentation does — scan the routes, take the most specific pattern that matches, refuse a
//! path a lenient router could read as a more guarded route's, then run the route's checks in
//! order, folding audit mode — on random routes, requests and facts.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use proptest::prelude::*;
use septa_manifest::*;
use septa_policy::path::{PathPattern, normalize_path};
use septa_policy::{
    Authentication, Claims, CompiledRoute, CredentialProblem, IngressFacts, IngressRequest,
    LimitOutcome, LimitRefusal, Policy, Principal, Verdict,
};

const METHODS: [&str; 4] = ["GET", "POST", "DELETE", "PURGE"];
const PATTERNS: [&str; 9] = [
    "/", "/a", "/a/{id}", "/a/b", "/b/...", "/c/{x}/d", "/A/b", "/a/b/", "/a.txt",
];
const PATHS: [&str; 25] = [
    "/",
    "/a",
    "/a/1",
    "/a/b",
    "/b",
    "/b/x/y",
    "/c/1/d",
    "/zzz",
    "/a/../b",
    "/a//b",
    "/A/b",
    "/a/B/",
    "/a;x",
    "/a/b;y",
    "/b/X/y",
    "/A",
    "/a%3Bz",
    "/a/b/",
    "/b/x/..%3By",
    "/a/%E2%84%AA",
    "/a/b.json",
    "/A.txt",
    "/b/%252E%252E/a",
    "/b/a%252Fb",
    "/a%25252Fb",
];
const SCOPES: [&str; 2] = ["read", "write"];
const TENANTS: [&str; 2] = ["acme", "globex"];
const SOURCES: [&str; 2] = ["10.0.0.0/8", "192.0.2.0/24"];
const CLIENTS: [&str; 3] = ["10.1.2.3", "192.0.2.7", "203.0.113.9"];
const BODY_LIMITS: [u64; 3] = [0, 10, 1000];
const LENGTHS: [Option<u64>; 4] = [None, Some(0), Some(11), Some(5000)];

fn name(s: &str) -> Name {
    Name::new(s).unwrap()
}

/// How a random route authenticates: not at all, by a token (with required scopes and maybe a
/// tenant claim), or by an API key.
#[derive(Debug, Clone)]
enum AuthSpec {
    None,
    Jwt {
        scopes: Vec<bool>,
        tenant: Option<usize>,
    },
    ApiKey,
}

/// (pattern, methods, auth, rate limited, sources, audit mode, body limit) of a random route.
type RouteSpec = (
    usize,
    Option<Vec<bool>>,
    AuthSpec,
    bool,
    Vec<bool>,
    bool,
    usize,
);

fn auth_spec() -> impl Strategy<Value = AuthSpec> {
    prop_oneof![
        Just(AuthSpec::None),
        (
            prop::collection::vec(any::<bool>(), SCOPES.len()),
            prop::option::of(0..TENANTS.len())
        )
            .prop_map(|(scopes, tenant)| AuthSpec::Jwt { scopes, tenant }),
        Just(AuthSpec::ApiKey),
    ]
}

fn route_spec() -> impl Strategy<Value = RouteSpec> {
    (
        0..PATTERNS.len(),
        prop::option::of(prop::collection::vec(any::<bool>(), METHODS.len())),
        auth_spec(),
        prop::bool::weighted(0.3),
        prop::collection::vec(prop::bool::weighted(0.3), SOURCES.len()),
        prop::bool::weighted(0.3),
        0..BODY_LIMITS.len(),
    )
}

fn manifest(routes: &[RouteSpec], gateway_limit: bool) -> Manifest {
    let at = Location::default();
    let segment = Segment {
        name: name("edge"),
        subnets: [(name("web"), SubnetKind::Public)].into_iter().collect(),
        labels: Vec::new(),
        mode: Mode::Enforce,
        max_concurrency: None,
        cpu_share: Segment::DEFAULT_CPU_SHARE,
        location: at,
    };
    let function = Function {
        kind: FunctionKind::Component(Component {
            source: PathBuf::from("x.wasm"),
            build: None,
        }),
        name: name("f0"),
        placement: Placement {
            segment: name("edge"),
            subnet: name("web"),
        },
        subnet_kind: SubnetKind::Public,
        groups: Vec::new(),
        labels: Vec::new(),
        mode: Mode::Enforce,
        limits: Limits::default(),
        location: at,
    };
    let limit = RateLimit {
        key: RateLimitKey::Ip,
        per_second: 1,
        burst: 1,
    };
    let routes = routes
        .iter()
        .enumerate()
        .map(
            |(i, (pattern, methods, auth, limited, sources, audit, body))| Route {
                id: name(&format!("r{i}")),
                path: PathText {
                    text: PATTERNS[*pattern].to_owned(),
                    location: at,
                },
                methods: methods.as_ref().map_or(Methods::Any, |bits| {
                    Methods::Only(
                        bits.iter()
                            .zip(METHODS)
                            .filter(|(on, _)| **on)
                            .map(|(_, m)| m.to_owned())
                            .collect(),
                    )
                }),
                function: name("f0"),
                auth: match auth {
                    AuthSpec::None => None,
                    AuthSpec::Jwt { scopes, tenant } => Some(RouteAuth {
                        method: AuthMethod::Jwt(name("main")),
                        scopes: scopes
                            .iter()
                            .zip(SCOPES)
                            .filter(|(on, _)| **on)
                            .map(|(_, s)| s.to_owned())
                            .collect(),
                        claims: tenant
                            .iter()
                            .map(|t| ClaimMatch {
                                claim: "tenant".to_owned(),
                                any_of: vec![ClaimValue::String(TENANTS[*t].to_owned())],
                            })
                            .collect(),
                        forward_claims: Vec::new(),
                    }),
                    AuthSpec::ApiKey => Some(RouteAuth {
                        method: AuthMethod::ApiKey(name("partners")),
                        scopes: Vec::new(),
                        claims: Vec::new(),
                        forward_claims: Vec::new(),
                    }),
                },
                max_body_bytes: BODY_LIMITS[*body],
                rate_limit: limited.then(|| limit.clone()),
                sources: sources
                    .iter()
                    .zip(SOURCES)
                    .filter(|(on, _)| **on)
                    .map(|(_, s)| s.parse().unwrap())
                    .collect(),
                mode: if *audit { Mode::Audit } else { Mode::Enforce },
                body_timeout_ms: 1000,
                location: at,
            },
        )
        .collect();
    Manifest {
        file: PathBuf::from("septa.toml"),
        dir: PathBuf::from("."),
        application: name("model"),
        ceiling: CeilingSpec::default(),
        gateway: GatewaySpec {
            rate_limit: gateway_limit.then_some(limit),
            ..GatewaySpec::default()
        },
        segments: [(name("edge"), segment)].into_iter().collect(),
        groups: BTreeMap::new(),
        functions: [(name("f0"), function)].into_iter().collect(),
        routes,
        allows: Vec::new(),
        egress: Vec::new(),
        invariants: Vec::new(),
        jwt: BTreeMap::new(),
        api_keys: BTreeMap::new(),
        alerts: Vec::new(),
        cluster: None,
    }
}

/// What the gateway's machinery establishes about one request, chosen at random.
#[derive(Debug, Clone)]
struct FactsSpec {
    gateway_admits: bool,
    /// Whether the client's refusal budget has room for one more refusal.
    budget_admits: bool,
    /// 0: no credential, 1: an invalid one, 2: a valid one.
    credential: usize,
    scopes: Vec<bool>,
    tenant: usize,
    route_limit: Option<LimitRefusal>,
}

fn facts_spec() -> impl Strategy<Value = FactsSpec> {
    (
        prop::bool::weighted(0.8),
        prop::bool::weighted(0.8),
        0..3usize,
        prop::collection::vec(any::<bool>(), SCOPES.len()),
        0..TENANTS.len(),
        prop_oneof![
            4 => Just(None),
            1 => Just(Some(LimitRefusal::Exceeded { key: "ip:x".to_owned() })),
            1 => Just(Some(LimitRefusal::TableFull)),
        ],
    )
        .prop_map(
            |(gateway_admits, budget_admits, credential, scopes, tenant, route_limit)| FactsSpec {
                gateway_admits,
                budget_admits,
                credential,
                scopes,
                tenant,
                route_limit,
            },
        )
}

impl FactsSpec {
    fn principal(&self) -> Principal {
        let scopes: Vec<String> = self
            .scopes
            .iter()
            .zip(SCOPES)
            .filter(|(on, _)| **on)
            .map(|(_, s)| s.to_owned())
            .collect();
        let payload = serde_json::json!({ "sub": "alice", "tenant": TENANTS[self.tenant] });
        let serde_json::Value::Object(payload) = payload else {
            unreachable!()
        };
        Principal {
            name: "alice".to_owned(),
            claims: Some(Claims::new("alice".to_owned(), scopes, u64::MAX, payload)),
        }
    }
}

/// The facts as the decision asks for them, counting what it asked.
struct Recorded<'a> {
    spec: &'a FactsSpec,
    authenticated: u32,
}

impl IngressFacts for Recorded<'_> {
    fn gateway_limit(&mut self, _: &RateLimit) -> LimitOutcome {
        if self.spec.gateway_admits {
            LimitOutcome::Admitted
        } else {
            LimitOutcome::Refused(LimitRefusal::Exceeded {
                key: "gateway".to_owned(),
            })
        }
    }

    fn refusal_budget(&mut self, _: &RateLimit) -> LimitOutcome {
        if self.spec.budget_admits {
            LimitOutcome::Admitted
        } else {
            LimitOutcome::Refused(LimitRefusal::Exceeded {
                key: "ip:x".to_owned(),
            })
        }
    }

    fn authenticate(&mut self, _: &CompiledRoute, auth: &RouteAuth) -> Authentication {
        self.authenticated += 1;
        match self.spec.credential {
            0 => Authentication::Failed(CredentialProblem::Missing),
            1 => Authentication::Failed(CredentialProblem::Invalid("bad signature".to_owned())),
            _ => match auth.method {
                AuthMethod::Jwt(_) => Authentication::Verified(self.spec.principal()),
                AuthMethod::ApiKey(_) => Authentication::Verified(Principal {
                    name: "acme".to_owned(),
                    claims: None,
                }),
            },
        }
    }

    fn route_limit(
        &mut self,
        _: &CompiledRoute,
        _: &RateLimit,
        _: Option<&Principal>,
    ) -> LimitOutcome {
        match &self.spec.route_limit {
            None => LimitOutcome::Admitted,
            Some(refusal) => LimitOutcome::Refused(refusal.clone()),
        }
    }
}

/// A path or pattern as a lenient router reads it: decoded until no `%25` is left, escapes of
/// unreserved characters, `/`, `\\`, `;` and `.` decoded (and of the letters whose Unicode case
/// mapping is ASCII), parameters cut, dot segments resolved, empty segments dropped, lowercased,
/// and the last segment's suffix cut when `cut_suffix`.
fn fold(text: &str, cut_suffix: bool) -> String {
    let hex = |s: &str| s.len() == 2 && s.chars().all(|c| c.is_ascii_hexdigit());
    let mut text = text.to_owned();
    while let Some(at) = (0..text.len())
        .find(|&i| text.get(i..i + 3) == Some("%25") && text.get(i + 3..i + 5).is_some_and(hex))
    {
        text.replace_range(at + 1..at + 3, "");
    }
    for (escape, letter) in [
        ("%E2%84%AA", "k"),
        ("%C5%BF", "s"),
        ("%C4%B1", "i"),
        ("%C4%B0", "i"),
    ] {
        text = text.replace(escape, letter);
    }
    let mut decoded = String::new();
    let mut rest = text.as_str();
    while let Some(c) = rest.chars().next() {
        let byte = (c == '%')
            .then(|| rest.get(1..3).filter(|h| hex(h)))
            .flatten()
            .map(|h| u8::from_str_radix(h, 16).unwrap());
        match byte {
            Some(b'\\') => decoded.push('/'),
            Some(b) if b.is_ascii_alphanumeric() || b"-._~/;".contains(&b) => {
                decoded.push(b as char)
            }
            Some(_) => decoded.push_str(&rest[..3].to_ascii_uppercase()),
            None => decoded.push(c),
        }
        rest = &rest[if byte.is_some() { 3 } else { 1 }..];
    }
    let mut segments: Vec<String> = Vec::new();
    for segment in decoded.split('/') {
        let segment = segment.split(';').next().unwrap();
        if segment == ".." {
            segments.pop();
        } else if segment.starts_with('{') || segment == "..." {
            segments.push(segment.to_owned());
        } else if !segment.is_empty() && segment != "." {
            // Lowercase all but the hex digits after each `%`.
            let mut folded = String::new();
            let mut hex_left = 0;
            for c in segment.chars() {
                if hex_left > 0 {
                    hex_left -= 1;
                    folded.push(c);
                } else {
                    hex_left = if c == '%' { 2 } else { 0 };
                    folded.push(c.to_ascii_lowercase());
                }
            }
            segments.push(folded);
        }
    }
    if cut_suffix
        && let Some(last) = segments.last_mut()
        && !last.starts_with('{')
        && let Some(dot) = last[1..].find('.')
    {
        last.truncate(dot + 1);
    }
    format!("/{}", segments.join("/"))
}

/// Whether every request `a`'s checks admit, `b`'s admit too.
fn guards_at_least(a: &Route, b: &Route) -> bool {
    let auth = match (&a.auth, &b.auth) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some(x), Some(y)) => {
            x.method == y.method
                && y.scopes.iter().all(|s| x.scopes.contains(s))
                && y.claims.iter().all(|c| x.claims.contains(c))
        }
    };
    let sources = b.sources.is_empty()
        || (!a.sources.is_empty()
            && a.sources
                .iter()
                .all(|n| b.sources.iter().any(|o| o.contains(n))));
    let mode = b.mode == Mode::Audit || a.mode == Mode::Enforce;
    let limit = b.rate_limit.is_none() || a.rate_limit == b.rate_limit;
    auth && sources && mode && limit
}

/// The first route (patterns in the order the manifest first names them, then file order) of
/// another pattern that the folded path matches most specifically and that guards more than
/// `route`.
fn more_guarded<'m>(m: &'m Manifest, route: &Route, path: &str) -> Option<&'m Route> {
    let folded = fold(path, true);
    let matching: Vec<(usize, &Route, PathPattern)> = m
        .routes
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let cut_suffix = !r.path.text.ends_with("/...");
            Some((
                i,
                r,
                PathPattern::parse(&fold(&r.path.text, cut_suffix)).ok()?,
            ))
        })
        .filter(|(_, _, p)| p.matches(&folded))
        .collect();
    let best = matching.iter().map(|(_, _, p)| p.specificity()).max()?;
    let first_of = |text: &str| m.routes.iter().position(|r| r.path.text == text);
    let mut others: Vec<(usize, &Route)> = matching
        .into_iter()
        .filter(|(_, r, p)| p.specificity() == best && r.path.text != route.path.text)
        .map(|(i, r, _)| (i, r))
        .collect();
    others.sort_by_key(|(i, r)| (first_of(&r.path.text), *i));
    others
        .into_iter()
        .map(|(_, r)| r)
        .find(|other| !guards_at_least(route, other))
}

/// The simple model: (verdict, rule, reason) as the documentation describes them.
fn naive(
    m: &Manifest,
    method: &str,
    raw_path: &str,
    client: IpAddr,
    length: Option<u64>,
    facts: &FactsSpec,
) -> (Verdict, Option<String>, String) {
    let deny = |rule: Option<&Route>, reason: String| {
        (Verdict::Deny, rule.map(|r| r.id.to_string()), reason)
    };
    // Refusals before a route's checks count against the client's budget; past it, a 429.
    let unrouted = |rule: Option<&Route>, reason: String| {
        let reason = if facts.budget_admits {
            reason
        } else {
            "refusal budget of the gateway: 10 per second, burst 100, by ip (`ip:x`)".to_owned()
        };
        deny(rule, reason)
    };
    let path = match normalize_path(raw_path) {
        Ok(p) => p.as_str().to_owned(),
        Err(e) => return unrouted(None, format!("invalid path: {e}")),
    };
    // The most specific matching pattern wins; among its routes, the first admitting the method.
    let matching: Vec<(&Route, PathPattern)> = m
        .routes
        .iter()
        .map(|r| (r, PathPattern::parse(&r.path.text).unwrap()))
        .filter(|(_, p)| p.matches(&path))
        .collect();
    let Some(best) = matching.iter().map(|(_, p)| p.specificity()).max() else {
        return unrouted(None, format!("no route for `{path}`"));
    };
    let candidates: Vec<&Route> = matching
        .iter()
        .filter(|(_, p)| p.specificity() == best)
        .map(|(r, _)| *r)
        .collect();
    let Some(route) = candidates
        .iter()
        .find(|r| r.methods.admits(method))
        .copied()
    else {
        let route = candidates[0];
        return unrouted(
            Some(route),
            format!("route `{}` does not admit method `{method}`", route.id),
        );
    };
    if let Some(other) = more_guarded(m, route, &path) {
        return deny(
            Some(route),
            format!(
                "ambiguous path: `{path}` matches route `{}`, but a lenient router reads it as the path of route `{}`, which guards more",
                route.id, other.id
            ),
        );
    }
    let audit = route.mode == Mode::Audit;
    let mut audited: Option<String> = None;
    // A refusal: enforced, or remembered when audit mode lets it through.
    let mut refuse = |reason: String, auditable: bool| -> Option<String> {
        if audit && auditable {
            audited.get_or_insert(reason);
            None
        } else {
            Some(reason)
        }
    };
    let limit_text = |what: &str, refusal: &LimitRefusal| match refusal {
        LimitRefusal::Exceeded { key } => {
            format!("rate limit of {what}: 1 per second, burst 1, by ip (`{key}`)")
        }
        LimitRefusal::Aggregated { .. } => unreachable!("the model's limiters never aggregate"),
        LimitRefusal::TableFull => format!("rate limit of {what}: its key table is full"),
        LimitRefusal::Unavailable => format!("rate limit of {what}: the limiter is unavailable"),
    };
    let enforced = (|| {
        if m.gateway.rate_limit.is_some() && !facts.gateway_admits {
            let refusal = LimitRefusal::Exceeded {
                key: "gateway".to_owned(),
            };
            return refuse(limit_text("the gateway", &refusal), false);
        }
        if !route.sources.is_empty() && !route.sources.iter().any(|n| n.contains(&client)) {
            let reason = format!(
                "client address {client} is not in route `{}`'s sources",
                route.id
            );
            if let Some(r) = refuse(reason, true) {
                return Some(r);
            }
        }
        if let Some(auth) = &route.auth {
            let jwt = matches!(auth.method, AuthMethod::Jwt(_));
            let failed = match (facts.credential, jwt) {
                (0, true) => Some("jwt: no bearer token".to_owned()),
                (0, false) => Some("api key: none presented".to_owned()),
                (1, true) => Some("jwt: bad signature".to_owned()),
                (1, false) => Some("api key: bad signature".to_owned()),
                (_, false) => None,
                (_, true) => {
                    let granted: Vec<&str> = facts
                        .scopes
                        .iter()
                        .zip(SCOPES)
                        .filter(|(on, _)| **on)
                        .map(|(_, s)| s)
                        .collect();
                    let tenant = ClaimValue::String(TENANTS[facts.tenant].to_owned());
                    match auth.scopes.iter().find(|s| !granted.contains(&s.as_str())) {
                        Some(missing) => {
                            Some(format!("jwt: missing scope `{missing}` (subject `alice`)"))
                        }
                        None => auth
                            .claims
                            .iter()
                            .find(|c| c.any_of != [tenant.clone()])
                            .map(|c| {
                                format!(
                                    "jwt: claim `tenant` is not {} (subject `alice`)",
                                    c.any_of[0]
                                )
                            }),
                    }
                }
            };
            if let Some(reason) = failed
                && let Some(r) = refuse(reason, true)
            {
                return Some(r);
            }
        }
        if route.rate_limit.is_some()
            && let Some(refusal) = &facts.route_limit
        {
            let reason = limit_text(&format!("route `{}`", route.id), refusal);
            if let Some(r) = refuse(reason, true) {
                return Some(r);
            }
        }
        if let Some(length) = length.filter(|l| *l > route.max_body_bytes) {
            let reason = format!(
                "request body of {length} bytes is over route `{}`'s limit of {} bytes",
                route.id, route.max_body_bytes
            );
            return refuse(reason, false);
        }
        None
    })();
    let rule = Some(route.id.to_string());
    match (enforced, audited) {
        (Some(reason), _) => (Verdict::Deny, rule, reason),
        (None, Some(reason)) => (Verdict::Audit, rule, reason),
        (None, None) => (Verdict::Allow, rule, "allowed".to_owned()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn decide_ingress_agrees_with_a_naive_reading(
        routes in prop::collection::vec(route_spec(), 1..6),
        gateway_limit in prop::bool::weighted(0.2),
        requests in prop::collection::vec(
            (0..METHODS.len(), 0..PATHS.len(), 0..CLIENTS.len(), 0..LENGTHS.len(), facts_spec()),
            20,
        ),
    ) {
        let m = manifest(&routes, gateway_limit);
        // Overlapping routes are refused when the policy compiles; the model has nothing to say
        // about them.
        let Ok(policy) = Policy::compile(m.clone()) else {
            return Ok(());
        };
        for (method, path, client, length, facts) in requests {
            let (method, path) = (METHODS[method], PATHS[path]);
            let client: IpAddr = CLIENTS[client].parse().unwrap();
            let request = IngressRequest {
                method,
                path,
                client,
                declared_length: LENGTHS[length],
                probe: false,
            };
            let mut recorded = Recorded { spec: &facts, authenticated: 0 };
            let got = policy.decide_ingress(&request, &mut recorded);
            let want = naive(&m, method, path, client, LENGTHS[length], &facts);
            prop_assert_eq!(
                (
                    got.decision.verdict,
                    got.decision.rule.as_ref().map(ToString::to_string),
                    got.decision.reason.to_string(),
                ),
                want.clone(),
                "{} {} from {} ({:?}) with {:?}", method, path, client, LENGTHS[length], facts
            );
            // A token is verified at most once, and a principal handed on only when admitted.
            prop_assert!(recorded.authenticated <= 1);
            if got.principal.is_some() {
                prop_assert!(got.decision.verdict.permits());
            }
            // A probe of the same request is decided by routing alone.
            let probe = policy.decide_ingress(&IngressRequest::probe(method, path), &mut recorded);
            let routed = want.0 != Verdict::Deny || !(want.2.starts_with("invalid path")
                || want.2.starts_with("ambiguous path")
                || want.2.starts_with("no route") || want.2.contains("does not admit method")
                || want.2.starts_with("refusal budget"));
            prop_assert_eq!(probe.decision.verdict.permits(), routed, "probe of {} {}", method, path);
        }
    }
}
