//! Wiring the admin listener into `septa up`: its token, the metrics and recent-flow observers on
//! the flow log, the gauges only the host can read, and the listener itself (which lives in
//! `septa-monitor`, apart from the gateway).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::bail;
use septa_flows::{FlowLog, FlowObservers};
use septa_monitor::{Admin, AdminToken, Control, Metrics, Recent, TOKEN_ENV, TokenOrigin};

/// What the admin listener serves from; the flow log feeds it.
pub(crate) struct Monitoring {
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) recent: Arc<Recent>,
    token: AdminToken,
}

impl Monitoring {
    /// The token (from `token_file`, `SEPTA_ADMIN_TOKEN`, or kept in `state_dir`, generated and
    /// printed once), and empty metrics and recent flows.
    pub(crate) fn new(token_file: Option<&Path>, state_dir: &Path) -> anyhow::Result<Self> {
        let env = std::env::var(TOKEN_ENV).ok().filter(|v| !v.is_empty());
        let (token, origin) = AdminToken::resolve(token_file, env.as_deref(), state_dir)?;
        if let TokenOrigin::Generated(path) = &origin {
            println!("septa: admin token written to {}", path.display());
            println!("septa: admin token: {}", token.secret());
        }
        Ok(Self {
            metrics: Arc::new(Metrics::new()),
            recent: Arc::new(Recent::default()),
            token,
        })
    }

    /// The observers the flow log must feed.
    pub(crate) fn observers(&self) -> FlowObservers {
        FlowObservers::new()
            .with(self.metrics.clone())
            .with(self.recent.clone())
    }

    /// Reads the flow log's counters at each scrape, then listens on `addr`, which must not be
    /// the gateway's `listen`, serving the platform's model and reloads through `control`. The
    /// metrics and recent flows stay shared with the caller (the platform points the instance
    /// gauges at each generation's host and counts its reloads into the same metrics).
    pub(crate) fn serve(
        &self,
        addr: SocketAddr,
        listen: SocketAddr,
        flows: &FlowLog,
        control: Arc<dyn Control>,
    ) -> anyhow::Result<SocketAddr> {
        if addr == listen && addr.port() != 0 {
            bail!("the admin listener cannot share the gateway's address `{addr}`");
        }
        self.metrics.watch_flow_log(flows.stats());
        let admin = Admin::new(
            self.token.clone(),
            self.metrics.clone(),
            self.recent.clone(),
        )
        .with_control(control);
        let admin = Arc::new(admin);
        Ok(admin.serve(addr)?)
    }
}

/// The line `septa up` prints to say where the dashboard is and how to log in to it.
pub(crate) fn dashboard_hint(addr: SocketAddr) -> String {
    format!("septa: dashboard on http://{addr}/dashboard (sign in at http://{addr}/login)")
}

/// Where `septa up` keeps a generated admin token for the application in `dir`.
pub(crate) fn token_path(dir: &Path) -> PathBuf {
    dir.join(".septa").join(septa_monitor::TOKEN_FILE)
}
