//! What answers at `NAME.internal`: a [`Function`] (a component, or a private endpoint and its
//! backend), with its resource limits and how to build it.

use std::path::PathBuf;

use super::{Mode, Name, Placement, SubnetKind};
use crate::diagnostic::Location;

/// Per-instance resource limits of a function, and the storage quotas of an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Linear memory limit of one instance, in MiB.
    pub memory_mb: u32,
    /// Wall-clock time one request may run, in milliseconds.
    pub timeout_ms: u32,
    /// CPU time one request's guest may use, in milliseconds: past it the guest is stopped like
    /// one past its timeout. At most `timeout_ms`, which it equals unless declared.
    pub cpu_ms: u32,
    /// Instances of this function that may run at once; more are refused with 503.
    pub max_concurrency: u32,
    /// An endpoint's quota of stored keys (`limits.max_keys`); a put of a new key past it is
    /// refused with 507. `None`: no quota (always for a component).
    pub max_keys: Option<u64>,
    /// An endpoint's quota of stored bytes, keys and values together (`limits.max_bytes`); a
    /// put that would grow the store past it is refused with 507. `None`: no quota.
    pub max_bytes: Option<u64>,
}

impl Limits {
    /// The largest `max_keys` a manifest may give.
    pub const MAX_KEYS: u64 = 1_000_000_000_000;
    /// The largest `max_bytes` a manifest may give: 1 PiB.
    pub const MAX_BYTES: u64 = 1 << 50;

    /// Largest memory a manifest may ask for.
    pub const MAX_MEMORY_MB: u32 = 4096;
    /// Longest timeout a manifest may ask for.
    pub const MAX_TIMEOUT_MS: u32 = 300_000;
    /// Most concurrent instances a manifest may ask for.
    pub const MAX_CONCURRENCY: u32 = 10_000;
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_mb: 64,
            timeout_ms: 10_000,
            cpu_ms: 10_000,
            max_concurrency: 64,
            max_keys: None,
            max_bytes: None,
        }
    }
}

/// How `septa up --build` builds a function's component.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Build {
    /// A shell command.
    pub command: String,
    /// The directory it runs in, resolved against the manifest's directory.
    pub workdir: PathBuf,
}

/// What answers at a mesh name: a component septa runs, or a private endpoint to a data store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FunctionKind {
    /// A `wasi:http/proxy` component (`[function.NAME]`).
    Component(Component),
    /// A private endpoint (`[endpoint.NAME]`): a key-value store reached only through the mesh.
    Endpoint(EndpointBackend),
}

/// A component septa runs: the file it is loaded from, and how to build it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Component {
    /// The component file, resolved against the manifest's directory.
    pub source: PathBuf,
    /// How to build it, if declared.
    pub build: Option<Build>,
}

/// Where a private endpoint keeps its data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndpointBackend {
    /// An embedded store, one file per endpoint under the data directory (the default).
    Embedded,
    /// A Redis server.
    Redis(Connection),
    /// A PostgreSQL server (a table per endpoint).
    Postgres(Connection),
}

/// Where a backend's connection URL comes from. Credentials never live in the manifest: a URL
/// written inline may not carry a password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Connection {
    /// A URL without credentials, written in the manifest.
    Url(String),
    /// An environment variable holding the URL.
    Env(String),
    /// A file holding the URL (resolved against the manifest's directory).
    File(PathBuf),
}

/// A function: something placed in one segment and subnet that the mesh reaches at
/// `NAME.internal` — a `wasi:http/proxy` component, or a private endpoint to a data store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Function {
    /// Its name, also its mesh host name `NAME.internal`.
    pub name: Name,
    /// A component or an endpoint.
    pub kind: FunctionKind,
    /// Its segment and subnet.
    pub placement: Placement,
    /// The tier of its subnet.
    pub subnet_kind: SubnetKind,
    /// Security groups it belongs to.
    pub groups: Vec<Name>,
    /// Its own labels; the segment's labels apply too.
    pub labels: Vec<Name>,
    /// The effective mode: its own if set, otherwise its segment's.
    pub mode: Mode,
    /// Resource limits.
    pub limits: Limits,
    /// Where it is declared.
    pub location: Location,
}

impl Function {
    /// The identity flows name it by: `function:NAME` or `endpoint:NAME`.
    pub fn identity(&self) -> String {
        match self.kind {
            FunctionKind::Component(_) => format!("function:{}", self.name),
            FunctionKind::Endpoint(_) => format!("endpoint:{}", self.name),
        }
    }

    /// Whether it is a private endpoint rather than a component.
    pub fn is_endpoint(&self) -> bool {
        matches!(self.kind, FunctionKind::Endpoint(_))
    }

    /// The component septa runs for it; `None` for an endpoint.
    pub fn component(&self) -> Option<&Component> {
        match &self.kind {
            FunctionKind::Component(component) => Some(component),
            FunctionKind::Endpoint(_) => None,
        }
    }
}
