//! The admin listener: separate from the gateway, loopback by default. It serves `/healthz`
//! today; metrics, flows and the dashboard arrive with the monitoring work, behind a token.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use septa_policy::Policy;

/// Binds `addr` and serves the admin endpoints from a thread of their own.
pub(crate) fn serve(addr: SocketAddr, policy: Arc<Policy>) -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(addr)
        .with_context(|| format!("cannot listen on admin `{addr}`"))?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    let health = serde_json::json!({
        "status": "ok",
        "application": policy.manifest().application.as_str(),
        "functions": policy.functions().len(),
    })
    .to_string();
    std::thread::Builder::new()
        .name("septa-admin".to_owned())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the admin runtime");
                    return;
                }
            };
            runtime.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    tracing::error!("cannot register the admin socket");
                    return;
                };
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let health = health.clone();
                    tokio::spawn(async move {
                        let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                            let health = health.clone();
                            async move { Ok::<_, Infallible>(route(&request, &health)) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        })?;
    Ok(bound)
}

fn route(request: &Request<hyper::body::Incoming>, health: &str) -> Response<Full<Bytes>> {
    let (status, body) = match (request.method().as_str(), request.uri().path()) {
        ("GET", "/healthz") => (StatusCode::OK, health.to_owned()),
        _ => (
            StatusCode::NOT_FOUND,
            "{\"error\":\"not found\"}".to_owned(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}
