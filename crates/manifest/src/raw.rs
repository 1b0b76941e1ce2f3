//! The manifest as written: serde shapes with spans, before any reference is checked.
//!
//! Every struct rejects unknown fields so a typo is an error that lists the known fields.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_spanned::Spanned;

use crate::model::{Mode, SubnetKind};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawApplication {
    pub name: Spanned<String>,
    #[serde(default)]
    #[expect(
        dead_code,
        reason = "accepted for people reading the manifest; septa does not use it"
    )]
    pub description: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCeiling {
    #[serde(default)]
    pub relax: Vec<Spanned<String>>,
    #[serde(default)]
    pub block: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSegment {
    pub subnets: BTreeMap<String, Spanned<SubnetKind>>,
    #[serde(default)]
    pub labels: Vec<Spanned<String>>,
    #[serde(default)]
    pub mode: Option<Mode>,
    #[serde(default)]
    pub limits: RawSegmentLimits,
    #[serde(default)]
    #[expect(
        dead_code,
        reason = "accepted for people reading the manifest; septa does not use it"
    )]
    pub description: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSegmentLimits {
    pub max_concurrency: Option<Spanned<u32>>,
    pub cpu_share: Option<Spanned<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGroup {
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    pub memory_mb: Option<Spanned<u32>>,
    pub timeout_ms: Option<Spanned<u32>>,
    pub cpu_ms: Option<Spanned<u32>>,
    pub max_concurrency: Option<Spanned<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBuild {
    pub command: Spanned<String>,
    #[serde(default)]
    pub workdir: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFunction {
    pub source: Spanned<String>,
    pub placement: Spanned<String>,
    #[serde(default)]
    pub groups: Vec<Spanned<String>>,
    #[serde(default)]
    pub labels: Vec<Spanned<String>>,
    #[serde(default)]
    pub mode: Option<Mode>,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub build: Option<RawBuild>,
    #[serde(default)]
    #[expect(
        dead_code,
        reason = "accepted for people reading the manifest; septa does not use it"
    )]
    pub description: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEndpoint {
    pub placement: Spanned<String>,
    #[serde(default)]
    pub groups: Vec<Spanned<String>>,
    #[serde(default)]
    pub labels: Vec<Spanned<String>>,
    #[serde(default)]
    pub mode: Option<Mode>,
    #[serde(default)]
    pub backend: Option<Spanned<String>>,
    #[serde(default)]
    pub url: Option<Spanned<String>>,
    #[serde(default)]
    pub url_env: Option<Spanned<String>>,
    #[serde(default)]
    pub url_file: Option<Spanned<String>>,
    #[serde(default)]
    pub limits: RawEndpointLimits,
    #[serde(default)]
    #[expect(
        dead_code,
        reason = "accepted for people reading the manifest; septa does not use it"
    )]
    pub description: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEndpointLimits {
    pub timeout_ms: Option<Spanned<u32>>,
    pub max_concurrency: Option<Spanned<u32>>,
    pub max_keys: Option<Spanned<u64>>,
    pub max_bytes: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    #[serde(default)]
    pub id: Option<Spanned<String>>,
    pub path: Spanned<String>,
    #[serde(default)]
    pub methods: Option<Vec<Spanned<String>>>,
    pub function: Spanned<String>,
    #[serde(default)]
    pub auth: Option<RawRouteAuth>,
    #[serde(default)]
    pub max_body_kb: Option<Spanned<u32>>,
    #[serde(default)]
    pub rate_limit: Option<RawRateLimit>,
    #[serde(default)]
    pub sources: Vec<Spanned<String>>,
    #[serde(default)]
    pub mode: Option<Mode>,
    #[serde(default)]
    pub body_timeout_ms: Option<Spanned<u32>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGateway {
    #[serde(default)]
    pub trusted_proxies: Vec<Spanned<String>>,
    #[serde(default)]
    pub client_ip_header: Option<Spanned<String>>,
    #[serde(default)]
    pub rate_limit: Option<RawRateCeiling>,
    #[serde(default)]
    pub client_ipv6_prefix: Option<Spanned<u8>>,
    #[serde(default)]
    pub refusal_budget: Option<RawRateCeiling>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRateCeiling {
    pub per_second: Spanned<u32>,
    #[serde(default)]
    pub burst: Option<Spanned<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRateLimit {
    pub key: Spanned<String>,
    pub per_second: Spanned<u32>,
    #[serde(default)]
    pub burst: Option<Spanned<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRouteAuth {
    #[serde(default)]
    pub jwt: Option<Spanned<String>>,
    #[serde(default)]
    pub api_key: Option<Spanned<String>>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub claims: BTreeMap<String, Spanned<RawClaimMatch>>,
    #[serde(default)]
    pub forward_claims: Vec<Spanned<String>>,
}

/// `claim = value` or `claim = [value, ...]`.
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum RawClaimMatch {
    One(RawClaimValue),
    AnyOf(Vec<RawClaimValue>),
}

#[derive(Deserialize, Clone)]
#[serde(untagged)]
pub(crate) enum RawClaimValue {
    String(String),
    Integer(i64),
    Bool(bool),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawApiKey {
    pub consumer: String,
    pub sha256: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawApiKeys {
    #[serde(default)]
    pub keys: Vec<RawApiKey>,
    #[serde(default)]
    pub keys_file: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawJwt {
    pub issuer: String,
    pub audiences: Vec<String>,
    pub algorithms: Vec<Spanned<String>>,
    #[serde(default)]
    pub jwks_file: Option<Spanned<String>>,
    #[serde(default)]
    pub jwks_url: Option<Spanned<String>>,
    #[serde(default)]
    pub jwks_refresh_s: Option<Spanned<u32>>,
    #[serde(default)]
    pub ca_file: Option<Spanned<String>>,
    #[serde(default)]
    pub leeway_s: Option<Spanned<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAllow {
    pub id: Spanned<String>,
    pub from: Spanned<String>,
    pub to: Spanned<String>,
    #[serde(default)]
    pub methods: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub paths: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    #[expect(
        dead_code,
        reason = "accepted for people reading the manifest; septa does not use it"
    )]
    pub description: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEgress {
    pub id: Spanned<String>,
    pub from: Spanned<String>,
    pub to: Vec<Spanned<String>>,
    #[serde(default)]
    #[expect(
        dead_code,
        reason = "accepted for people reading the manifest; septa does not use it"
    )]
    pub description: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDenyPath {
    pub from: Spanned<String>,
    pub to: Spanned<String>,
    #[serde(default)]
    pub except_through: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawInvariant {
    pub id: Spanned<String>,
    pub deny_path: RawDenyPath,
    #[serde(default)]
    #[expect(
        dead_code,
        reason = "accepted for people reading the manifest; septa does not use it"
    )]
    pub description: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAlert {
    pub id: Spanned<String>,
    pub on: Spanned<String>,
    #[serde(default)]
    pub from: Option<Spanned<String>>,
    #[serde(default)]
    pub to: Option<Spanned<String>>,
    #[serde(default)]
    pub threshold: Option<Spanned<u32>>,
    #[serde(default)]
    pub window_s: Option<Spanned<u32>>,
    #[serde(default)]
    pub webhook: Option<Spanned<String>>,
    #[serde(default)]
    pub command: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub min_interval_s: Option<Spanned<u32>>,
    #[serde(default)]
    pub timeout_ms: Option<Spanned<u32>>,
    #[serde(default)]
    #[expect(
        dead_code,
        reason = "accepted for people reading the manifest; septa does not use it"
    )]
    pub description: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCluster {
    pub trust_domain: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNode {
    pub hosts: Vec<Spanned<String>>,
    #[serde(default)]
    #[expect(
        dead_code,
        reason = "accepted for people reading the manifest; septa does not use it"
    )]
    pub description: Option<String>,
}
