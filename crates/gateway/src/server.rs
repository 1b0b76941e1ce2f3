//! Thread per core: one `current_thread` runtime per worker, each with its own listening socket
//! on the same port (`SO_REUSEPORT`), so a request is accepted, decided, run and answered on one
//! thread with no hand-off.
//!
//! Each HTTP/1 connection is read through `framing::FramedStream`, which refuses requests with
//! ambiguous framing and answers `408` to a client too slow with its head.
//!
//! Connections are bounded ([`ConnectionLimits`]): each worker holds its share of the
//! listener's cap, closing its longest idle connections to make room for a new client
//! ([`crate::connections`]); a connection idle for `idle_timeout` is closed, HTTP/1 and HTTP/2
//! alike; HTTP/2 streams and header lists are limited, and a client that resets most of its
//! streams (rapid reset) loses its connection. `accept` failing for want of descriptors backs
//! off instead of spinning ([`crate::accept`]).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use http::Request;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::watch;

use crate::CurrentGateway;
use crate::accept::AcceptBackoff;
use crate::connections::{Registry, Slot, TrackedBody};
use crate::framing::{ConnectionWatch, FramedStream, ScanLimits, refusal_response};

/// How long a connection asked to close (idle too long, or the oldest idle at the cap) has to
/// finish before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// A running gateway: where it listens and how to stop it.
pub struct Listening {
    /// The bound address (with the real port when `:0` was asked for).
    pub addr: SocketAddr,
    workers: Vec<JoinHandle<()>>,
    stop: watch::Sender<bool>,
}

impl Listening {
    /// Stops accepting, lets connections in flight finish their current request, and waits for
    /// the workers.
    pub fn shutdown(self) {
        let _ = self.stop.send(true);
        for w in self.workers {
            let _ = w.join();
        }
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Limits on what a client may send before a request is routed: they protect every route alike.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// Time to receive a request's headers, and to send the first bytes of a connection. An
    /// HTTP/1 client that started a head and is too slow is answered `408` and disconnected.
    pub header_read_timeout: Duration,
    /// Largest header section, in bytes (HTTP/1.1 answers 431 past it).
    pub max_header_bytes: usize,
    /// Most header fields in one request.
    pub max_headers: usize,
    /// How long a connection with no request being answered stays open (HTTP/1 keep-alive and
    /// HTTP/2 alike).
    pub idle_timeout: Duration,
    /// Most client connections open at once on the listener; at the cap, the longest idle are
    /// closed to make room, and a new connection is refused only when none is idle.
    pub max_connections: usize,
    /// Most HTTP/2 streams open at once on one connection.
    pub max_concurrent_streams: u32,
}

impl ConnectionLimits {
    /// hyper's read buffer limit: the largest head it reads (it never goes below 8 KiB).
    fn read_buffer_bytes(&self) -> usize {
        self.max_header_bytes.max(8192)
    }
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            idle_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            max_concurrent_streams: 100,
        }
    }
}

/// Binds `addr` and serves on `workers` threads whichever gateway is in force when each request
/// arrives.
pub fn serve(
    addr: SocketAddr,
    workers: usize,
    gateway: Arc<CurrentGateway>,
    limits: ConnectionLimits,
) -> std::io::Result<Listening> {
    // Bind the first socket to learn the port (`:0` in tests), then the others to that port.
    let first = bind(addr)?;
    let addr = first.local_addr()?;
    let mut sockets = vec![first];
    for _ in 1..workers.max(1) {
        sockets.push(bind(addr)?);
    }
    let (stop, stopped) = watch::channel(false);
    let mut handles = Vec::new();
    // Each worker its share of the cap: the kernel spreads connections over the sockets.
    let per_worker = limits.max_connections.div_ceil(sockets.len());
    for (i, socket) in sockets.into_iter().enumerate() {
        let gateway = gateway.clone();
        let mut stopped = stopped.clone();
        let registry = Arc::new(Registry::new(per_worker));
        let handle = std::thread::Builder::new()
            .name(format!("septa-worker-{i}"))
            .spawn(move || {
                // tokio's default event interval: a guest that loops yields at every epoch tick
                // with `yield_now`, which runs only after the sockets have been polled
                // (`septa_runtime::Host::handle`), so the sockets need no poll between every two
                // tasks, a system call each that the request path would pay for.
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot start a worker runtime");
                        return;
                    }
                };
                // Guests that compute long move to this worker's compute thread, where they share
                // it by segment. Dropped before the runtime (declared after it).
                let _scheduled = septa_runtime::schedule_this_thread();
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(socket) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!(error = %e, "cannot register the listening socket");
                            return;
                        }
                    };
                    let mut backoff = AcceptBackoff::default();
                    loop {
                        tokio::select! {
                            _ = stopped.changed() => break,
                            accepted = listener.accept() => match accepted {
                                Ok((stream, client)) => {
                                    backoff.succeeded();
                                    // At the cap with nothing idle: the connection is closed.
                                    let Some(slot) = registry.admit() else {
                                        tracing::debug!(%client, "connection cap reached, none idle");
                                        continue;
                                    };
                                    let _ = stream.set_nodelay(true);
                                    let stopped = stopped.clone();
                                    tokio::spawn(connection(stream, client, gateway.clone(), stopped, limits, slot));
                                }
                                Err(e) => backoff.failed(&e, &registry).await,
                            }
                        }
                    }
                });
            })?;
        handles.push(handle);
    }
    Ok(Listening {
        addr,
        workers: handles,
        stop,
    })
}

async fn connection(
    stream: tokio::net::TcpStream,
    client: SocketAddr,
    gateway: Arc<CurrentGateway>,
    mut stopped: watch::Receiver<bool>,
    limits: ConnectionLimits,
    slot: Slot,
) {
    let framing = Arc::new(ConnectionWatch::default());
    let scan_limits = ScanLimits {
        max_head_bytes: limits.read_buffer_bytes(),
        max_headers: limits.max_headers,
    };
    let io = FramedStream::new(stream, framing.clone(), scan_limits);
    let service = {
        let framing = framing.clone();
        let tracked = slot.tracked.clone();
        service_fn(move |request: Request<Incoming>| {
            // Dropped unanswered, this counts the request as cancelled by the client.
            let busy = tracked.begin();
            let gateway = gateway.load();
            let refused = framing.check(request.version());
            async move {
                let response = match refused {
                    Some(error) => {
                        tracing::debug!(%client, %error, "refused a request before routing");
                        let trace = gateway.record_refusal(
                            client,
                            &request,
                            error.status(),
                            &error.to_string(),
                        );
                        refusal_response(error, trace)
                    }
                    None => match gateway.handle(client, request).await {
                        Ok(response) => response,
                        Err(never) => match never {},
                    },
                };
                let busy = busy.answered();
                Ok::<_, Infallible>(response.map(|body| TrackedBody::new(body, busy)))
            }
        })
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper's own minimum buffer is 8 KiB.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.read_buffer_bytes())
        .max_headers(limits.max_headers);
    // Rapid reset (CVE-2023-44487): h2 sends GOAWAY past 20 streams reset before they were
    // accepted, or 100 it had to reset itself; streams reset after they were accepted are
    // counted by the connection's slot.
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(limits.max_concurrent_streams)
        .max_pending_accept_reset_streams(20)
        .max_local_error_reset_streams(100);
    // Dropping `conn` drops the stream, which is when a timed-out head is answered `408`.
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    // hyper's header timer starts only once hyper-util has told HTTP/1 from HTTP/2, and that
    // waits for the client's first bytes without a limit: bound the wait by the same timeout.
    let first_bytes = tokio::time::sleep(limits.header_read_timeout);
    tokio::pin!(first_bytes);
    let idle = tokio::time::sleep(limits.idle_timeout);
    tokio::pin!(idle);
    let tracked = slot.tracked.clone();
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    if e.downcast_ref::<hyper::Error>().is_some_and(hyper::Error::is_timeout) {
                        framing.header_timed_out();
                    }
                    tracing::debug!(%client, error = %e, "connection ended with an error");
                }
                break;
            }
            _ = stopped.changed() => {
                conn.as_mut().graceful_shutdown();
                let _ = conn.as_mut().await;
                break;
            }
            () = &mut first_bytes, if !framing.protocol_known() => {
                if !framing.protocol_known() {
                    tracing::debug!(%client, "no request started in time");
                    break;
                }
            }
            () = tracked.close.notified() => {
                if tracked.aborted() {
                    tracing::debug!(%client, "dropped a connection that cancels most of its requests");
                    break;
                }
                tracing::debug!(%client, "closing the longest idle connection at the cap");
                conn.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(CLOSE_GRACE, conn.as_mut()).await;
                break;
            }
            () = &mut idle => match tracked.idle_for() {
                Some(idle_for) if idle_for >= limits.idle_timeout => {
                    tracing::debug!(%client, "closing an idle connection");
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(CLOSE_GRACE, conn.as_mut()).await;
                    break;
                }
                idle_for => {
                    let left = limits.idle_timeout - idle_for.unwrap_or_default();
                    idle.as_mut().reset(tokio::time::Instant::now() + left);
                }
            },
        }
    }
    drop(slot);
}
