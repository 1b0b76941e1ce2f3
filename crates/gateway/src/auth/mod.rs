//! Authentication and authorization at the gateway: JWT bearer tokens checked against a
//! route's issuer and scopes, plugged in as an [`crate::Admission`] check.

mod base64url;
pub mod jwt;

use std::collections::HashMap;
use std::net::SocketAddr;

use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{HeaderValue, StatusCode};
use septa_manifest::Manifest;
use septa_policy::CompiledRoute;

use crate::{Admission, Rejection};
use jwt::{JwtError, JwtVerifier};

/// The header carrying the authenticated principal (`sub`) to the function.
pub const PRINCIPAL_HEADER: &str = "septa-principal";

/// Checks routes' `auth`: a valid bearer token from the route's issuer with every scope.
pub struct JwtAdmission {
    verifiers: HashMap<String, JwtVerifier>,
}

impl JwtAdmission {
    /// Loads every `[jwt.NAME]` issuer's keys.
    pub fn load(manifest: &Manifest) -> Result<Self, JwtError> {
        let mut verifiers = HashMap::new();
        for issuer in manifest.jwt.values() {
            verifiers.insert(issuer.name.to_string(), JwtVerifier::load(issuer)?);
        }
        Ok(Self { verifiers })
    }
}

fn unauthorized(reason: String, error: Option<&str>) -> Rejection {
    // The client learns only what RFC 6750 lets it: that a token is missing or invalid.
    let challenge = match error {
        Some(e) => format!("Bearer realm=\"septa\", error=\"{e}\""),
        None => "Bearer realm=\"septa\"".to_owned(),
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

impl Admission for JwtAdmission {
    fn admit(
        &self,
        route: &CompiledRoute,
        _client: SocketAddr,
        request: &mut http::request::Parts,
    ) -> Result<(), Rejection> {
        let Some(auth) = &route.auth else {
            return Ok(());
        };
        let Some(verifier) = self.verifiers.get(auth.jwt.as_str()) else {
            return Err(unauthorized(
                format!("jwt issuer `{}` is not loaded", auth.jwt),
                None,
            ));
        };
        let token = request
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
            return Err(Rejection {
                status: StatusCode::FORBIDDEN,
                headers: vec![(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static(
                        "Bearer realm=\"septa\", error=\"insufficient_scope\"",
                    ),
                )],
                reason: format!(
                    "jwt: missing scope `{missing}` (subject `{}`)",
                    claims.subject()
                ),
            });
        }
        if let Ok(sub) = HeaderValue::from_str(claims.subject()) {
            request.headers.insert(PRINCIPAL_HEADER, sub);
        }
        Ok(())
    }
}
