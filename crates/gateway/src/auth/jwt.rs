//! JWT verification: RS256, ES256 and EdDSA against a JWKS file, with `exp`, `nbf`, `iss` and
//! `aud` always checked. `none` and HMAC never verify, whatever the header says, because the
//! algorithm must be one the issuer lists and must match the key its `kid` names.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ED25519, RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents,
    UnparsedPublicKey,
};
use septa_manifest::{ClaimMatch, ClaimValue, JwtAlgorithm, JwtIssuer};
use serde_json::Value;

use super::base64url;

/// Verified tokens kept until they expire, so the hot path does not re-verify signatures.
const CACHE_ENTRIES: usize = 10_000;

/// Why a token was refused, or why an issuer's keys could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    /// The JWKS file could not be read or parsed.
    #[error("jwt issuer `{issuer}`: cannot load `{path}`: {message}")]
    Jwks {
        /// The issuer.
        issuer: String,
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// Not three base64url parts with JSON header and payload.
    #[error("malformed token")]
    Malformed,
    /// The header's `alg` is not one the issuer accepts.
    #[error("algorithm `{0}` is not accepted")]
    Algorithm(String),
    /// No `kid`, or one the JWKS does not hold.
    #[error("unknown key id")]
    UnknownKey,
    /// The key named by `kid` is for another algorithm.
    #[error("key and algorithm do not match")]
    KeyMismatch,
    /// The signature does not verify.
    #[error("bad signature")]
    Signature,
    /// `exp` is missing or past.
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("token not yet valid")]
    NotYetValid,
    /// `iss` is not the issuer's.
    #[error("wrong issuer")]
    Issuer,
    /// `aud` names none of the issuer's audiences.
    #[error("wrong audience")]
    Audience,
}

/// The claims of a verified token. Cheap to clone: the payload is shared.
#[derive(Clone, Debug)]
pub struct Claims {
    sub: String,
    scopes: Vec<String>,
    exp: u64,
    payload: Arc<serde_json::Map<String, Value>>,
}

impl Claims {
    /// `sub`, or empty.
    pub fn subject(&self) -> &str {
        &self.sub
    }

    /// The scopes of `scope` (space-separated) and `scp` (array or string).
    pub fn scopes(&self) -> Vec<&str> {
        self.scopes.iter().map(String::as_str).collect()
    }

    /// A claim of the payload.
    pub fn get(&self, claim: &str) -> Option<&Value> {
        self.payload.get(claim)
    }

    /// Whether the claim equals one of the match's values, or, being an array, holds one.
    pub fn matches(&self, want: &ClaimMatch) -> bool {
        let equals = |v: &Value| {
            want.any_of.iter().any(|w| match (w, v) {
                (ClaimValue::String(w), Value::String(v)) => w == v,
                (ClaimValue::Integer(w), Value::Number(v)) => v.as_i64() == Some(*w),
                (ClaimValue::Bool(w), Value::Bool(v)) => w == v,
                _ => false,
            })
        };
        match self.get(&want.claim) {
            Some(Value::Array(items)) => items.iter().any(equals),
            Some(v) => equals(v),
            None => false,
        }
    }

    /// A claim as a header value would carry it: strings as they are, anything else as JSON.
    pub fn text(&self, claim: &str) -> Option<String> {
        match self.get(claim)? {
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    }
}

#[derive(Debug)]
enum Key {
    Rsa { n: Vec<u8>, e: Vec<u8> },
    Ec(Vec<u8>),
    Ed(Vec<u8>),
}

impl Key {
    fn algorithm(&self) -> JwtAlgorithm {
        match self {
            Self::Rsa { .. } => JwtAlgorithm::Rs256,
            Self::Ec(_) => JwtAlgorithm::Es256,
            Self::Ed(_) => JwtAlgorithm::EdDsa,
        }
    }
}

/// Verifies tokens of one issuer.
#[derive(Debug)]
pub struct JwtVerifier {
    issuer: String,
    audiences: Vec<String>,
    algorithms: Vec<JwtAlgorithm>,
    leeway: u64,
    keys: HashMap<String, Key>,
    cache: Mutex<HashMap<Vec<u8>, Claims>>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl JwtVerifier {
    /// Loads the issuer's JWKS file.
    pub fn load(issuer: &JwtIssuer) -> Result<Self, JwtError> {
        let fail = |message: String| JwtError::Jwks {
            issuer: issuer.name.to_string(),
            path: issuer.jwks_file.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(&issuer.jwks_file).map_err(|e| fail(e.to_string()))?;
        let jwks: Value =
            serde_json::from_str(&text).map_err(|e| fail(format!("not JSON: {e}")))?;
        let Some(list) = jwks.get("keys").and_then(Value::as_array) else {
            return Err(fail("no `keys` array".to_owned()));
        };
        let mut keys = HashMap::new();
        for (i, jwk) in list.iter().enumerate() {
            let field = |name: &str| {
                jwk.get(name)
                    .and_then(Value::as_str)
                    .ok_or_else(|| fail(format!("key {i} has no `{name}`")))
            };
            let bytes = |name: &str| {
                field(name).and_then(|v| {
                    base64url::decode(v)
                        .ok_or_else(|| fail(format!("key {i}: `{name}` is not base64url")))
                })
            };
            let kid = field("kid")?.to_owned();
            let key = match (field("kty")?, jwk.get("crv").and_then(Value::as_str)) {
                ("RSA", _) => Key::Rsa {
                    n: bytes("n")?,
                    e: bytes("e")?,
                },
                ("EC", Some("P-256")) => {
                    let (x, y) = (bytes("x")?, bytes("y")?);
                    if x.len() != 32 || y.len() != 32 {
                        return Err(fail(format!("key {i}: P-256 coordinates must be 32 bytes")));
                    }
                    Key::Ec([&[4u8][..], &x, &y].concat())
                }
                ("OKP", Some("Ed25519")) => Key::Ed(bytes("x")?),
                (kty, crv) => {
                    return Err(fail(format!(
                        "key {i}: unsupported key type `{kty}` {crv:?}"
                    )));
                }
            };
            if keys.insert(kid.clone(), key).is_some() {
                return Err(fail(format!("duplicate `kid` `{kid}`")));
            }
        }
        Ok(Self {
            issuer: issuer.issuer.clone(),
            audiences: issuer.audiences.clone(),
            algorithms: issuer.algorithms.clone(),
            leeway: u64::from(issuer.leeway_s),
            keys,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Verifies `token`, from the cache of verified tokens when it is there and unexpired.
    pub fn verify(&self, token: &str) -> Result<Claims, JwtError> {
        let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes())
            .as_ref()
            .to_vec();
        let now = now();
        if let Ok(cache) = self.cache.lock()
            && let Some(claims) = cache.get(&digest)
            && claims.exp + self.leeway > now
        {
            return Ok(claims.clone());
        }
        let claims = self.verify_uncached(token, now)?;
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_ENTRIES {
                cache.retain(|_, c| c.exp + self.leeway > now);
                if cache.len() >= CACHE_ENTRIES {
                    cache.clear();
                }
            }
            cache.insert(digest, claims.clone());
        }
        Ok(claims)
    }

    fn verify_uncached(&self, token: &str, now: u64) -> Result<Claims, JwtError> {
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed);
        };
        let json = |b64: &str| -> Result<Value, JwtError> {
            let bytes = base64url::decode(b64).ok_or(JwtError::Malformed)?;
            serde_json::from_slice(&bytes).map_err(|_| JwtError::Malformed)
        };
        let header = json(header_b64)?;
        let alg = header
            .get("alg")
            .and_then(Value::as_str)
            .ok_or(JwtError::Malformed)?;
        let algorithm = self
            .algorithms
            .iter()
            .copied()
            .find(|a| a.as_str() == alg)
            .ok_or_else(|| JwtError::Algorithm(alg.chars().take(16).collect()))?;
        let kid = header
            .get("kid")
            .and_then(Value::as_str)
            .ok_or(JwtError::UnknownKey)?;
        let key = self.keys.get(kid).ok_or(JwtError::UnknownKey)?;
        if key.algorithm() != algorithm {
            return Err(JwtError::KeyMismatch);
        }
        let signature = base64url::decode(signature_b64).ok_or(JwtError::Malformed)?;
        let message = &token.as_bytes()[..header_b64.len() + 1 + payload_b64.len()];
        let verified = match key {
            Key::Rsa { n, e } => RsaPublicKeyComponents { n, e }.verify(
                &RSA_PKCS1_2048_8192_SHA256,
                message,
                &signature,
            ),
            Key::Ec(point) => {
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point).verify(message, &signature)
            }
            Key::Ed(x) => UnparsedPublicKey::new(&ED25519, x).verify(message, &signature),
        };
        verified.map_err(|_| JwtError::Signature)?;

        let payload = json(payload_b64)?;
        let exp = payload
            .get("exp")
            .and_then(Value::as_u64)
            .ok_or(JwtError::Expired)?;
        if exp + self.leeway <= now {
            return Err(JwtError::Expired);
        }
        if let Some(nbf) = payload.get("nbf") {
            let nbf = nbf.as_u64().ok_or(JwtError::Malformed)?;
            if nbf > now + self.leeway {
                return Err(JwtError::NotYetValid);
            }
        }
        if payload.get("iss").and_then(Value::as_str) != Some(self.issuer.as_str()) {
            return Err(JwtError::Issuer);
        }
        let audience_ok = match payload.get("aud") {
            Some(Value::String(a)) => self.audiences.contains(a),
            Some(Value::Array(list)) => list
                .iter()
                .filter_map(Value::as_str)
                .any(|a| self.audiences.iter().any(|x| x == a)),
            _ => false,
        };
        if !audience_ok {
            return Err(JwtError::Audience);
        }
        let mut scopes: Vec<String> = payload
            .get("scope")
            .and_then(Value::as_str)
            .map(|s| {
                s.split(' ')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        match payload.get("scp") {
            Some(Value::Array(list)) => {
                scopes.extend(list.iter().filter_map(Value::as_str).map(str::to_owned))
            }
            Some(Value::String(s)) => {
                scopes.extend(s.split(' ').filter(|s| !s.is_empty()).map(str::to_owned))
            }
            _ => {}
        }
        let Value::Object(payload) = payload else {
            return Err(JwtError::Malformed);
        };
        let sub = payload
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        Ok(Claims {
            sub,
            scopes,
            exp,
            payload: Arc::new(payload),
        })
    }
}
