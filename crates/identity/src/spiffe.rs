//! Reading a node's identity out of a certificate: its URI SAN `spiffe://TRUST_DOMAIN/node/NAME`.

use std::fmt;

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// A node's SPIFFE id, as its certificate states it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NodeId {
    /// The trust domain, e.g. `shop.example`.
    pub trust_domain: String,
    /// The node's name, e.g. `pay-1`.
    pub node: String,
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "spiffe://{}/node/{}", self.trust_domain, self.node)
    }
}

/// Why a certificate does not name a node.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PeerError {
    /// The peer sent no certificate.
    #[error("the peer presented no certificate")]
    NoCertificate,
    /// The bytes are not an X.509 certificate.
    #[error("the peer's certificate cannot be parsed: {0}")]
    Unparsable(String),
    /// No URI SAN, or several: a node certificate carries exactly one SPIFFE id.
    #[error(
        "the peer's certificate carries {0} SPIFFE ids; a node certificate carries exactly one"
    )]
    SpiffeIdCount(usize),
    /// A SPIFFE id that is not `spiffe://TD/node/NAME`.
    #[error("`{0}` is not a node id `spiffe://TRUST_DOMAIN/node/NAME`")]
    NotANode(String),
    /// A node of another trust domain.
    #[error("`{found}` is not in trust domain `{expected}`")]
    OtherTrustDomain {
        /// The id the certificate carries.
        found: String,
        /// The trust domain this node belongs to.
        expected: String,
    },
}

/// The node id in certificate `der`. A certificate with any URI SAN other than exactly one
/// `spiffe://TD/node/NAME` is refused, so an id cannot be smuggled in beside another.
pub fn node_id_of(der: &[u8]) -> Result<NodeId, PeerError> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| PeerError::Unparsable(e.to_string()))?;
    let uris: Vec<&str> = cert
        .subject_alternative_name()
        .map_err(|e| PeerError::Unparsable(e.to_string()))?
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::URI(uri) => Some(*uri),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let [uri] = uris.as_slice() else {
        return Err(PeerError::SpiffeIdCount(uris.len()));
    };
    parse_node_id(uri).ok_or_else(|| PeerError::NotANode((*uri).to_owned()))
}

/// `spiffe://TD/node/NAME` with a non-empty trust domain and a name of lowercase letters,
/// digits and `-` (the manifest's names), nothing after it.
fn parse_node_id(uri: &str) -> Option<NodeId> {
    let rest = uri.strip_prefix("spiffe://")?;
    let (trust_domain, path) = rest.split_once('/')?;
    let node = path.strip_prefix("node/")?;
    let ok_domain = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || ".-_".contains(c);
    let ok_name = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    let valid = !trust_domain.is_empty()
        && trust_domain.chars().all(ok_domain)
        && !node.is_empty()
        && node.len() <= 63
        && node.chars().all(ok_name);
    valid.then(|| NodeId {
        trust_domain: trust_domain.to_owned(),
        node: node.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_plain_node_id_parses() {
        assert_eq!(
            parse_node_id("spiffe://shop.example/node/pay-1"),
            Some(NodeId {
                trust_domain: "shop.example".into(),
                node: "pay-1".into()
            })
        );
        for bad in [
            "spiffe://shop.example/node/",
            "spiffe://shop.example/node/pay-1/x",
            "spiffe://shop.example/ns/pay-1",
            "spiffe:///node/a",
            "https://shop.example/node/a",
            "spiffe://Shop.example/node/a",
            "spiffe://shop.example/node/A",
            "spiffe://shop.example/node/a?b",
        ] {
            assert_eq!(parse_node_id(bad), None, "{bad}");
        }
    }
}
