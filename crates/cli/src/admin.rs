//! Wiring the admin listener into `septa up`: its token, the metrics and recent-flow observers on
//! the flow log, the gauges only the host can read, and the listener itself (which lives in
//! `septa-monitor`, apart from the gateway). And the alerts, which run with or without it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use septa_flows::{FlowLog, FlowObservers};
use septa_manifest::{AlertSink, Manifest};
use septa_monitor::{Admin, AdminToken, Alerts, Control, Metrics, Recent, TOKEN_ENV, TokenOrigin};

/// What the admin listener serves from; the flow log feeds it.
pub(crate) struct Monitoring {
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) recent: Arc<Recent>,
    token: AdminToken,
}

impl Monitoring {
    /// The token (from `token_file`, `SEPTA_ADMIN_TOKEN`, or kept in `state_dir`, generated and
    /// printed once), and empty metrics and recent flows; the metrics show how `alerts` fare.
    pub(crate) fn new(
        token_file: Option<&Path>,
        state_dir: &Path,
        alerts: &Alerts,
    ) -> anyhow::Result<Self> {
        let env = std::env::var(TOKEN_ENV).ok().filter(|v| !v.is_empty());
        let (token, origin) = AdminToken::resolve(token_file, env.as_deref(), state_dir)?;
        if let TokenOrigin::Generated(path) = &origin {
            println!("septa: admin token written to {}", path.display());
            println!("septa: admin token: {}", token.secret());
        }
        let metrics = Arc::new(Metrics::new());
        metrics.watch_alerts(alerts.counts());
        Ok(Self {
            metrics,
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

/// Starts the alerts' delivery thread, with no alert in force until a generation puts its
/// manifest's in force ([`Alerts::update`]). A flow observer whether or not the admin listener
/// runs; with no alert in force it costs the flow log one comparison per batch.
pub(crate) fn start_alerts() -> anyhow::Result<Arc<Alerts>> {
    let alerts =
        Alerts::start(Default::default()).context("cannot start the alert delivery thread")?;
    Ok(Arc::new(alerts))
}

/// Says where each of `manifest`'s alerts goes.
pub(crate) fn print_alerts(manifest: &Manifest) {
    for alert in &manifest.alerts {
        let to = match &alert.sink {
            AlertSink::Webhook(url) => format!("POST {url}"),
            AlertSink::Command { program, .. } => format!("run `{}`", program.display()),
        };
        println!("septa: alert `{}` on {}: {to}", alert.id, alert.trigger);
    }
}

/// Opens an HTTP/1 connection to the admin listener at `addr`, for the commands that talk to a
/// running septa (`flows tail`, `probe`).
pub(crate) async fn connect<B>(
    addr: SocketAddr,
) -> anyhow::Result<hyper::client::conn::http1::SendRequest<B>>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let unreachable = || unreachable(addr);
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(unreachable)?;
    let (sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .with_context(unreachable)?;
    tokio::spawn(connection);
    Ok(sender)
}

/// What to say when the admin listener at `addr` cannot be reached.
pub(crate) fn unreachable(addr: SocketAddr) -> String {
    format!("cannot reach the admin listener at `{addr}` (is `septa up --admin {addr}` running?)")
}

/// Where `septa up` keeps a generated admin token for the application in `dir`.
pub(crate) fn token_path(dir: &Path) -> PathBuf {
    dir.join(".septa").join(septa_monitor::TOKEN_FILE)
}
