//! Who a request authenticated as, as the gateway established it: a verified token's subject
//! and claims, or an API key's consumer. The gateway verifies; the policy reads what it verified
//! to decide scopes and claims, and the limiter counts by it.

use std::sync::Arc;

use septa_manifest::{ClaimMatch, ClaimValue};
use serde_json::{Map, Value};

/// Who a request authenticated as: a token's subject with its claims, or a key's consumer.
#[derive(Clone, Debug)]
pub struct Principal {
    /// `sub`, or the API key's consumer.
    pub name: String,
    /// The verified token's claims; `None` for an API key.
    pub claims: Option<Claims>,
}

/// The claims of a verified token. Cheap to clone: the payload is shared.
#[derive(Clone, Debug)]
pub struct Claims {
    sub: String,
    scopes: Vec<String>,
    exp: u64,
    payload: Arc<Map<String, Value>>,
}

impl Claims {
    /// The claims of a token whose signature, `exp`, `nbf`, `iss` and `aud` were verified:
    /// its subject, its scopes (from `scope` and `scp`), its expiry and its whole payload.
    pub fn new(sub: String, scopes: Vec<String>, exp: u64, payload: Map<String, Value>) -> Self {
        Self {
            sub,
            scopes,
            exp,
            payload: Arc::new(payload),
        }
    }

    /// `sub`, or empty.
    pub fn subject(&self) -> &str {
        &self.sub
    }

    /// When the token expires, in seconds since the Unix epoch.
    pub fn expires(&self) -> u64 {
        self.exp
    }

    /// The scopes of `scope` (space-separated) and `scp` (array or string).
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scopes.iter().map(String::as_str)
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

/// A principal as one node hands it to another with a request its gateway admitted: JSON, in
/// lowercase hex so that it is a valid header value whatever the claims hold. Only a node sets
/// it, inside the mutual-TLS session; the receiving node believes it because the certificate says
/// the sender is a node of its cluster (see `Policy::decide_peer`).
impl Principal {
    /// The principal in its forwarded form.
    pub fn to_forwarded(&self) -> String {
        let claims = self.claims.as_ref().map(|c| {
            serde_json::json!({
                "sub": c.sub,
                "scopes": c.scopes,
                "exp": c.exp,
                "payload": &*c.payload,
            })
        });
        let json = serde_json::json!({ "name": self.name, "claims": claims }).to_string();
        json.bytes().map(|b| format!("{b:02x}")).collect()
    }

    /// Reads a principal in its forwarded form; `None` when it is not one.
    pub fn from_forwarded(text: &str) -> Option<Self> {
        if !text.len().is_multiple_of(2) {
            return None;
        }
        let bytes = (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
            .collect::<Option<Vec<u8>>>()?;
        let mut value: Map<String, Value> = serde_json::from_slice(&bytes).ok()?;
        let name = value.remove("name")?.as_str()?.to_owned();
        let claims = match value.remove("claims")? {
            Value::Null => None,
            Value::Object(mut claims) => Some(Claims::new(
                claims.remove("sub")?.as_str()?.to_owned(),
                claims
                    .remove("scopes")?
                    .as_array()?
                    .iter()
                    .map(|s| s.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()?,
                claims.remove("exp")?.as_u64()?,
                match claims.remove("payload")? {
                    Value::Object(payload) => payload,
                    _ => return None,
                },
            )),
            _ => return None,
        };
        Some(Self { name, claims })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forwarded_principal_reads_back_as_it_was() {
        let payload = serde_json::json!({"sub": "ada", "tier": "gold", "n": [1, 2], "ü": "✓"});
        let Value::Object(payload) = payload else {
            unreachable!()
        };
        let principal = Principal {
            name: "ada".to_owned(),
            claims: Some(Claims::new(
                "ada".to_owned(),
                vec!["orders:read".to_owned()],
                1_900_000_000,
                payload,
            )),
        };
        let text = principal.to_forwarded();
        assert!(http_safe(&text));
        let back = Principal::from_forwarded(&text).expect("reads back");
        assert_eq!(back.name, "ada");
        let claims = back.claims.expect("claims");
        assert_eq!(claims.scopes().collect::<Vec<_>>(), ["orders:read"]);
        assert_eq!(claims.expires(), 1_900_000_000);
        assert_eq!(claims.text("tier").as_deref(), Some("gold"));
        assert_eq!(claims.text("ü").as_deref(), Some("✓"));

        let key = Principal {
            name: "partner-a".to_owned(),
            claims: None,
        };
        let back = Principal::from_forwarded(&key.to_forwarded()).expect("reads back");
        assert!(back.name == "partner-a" && back.claims.is_none());
    }

    #[test]
    fn anything_else_is_not_a_forwarded_principal() {
        for text in ["", "0", "zz", "7b7d", "6e756c6c", "7b226e616d65223a317d"] {
            assert!(Principal::from_forwarded(text).is_none(), "{text}");
        }
    }

    fn http_safe(text: &str) -> bool {
        text.bytes().all(|b| b.is_ascii_hexdigit())
    }
}
