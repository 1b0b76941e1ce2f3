//! Wiring the admin listener into `septa up`: its token, the metrics and recent-flow observers on
//! the flow log, the gauges only the host can read, the platform it controls (the dashboard's
//! model, reloads), and the listener itself (which lives in `septa-monitor`, apart from the
//! gateway).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use septa_flows::{FlowLog, FlowObservers};
use septa_monitor::{
    Admin, AdminToken, Control, Metrics, Recent, ReloadAttempt, ReloadTrigger, TOKEN_ENV,
    TokenOrigin, manifest_hash,
};
use septa_policy::Policy;
use septa_runtime::Host;

/// What the admin listener serves from; the flow log feeds it.
pub(crate) struct Monitoring {
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) recent: Arc<Recent>,
    token: AdminToken,
    control: Arc<dyn Control>,
}

impl Monitoring {
    /// The token (from `token_file`, `SEPTA_ADMIN_TOKEN`, or kept in `state_dir`, generated and
    /// printed once), and empty metrics and recent flows that know `policy`.
    pub(crate) fn new(
        policy: &Policy,
        token_file: Option<&Path>,
        state_dir: &Path,
    ) -> anyhow::Result<Self> {
        let env = std::env::var(TOKEN_ENV).ok().filter(|v| !v.is_empty());
        let (token, origin) = AdminToken::resolve(token_file, env.as_deref(), state_dir)?;
        if let TokenOrigin::Generated(path) = &origin {
            println!("septa: admin token written to {}", path.display());
            println!("septa: admin token: {}", token.secret());
        }
        let manifest_file = &policy.manifest().file;
        let bytes = std::fs::read(manifest_file)
            .with_context(|| format!("cannot read `{}` to hash it", manifest_file.display()))?;
        let hash = manifest_hash(&bytes);
        let metrics = Arc::new(Metrics::new());
        metrics.load_policy(policy, hash.clone());
        let control = Arc::new(StartupPolicy {
            model: crate::model::dashboard_model(policy, &hash, 1),
            hash,
        });
        Ok(Self {
            metrics,
            recent: Arc::new(Recent::default()),
            token,
            control,
        })
    }

    /// Serves `/model` and `/reload` through `control` rather than from the policy septa
    /// started with.
    #[expect(dead_code, reason = "for the reloading `septa up` to call")]
    pub(crate) fn set_control(&mut self, control: Arc<dyn Control>) {
        self.control = control;
    }

    /// The observers the flow log must feed.
    pub(crate) fn observers(&self) -> FlowObservers {
        FlowObservers::new()
            .with(self.metrics.clone())
            .with(self.recent.clone())
    }

    /// Reads the host's and the flow log's counters at each scrape, then listens on `addr`,
    /// which must not be the gateway's `listen`. The metrics and recent flows stay shared with
    /// the caller (a reload counts itself into the same metrics).
    pub(crate) fn serve(
        &self,
        addr: SocketAddr,
        listen: SocketAddr,
        host: &Host,
        flows: &FlowLog,
    ) -> anyhow::Result<SocketAddr> {
        if addr == listen && addr.port() != 0 {
            bail!("the admin listener cannot share the gateway's address `{addr}`");
        }
        self.metrics.watch_flow_log(flows.stats());
        let bulkheads = host.bulkheads();
        self.metrics.watch_instances(Box::new(move || {
            bulkheads
                .in_use()
                .map(|(function, in_use)| (function.to_owned(), in_use as u64))
                .collect()
        }));
        let admin = Admin::new(
            self.token.clone(),
            self.metrics.clone(),
            self.recent.clone(),
        )
        .with_control(self.control.clone());
        let admin = Arc::new(admin);
        Ok(admin.serve(addr)?)
    }
}

/// The line `septa up` prints to say where the dashboard is and how a browser logs in to it.
#[expect(
    dead_code,
    reason = "for `septa up` to print next to the admin address"
)]
pub(crate) fn dashboard_hint(addr: SocketAddr) -> String {
    format!(
        "septa: dashboard on http://{addr}/dashboard (log in at http://{addr}/login with the admin token)"
    )
}

/// The platform as `septa up` started it, until the binary controls reloads itself: the model
/// of the policy it started with, and reloads refused.
struct StartupPolicy {
    model: serde_json::Value,
    hash: String,
}

impl Control for StartupPolicy {
    fn model(&self) -> serde_json::Value {
        self.model.clone()
    }

    fn reload(&self, trigger: ReloadTrigger) -> ReloadAttempt {
        ReloadAttempt {
            at_unix_s: ReloadAttempt::now_unix_s(),
            trigger,
            applied: false,
            policy_hash: self.hash.clone(),
            attempted_hash: None,
            generation: 1,
            message: "this septa cannot reload its policy; restart it".to_owned(),
        }
    }

    fn last_reload(&self) -> Option<ReloadAttempt> {
        None
    }
}

/// Where `septa up` keeps a generated admin token for the application in `dir`.
pub(crate) fn token_path(dir: &Path) -> PathBuf {
    dir.join(".septa").join(septa_monitor::TOKEN_FILE)
}
