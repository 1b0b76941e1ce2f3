//! What routes authenticate callers against: sets of API keys (stored as hashes) and JWT
//! issuers with their algorithms and key sources.

use std::path::PathBuf;

use super::Name;
use crate::diagnostic::Location;
use crate::https_url::HttpsUrl;

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
