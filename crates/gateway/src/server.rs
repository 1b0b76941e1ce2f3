//! Thread per core: one `current_thread` runtime per worker, each with its own listening socket
//! on the same port (`SO_REUSEPORT`), so a request is accepted, decided, run and answered on one
//! thread with no hand-off.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::watch;

use crate::Gateway;

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

/// Binds `addr` and serves `gateway` on `workers` threads.
pub fn serve(
    addr: SocketAddr,
    workers: usize,
    gateway: Arc<Gateway>,
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
    for (i, socket) in sockets.into_iter().enumerate() {
        let gateway = gateway.clone();
        let mut stopped = stopped.clone();
        let handle = std::thread::Builder::new()
            .name(format!("septa-worker-{i}"))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot start a worker runtime");
                        return;
                    }
                };
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(socket) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!(error = %e, "cannot register the listening socket");
                            return;
                        }
                    };
                    loop {
                        tokio::select! {
                            _ = stopped.changed() => break,
                            accepted = listener.accept() => match accepted {
                                Ok((stream, client)) => {
                                    let _ = stream.set_nodelay(true);
                                    tokio::spawn(connection(stream, client, gateway.clone(), stopped.clone()));
                                }
                                Err(e) => tracing::warn!(error = %e, "accept failed"),
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
    gateway: Arc<Gateway>,
    mut stopped: watch::Receiver<bool>,
) {
    let service = service_fn(move |request| {
        let gateway = gateway.clone();
        async move { gateway.handle(client, request).await }
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(%client, error = %e, "connection ended with an error");
            }
        }
        _ = stopped.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
