//! A route's `auth`: the JWT issuer or API key set it names, the scopes and claims a token must
//! carry, and the claims forwarded to the function.

use std::collections::BTreeMap;

use super::Loader;
use super::routes::http_header_name;
use crate::diagnostic::{Diagnostic, did_you_mean};
use crate::model::*;
use crate::raw::*;

impl Loader {
    /// A route's `auth`: who may call, and what their token must carry.
    pub(super) fn route_auth(
        &mut self,
        raw: &RawRouteAuth,
        jwt: &BTreeMap<Name, JwtIssuer>,
        api_keys: &BTreeMap<Name, ApiKeySet>,
    ) -> Option<RouteAuth> {
        let method = self.auth_method(raw, jwt, api_keys)?;
        let claims = self.claim_matches(raw);
        let forward_claims = self.forward_claims(raw);
        Some(RouteAuth {
            method,
            scopes: raw.scopes.clone(),
            claims,
            forward_claims,
        })
    }

    /// Exactly one of `jwt` or `api_key`, naming a declared issuer or set; an API key carries
    /// no scopes or claims to require.
    fn auth_method(
        &mut self,
        raw: &RawRouteAuth,
        jwt: &BTreeMap<Name, JwtIssuer>,
        api_keys: &BTreeMap<Name, ApiKeySet>,
    ) -> Option<AuthMethod> {
        match (&raw.jwt, &raw.api_key) {
            (Some(j), None) => match jwt.get(j.get_ref().as_str()) {
                Some(issuer) => Some(AuthMethod::Jwt(issuer.name.clone())),
                None => {
                    let hint = did_you_mean(j.get_ref(), jwt.keys().map(Name::as_str));
                    self.unknown(&j.span(), "JWT issuer", j.get_ref(), hint, "[jwt.NAME]");
                    None
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
                    Some(set) => Some(AuthMethod::ApiKey(set.name.clone())),
                    None => {
                        let hint = did_you_mean(k.get_ref(), api_keys.keys().map(Name::as_str));
                        self.unknown(
                            &k.span(),
                            "API key set",
                            k.get_ref(),
                            hint,
                            "[api_keys.NAME]",
                        );
                        None
                    }
                }
            }
            (Some(j), Some(_)) => {
                self.error(&j.span(), "`auth` takes `jwt` or `api_key`, not both");
                None
            }
            (None, None) => {
                self.errors.push(Diagnostic::whole_file(
                    "a route's `auth` needs `jwt` or `api_key`",
                ));
                None
            }
        }
    }

    /// `claims`: each a claim name with at least one value; a bad one is reported and left out.
    fn claim_matches(&mut self, raw: &RawRouteAuth) -> Vec<ClaimMatch> {
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
        claims
    }

    /// `forward_claims`: claims whose names can become `septa-claim-NAME` headers.
    fn forward_claims(&mut self, raw: &RawRouteAuth) -> Vec<String> {
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
        forward_claims
    }
}

/// A claim name septa can match: printable, no spaces, at most 64 bytes.
pub(super) fn claim_name(text: &str) -> bool {
    !text.is_empty() && text.len() <= 64 && text.bytes().all(|b| b.is_ascii_graphic())
}

fn claim_value(raw: &RawClaimValue) -> ClaimValue {
    match raw {
        RawClaimValue::String(s) => ClaimValue::String(s.clone()),
        RawClaimValue::Integer(i) => ClaimValue::Integer(*i),
        RawClaimValue::Bool(b) => ClaimValue::Bool(*b),
    }
}
