//! Where a peer node accepts calls, as it advertises itself in the registry: an address, or a
//! DNS name (a Kubernetes Service, say) that is resolved each time a connection is dialled.
//!
//! A name lets the platform between the nodes (kube-proxy, a Service mesh) choose the pod that
//! answers; the node's identity is still checked the same way, by its certificate, whatever the
//! name resolves to.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use septa_policy::hostname::{canonical_host_name, parse_ip_literal};

use crate::dial::{DialError, resolve_with_timeout};

/// A peer node's mesh address: `IP:PORT`, or `NAME:PORT` resolved when dialled.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PeerAddress {
    /// An address, dialled as it is (no DNS).
    Socket(SocketAddr),
    /// A DNS name and a port.
    Name {
        /// The name, lowercase, without a trailing dot.
        host: String,
        /// The port.
        port: u16,
    },
}

/// Why a string is not a mesh address.
#[derive(Debug, thiserror::Error)]
pub enum PeerAddressError {
    /// No `:PORT`, or a port that is not a number from 1 to 65535.
    #[error("`{0}` is not HOST:PORT with a port from 1 to 65535")]
    Port(String),
    /// The host is neither an address nor a DNS name.
    #[error("`{0}` is neither an IP address nor a DNS name")]
    Host(String),
}

impl FromStr for PeerAddress {
    type Err = PeerAddressError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        // The fast path, and every address a node registered before names were allowed.
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Ok(Self::Socket(addr));
        }
        let (host, port) = text
            .rsplit_once(':')
            .ok_or_else(|| PeerAddressError::Port(text.to_owned()))?;
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| PeerAddressError::Port(text.to_owned()))?;
        // An address in another spelling (`127.1`) is an address, never a name.
        if let Some(ip) = parse_ip_literal(host) {
            return Ok(Self::Socket(SocketAddr::new(ip, port)));
        }
        let host = canonical_host_name(host)
            .map_err(|_invalid| PeerAddressError::Host(text.to_owned()))?;
        Ok(Self::Name { host, port })
    }
}

impl fmt::Display for PeerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Socket(addr) => addr.fmt(f),
            Self::Name { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

impl From<SocketAddr> for PeerAddress {
    fn from(addr: SocketAddr) -> Self {
        Self::Socket(addr)
    }
}

impl PeerAddress {
    /// The addresses to dial, in the resolver's order: the address itself, or what the name
    /// resolves to within `dns_timeout`.
    ///
    /// # Errors
    ///
    /// As [`resolve_with_timeout`].
    pub async fn resolve(&self, dns_timeout: Duration) -> Result<Vec<SocketAddr>, DialError> {
        match self {
            Self::Socket(addr) => Ok(vec![*addr]),
            Self::Name { host, port } => resolve_with_timeout(host, *port, dns_timeout).await,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn addresses_and_names_parse_and_print_back() {
        for (text, printed) in [
            ("127.0.0.1:8443", "127.0.0.1:8443"),
            ("[::1]:8443", "[::1]:8443"),
            ("127.1:8443", "127.0.0.1:8443"),
            (
                "septa-app.payments.svc.cluster.local:8443",
                "septa-app.payments.svc.cluster.local:8443",
            ),
            ("LocalHost.:9", "localhost:9"),
        ] {
            assert_eq!(
                text.parse::<PeerAddress>().unwrap().to_string(),
                printed,
                "{text}"
            );
        }
        assert!(matches!(
            "127.0.0.1:1".parse::<PeerAddress>().unwrap(),
            PeerAddress::Socket(_)
        ));
    }

    #[test]
    fn what_is_not_host_and_port_is_refused() {
        for text in [
            "",
            "localhost",
            "localhost:0",
            "localhost:65536",
            "a b:1",
            ":8443",
            "x:-1",
        ] {
            assert!(text.parse::<PeerAddress>().is_err(), "{text}");
        }
    }
}
