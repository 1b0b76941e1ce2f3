//! Watching septa run: Prometheus metrics, the recent flows and a live stream of new ones, and
//! the admin listener that serves them behind a token.
//!
//! Everything here is fed by the flow log: [`Metrics`], [`Recent`] and [`Alerts`] are
//! [`FlowObserver`](septa_flows::FlowObserver)s that the flow log's writer thread calls after
//! each batch, so the request path only ever hands a record to a channel. The host adds the
//! gauges only it knows ([`Metrics::load_policy`], [`Metrics::count_reload`],
//! [`Metrics::watch_instances`], [`Metrics::watch_flow_log`], [`Metrics::watch_alerts`]), tells
//! [`Alerts`] of refused reloads, and starts the [`Admin`] listener.
//!
//! ```text
//! enforcers ─▶ FlowLog ─▶ writer thread ─▶ file / stdout / nowhere
//!                                      └─▶ observers: Metrics, Recent ─▶ broadcast ─▶ /flows/stream
//!                                                     Alerts ─▶ queue ─▶ delivery thread ─▶ webhook / command
//! Admin listener (own thread, token or session): /healthz  /metrics  /flows  /flows/stream
//!                                                 /model  /reload  /dashboard  /login  /probe
//! ```

mod admin;
mod alerts;
mod control;
mod exposition;
mod filter;
pub mod labels;
mod metrics;
mod recent;
mod session;
mod token;

pub use admin::{Admin, AdminBody, AdminError, HEARTBEAT, PROBE_GRANT_HEADER};
pub use alerts::{AlertCounts, AlertOutcome, AlertRules, Alerts, ByOutcome};
pub use control::{
    Control, ProbeAttempt, ProbeGrant, ProbeOutcome, ProbeRefusal, ProbeReport, ReloadAttempt,
    ReloadTrigger,
};
pub use exposition::CONTENT_TYPE as PROMETHEUS_CONTENT_TYPE;
pub use filter::{DEFAULT_LIMIT, FilterError, FlowFilter};
pub use metrics::{
    DEFAULT_MAX_SERIES, GuestCpu, GuestCpuSource, InstancesInUse, LoadedPolicy, Metrics,
    ReloadOutcome,
};
pub use recent::{DEFAULT_CAPACITY, DEFAULT_MAX_BYTES, Follow, Recent, SUBSCRIBER_BACKLOG};
pub use session::{SESSION_COOKIE, SESSION_LIFETIME};
pub use token::{AdminToken, TOKEN_ENV, TOKEN_FILE, TokenError, TokenOrigin};

/// The policy hash `septa_policy_info` and `/healthz` show: SHA-256 of the manifest file's
/// bytes, lowercase hex.
pub fn manifest_hash(manifest_bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, manifest_bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
