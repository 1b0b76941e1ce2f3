//! The admin listener: a second HTTP listener, apart from the gateway, loopback unless the
//! operator says otherwise, where every path wants the admin token.
//!
//! A request proves it may come in with `Authorization: Bearer TOKEN`, or, from a browser, with
//! the session cookie `/login` sets for the token: `septa_admin`, `HttpOnly; SameSite=Strict;
//! Path=/`, holding an HMAC of the token under a key drawn at each start, never the token
//! ([`crate::session`]); it lasts 12 hours or until septa restarts. A request with neither, a
//! wrong token, or a cookie that does not verify gets 401 on every path (a login form on
//! `/dashboard` and `/login`, JSON elsewhere). A state-changing request (`POST /reload`) with only
//! the cookie must also send `X-Septa-Dashboard: 1` and the listener's own `Origin`, or gets 403,
//! so no page of another site can trigger it.
//!
//! | path | answers |
//! |---|---|
//! | `GET /healthz` | `{"status":"ok","application":…,"policy_hash":…,"functions":N}` |
//! | `GET /metrics` | Prometheus text exposition format 0.0.4 |
//! | `GET /flows?segment=&function=&verdict=&kind=&since=&limit=` | the recent flows matching, as a JSON array, newest last |
//! | `GET /flows/stream?…same filters` | server-sent events: `data: RECORD` per new flow, `: heartbeat` every 15 s, `event: lost` when the subscriber fell behind |
//! | `GET /model` | the loaded policy as the dashboard draws it ([`Control::model`]) |
//! | `GET /cpu` | the CPU guests used since start, `{"segments":[{segment, cpu_seconds, waited_seconds, preemptions}], "functions":[{segment, function, …}]}` (what `septa_cpu_seconds_total` counts) |
//! | `POST /reload` | re-read, validate and swap the policy: 200 with the attempt, or 422 with why the old policy keeps serving |
//! | `GET /reload` | the last reload attempt, whatever triggered it |
//! | `POST /probe/grant?ttl_s=N` | a probe grant (bearer token only): `{"grant", "expires_in_s"}`, at most 600 s |
//! | `DELETE /probe/grant` | ends the grant in `septa-probe-grant` |
//! | `POST /probe` | with `septa-probe-grant`: attempts a JSON array of `{from, to, method, path}` through the real enforcement path and answers each verdict ([`crate::Control::probe`]) |
//! | `GET /dashboard` (and `/dashboard.js`, `/dashboard.css`) | the live dashboard: segments, subnets, functions, allowed flows, live traffic on them, denials with their reasons, the last reload; embedded, no external resources |
//! | `GET /login?token=TOKEN`, `POST /login` (form field `token`) | with the right token: 303 to `/dashboard` with the session cookie; otherwise 401 and no cookie (the one path that takes the token other than as a header) |
//!
//! It runs on a thread of its own with its own single-threaded runtime, so neither a scrape nor a
//! stream ever takes time from a gateway worker.

mod browser;
mod probe;
pub use probe::GRANT_HEADER as PROBE_GRANT_HEADER;
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
use crate::session::Sessions;
use crate::token::AdminToken;

/// How often a live stream sends a comment so that idle connections stay open.
pub const HEARTBEAT: Duration = Duration::from_secs(15);

/// How long a client has to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections the admin listener holds at once; past it, a new connection is closed at once.
/// Operators and the dashboard need a handful; the cap keeps anyone who can reach the port
/// from spending septa's file descriptors on it.
const MAX_CONNECTIONS: usize = 256;

/// The body of every admin response.
pub type AdminBody = UnsyncBoxBody<Bytes, Infallible>;

/// What the admin listener serves from, and the token it wants.
pub struct Admin {
    token: AdminToken,
    metrics: Arc<Metrics>,
    recent: Arc<Recent>,
    heartbeat: Duration,
    control: Option<Arc<dyn Control>>,
    /// Browser sessions for the token; `None` when no key could be drawn.
    sessions: Option<Sessions>,
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
        let sessions = Sessions::new(token.clone());
        if sessions.is_none() {
            tracing::error!(
                "cannot draw a key for browser sessions; the dashboard's login is off, bearer tokens still work"
            );
        }
        Self {
            sessions,
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
            let open = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
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
                let Ok(slot) = Arc::clone(&open).try_acquire_owned() else {
                    tracing::debug!("admin listener at its connection cap");
                    continue;
                };
                let admin = Arc::clone(&self);
                tokio::spawn(async move {
                    let _slot = slot;
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
