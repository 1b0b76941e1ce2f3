//! Authentication and authorization at the gateway: JWT bearer tokens checked against a
//! route's issuer, scopes and claims, or API keys, plugged in as an [`crate::Admission`] check.
//! What it establishes is a [`Principal`], which the ingress hands to the function as headers.

mod base64url;
mod jwks;
pub mod jwt;
pub mod refresh;

use std::collections::HashMap;
use std::sync::Arc;

use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{HeaderName, HeaderValue, StatusCode};
use septa_manifest::{ApiKey, ApiKeySet, AuthMethod, JwtIssuer, Manifest};

use crate::{Admission, Admit, Rejection};
use jwt::{Claims, JwtError, JwtVerifier};

/// The header carrying the authenticated principal (`sub`) to the function.
pub const PRINCIPAL_HEADER: &str = "septa-principal";

/// The prefix of the headers carrying a route's `forward_claims` to the function.
pub const CLAIM_HEADER_PREFIX: &str = "septa-claim-";

/// Who a request authenticated as: a token's subject with its claims, or a key's consumer.
#[derive(Clone, Debug)]
pub struct Principal {
    /// `sub`, or the API key's consumer.
    pub name: String,
    /// The verified token's claims; `None` for an API key.
    pub claims: Option<Claims>,
}

impl Principal {
    /// The headers the function gets: the principal, and each of `forward` the token carries.
    pub fn headers(&self, forward: &[String]) -> Vec<(HeaderName, HeaderValue)> {
        let mut out = Vec::new();
        if let Ok(value) = HeaderValue::from_str(&self.name) {
            out.push((HeaderName::from_static(PRINCIPAL_HEADER), value));
        }
        let Some(claims) = &self.claims else {
            return out;
        };
        for claim in forward {
            let name = format!("{CLAIM_HEADER_PREFIX}{}", claim.to_ascii_lowercase());
            let (Ok(name), Some(Ok(value))) = (
                HeaderName::from_bytes(name.as_bytes()),
                claims.text(claim).map(|t| HeaderValue::from_str(&t)),
            ) else {
                continue;
            };
            out.push((name, value));
        }
        out
    }
}

/// Checks routes' `auth`: a valid bearer token from the route's issuer with every scope, or a
/// known API key.
pub struct RouteAuthAdmission {
    verifiers: HashMap<String, Arc<JwtVerifier>>,
    key_sets: HashMap<String, ApiKeys>,
}

/// The error loading credentials at start-up.
#[derive(Debug, thiserror::Error)]
pub enum AuthLoadError {
    /// A JWKS could not be loaded.
    #[error(transparent)]
    Jwt(#[from] JwtError),
    /// An API key file could not be read or has a bad line.
    #[error("api key set `{set}`: `{path}`: {message}")]
    ApiKeys {
        /// The set.
        set: String,
        /// The file.
        path: String,
        /// What is wrong (line numbers are 1-based).
        message: String,
    },
}

impl RouteAuthAdmission {
    /// Loads every `[jwt.NAME]` issuer's keys and every `[api_keys.NAME]` set. Issuers whose
    /// keys are fetched start with none: hand [`RouteAuthAdmission::fetched_issuers`] to
    /// [`refresh::KeyRefresh`].
    ///
    /// An issuer whose keys are fetched and whose declaration is unchanged since `previous`
    /// (the fetched issuers of the gateway this one replaces) keeps its verifier, with the keys
    /// and verified tokens it holds: a reload never leaves its routes without keys while a
    /// first fetch runs. Issuers with a `jwks_file` read it again.
    pub fn load(
        manifest: &Manifest,
        previous: &[(Arc<JwtVerifier>, JwtIssuer)],
    ) -> Result<Self, AuthLoadError> {
        let mut verifiers = HashMap::new();
        for issuer in manifest.jwt.values() {
            let carried = previous
                .iter()
                .find(|(_, declared)| declared == issuer)
                .map(|(verifier, _)| verifier.clone());
            let verifier = match carried {
                Some(verifier) => verifier,
                None => Arc::new(JwtVerifier::load(issuer)?),
            };
            verifiers.insert(issuer.name.to_string(), verifier);
        }
        let mut key_sets = HashMap::new();
        for set in manifest.api_keys.values() {
            key_sets.insert(set.name.to_string(), ApiKeys::load(set)?);
        }
        Ok(Self {
            verifiers,
            key_sets,
        })
    }

    /// The issuers whose keys are fetched from a URL, with their declarations.
    pub fn fetched_issuers(&self, manifest: &Manifest) -> Vec<(Arc<JwtVerifier>, JwtIssuer)> {
        manifest
            .jwt
            .values()
            .filter_map(|issuer| {
                let verifier = self.verifiers.get(issuer.name.as_str())?;
                verifier
                    .is_fetched()
                    .then(|| (verifier.clone(), issuer.clone()))
            })
            .collect()
    }

    fn admit_api_key(&self, set: &str, admit: &mut Admit<'_>) -> Result<(), Rejection> {
        let Some(keys) = self.key_sets.get(set) else {
            return Err(challenge(
                "ApiKey",
                format!("api key set `{set}` is not loaded"),
                None,
            ));
        };
        let Some(presented) = admit
            .request
            .headers
            .get(API_KEY_HEADER)
            .map(HeaderValue::as_bytes)
        else {
            return Err(challenge(
                "ApiKey",
                "api key: none presented".to_owned(),
                None,
            ));
        };
        let Some(consumer) = keys.consumer(presented) else {
            return Err(challenge(
                "ApiKey",
                "api key: unknown key".to_owned(),
                Some("invalid_key"),
            ));
        };
        admit.principal = Some(Principal {
            name: consumer.to_owned(),
            claims: None,
        });
        Ok(())
    }
}

/// The header an API key is presented in.
pub const API_KEY_HEADER: &str = "x-api-key";

/// One set's keys, by SHA-256.
struct ApiKeys {
    keys: Vec<([u8; 32], String)>,
}

impl ApiKeys {
    fn load(set: &ApiKeySet) -> Result<Self, AuthLoadError> {
        let mut keys: Vec<([u8; 32], String)> = set
            .keys
            .iter()
            .map(|k| (k.sha256, k.consumer.clone()))
            .collect();
        if let Some(path) = &set.keys_file {
            let fail = |message: String| AuthLoadError::ApiKeys {
                set: set.name.to_string(),
                path: path.display().to_string(),
                message,
            };
            let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let mut fields = line.split_whitespace();
                let (Some(consumer), Some(hash), None) =
                    (fields.next(), fields.next(), fields.next())
                else {
                    return Err(fail(format!(
                        "line {}: expected `CONSUMER SHA256HEX`",
                        n + 1
                    )));
                };
                let Some(sha256) = ApiKey::parse_sha256(hash) else {
                    return Err(fail(format!(
                        "line {}: the hash must be 64 hex digits",
                        n + 1
                    )));
                };
                keys.push((sha256, consumer.to_owned()));
            }
        }
        Ok(Self { keys })
    }

    /// The consumer holding `presented`, comparing against every stored hash in constant time.
    fn consumer(&self, presented: &[u8]) -> Option<&str> {
        let digest = ring::digest::digest(&ring::digest::SHA256, presented);
        let mut found = None;
        for (hash, consumer) in &self.keys {
            let mut diff = 0u8;
            for (a, b) in hash.iter().zip(digest.as_ref()) {
                diff |= a ^ b;
            }
            if std::hint::black_box(diff) == 0 {
                found = Some(consumer.as_str());
            }
        }
        found
    }
}

fn unauthorized(reason: String, error: Option<&str>) -> Rejection {
    challenge("Bearer", reason, error)
}

/// A 401 whose body and challenge say only what RFC 6750 lets them: that the credential is
/// missing or invalid; the flow records `reason`.
fn challenge(scheme: &str, reason: String, error: Option<&str>) -> Rejection {
    let challenge = match error {
        Some(e) => format!("{scheme} realm=\"septa\", error=\"{e}\""),
        None => format!("{scheme} realm=\"septa\""),
    };
    Rejection {
        status: StatusCode::UNAUTHORIZED,
        headers: vec![(
            WWW_AUTHENTICATE,
            HeaderValue::from_str(&challenge)
                .unwrap_or_else(|_| HeaderValue::from_static("Bearer")),
        )],
        reason,
    }
}

/// A 403 for a token that is valid but not enough: the challenge says `insufficient_scope`
/// (RFC 6750) whether a scope or a claim was missing; the flow records which.
fn insufficient(reason: String) -> Rejection {
    Rejection {
        status: StatusCode::FORBIDDEN,
        headers: vec![(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"septa\", error=\"insufficient_scope\""),
        )],
        reason,
    }
}

impl Admission for RouteAuthAdmission {
    fn admit(&self, admit: &mut Admit<'_>) -> Result<(), Rejection> {
        let Some(auth) = &admit.route.auth else {
            return Ok(());
        };
        let issuer = match &auth.method {
            AuthMethod::ApiKey(set) => return self.admit_api_key(set.as_str(), admit),
            AuthMethod::Jwt(issuer) => issuer,
        };
        let Some(verifier) = self.verifiers.get(issuer.as_str()) else {
            return Err(unauthorized(
                format!("jwt issuer `{issuer}` is not loaded"),
                None,
            ));
        };
        let token = admit
            .request
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            });
        let Some(token) = token else {
            return Err(unauthorized("jwt: no bearer token".to_owned(), None));
        };
        let claims = verifier
            .verify(token.trim())
            .map_err(|e| unauthorized(format!("jwt: {e}"), Some("invalid_token")))?;
        let granted = claims.scopes();
        if let Some(missing) = auth.scopes.iter().find(|s| !granted.contains(&s.as_str())) {
            return Err(insufficient(format!(
                "jwt: missing scope `{missing}` (subject `{}`)",
                claims.subject()
            )));
        }
        if let Some(failed) = auth.claims.iter().find(|m| !claims.matches(m)) {
            let wanted: Vec<String> = failed.any_of.iter().map(ToString::to_string).collect();
            return Err(insufficient(format!(
                "jwt: claim `{}` is not {} (subject `{}`)",
                failed.claim,
                wanted.join(" or "),
                claims.subject()
            )));
        }
        admit.principal = Some(Principal {
            name: claims.subject().to_owned(),
            claims: Some(claims),
        });
        Ok(())
    }
}
