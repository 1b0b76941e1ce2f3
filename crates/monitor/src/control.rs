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
}

impl ReloadTrigger {
    /// The name it is serialized as: `admin`, `file_change` or `signal`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::FileChange => "file_change",
            Self::Signal => "signal",
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
