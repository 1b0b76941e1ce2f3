//! The admin listener: a second HTTP listener, apart from the gateway, loopback unless the
//! operator says otherwise, where every path wants the admin token.
//!
//! | path | answers |
//! |---|---|
//! | `GET /healthz` | `{"status":"ok","application":…,"policy_hash":…,"functions":N}` |
//! | `GET /metrics` | Prometheus text exposition format 0.0.4 |
//! | `GET /flows?segment=&function=&verdict=&kind=&since=&limit=` | the recent flows matching, as a JSON array, newest last |
//! | `GET /flows/stream?…same filters` | server-sent events: `data: RECORD` per new flow, `: heartbeat` every 15 s, `event: lost` when the subscriber fell behind |
//! | `GET /model` | the loaded policy as the dashboard draws it ([`Control::model`]) |
//! | `POST /reload` | re-read, validate and swap the policy: 200 with the attempt, or 422 with why the old policy keeps serving |
//! | `GET /reload` | the last reload attempt, whatever triggered it |
//!
//! It runs on a thread of its own with its own single-threaded runtime, so neither a scrape nor a
//! stream ever takes time from a gateway worker.

mod routes;
mod stream;

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};

use crate::control::Control;
use crate::metrics::Metrics;
use crate::recent::Recent;
use crate::token::AdminToken;

/// How often a live stream sends a comment so that idle connections stay open.
pub const HEARTBEAT: Duration = Duration::from_secs(15);

/// How long a client has to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The body of every admin response.
pub type AdminBody = UnsyncBoxBody<Bytes, Infallible>;

/// What the admin listener serves from, and the token it wants.
pub struct Admin {
    token: AdminToken,
    metrics: Arc<Metrics>,
    recent: Arc<Recent>,
    heartbeat: Duration,
    control: Option<Arc<dyn Control>>,
}

/// Why the admin listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The address could not be bound.
    #[error("cannot listen on admin address `{addr}`")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The listener's thread could not be started.
    #[error("cannot start the admin listener's thread")]
    Spawn(#[source] io::Error),
}

impl Admin {
    /// An admin API over `metrics` and `recent`, refusing every request without `token`.
    pub fn new(token: AdminToken, metrics: Arc<Metrics>, recent: Arc<Recent>) -> Self {
        Self {
            token,
            metrics,
            recent,
            heartbeat: HEARTBEAT,
            control: None,
        }
    }

    /// Serves the platform's model (`/model`) and reloads (`/reload`) through `control`.
    #[must_use]
    pub fn with_control(mut self, control: Arc<dyn Control>) -> Self {
        self.control = Some(control);
        self
    }

    /// Sends stream heartbeats every `every` instead of [`HEARTBEAT`].
    #[must_use]
    pub fn with_heartbeat(mut self, every: Duration) -> Self {
        self.heartbeat = every.max(Duration::from_millis(10));
        self
    }

    /// Binds `addr` and serves from a thread of its own until the process ends. Returns the
    /// bound address (useful with port 0).
    pub fn serve(self: Arc<Self>, addr: SocketAddr) -> Result<SocketAddr, AdminError> {
        let bind_error = |source| AdminError::Bind { addr, source };
        let listener = std::net::TcpListener::bind(addr).map_err(bind_error)?;
        listener.set_nonblocking(true).map_err(bind_error)?;
        let bound = listener.local_addr().map_err(bind_error)?;
        if !bound.ip().is_loopback() {
            tracing::warn!(%bound, "the admin listener is reachable from other hosts; only its token protects it");
        }
        std::thread::Builder::new()
            .name("septa-admin".to_owned())
            .spawn(move || self.run(listener))
            .map_err(AdminError::Spawn)?;
        Ok(bound)
    }

    fn run(self: Arc<Self>, listener: std::net::TcpListener) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(error) => {
                tracing::error!(%error, "cannot start the admin listener's runtime");
                return;
            }
        };
        runtime.block_on(async move {
            let listener = match tokio::net::TcpListener::from_std(listener) {
                Ok(listener) => listener,
                Err(error) => {
                    tracing::error!(%error, "cannot register the admin socket");
                    return;
                }
            };
            loop {
                let stream = match listener.accept().await {
                    Ok((stream, _)) => stream,
                    Err(error) => {
                        // Out of descriptors, most likely: wait instead of spinning.
                        tracing::warn!(%error, "admin listener cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let admin = Arc::clone(&self);
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let admin = Arc::clone(&admin);
                        async move { Ok::<_, Infallible>(admin.respond(request).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(HEADER_READ_TIMEOUT)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
    }
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin")
            .field("heartbeat", &self.heartbeat)
            .finish_non_exhaustive()
    }
}
