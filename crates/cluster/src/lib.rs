//! The control plane of several septa nodes, on NATS JetStream and never on the request path.
//!
//! A revision is the manifest plus every file it names (components, key and JWKS files), each
//! stored once by content hash in a JetStream object store; one KV key names the revision in force
//! and is moved only by compare-and-swap, so two publishers cannot interleave ([`ControlPlane::publish`]).
//! Nodes watch that key, fetch what they host, verify every file against its hash
//! ([`ControlPlane::fetch`]) and register themselves in a KV bucket whose entries expire unless
//! renewed ([`ControlPlane::heartbeat`]). Nodes agree on nothing by themselves: NATS holds the
//! published revision and the registry, and each node decides every request with the revision it
//! applied.

mod bundle;
mod control;
mod registry;

pub use bundle::{Bundle, BundleError, FileRef, Revision};
pub use control::{ControlError, ControlPlane, HEARTBEAT_EVERY, HEARTBEAT_TTL, PublishError};
pub use registry::{NodeStatus, RevisionFailure};
