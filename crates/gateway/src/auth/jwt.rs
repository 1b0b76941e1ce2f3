//! JWT verification: RS256, ES256 and EdDSA against an issuer's key set (from a file, or fetched
//! and refreshed by [`super::refresh`]), with `exp`, `nbf`, `iss` and `aud` always checked.
//! `none` and HMAC never verify, whatever the header says, because the algorithm must be one the
//! issuer lists and must match the key its `kid` names.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ED25519, RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents,
    UnparsedPublicKey,
};
use septa_manifest::{JwksSource, JwtAlgorithm, JwtIssuer};
use septa_policy::Claims;
use serde_json::Value;

use super::base64url;
use super::jwks::{Key, KeySet};
use super::refresh::RefreshSignal;

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
    /// The issuer's keys are fetched and no fetch has succeeded yet.
    #[error("no keys loaded for the issuer yet")]
    NoKeys,
    /// The header's `crit` names an extension septa does not implement (RFC 7515 §4.1.11: such
    /// a token must be refused).
    #[error("critical header `{0}` is not understood")]
    Critical(String),
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

/// A verified token in the cache, with the id of the key that verified it.
#[derive(Debug)]
struct Verified {
    claims: Claims,
    kid: String,
}

/// One generation of an issuer's keys, with the tokens verified under it.
///
/// The token cache lives and dies with the key set: installing a new set builds a new cache that
/// keeps only the tokens whose key is still in the new set with the same material. A request that
/// verified under the old set and caches its token after the swap writes into the old generation,
/// which nothing reads any more; so no token outlives the key that verified it.
#[derive(Debug, Default)]
struct Generation {
    /// `None` until an issuer whose keys are fetched has its first document.
    keys: Option<KeySet>,
    verified: Mutex<HashMap<Vec<u8>, Verified>>,
}

/// Verifies tokens of one issuer.
#[derive(Debug)]
pub struct JwtVerifier {
    name: String,
    issuer: String,
    audiences: Vec<String>,
    algorithms: Vec<JwtAlgorithm>,
    leeway: u64,
    /// Swapped whole, so a request sees the old set or the new one, never a mix.
    current: RwLock<Arc<Generation>>,
    /// For an issuer whose keys are fetched: how a request asks for an early refresh.
    refresh: Option<RefreshSignal>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl JwtVerifier {
    /// A verifier for `issuer`: its JWKS file is read now; a JWKS URL starts with no keys, and
    /// every token is refused until the key refresh installs some.
    pub fn load(issuer: &JwtIssuer) -> Result<Self, JwtError> {
        let (keys, refresh) = match &issuer.jwks {
            JwksSource::File(path) => {
                let fail = |message: String| JwtError::Jwks {
                    issuer: issuer.name.to_string(),
                    path: path.display().to_string(),
                    message,
                };
                let text = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
                (Some(KeySet::parse(&text).map_err(fail)?), None)
            }
            JwksSource::Url { .. } => (None, Some(RefreshSignal::new())),
        };
        Ok(Self {
            name: issuer.name.to_string(),
            issuer: issuer.issuer.clone(),
            audiences: issuer.audiences.clone(),
            algorithms: issuer.algorithms.clone(),
            leeway: u64::from(issuer.leeway_s),
            current: RwLock::new(Arc::new(Generation {
                keys,
                verified: Mutex::default(),
            })),
            refresh,
        })
    }

    /// The issuer's name in the manifest (`[jwt.NAME]`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the keys are fetched from a URL (and so refreshed).
    pub fn is_fetched(&self) -> bool {
        self.refresh.is_some()
    }

    /// Whether the issuer has keys to verify with (a fetched issuer has none until its first
    /// successful fetch).
    pub fn has_keys(&self) -> bool {
        self.generation().keys.is_some()
    }

    pub(crate) fn refresh_signal(&self) -> Option<&RefreshSignal> {
        self.refresh.as_ref()
    }

    fn generation(&self) -> Arc<Generation> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Installs `keys` atomically, unless they equal the keys in use. Verified tokens are kept
    /// only where their key is in the new set with the same material. Returns whether the set
    /// changed.
    pub(crate) fn install(&self, keys: KeySet) -> bool {
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        let old = current.clone();
        if old.keys.as_ref() == Some(&keys) {
            return false;
        }
        let kept: HashMap<Vec<u8>, Verified> = old
            .verified
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
            .filter(|(_, v)| {
                let before = old.keys.as_ref().and_then(|k| k.get(&v.kid));
                before.is_some() && before == keys.get(&v.kid)
            })
            .collect();
        *current = Arc::new(Generation {
            keys: Some(keys),
            verified: Mutex::new(kept),
        });
        true
    }

    /// Verifies `token`, from the cache of verified tokens when it is there and unexpired.
    ///
    /// A token naming a key the set does not hold is refused at once; for fetched keys it also
    /// asks for an early refresh (at most one per [`super::refresh::EARLY_REFRESH_INTERVAL`]),
    /// so a key the issuer has just rotated in verifies once the refresh has run.
    pub fn verify(&self, token: &str) -> Result<Claims, JwtError> {
        let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes())
            .as_ref()
            .to_vec();
        let now = now();
        let generation = self.generation();
        if let Ok(cache) = generation.verified.lock()
            && let Some(hit) = cache.get(&digest)
            && hit.claims.expires().saturating_add(self.leeway) > now
        {
            return Ok(hit.claims.clone());
        }
        let Some(keys) = &generation.keys else {
            self.request_refresh();
            return Err(JwtError::NoKeys);
        };
        let (claims, kid) = match self.verify_uncached(keys, token, now) {
            Err(JwtError::UnknownKey) => {
                self.request_refresh();
                return Err(JwtError::UnknownKey);
            }
            other => other?,
        };
        if let Ok(mut cache) = generation.verified.lock() {
            if cache.len() >= CACHE_ENTRIES {
                cache.retain(|_, v| v.claims.expires().saturating_add(self.leeway) > now);
                if cache.len() >= CACHE_ENTRIES {
                    cache.clear();
                }
            }
            cache.insert(
                digest,
                Verified {
                    claims: claims.clone(),
                    kid,
                },
            );
        }
        Ok(claims)
    }

    fn request_refresh(&self) {
        if let Some(signal) = &self.refresh {
            signal.request();
        }
    }

    fn verify_uncached(
        &self,
        keys: &KeySet,
        token: &str,
        now: u64,
    ) -> Result<(Claims, String), JwtError> {
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
        check_critical(&header)?;
        let kid = header
            .get("kid")
            .and_then(Value::as_str)
            .ok_or(JwtError::UnknownKey)?;
        let key = keys.get(kid).ok_or(JwtError::UnknownKey)?;
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
        // Saturating: `exp` is whatever the token says, up to `u64::MAX`.
        if exp.saturating_add(self.leeway) <= now {
            return Err(JwtError::Expired);
        }
        if let Some(nbf) = payload.get("nbf") {
            let nbf = nbf.as_u64().ok_or(JwtError::Malformed)?;
            if nbf > now.saturating_add(self.leeway) {
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
        let claims = Claims::new(sub, scopes, exp, payload);
        Ok((claims, kid.to_owned()))
    }
}

/// Refuses a token whose header has a `crit` member: septa implements no JWS extension, so any
/// name it lists is one the token says a verifier must understand and septa does not
/// (RFC 7515 §4.1.11). A `crit` that is not a non-empty list of names is malformed.
fn check_critical(header: &Value) -> Result<(), JwtError> {
    let Some(crit) = header.get("crit") else {
        return Ok(());
    };
    match crit
        .as_array()
        .and_then(|names| names.first())
        .and_then(Value::as_str)
    {
        Some(name) => Err(JwtError::Critical(name.chars().take(32).collect())),
        None => Err(JwtError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use ring::rand::SystemRandom;
    use ring::signature::{Ed25519KeyPair, KeyPair};
    use serde_json::json;

    use super::*;

    fn b64(bytes: &[u8]) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, &b)| acc | (u32::from(b) << (16 - 8 * i)));
            for i in 0..=chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }

    struct TestKey(Ed25519KeyPair);

    impl TestKey {
        fn new() -> Self {
            let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
            Self(Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap())
        }

        fn jwk(&self, kid: &str) -> serde_json::Value {
            json!({ "kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64(self.0.public_key().as_ref()) })
        }

        fn token(&self, kid: &str) -> String {
            self.token_with(kid, json!({ "exp": now() + 600 }))
        }

        /// A token whose claims are `extra` over a valid subject, issuer and audience.
        fn token_with(&self, kid: &str, extra: serde_json::Value) -> String {
            let header = json!({ "alg": "EdDSA", "kid": kid });
            let mut claims = json!({ "iss": "https://auth.test", "aud": "shop", "sub": "alice" });
            for (name, value) in extra.as_object().unwrap() {
                claims[name] = value.clone();
            }
            let input = format!(
                "{}.{}",
                b64(header.to_string().as_bytes()),
                b64(claims.to_string().as_bytes())
            );
            format!("{input}.{}", b64(self.0.sign(input.as_bytes()).as_ref()))
        }
    }

    fn keys(jwks: &[serde_json::Value]) -> KeySet {
        KeySet::parse(json!({ "keys": jwks }).to_string().as_bytes()).unwrap()
    }

    fn fetched_verifier() -> JwtVerifier {
        let manifest = septa_manifest::parse(
            Path::new("septa.toml"),
            r#"septa_manifest_version = 1
[application]
name = "t"
[jwt.main]
issuer = "https://auth.test"
audiences = ["shop"]
algorithms = ["EdDSA"]
jwks_url = "https://auth.test/jwks.json"
"#,
        )
        .unwrap();
        JwtVerifier::load(&manifest.jwt.values().next().unwrap().clone()).unwrap()
    }

    #[test]
    fn a_fetched_issuer_refuses_every_token_until_it_has_keys() {
        let verifier = fetched_verifier();
        let key = TestKey::new();
        assert!(!verifier.has_keys());
        assert!(matches!(
            verifier.verify(&key.token("a")),
            Err(JwtError::NoKeys)
        ));
        assert!(verifier.install(keys(&[key.jwk("a")])));
        assert!(verifier.verify(&key.token("a")).is_ok());
    }

    #[test]
    fn a_cached_token_stops_passing_when_its_key_leaves_the_set() {
        let verifier = fetched_verifier();
        let (old, new) = (TestKey::new(), TestKey::new());
        verifier.install(keys(&[old.jwk("old")]));
        let token = old.token("old");
        assert!(verifier.verify(&token).is_ok());
        assert_eq!(verifier.generation().verified.lock().unwrap().len(), 1);

        // The same document again changes nothing, and the cache is kept.
        assert!(!verifier.install(keys(&[old.jwk("old")])));
        assert_eq!(verifier.generation().verified.lock().unwrap().len(), 1);

        // A new key joins: the old token is still good and still cached.
        assert!(verifier.install(keys(&[old.jwk("old"), new.jwk("new")])));
        assert_eq!(verifier.generation().verified.lock().unwrap().len(), 1);
        assert!(verifier.verify(&token).is_ok());

        // The old key leaves: its cached token is gone with it.
        assert!(verifier.install(keys(&[new.jwk("new")])));
        assert!(verifier.generation().verified.lock().unwrap().is_empty());
        assert!(matches!(verifier.verify(&token), Err(JwtError::UnknownKey)));
        assert!(verifier.verify(&new.token("new")).is_ok());
    }

    #[test]
    fn a_kid_reused_for_other_key_material_drops_the_tokens_of_the_old_one() {
        let verifier = fetched_verifier();
        let (first, second) = (TestKey::new(), TestKey::new());
        verifier.install(keys(&[first.jwk("k")]));
        let token = first.token("k");
        assert!(verifier.verify(&token).is_ok());
        assert!(verifier.install(keys(&[second.jwk("k")])));
        assert!(matches!(verifier.verify(&token), Err(JwtError::Signature)));
    }

    /// Found by `fuzz/fuzz_targets/jwt_verify.rs`: `exp + leeway` overflowed (a panic where
    /// overflow is checked, a token taken as expired where it wraps) for times near `u64::MAX`.
    #[test]
    fn times_at_the_end_of_the_range_do_not_overflow() {
        let verifier = fetched_verifier();
        let key = TestKey::new();
        verifier.install(keys(&[key.jwk("a")]));
        let far = key.token_with("a", json!({ "exp": u64::MAX }));
        assert!(verifier.verify(&far).is_ok(), "the far future is not past");
        assert!(
            verifier.verify(&far).is_ok(),
            "and not from the cache either"
        );
        let late = key.token_with("a", json!({ "exp": u64::MAX, "nbf": u64::MAX }));
        assert!(matches!(verifier.verify(&late), Err(JwtError::NotYetValid)));
    }

    #[test]
    fn an_unknown_kid_asks_for_one_early_refresh_per_window() {
        let verifier = fetched_verifier();
        let key = TestKey::new();
        verifier.install(keys(&[key.jwk("a")]));
        let signal = verifier.refresh_signal().unwrap();
        assert!(matches!(
            verifier.verify(&key.token("rotated")),
            Err(JwtError::UnknownKey)
        ));
        // That request took the window: the next one within it does not wake the loop again.
        assert!(!signal.request());
    }
}
