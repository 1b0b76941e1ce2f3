//! What a request counts under: the text of its key (what a refusal names) and the digest a
//! bucket table stores in its place.
//!
//! A client is its address, an IPv6 client its network of `[gateway] client_ipv6_prefix` bits
//! (a /64 by default: one host usually holds a whole /64, and keying by full address would give
//! it 2^64 buckets). A header-keyed limit never keeps or names the header's value, only a keyed
//! hash of it: the header may carry a credential, and the flow log is read by more people than
//! the credentials are.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::OnceLock;

use http::HeaderMap;
use ipnet::IpNet;
use ring::hmac;
use septa_manifest::{RateLimit, RateLimitKey};
use septa_policy::Principal;

/// A bucket key as a table stores it: fixed size, whatever the client sent.
pub(crate) type KeyDigest = [u8; 16];

/// The key every digest is taken with: random per process, so neither a table's layout nor a
/// header's hash in the flow log can be computed from outside.
fn process_key() -> &'static hmac::Key {
    static KEY: OnceLock<hmac::Key> = OnceLock::new();
    KEY.get_or_init(|| {
        let mut bytes = [0u8; 32];
        // Without randomness the digests still separate keys; only their secrecy is lost.
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes);
        hmac::Key::new(hmac::HMAC_SHA256, &bytes)
    })
}

/// The digest a table stores for the key `text`.
pub(crate) fn digest(text: &str) -> KeyDigest {
    let tag = hmac::sign(process_key(), text.as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&tag.as_ref()[..16]);
    out
}

/// The key of a client at `ip`: `ip:203.0.113.9`, or `ip:2001:db8:1:2::/64` for an IPv6
/// client keyed by its first `ipv6_prefix` bits.
pub(crate) fn client_key(ip: IpAddr, ipv6_prefix: u8) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => format!("ip:{v4}"),
        IpAddr::V6(v6) if ipv6_prefix >= 128 => format!("ip:{v6}"),
        IpAddr::V6(v6) => match IpNet::new(IpAddr::V6(v6), ipv6_prefix) {
            Ok(net) => format!("ip:{}", net.trunc()),
            Err(_) => format!("ip:{v6}"),
        },
    }
}

/// The key a request counts under for `limit`, from what the host established: the client
/// (`client`, from [`client_key`]), the principal or its verified claims, or a header the route
/// names (by a hash of its value).
pub(crate) fn key_of(
    limit: &RateLimit,
    client: &str,
    principal: Option<&Principal>,
    headers: &HeaderMap,
) -> String {
    match &limit.key {
        RateLimitKey::Ip => client.to_owned(),
        // A route without authentication has no principal: its callers share the address key.
        RateLimitKey::Principal | RateLimitKey::ApiKey => principal
            .map(|p| format!("principal:{}", p.name))
            .unwrap_or_else(|| client.to_owned()),
        // Tokens without the claim share one bucket: leaving it out buys nothing.
        RateLimitKey::Claim(claim) => {
            let value = principal
                .and_then(|p| p.claims.as_ref())
                .and_then(|c| c.text(claim));
            match value {
                Some(v) => format!("claim:{claim}={v}"),
                None => format!("claim:{claim}"),
            }
        }
        // Requests without the header, or with it empty, share one bucket.
        RateLimitKey::Header(name) => match headers.get(name).map(|v| v.as_bytes()) {
            Some(value) if !value.is_empty() => {
                let tag = hmac::sign(process_key(), value);
                let mut key = format!("header:{name}#");
                for byte in &tag.as_ref()[..8] {
                    let _ = write!(key, "{byte:02x}");
                }
                key
            }
            _ => format!("header:{name}"),
        },
        RateLimitKey::Route => "route".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_ipv6_client_is_its_network_and_an_ipv4_one_its_address() {
        assert_eq!(client_key(ip("203.0.113.9"), 64), "ip:203.0.113.9");
        assert_eq!(client_key(ip("::ffff:203.0.113.9"), 64), "ip:203.0.113.9");
        assert_eq!(
            client_key(ip("2001:db8:1:2:aaaa::1"), 64),
            client_key(ip("2001:db8:1:2:bbbb::2"), 64)
        );
        assert_eq!(
            client_key(ip("2001:db8:1:2::1"), 64),
            "ip:2001:db8:1:2::/64"
        );
        assert_ne!(
            client_key(ip("2001:db8:1:2::1"), 64),
            client_key(ip("2001:db8:1:3::1"), 64)
        );
        assert_eq!(client_key(ip("2001:db8:1:2::1"), 48), "ip:2001:db8:1::/48");
        assert_eq!(client_key(ip("2001:db8::1"), 128), "ip:2001:db8::1");
    }

    #[test]
    fn a_header_key_names_a_hash_of_the_value_never_the_value() {
        let limit = RateLimit {
            key: RateLimitKey::Header("x-api-token".to_owned()),
            per_second: 1,
            burst: 1,
        };
        let mut headers = HeaderMap::new();
        headers.insert("x-api-token", "secret-123".parse().unwrap());
        let key = key_of(&limit, "ip:1.2.3.4", None, &headers);
        assert!(key.starts_with("header:x-api-token#"), "{key}");
        assert!(!key.contains("secret"), "{key}");
        assert_eq!(key, key_of(&limit, "ip:5.6.7.8", None, &headers));
        headers.insert("x-api-token", "secret-124".parse().unwrap());
        assert_ne!(key, key_of(&limit, "ip:1.2.3.4", None, &headers));
    }
}
