//! The third stage of loading: routes, allow and egress rules, whose selectors must name
//! places that exist and whose ids must be unique.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::ops::Range;

use serde_spanned::Spanned;

use super::{Loader, METHODS};
use crate::diagnostic::{Location, did_you_mean};
use crate::egress::EgressTarget;
use crate::model::*;
use crate::raw::*;
use crate::selector::Selector;

impl Loader {
    pub(super) fn methods(&mut self, raw: &Option<Vec<Spanned<String>>>) -> Methods {
        let Some(list) = raw else { return Methods::Any };
        if list.len() == 1 && list[0].get_ref() == "*" {
            return Methods::Any;
        }
        let mut out = Vec::new();
        for m in list {
            let text = m.get_ref();
            if METHODS.contains(&text.as_str()) {
                out.push(text.clone());
            } else if METHODS.contains(&text.to_ascii_uppercase().as_str()) {
                self.error(
                    &m.span(),
                    format!(
                        "method `{text}` must be upper-case: `{}`",
                        text.to_ascii_uppercase()
                    ),
                );
            } else {
                self.error_help(
                    &m.span(),
                    format!("unknown method `{text}`"),
                    format!(
                        "methods are {} or `[\"*\"]` for any",
                        METHODS.map(|m| format!("`{m}`")).join(", ")
                    ),
                );
            }
        }
        Methods::Only(out)
    }

    pub(super) fn path_text(&mut self, raw: &Spanned<String>) -> PathText {
        if !raw.get_ref().starts_with('/') {
            self.error(
                &raw.span(),
                format!("path `{}` must start with `/`", raw.get_ref()),
            );
        }
        PathText {
            text: raw.get_ref().clone(),
            location: self.loc(&raw.span()),
        }
    }

    pub(super) fn routes(
        &mut self,
        raw: &[(Location, RawRoute)],
        functions: &BTreeMap<Name, Function>,
        jwt: &BTreeMap<Name, JwtIssuer>,
        api_keys: &BTreeMap<Name, ApiKeySet>,
        refs: &mut References,
    ) -> Vec<Route> {
        let mut out = Vec::new();
        for (at, r) in raw {
            let id_text =
                r.id.as_ref()
                    .map(|i| i.get_ref().clone())
                    .unwrap_or_else(|| route_id_from_path(r.path.get_ref()));
            let id_span =
                r.id.as_ref()
                    .map(Spanned::span)
                    .unwrap_or_else(|| r.path.span());
            let id = match Name::new(&id_text) {
                Ok(id) => Some(id),
                Err(e) => {
                    self.error(&id_span, format!("route id: {e}"));
                    None
                }
            };
            if let Some(id) = &id {
                refs.claim_id(self, id, &id_span);
            }
            let function = r.function.get_ref();
            match functions.get(function.as_str()) {
                None => {
                    let hint = did_you_mean(function, functions.keys().map(Name::as_str));
                    self.unknown(&r.function.span(), "function", function, hint, "[function.NAME]");
                }
                Some(f) if f.is_endpoint() => self.error_help(
                    &r.function.span(),
                    format!("route `{}` targets endpoint `{function}`; endpoints have no listener and are reached only through the mesh", r.path.get_ref()),
                    "route to a function that reads the endpoint through an `[[allow]]` rule",
                ),
                Some(f) if f.subnet_kind != SubnetKind::Public => self.error_help(
                    &r.function.span(),
                    format!(
                        "route `{}` targets function `{function}` in {} subnet `{}`; the gateway only routes to public subnets",
                        r.path.get_ref(),
                        f.subnet_kind,
                        f.placement
                    ),
                    "route to a public function that calls it through an `[[allow]]` rule",
                ),
                Some(_) => {}
            }
            let path = self.path_text(&r.path);
            let methods = self.methods(&r.methods);
            let auth = match &r.auth {
                None => None,
                Some(a) => match self.route_auth(a, jwt, api_keys) {
                    Some(auth) => Some(auth),
                    None => continue,
                },
            };
            let max_body_bytes = match &r.max_body_kb {
                None => Route::DEFAULT_MAX_BODY_BYTES,
                Some(kb) if *kb.get_ref() == 0 || *kb.get_ref() > Route::MAX_BODY_KB => {
                    self.error(
                        &kb.span(),
                        format!(
                            "`max_body_kb` must be between 1 and {}, not {}",
                            Route::MAX_BODY_KB,
                            kb.get_ref()
                        ),
                    );
                    continue;
                }
                Some(kb) => u64::from(*kb.get_ref()) * 1024,
            };
            let rate_limit = match &r.rate_limit {
                None => None,
                Some(raw) => match self.rate_limit(raw, auth.as_ref()) {
                    Some(limit) => Some(limit),
                    None => continue,
                },
            };
            let sources = self.ip_nets(&r.sources);
            let body_timeout_ms = match &r.body_timeout_ms {
                None => Route::DEFAULT_BODY_TIMEOUT_MS,
                Some(ms) if *ms.get_ref() == 0 || *ms.get_ref() > Route::MAX_BODY_TIMEOUT_MS => {
                    self.error(
                        &ms.span(),
                        format!(
                            "`body_timeout_ms` must be between 1 and {}, not {}",
                            Route::MAX_BODY_TIMEOUT_MS,
                            ms.get_ref()
                        ),
                    );
                    continue;
                }
                Some(ms) => *ms.get_ref(),
            };
            let (Some(id), Some(f)) = (id, functions.get(function.as_str())) else {
                continue;
            };
            out.push(Route {
                id,
                path,
                methods,
                function: f.name.clone(),
                auth,
                max_body_bytes,
                rate_limit,
                sources,
                mode: r.mode.unwrap_or_default(),
                body_timeout_ms,
                location: *at,
            });
        }
        out
    }

    pub(super) fn allows(
        &mut self,
        raw: &[(Location, RawAllow)],
        refs: &mut References,
    ) -> Vec<AllowRule> {
        let mut out = Vec::new();
        for (at, r) in raw {
            let id = self.rule_id(&r.id, refs);
            let from = self.selector(&r.from, refs, "from");
            let from = from.filter(|sel| self.not_an_endpoint_source(sel, &r.from));
            let to = self.selector(&r.to, refs, "to");
            let methods = self.methods(&r.methods);
            let paths = match &r.paths {
                None => Paths::Any,
                Some(list) => Paths::Only(list.iter().map(|p| self.path_text(p)).collect()),
            };
            let (Some(id), Some(from), Some(to)) = (id, from, to) else {
                continue;
            };
            out.push(AllowRule {
                id,
                from,
                to,
                methods,
                paths,
                location: *at,
            });
        }
        out
    }

    pub(super) fn egress(
        &mut self,
        raw: &[(Location, RawEgress)],
        refs: &mut References,
    ) -> Vec<EgressRule> {
        let mut out = Vec::new();
        for (at, r) in raw {
            let id = self.rule_id(&r.id, refs);
            let from = self.selector(&r.from, refs, "from");
            let from = from.filter(|sel| self.not_an_endpoint_source(sel, &r.from));
            if let Some(sel) = &from {
                let isolated: Vec<&str> = refs.isolated_functions_in(sel);
                if !isolated.is_empty() {
                    self.error_help(
                        &r.from.span(),
                        format!(
                            "egress rule `{}` selects {} in an isolated subnet; isolated subnets have no egress at all",
                            r.id.get_ref(),
                            isolated.iter().map(|f| format!("function `{f}`")).collect::<Vec<_>>().join(", ")
                        ),
                        "move the function to a private subnet, or narrow `from`",
                    );
                }
            }
            let mut to = Vec::new();
            for t in &r.to {
                match EgressTarget::parse(t.get_ref()) {
                    Ok(target) => to.push(target),
                    Err(e) => self.error(&t.span(), e),
                }
            }
            let (Some(id), Some(from)) = (id, from) else {
                continue;
            };
            out.push(EgressRule {
                id,
                from,
                to,
                location: *at,
            });
        }
        out
    }

    /// Refuses `from = "endpoint:NAME"`: endpoints answer, they never call.
    fn not_an_endpoint_source(&mut self, sel: &Selector, raw: &Spanned<String>) -> bool {
        if let Selector::Endpoint(n) = sel {
            self.error_help(
                &raw.span(),
                format!("endpoint `{n}` cannot be a rule's `from`: endpoints answer calls, they never make them"),
                "rules open flows from functions; name the function that calls the endpoint",
            );
            return false;
        }
        true
    }

    fn rate_limit(&mut self, raw: &RawRateLimit, auth: Option<&RouteAuth>) -> Option<RateLimit> {
        let text = raw.key.get_ref().as_str();
        let key = match text {
            "ip" => RateLimitKey::Ip,
            "principal" => RateLimitKey::Principal,
            "route" => RateLimitKey::Route,
            "api_key" => RateLimitKey::ApiKey,
            other => match (other.strip_prefix("header:"), other.strip_prefix("claim:")) {
                (Some(h), _) if http_header_name(h).is_some() => {
                    RateLimitKey::Header(h.to_ascii_lowercase())
                }
                (_, Some(c)) if claim_name(c) => RateLimitKey::Claim(c.to_owned()),
                _ => {
                    self.error_help(
                        &raw.key.span(),
                        format!("unknown rate limit key `{other}`"),
                        "keys are `ip`, `principal`, `api_key`, `claim:NAME`, `header:NAME` and `route`",
                    );
                    return None;
                }
            },
        };
        let needs = match (&key, auth.map(|a| &a.method)) {
            (RateLimitKey::ApiKey, Some(AuthMethod::ApiKey(_)))
            | (RateLimitKey::Claim(_), Some(AuthMethod::Jwt(_))) => None,
            (RateLimitKey::ApiKey, _) => Some("`auth = { api_key = \"SET\" }`"),
            (RateLimitKey::Claim(_), _) => Some("`auth = { jwt = \"ISSUER\" }`"),
            _ => None,
        };
        if let Some(needs) = needs {
            self.error_help(
                &raw.key.span(),
                format!("rate limit key `{text}` needs the route to authenticate with {needs}"),
                "without it every caller would share one bucket; use `ip` for anonymous routes",
            );
            return None;
        }
        let (per_second, burst) = self.rate(&raw.per_second, raw.burst.as_ref())?;
        Some(RateLimit {
            key,
            per_second,
            burst,
        })
    }

    /// A rate and burst within bounds; the burst defaults to the rate.
    pub(super) fn rate(
        &mut self,
        per_second: &Spanned<u32>,
        burst: Option<&Spanned<u32>>,
    ) -> Option<(u32, u32)> {
        let rate = *per_second.get_ref();
        if rate == 0 || rate > 1_000_000 {
            self.error(
                &per_second.span(),
                "`per_second` must be between 1 and 1000000",
            );
            return None;
        }
        let Some(burst) = burst else {
            return Some((rate, rate));
        };
        if *burst.get_ref() == 0 || *burst.get_ref() > 1_000_000 {
            self.error(&burst.span(), "`burst` must be between 1 and 1000000");
            return None;
        }
        Some((rate, *burst.get_ref()))
    }

    /// A route's `auth`: exactly one of `jwt` or `api_key`, naming a declared set.
    fn route_auth(
        &mut self,
        raw: &RawRouteAuth,
        jwt: &BTreeMap<Name, JwtIssuer>,
        api_keys: &BTreeMap<Name, ApiKeySet>,
    ) -> Option<RouteAuth> {
        let method = match (&raw.jwt, &raw.api_key) {
            (Some(j), None) => match jwt.get(j.get_ref().as_str()) {
                Some(issuer) => AuthMethod::Jwt(issuer.name.clone()),
                None => {
                    let hint = did_you_mean(j.get_ref(), jwt.keys().map(Name::as_str));
                    self.unknown(&j.span(), "JWT issuer", j.get_ref(), hint, "[jwt.NAME]");
                    return None;
                }
            },
            (None, Some(k)) => {
                if !raw.scopes.is_empty()
                    || !raw.claims.is_empty()
                    || !raw.forward_claims.is_empty()
                {
                    self.error(
                        &k.span(),
                        "`scopes`, `claims` and `forward_claims` apply to JWTs; an API key carries none",
                    );
                    return None;
                }
                match api_keys.get(k.get_ref().as_str()) {
                    Some(set) => AuthMethod::ApiKey(set.name.clone()),
                    None => {
                        let hint = did_you_mean(k.get_ref(), api_keys.keys().map(Name::as_str));
                        self.unknown(
                            &k.span(),
                            "API key set",
                            k.get_ref(),
                            hint,
                            "[api_keys.NAME]",
                        );
                        return None;
                    }
                }
            }
            (Some(j), Some(_)) => {
                self.error(&j.span(), "`auth` takes `jwt` or `api_key`, not both");
                return None;
            }
            (None, None) => {
                self.errors.push(crate::diagnostic::Diagnostic::whole_file(
                    "a route's `auth` needs `jwt` or `api_key`",
                ));
                return None;
            }
        };
        let mut claims = Vec::new();
        for (claim, want) in &raw.claims {
            if !claim_name(claim) {
                self.error(&want.span(), format!("`{claim}` is not a claim name"));
                continue;
            }
            let any_of = match want.get_ref() {
                RawClaimMatch::One(v) => vec![claim_value(v)],
                RawClaimMatch::AnyOf(list) => list.iter().map(claim_value).collect(),
            };
            if any_of.is_empty() {
                self.error(
                    &want.span(),
                    format!("claim `{claim}` must match at least one value"),
                );
                continue;
            }
            claims.push(ClaimMatch {
                claim: claim.clone(),
                any_of,
            });
        }
        let mut forward_claims = Vec::new();
        for c in &raw.forward_claims {
            if http_header_name(c.get_ref()).is_some() {
                forward_claims.push(c.get_ref().clone());
            } else {
                self.error_help(
                    &c.span(),
                    format!("claim `{}` cannot be forwarded as a header", c.get_ref()),
                    "forwarded claims become `septa-claim-NAME` headers: letters, digits, `-` and `_`",
                );
            }
        }
        Some(RouteAuth {
            method,
            scopes: raw.scopes.clone(),
            claims,
            forward_claims,
        })
    }

    pub(super) fn api_key_sets(
        &mut self,
        dir: &std::path::Path,
        raw: &[(Spanned<String>, RawApiKeys)],
    ) -> BTreeMap<Name, ApiKeySet> {
        let mut out = BTreeMap::new();
        for (name, set) in raw {
            let Some(n) = self.name(name) else { continue };
            let mut keys = Vec::new();
            for k in &set.keys {
                match ApiKey::parse_sha256(k.sha256.get_ref()) {
                    Some(sha256) => keys.push(ApiKey {
                        consumer: k.consumer.clone(),
                        sha256,
                    }),
                    None => self.error_help(
                        &k.sha256.span(),
                        "`sha256` must be 64 hex digits",
                        "store the SHA-256 of the key, never the key: `printf %s KEY | sha256sum`",
                    ),
                }
            }
            if set.keys.is_empty() && set.keys_file.is_none() {
                self.error(
                    &name.span(),
                    format!("`api_keys.{n}` has no `keys` and no `keys_file`"),
                );
            }
            out.insert(
                n.clone(),
                ApiKeySet {
                    name: n,
                    keys,
                    keys_file: set.keys_file.as_ref().map(|f| dir.join(f)),
                    location: self.loc(&name.span()),
                },
            );
        }
        out
    }

    pub(super) fn invariants(
        &mut self,
        raw: &[(Location, RawInvariant)],
        refs: &References,
    ) -> Vec<Invariant> {
        let mut out = Vec::new();
        let mut ids = HashSet::new();
        for (at, r) in raw {
            let id = self.entry_id(&r.id, &mut ids, "invariant");
            let from = self.invariant_selector(&r.deny_path.from, refs);
            let to = self.invariant_selector(&r.deny_path.to, refs);
            let except: Vec<Option<Selector>> = r
                .deny_path
                .except_through
                .iter()
                .map(|s| self.invariant_selector(s, refs))
                .collect();
            let (Some(id), Some(from), Some(to)) = (id, from, to) else {
                continue;
            };
            let Some(except_through) = except.into_iter().collect::<Option<Vec<_>>>() else {
                continue;
            };
            out.push(Invariant {
                id,
                rule: InvariantRule::DenyPath {
                    from,
                    to,
                    except_through,
                },
                location: *at,
            });
        }
        out
    }

    /// Parses a rule's `from` or `to` and checks that what it names exists.
    pub(super) fn selector(
        &mut self,
        raw: &Spanned<String>,
        refs: &References,
        field: &str,
    ) -> Option<Selector> {
        self.selector_or_gateway(raw, refs, field, false)
    }

    /// Parses `from`, `to` or `except_through` of an invariant, where `gateway` is a place.
    pub(super) fn invariant_selector(
        &mut self,
        raw: &Spanned<String>,
        refs: &References,
    ) -> Option<Selector> {
        self.selector_or_gateway(raw, refs, "", true)
    }

    fn selector_or_gateway(
        &mut self,
        raw: &Spanned<String>,
        refs: &References,
        field: &str,
        gateway_is_a_place: bool,
    ) -> Option<Selector> {
        let sel = match Selector::parse(raw.get_ref()) {
            Ok(s) => s,
            Err(e) => {
                self.error(&raw.span(), e);
                return None;
            }
        };
        let span = raw.span();
        match &sel {
            Selector::Gateway if gateway_is_a_place => {}
            Selector::Gateway => {
                self.error_help(
                    &span,
                    format!("`{field} = \"gateway\"` is not a rule: the gateway is opened only by `[[route]]` entries"),
                    "declare a `[[route]]` to a function in a public subnet",
                );
                return None;
            }
            Selector::Segment(n) if !refs.segments.contains_key(n) => {
                let hint = did_you_mean(n.as_str(), refs.segments.keys().map(Name::as_str));
                self.unknown(&span, "segment", n.as_str(), hint, "[segment.NAME]");
                return None;
            }
            Selector::Subnet(seg, sub) => {
                let known = refs
                    .segments
                    .get(seg)
                    .is_some_and(|s| s.subnets.contains_key(sub));
                if !known {
                    self.unknown(
                        &span,
                        "subnet",
                        &format!("{seg}/{sub}"),
                        None,
                        "subnets = { NAME = ... } in its segment",
                    );
                    return None;
                }
            }
            Selector::Group(n) if !refs.groups.contains(n.as_str()) => {
                let hint = did_you_mean(n.as_str(), refs.groups.iter().copied());
                self.unknown(&span, "group", n.as_str(), hint, "[group.NAME]");
                return None;
            }
            Selector::Function(n) | Selector::Endpoint(n) => {
                let is_endpoint = matches!(sel, Selector::Endpoint(_));
                let (kind, section, other, mismatch) = if is_endpoint {
                    (
                        "endpoint",
                        "[endpoint.NAME]",
                        "function",
                        "is a function, not an endpoint",
                    )
                } else {
                    (
                        "function",
                        "[function.NAME]",
                        "endpoint",
                        "is an endpoint, not a function",
                    )
                };
                match refs.functions.get(n) {
                    Some(f) if f.is_endpoint() == is_endpoint => {}
                    Some(_) => {
                        self.error_help(
                            &span,
                            format!("`{n}` {mismatch}"),
                            format!("write `{other}:{n}`"),
                        );
                        return None;
                    }
                    None => {
                        let names = refs
                            .functions
                            .values()
                            .filter(|f| f.is_endpoint() == is_endpoint)
                            .map(|f| f.name.as_str());
                        let hint = did_you_mean(n.as_str(), names);
                        self.unknown(&span, kind, n.as_str(), hint, section);
                        return None;
                    }
                }
            }
            Selector::Label(n) if !refs.labels.contains(n.as_str()) => {
                let hint = did_you_mean(n.as_str(), refs.labels.iter().map(String::as_str));
                self.error_help(
                    &span,
                    match hint {
                        Some(h) => {
                            format!("no segment or function has label `{n}` (did you mean `{h}`?)")
                        }
                        None => format!("no segment or function has label `{n}`"),
                    },
                    "add it to `labels = [...]` of a segment or function",
                );
                return None;
            }
            _ => {}
        }
        Some(sel)
    }
}

/// A route without an `id` is named after its path: `/api/checkout` → `api-checkout`.
/// A header name as septa writes it (lower case), if `text` is one it accepts: ASCII letters,
/// digits, `-` and `_`.
pub(super) fn http_header_name(text: &str) -> Option<String> {
    let ok = !text.is_empty()
        && text.len() <= 64
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then(|| text.to_ascii_lowercase())
}

/// A claim name septa can match: printable, no spaces, at most 64 bytes.
fn claim_name(text: &str) -> bool {
    !text.is_empty() && text.len() <= 64 && text.bytes().all(|b| b.is_ascii_graphic())
}

fn claim_value(raw: &RawClaimValue) -> ClaimValue {
    match raw {
        RawClaimValue::String(s) => ClaimValue::String(s.clone()),
        RawClaimValue::Integer(i) => ClaimValue::Integer(*i),
        RawClaimValue::Bool(b) => ClaimValue::Bool(*b),
    }
}

pub(super) fn route_id_from_path(path: &str) -> String {
    let mut id = String::new();
    for c in path.chars() {
        if c.is_ascii_alphanumeric() {
            id.push(c.to_ascii_lowercase());
        } else if !id.is_empty() && !id.ends_with('-') {
            id.push('-');
        }
    }
    while id.ends_with('-') {
        id.pop();
    }
    if id.is_empty() {
        id.push_str("root");
    }
    id
}

/// What rules may refer to, and the rule ids claimed so far.
pub(super) struct References<'a> {
    segments: &'a BTreeMap<Name, Segment>,
    groups: BTreeSet<&'a str>,
    functions: &'a BTreeMap<Name, Function>,
    /// The components in isolated subnets, which egress rules may not select (endpoints are
    /// left out: they never call anything, so a rule naming their segment opens nothing for
    /// them).
    isolated: Vec<&'a Function>,
    labels: BTreeSet<String>,
    ids: HashSet<Name>,
}

impl<'a> References<'a> {
    pub(super) fn new(
        segments: &'a BTreeMap<Name, Segment>,
        groups: &'a BTreeMap<Name, Group>,
        functions: &'a BTreeMap<Name, Function>,
    ) -> Self {
        let labels = segments
            .values()
            .flat_map(|s| s.labels.iter())
            .chain(functions.values().flat_map(|f| f.labels.iter()))
            .map(|l| l.as_str().to_owned())
            .collect();
        Self {
            segments,
            groups: groups.keys().map(Name::as_str).collect(),
            functions,
            isolated: functions
                .values()
                .filter(|f| f.subnet_kind == SubnetKind::Isolated && !f.is_endpoint())
                .collect(),
            labels,
            ids: HashSet::new(),
        }
    }

    pub(super) fn claim_id(&mut self, loader: &mut Loader, id: &Name, span: &Range<usize>) {
        if !self.ids.insert(id.clone()) {
            loader.error_help(
                span,
                format!("duplicate rule id `{id}`"),
                "route, allow and egress ids share one namespace; give each rule its own id",
            );
        }
    }

    pub(super) fn isolated_functions_in(&self, sel: &Selector) -> Vec<&'a str> {
        self.isolated
            .iter()
            .filter(|f| self.selects(sel, f))
            .map(|f| f.name.as_str())
            .collect()
    }

    pub(super) fn selects(&self, sel: &Selector, f: &Function) -> bool {
        sel.selects(self.segments, f)
    }
}
