//! Who a node is, and how it proves it: the platform CA, node certificates whose URI SAN is
//! `spiffe://TRUST_DOMAIN/node/NAME`, and the rustls configurations nodes use to call each other
//! with mutual TLS.
//!
//! [`ca`] writes the root and issues node certificates (`septa ca init`, `septa ca issue`).
//! [`tls`] loads a node's directory (`node.crt`, `node.key`, `ca.crt`) into a server config that
//! requires a client certificate from the same CA and a client config that accepts a server only
//! when its SPIFFE id names the node being called; both are re-read when the files change.
//! [`verifier`] is the one place a server-certificate verifier's handshake signatures are checked,
//! for every custom verifier septa has.
//! [`NodeId`] is what a verified peer certificate says, and the only source of a peer's identity:
//! never a header.

pub mod ca;
mod files;
mod spiffe;
pub mod tls;
pub mod verifier;

pub use spiffe::{NodeId, PeerError, node_id_of};

/// File names inside a CA directory and a node's TLS directory.
pub mod file {
    /// The root certificate (PEM), in both directories.
    pub const CA_CERT: &str = "ca.crt";
    /// The root's private key (PEM, mode 0600), only in the CA directory.
    pub const CA_KEY: &str = "ca.key";
    /// The node's certificate (PEM).
    pub const NODE_CERT: &str = "node.crt";
    /// The node's private key (PEM, mode 0600).
    pub const NODE_KEY: &str = "node.key";
}
