//! What the admin API may ask of the running platform besides metrics and flows: its model for
//! the dashboard, and reloading its policy. The binary implements [`Control`] (it owns the
//! manifest, the compiler and the swap); the admin listener only calls it, so this crate never
//! depends on the gateway, the mesh or the auditor.

use std::time::SystemTime;

use serde::Serialize;

/// The platform, as the admin API sees it.
pub trait Control: Send + Sync + 'static {
    /// The loaded policy as the dashboard draws it: segments and subnets, the functions,
    /// endpoints and routes inside them, and the allowed flows with the rule behind each. JSON,
    /// built by the binary from the same compiled policy and reachability graph that
    /// `septa audit` reads.
    fn model(&self) -> serde_json::Value;

    /// Re-reads the manifest, validates, compiles and checks it, and swaps it in, or keeps the
    /// old policy serving and says why not. Slow (it may compile components): the admin
    /// listener calls it off its own thread.
    fn reload(&self, trigger: ReloadTrigger) -> ReloadAttempt;

    /// The last reload attempt, whatever triggered it; `None` before the first.
    fn last_reload(&self) -> Option<ReloadAttempt>;

    /// Grants a probe for `ttl`: until it expires or is revoked, [`Control::probe`] may attempt
    /// flows as any identity under it. Returns the grant's secret id.
    fn grant_probe(&self, ttl: std::time::Duration) -> ProbeGrant;

    /// Ends grant `id` at once; whether it was active.
    fn revoke_probe(&self, id: &str) -> bool;

    /// Attempts each flow through the real enforcement path of the generation in force, as the
    /// identity it names, under grant `id`: the gateway's normalization, routing and route
    /// decision for `gateway`, the mesh's destination resolution and decision for a function
    /// or endpoint. An allowed attempt stops where the flow would be delivered, so nothing runs
    /// and nothing is stored; every attempt is a flow record tagged with the grant. Slow for
    /// many attempts: the admin listener calls it off its own thread.
    fn probe(&self, id: &str, attempts: &[ProbeAttempt]) -> Result<ProbeReport, ProbeRefusal>;
}

/// A probe grant.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ProbeGrant {
    /// The secret that authorizes attempts (`septa-probe-grant` header).
    pub grant: String,
    /// Seconds until it expires.
    pub expires_in_s: u64,
}

/// One flow to attempt.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ProbeAttempt {
    /// The source identity: `gateway`, `function:NAME` or `endpoint:NAME`.
    pub from: String,
    /// The destination identity: `function:NAME` or `endpoint:NAME`.
    pub to: String,
    /// The HTTP method.
    pub method: String,
    /// The path (for `gateway`, the public path; otherwise the path on the destination).
    pub path: String,
}

/// What one attempt met.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ProbeOutcome {
    /// `allow`, `audit` (allowed, enforcement off) or `deny`.
    pub verdict: String,
    /// The rule or route that allowed it.
    pub rule: Option<String>,
    /// Why, as the flow log says it.
    pub reason: String,
}

/// The outcomes of a probe, in the order of its attempts, and the policy that decided them.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ProbeReport {
    /// The generation in force.
    pub generation: u64,
    /// Its manifest's SHA-256.
    pub policy_hash: String,
    /// One per attempt.
    pub outcomes: Vec<ProbeOutcome>,
}

/// Why a probe was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProbeRefusal {
    /// The grant is unknown, expired or revoked.
    #[error("no active probe grant with this id (grant one with `POST /probe/grant`)")]
    NoGrant,
    /// An attempt names something that is not there.
    #[error("attempt {index}: {message}")]
    BadAttempt {
        /// Which attempt, from 0.
        index: usize,
        /// What is wrong with it.
        message: String,
    },
}

/// What asked for a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReloadTrigger {
    /// `POST /reload` on the admin API.
    Admin,
    /// The manifest file changed on disk.
    FileChange,
    /// The process got `SIGHUP`.
    Signal,
    /// `septa publish` moved the cluster's revision pointer (on a `septa node`).
    Published,
}

impl ReloadTrigger {
    /// The name it is serialized as: `admin`, `file_change`, `signal` or `published`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::FileChange => "file_change",
            Self::Signal => "signal",
            Self::Published => "published",
        }
    }
}

/// How a reload attempt ended.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadAttempt {
    /// When it ended, in seconds since the Unix epoch.
    pub at_unix_s: u64,
    /// What asked for it.
    pub trigger: ReloadTrigger,
    /// Whether the new policy now serves.
    pub applied: bool,
    /// The manifest hash now serving (the old one when the attempt was refused).
    pub policy_hash: String,
    /// The hash of the manifest the attempt read, when it could read one.
    pub attempted_hash: Option<String>,
    /// The generation now serving: 1 at start, one more for each applied reload.
    pub generation: u64,
    /// What was wrong (diagnostics with file:line:col, a failed invariant, a compile error),
    /// or a one-line summary of what changed.
    pub message: String,
}

impl ReloadAttempt {
    /// Seconds since the Unix epoch, now.
    pub fn now_unix_s() -> u64 {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}
