//! Wires the gateway's JWKS fetches to the mesh's egress path.
//!
//! The gateway declares what it needs ([`JwksFetcher`]) and the mesh knows how septa reaches the
//! outside ([`septa_mesh::fetch`]); neither depends on the other, and this adapter, built at
//! start-up, is the only place they meet — the same inversion as the runtime's outbound hook.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context;
use septa_flows::FlowGuard;
use septa_gateway::auth::refresh::{FetchFuture, JwksFetcher};
use septa_manifest::{JwksSource, JwtIssuer};
use septa_mesh::fetch::{FetchLimits, TrustRoots, fetch_document};
use septa_policy::Policy;

/// Fetches each issuer's `jwks_url` through the operator ceiling, trusting the issuer's roots.
pub(crate) struct EgressJwksFetcher {
    policy: Arc<Policy>,
    roots: HashMap<String, TrustRoots>,
}

impl EgressJwksFetcher {
    /// Reads the trusted roots of every issuer with a `jwks_url` (its `ca_file`, or the system's).
    pub(crate) fn new(policy: Arc<Policy>) -> anyhow::Result<Self> {
        let mut roots = HashMap::new();
        for issuer in policy.manifest().jwt.values() {
            if let JwksSource::Url { ca_file, .. } = &issuer.jwks {
                let trusted = TrustRoots::load(ca_file.as_deref()).with_context(|| {
                    format!("jwt issuer `{}` cannot fetch its keys", issuer.name)
                })?;
                roots.insert(issuer.name.to_string(), trusted);
            }
        }
        Ok(Self { policy, roots })
    }
}

impl JwksFetcher for EgressJwksFetcher {
    fn fetch<'a>(&'a self, issuer: &'a JwtIssuer, flow: &'a mut FlowGuard) -> FetchFuture<'a> {
        Box::pin(async move {
            let (JwksSource::Url { url, .. }, Some(roots)) =
                (&issuer.jwks, self.roots.get(issuer.name.as_str()))
            else {
                return Err(format!("jwt issuer `{}` has no `jwks_url`", issuer.name).into());
            };
            let policy = &self.policy;
            Ok(fetch_document(url, policy, roots, FetchLimits::default(), flow).await?)
        })
    }
}
