//! The validated manifest: every reference resolved, every name checked.
//!
//! Values of these types only come out of [`crate::load()`] / [`crate::parse()`], so code that
//! holds a [`Manifest`] never re-checks what loading already proved.
//!
//! This module holds [`Manifest`], the whole file, and the operator's [`CeilingSpec`]; each
//! submodule owns one part of the rest.

mod cluster;
mod credentials;
mod function;
mod invariant;
mod name;
mod places;
mod route;
mod rules;

use std::collections::BTreeMap;
use std::path::PathBuf;

use ipnet::IpNet;

pub use cluster::{Cluster, Node, TrustDomain};
pub use credentials::{ApiKey, ApiKeySet, JwksSource, JwtAlgorithm, JwtIssuer};
pub use function::{Build, Component, Connection, EndpointBackend, Function, FunctionKind, Limits};
pub use invariant::{Invariant, InvariantRule};
pub use name::Name;
pub use places::{Group, Mode, Placement, Segment, SubnetKind};
pub use route::{
    AuthMethod, ClaimMatch, ClaimValue, GatewaySpec, RateLimit, RateLimitKey, Route, RouteAuth,
};
pub use rules::{AllowRule, EgressRule, Method, Methods, PathText, Paths};

use crate::alert::Alert;

/// The operator ceiling as declared: changes to the default blocked networks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CeilingSpec {
    /// Networks carved out of the default blocked set (for example a test's loopback listener).
    pub relax: Vec<IpNet>,
    /// Networks blocked on top of the defaults; a block always wins over a relaxation.
    pub block: Vec<IpNet>,
}

/// A validated `septa.toml`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// The file it was read from.
    pub file: PathBuf,
    /// The directory relative paths are resolved against.
    pub dir: PathBuf,
    /// The application name.
    pub application: Name,
    /// The operator ceiling.
    pub ceiling: CeilingSpec,
    /// Gateway-wide settings.
    pub gateway: GatewaySpec,
    /// Segments by name.
    pub segments: BTreeMap<Name, Segment>,
    /// Security groups by name.
    pub groups: BTreeMap<Name, Group>,
    /// Functions by name: the components, and the endpoints (`kind` tells them apart; they
    /// share the `NAME.internal` namespace).
    pub functions: BTreeMap<Name, Function>,
    /// Gateway routes, in file order.
    pub routes: Vec<Route>,
    /// Allow rules, in file order.
    pub allows: Vec<AllowRule>,
    /// Egress rules, in file order.
    pub egress: Vec<EgressRule>,
    /// Invariants, in file order.
    pub invariants: Vec<Invariant>,
    /// JWT issuers by name.
    pub jwt: BTreeMap<Name, JwtIssuer>,
    /// API key sets by name.
    pub api_keys: BTreeMap<Name, ApiKeySet>,
    /// The operator's alerts, in file order.
    pub alerts: Vec<Alert>,
    /// Which node hosts what, when the application runs on several (`[cluster]`, `[node.*]`).
    pub cluster: Option<Cluster>,
}

impl Manifest {
    /// The components septa runs, without the endpoints.
    pub fn components(&self) -> impl Iterator<Item = &Function> {
        self.functions.values().filter(|f| !f.is_endpoint())
    }

    /// Labels that apply to a function: its own and its segment's.
    pub fn function_labels<'a>(&'a self, function: &'a Function) -> impl Iterator<Item = &'a Name> {
        let segment_labels = self
            .segments
            .get(&function.placement.segment)
            .map(|s| s.labels.as_slice())
            .unwrap_or_default();
        function.labels.iter().chain(segment_labels)
    }
}
