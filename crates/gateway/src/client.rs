//! Who the client is, as far as the network says: the peer address, or, behind proxies the
//! operator declared, the address those proxies say they forwarded for. Never what an
//! untrusted client claims.

use std::net::IpAddr;

use http::{HeaderMap, HeaderName};
use ipnet::IpNet;
use septa_manifest::GatewaySpec;

/// Resolves the client address of a request from the peer and `[gateway] trusted_proxies`.
#[derive(Debug, Clone)]
pub struct ClientAddresses {
    trusted: Vec<IpNet>,
    header: Option<HeaderName>,
}

impl ClientAddresses {
    /// The resolver `[gateway]` declares.
    pub fn new(spec: &GatewaySpec) -> Self {
        Self {
            trusted: spec.trusted_proxies.clone(),
            header: HeaderName::from_bytes(spec.client_ip_header.as_bytes()).ok(),
        }
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// The client of a request from `peer`. Walks the client-address header from the right
    /// (the hop nearest septa) while the address that handed the request on is a trusted
    /// proxy; the first address not vouched for that way is the client. An entry that is not
    /// an address stops the walk, so garbage cannot be used to skip a hop.
    pub fn resolve(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = peer.to_canonical();
        let Some(header) = &self.header else {
            return client;
        };
        if !self.trusts(client) {
            return client;
        }
        let hops: Vec<&str> = headers
            .get_all(header)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .collect();
        for hop in hops.iter().rev() {
            if !self.trusts(client) {
                break;
            }
            match hop.trim().parse::<IpAddr>() {
                Ok(ip) => client = ip.to_canonical(),
                Err(_) => break,
            }
        }
        client
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn resolver(trusted: &[&str]) -> ClientAddresses {
        ClientAddresses::new(&GatewaySpec {
            trusted_proxies: trusted.iter().map(|t| t.parse().unwrap()).collect(),
            ..GatewaySpec::default()
        })
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let r = resolver(&[]);
        assert_eq!(
            r.resolve(ip("203.0.113.9"), &xff(&["1.2.3.4"])),
            ip("203.0.113.9")
        );
        let r = resolver(&["10.0.0.0/8"]);
        assert_eq!(
            r.resolve(ip("203.0.113.9"), &xff(&["1.2.3.4"])),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn trusted_hops_are_walked_from_the_right_and_stop_at_the_first_untrusted() {
        let r = resolver(&["10.0.0.0/8"]);
        // The client forged `6.6.6.6`; the proxy appended the address it saw.
        let h = xff(&["6.6.6.6, 198.51.100.7", "10.1.1.1"]);
        assert_eq!(r.resolve(ip("10.0.0.2"), &h), ip("198.51.100.7"));
        // No header: the proxy itself.
        assert_eq!(r.resolve(ip("10.0.0.2"), &HeaderMap::new()), ip("10.0.0.2"));
        // Garbage stops the walk at the last trusted hop rather than skipping past it.
        let h = xff(&["198.51.100.7, nonsense"]);
        assert_eq!(r.resolve(ip("10.0.0.2"), &h), ip("10.0.0.2"));
    }

    #[test]
    fn mapped_addresses_are_compared_as_ipv4() {
        let r = resolver(&["10.0.0.0/8"]);
        let h = xff(&["::ffff:198.51.100.7"]);
        assert_eq!(r.resolve(ip("::ffff:10.0.0.2"), &h), ip("198.51.100.7"));
    }
}
