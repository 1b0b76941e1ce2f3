//! The private endpoints of an application, as the mesh's [`EndpointService`]: one key-value
//! store per `[endpoint.NAME]`, opened at start-up, behind the same bulkheads as functions.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use septa_endpoints::{Backend, Store, StoreOptions};
use septa_flows::LogThrottle;
use septa_manifest::{Connection, EndpointBackend, FunctionKind};
use septa_mesh::{EndpointFuture, EndpointService};
use septa_policy::{FunctionId, Policy};
use septa_runtime::{Bulkheads, WasiBody};

use crate::endpoint_values::read_first;

/// Every endpoint's store, by function id.
pub(crate) struct Endpoints {
    stores: HashMap<FunctionId, Store>,
    /// How each store was opened, by endpoint name, so a reload can keep it.
    opened: HashMap<String, (Backend, StoreOptions, Store)>,
    bulkheads: Arc<Bulkheads>,
}

impl Endpoints {
    /// Opens the store of every endpoint of `policy`; embedded ones keep their file under
    /// `data_dir`. Connections to Redis and PostgreSQL are made on first use, so a server that
    /// is down does not stop septa from starting: its calls answer 503 until it is back.
    ///
    /// On a reload, `previous` holds the stores open now: an endpoint declared as before keeps
    /// its store (an embedded file can be open only once, and a connection need not be made
    /// again); one whose backend or limits changed is opened afresh.
    pub(crate) fn open(
        policy: &Policy,
        data_dir: &Path,
        bulkheads: Arc<Bulkheads>,
        previous: Option<&Endpoints>,
        hosted: impl Fn(FunctionId) -> bool,
    ) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start a runtime to open the endpoints")?;
        let mut stores = HashMap::new();
        let mut opened = HashMap::new();
        for info in policy.functions() {
            let FunctionKind::Endpoint(backend) = &info.spec.kind else {
                continue;
            };
            if !hosted(info.id) {
                continue;
            }
            let name = info.spec.name.as_str();
            let backend = match backend {
                EndpointBackend::Embedded => Backend::Embedded {
                    path: data_dir.join(format!("{name}.redb")),
                },
                EndpointBackend::Redis(c) => Backend::Redis {
                    url: connection_url(name, c)?,
                },
                EndpointBackend::Postgres(c) => Backend::Postgres {
                    url: connection_url(name, c)?,
                },
            };
            let limits = &info.spec.limits;
            let options = StoreOptions {
                timeout: Duration::from_millis(u64::from(limits.timeout_ms)),
                max_keys: limits.max_keys,
                max_bytes: limits.max_bytes,
                ..StoreOptions::default()
            };
            let open_now = previous
                .and_then(|p| p.opened.get(name))
                .filter(|(b, _, _)| *b == backend);
            let kept = match open_now {
                Some((_, o, store)) if *o == options => Some(store.clone()),
                // Its file is open, and a file opens only once.
                Some((Backend::Embedded { .. }, _, _)) => bail!(
                    "endpoint `{name}`: the limits of an embedded endpoint change only with a restart"
                ),
                _ => None,
            };
            let store = match kept {
                Some(store) => store,
                None => runtime
                    .block_on(Store::open(name, &backend, options))
                    .with_context(|| format!("cannot open endpoint `{name}`"))?,
            };
            stores.insert(info.id, store.clone());
            opened.insert(name.to_owned(), (backend, options, store));
        }
        Ok(Self {
            stores,
            opened,
            bulkheads,
        })
    }
}

/// The URL an endpoint connects with: written inline (without credentials), or read from the
/// environment or a file at start-up. The URL itself is never printed: it may hold a password.
fn connection_url(endpoint: &str, connection: &Connection) -> anyhow::Result<String> {
    match connection {
        Connection::Url(url) => Ok(url.clone()),
        Connection::Env(var) => match std::env::var(var) {
            Ok(url) if !url.trim().is_empty() => Ok(url.trim().to_owned()),
            _ => bail!(
                "endpoint `{endpoint}`: the environment variable `{var}` (its `url_env`) is not set"
            ),
        },
        Connection::File(path) => read_url_file(endpoint, path),
    }
}

fn read_url_file(endpoint: &str, path: &PathBuf) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "endpoint `{endpoint}`: cannot read its `url_file` `{}`",
            path.display()
        )
    })?;
    let url = text.trim();
    if url.is_empty() {
        bail!(
            "endpoint `{endpoint}`: its `url_file` `{}` is empty",
            path.display()
        );
    }
    Ok(url.to_owned())
}

impl EndpointService for Endpoints {
    fn call(&self, endpoint: FunctionId, request: http::Request<WasiBody>) -> EndpointFuture {
        let Some(store) = self.stores.get(&endpoint).cloned() else {
            return Box::pin(async { unavailable("no store is open for this endpoint") });
        };
        let bulkheads = self.bulkheads.clone();
        Box::pin(async move {
            // A value is read before the call takes a slot, so a caller that never finishes
            // writing one holds no slot while it dawdles (see `endpoint_values`).
            let request = if request.method() == Method::PUT {
                let options = store.options();
                let request = read_first(request, options.max_value_bytes, options.timeout).await;
                request.map(|body| body.boxed_unsync())
            } else {
                request
            };
            let admitted = match bulkheads.enter(endpoint) {
                Ok(admitted) => admitted,
                Err(e) => {
                    // The caller hears that the endpoint is busy; which cap, and its size, are
                    // for the log, a few lines at most however many calls are refused.
                    static REFUSED: LogThrottle<()> = LogThrottle::per_request();
                    if let Some(suppressed) = REFUSED.admit(()) {
                        tracing::warn!(error = %e, suppressed, "endpoint call refused");
                    }
                    return unavailable("the endpoint is at its concurrency limit");
                }
            };
            let response = septa_endpoints::handle(&store, request).await;
            drop(admitted);
            response.map(|body| body.map_err(|never| match never {}).boxed_unsync())
        })
    }
}

/// A 503 in the endpoints' JSON error shape.
fn unavailable(message: &str) -> Response<WasiBody> {
    let body = serde_json::json!({
        "error": { "code": "backend_unavailable", "message": message }
    })
    .to_string();
    let mut response = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
        .headers_mut()
        .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}
