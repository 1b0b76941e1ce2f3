//! `septa.toml`: parsing into typed, validated values with file:line:col errors.
//!
//! [`load()`] reads a manifest from an application directory and either returns a [`Manifest`]
//! whose every reference is resolved, or [`Diagnostics`] listing every problem found, each with
//! its position. Nothing downstream re-checks what this crate proved.

mod alert;
mod diagnostic;
mod egress;
mod https_url;
mod load;
mod model;
mod raw;
mod selector;

pub use alert::{Alert, AlertSink, AlertTrigger, FlowScope, WebhookUrl};
pub use diagnostic::{Diagnostic, Diagnostics, Location};
pub use egress::{EgressScheme, EgressTarget, HostPattern};
pub use https_url::HttpsUrl;
pub use load::{MANIFEST_FILE, load, parse};
pub use model::{
    AllowRule, ApiKey, ApiKeySet, AuthMethod, Build, CeilingSpec, ClaimMatch, ClaimValue, Cluster,
    Component, Connection, EgressRule, EndpointBackend, Function, FunctionKind, GatewaySpec, Group,
    Invariant, InvariantRule, JwksSource, JwtAlgorithm, JwtIssuer, Limits, Manifest, Method,
    Methods, Mode, Name, Node, PathText, Paths, Placement, RateLimit, RateLimitKey, Route,
    RouteAuth, Segment, SubnetKind, TrustDomain,
};
pub use selector::Selector;
