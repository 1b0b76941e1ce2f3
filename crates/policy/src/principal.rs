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
