//! JSON Web Key Sets (RFC 7517): the public keys of one issuer, by `kid`, parsed from a file or
//! a fetched document. Only the key types septa verifies are accepted (RSA, EC P-256, Ed25519);
//! a set with any other key, a duplicate `kid` or a malformed member is refused whole, so what
//! verifies is exactly what the document says.

use std::collections::HashMap;

use septa_manifest::JwtAlgorithm;
use serde_json::Value;

use super::base64url;

/// One public key, in the form ring verifies with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Key {
    /// RS256: modulus and exponent, big-endian.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// ES256: the uncompressed point `04 || x || y`.
    Ec(Vec<u8>),
    /// EdDSA: the 32-byte Ed25519 public key.
    Ed(Vec<u8>),
}

impl Key {
    /// The only algorithm this key verifies.
    pub(crate) fn algorithm(&self) -> JwtAlgorithm {
        match self {
            Self::Rsa { .. } => JwtAlgorithm::Rs256,
            Self::Ec(_) => JwtAlgorithm::Es256,
            Self::Ed(_) => JwtAlgorithm::EdDsa,
        }
    }
}

/// An issuer's keys by `kid`. Two sets are equal when they hold the same keys under the same ids,
/// whatever order the document listed them in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct KeySet {
    keys: HashMap<String, Key>,
}

impl KeySet {
    /// Parses a JWKS document: `{"keys": [...]}`.
    pub(crate) fn parse(text: &[u8]) -> Result<Self, String> {
        let jwks: Value = serde_json::from_slice(text).map_err(|e| format!("not JSON: {e}"))?;
        let Some(list) = jwks.get("keys").and_then(Value::as_array) else {
            return Err("no `keys` array".to_owned());
        };
        let mut keys = HashMap::new();
        for (i, jwk) in list.iter().enumerate() {
            let field = |name: &str| {
                jwk.get(name)
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("key {i} has no `{name}`"))
            };
            let bytes = |name: &str| {
                field(name).and_then(|v| {
                    base64url::decode(v)
                        .ok_or_else(|| format!("key {i}: `{name}` is not base64url"))
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
                        return Err(format!("key {i}: P-256 coordinates must be 32 bytes"));
                    }
                    Key::Ec([&[4u8][..], &x, &y].concat())
                }
                ("OKP", Some("Ed25519")) => Key::Ed(bytes("x")?),
                (kty, crv) => {
                    return Err(format!("key {i}: unsupported key type `{kty}` {crv:?}"));
                }
            };
            if keys.insert(kid.clone(), key).is_some() {
                return Err(format!("duplicate `kid` `{kid}`"));
            }
        }
        Ok(Self { keys })
    }

    /// The key with this id.
    pub(crate) fn get(&self, kid: &str) -> Option<&Key> {
        self.keys.get(kid)
    }

    /// How many keys the set holds.
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const ED_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

    #[test]
    fn equal_sets_compare_equal_whatever_the_order() {
        let a = format!(
            r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","kid":"a","x":"{ED_X}"}},{{"kty":"OKP","crv":"Ed25519","kid":"b","x":"{ED_X}"}}]}}"#
        );
        let b = format!(
            r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","kid":"b","x":"{ED_X}"}},{{"kty":"OKP","crv":"Ed25519","kid":"a","x":"{ED_X}"}}]}}"#
        );
        let (a, b) = (
            KeySet::parse(a.as_bytes()).unwrap(),
            KeySet::parse(b.as_bytes()).unwrap(),
        );
        assert_eq!(a, b);
        assert_eq!(a.len(), 2);
        assert_eq!(a.get("a").map(Key::algorithm), Some(JwtAlgorithm::EdDsa));
    }

    #[test]
    fn a_bad_member_refuses_the_whole_set() {
        for (doc, says) in [
            ("[]", "no `keys` array"),
            ("{\"keys\":", "not JSON"),
            (
                r#"{"keys":[{"kty":"oct","kid":"h","k":"c2VjcmV0"}]}"#,
                "unsupported key type `oct`",
            ),
            (
                r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"AA"}]}"#,
                "has no `kid`",
            ),
            (
                r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"e","x":"AA","y":"AA"}]}"#,
                "32 bytes",
            ),
        ] {
            let e = KeySet::parse(doc.as_bytes()).unwrap_err();
            assert!(e.contains(says), "{doc}: {e}");
        }
        let dup = format!(
            r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","kid":"a","x":"{ED_X}"}},{{"kty":"OKP","crv":"Ed25519","kid":"a","x":"{ED_X}"}}]}}"#
        );
        assert!(
            KeySet::parse(dup.as_bytes())
                .unwrap_err()
                .contains("duplicate `kid` `a`")
        );
    }
}
