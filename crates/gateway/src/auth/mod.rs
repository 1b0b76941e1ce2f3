//! Authentication at the gateway: the machinery that verifies credentials — JWT bearer tokens
//! against an issuer's keys, API keys against a set — and reports what it found to the policy as
//! an [`Authentication`]. Whether a verified principal may call a route (its scopes and claims)
//! is decided by `Policy::decide_ingress`, not here. What the policy admits reaches the function
//! as headers ([`principal_headers`]).

mod base64url;
pub(crate) mod jwks;
pub mod jwt;
pub mod refresh;

use std::collections::HashMap;
use std::sync::Arc;

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue};
use septa_manifest::{ApiKey, ApiKeySet, AuthMethod, JwtIssuer, RouteAuth};
use septa_policy::{Authentication, CredentialProblem, Policy, Principal};

use jwt::{JwtError, JwtVerifier};

pub use septa_runtime::{CLAIM_HEADER_PREFIX, PRINCIPAL_HEADER, principal_headers};

/// Every issuer's verifier and every API key set: what verifies the credential a route asks
/// for.
#[derive(Default)]
pub struct Credentials {
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

impl Credentials {
    /// Loads the keys of every `[jwt.NAME]` issuer of `policy` and every `[api_keys.NAME]` set.
    /// Issuers whose keys are fetched start with none: hand [`Credentials::fetched_issuers`] to
    /// [`refresh::KeyRefresh`].
    ///
    /// An issuer whose keys are fetched and whose declaration is unchanged since `previous`
    /// (the fetched issuers of the gateway this one replaces) keeps its verifier, with the keys
    /// and verified tokens it holds: a reload never leaves its routes without keys while a
    /// first fetch runs. Issuers with a `jwks_file` read it again.
    pub fn load(
        policy: &Policy,
        previous: &[(Arc<JwtVerifier>, JwtIssuer)],
    ) -> Result<Self, AuthLoadError> {
        let mut verifiers = HashMap::new();
        for issuer in policy.jwt_issuers() {
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
        for set in policy.api_key_sets() {
            key_sets.insert(set.name.to_string(), ApiKeys::load(set)?);
        }
        Ok(Self {
            verifiers,
            key_sets,
        })
    }

    /// The issuers of `policy` whose keys are fetched from a URL, with their declarations.
    pub fn fetched_issuers(&self, policy: &Policy) -> Vec<(Arc<JwtVerifier>, JwtIssuer)> {
        policy
            .jwt_issuers()
            .iter()
            .filter_map(|issuer| {
                let verifier = self.verifiers.get(issuer.name.as_str())?;
                verifier
                    .is_fetched()
                    .then(|| (verifier.clone(), issuer.clone()))
            })
            .collect()
    }

    /// Verifies the credential `headers` carry for `auth`.
    pub fn authenticate(&self, auth: &RouteAuth, headers: &HeaderMap) -> Authentication {
        let verified = match &auth.method {
            AuthMethod::ApiKey(set) => self.api_key(set.as_str(), headers),
            AuthMethod::Jwt(issuer) => self.bearer(issuer.as_str(), headers),
        };
        match verified {
            Ok(principal) => Authentication::Verified(principal),
            Err(problem) => Authentication::Failed(problem),
        }
    }

    fn bearer(&self, issuer: &str, headers: &HeaderMap) -> Result<Principal, CredentialProblem> {
        let Some(verifier) = self.verifiers.get(issuer) else {
            let problem = format!("issuer `{issuer}` is not loaded");
            return Err(CredentialProblem::Invalid(problem));
        };
        let token = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .ok_or(CredentialProblem::Missing)?;
        let claims = verifier
            .verify(token.trim())
            .map_err(|e| CredentialProblem::Invalid(e.to_string()))?;
        Ok(Principal {
            name: claims.subject().to_owned(),
            claims: Some(claims),
        })
    }

    fn api_key(&self, set: &str, headers: &HeaderMap) -> Result<Principal, CredentialProblem> {
        let Some(keys) = self.key_sets.get(set) else {
            let problem = format!("set `{set}` is not loaded");
            return Err(CredentialProblem::Invalid(problem));
        };
        let presented = headers
            .get(API_KEY_HEADER)
            .map(HeaderValue::as_bytes)
            .ok_or(CredentialProblem::Missing)?;
        let consumer = keys
            .consumer(presented)
            .ok_or_else(|| CredentialProblem::Invalid("unknown key".to_owned()))?;
        Ok(Principal {
            name: consumer.to_owned(),
            claims: None,
        })
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
