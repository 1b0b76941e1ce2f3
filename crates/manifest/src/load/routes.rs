//! `[[route]]`s: the function a route dispatches to (which must be a public component), its id,
//! body limits and rate limit, and the header names routes and the gateway may use.

use std::collections::BTreeMap;

use serde_spanned::Spanned;

use super::Loader;
use super::references::References;
use super::route_auth::claim_name;
use crate::diagnostic::{Location, did_you_mean};
use crate::model::*;
use crate::raw::*;

impl Loader {
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
            if let Some(route) = self.route(*at, r, functions, jwt, api_keys, refs) {
                out.push(route);
            }
        }
        out
    }

    /// One route. Its `auth`, body limit and rate limit are checked in that order and the first
    /// refused stops the checks after it, since a rate limit key depends on the authentication.
    fn route(
        &mut self,
        at: Location,
        r: &RawRoute,
        functions: &BTreeMap<Name, Function>,
        jwt: &BTreeMap<Name, JwtIssuer>,
        api_keys: &BTreeMap<Name, ApiKeySet>,
        refs: &mut References,
    ) -> Option<Route> {
        let id = self.route_id(r, refs);
        self.route_target(r, functions);
        let path = self.path_text(&r.path);
        let methods = self.methods(&r.methods);
        let auth = match &r.auth {
            None => None,
            Some(a) => Some(self.route_auth(a, jwt, api_keys)?),
        };
        let max_body_bytes = match &r.max_body_kb {
            None => Route::DEFAULT_MAX_BODY_BYTES,
            Some(kb) => u64::from(self.within(kb, "max_body_kb", 1..=Route::MAX_BODY_KB)?) * 1024,
        };
        let rate_limit = match &r.rate_limit {
            None => None,
            Some(raw) => Some(self.rate_limit(raw, auth.as_ref())?),
        };
        let sources = self.ip_nets(&r.sources);
        let body_timeout_ms = self.bounded(
            r.body_timeout_ms.as_ref(),
            "body_timeout_ms",
            1..=Route::MAX_BODY_TIMEOUT_MS,
            Route::DEFAULT_BODY_TIMEOUT_MS,
        )?;
        let function = functions.get(r.function.get_ref().as_str())?;
        Some(Route {
            id: id?,
            path,
            methods,
            function: function.name.clone(),
            auth,
            max_body_bytes,
            rate_limit,
            sources,
            mode: r.mode.unwrap_or_default(),
            body_timeout_ms,
            location: at,
        })
    }

    /// The route's `id`, or one made from its path, claimed in the namespace of rule ids.
    fn route_id(&mut self, r: &RawRoute, refs: &mut References) -> Option<Name> {
        let (text, span) = match &r.id {
            Some(id) => (id.get_ref().clone(), id.span()),
            None => (route_id_from_path(r.path.get_ref()), r.path.span()),
        };
        let id = match Name::new(&text) {
            Ok(id) => id,
            Err(e) => {
                self.error(&span, format!("route id: {e}"));
                return None;
            }
        };
        refs.claim_id(self, &id, &span);
        Some(id)
    }

    /// Refuses a route to anything but a declared component in a public subnet.
    fn route_target(&mut self, r: &RawRoute, functions: &BTreeMap<Name, Function>) {
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
}

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

/// A route without an `id` is named after its path: `/api/checkout` → `api-checkout`.
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
