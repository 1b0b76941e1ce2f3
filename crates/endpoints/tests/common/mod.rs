//! Real servers for the tests: `redis-server` and PostgreSQL on free loopback ports, each in a
//! temporary directory, stopped when dropped.
//!
//! A missing server fails the test with what to install, unless `SEPTA_SKIP_EXTERNAL_STORES=1`
//! is set (for local runs only; CI never sets it).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use septa_endpoints::{Backend, Store, StoreOptions};
use tempfile::TempDir;

pub const SKIP_ENV: &str = "SEPTA_SKIP_EXTERNAL_STORES";
const INSTALL: &str =
    "install them with `apt-get install -y redis-server postgresql` (what .ci/run does)";

/// `found`, or `None` when it is missing and the external stores are skipped; panics when it is
/// missing and they are not.
fn require<T>(found: Option<T>, what: &str) -> Option<T> {
    if found.is_some() {
        return found;
    }
    if std::env::var(SKIP_ENV).as_deref() == Ok("1") {
        eprintln!("SKIPPED: {what} is not installed and {SKIP_ENV}=1");
        return None;
    }
    panic!(
        "{what} is not installed: the endpoint tests run real Redis and PostgreSQL servers; \
         {INSTALL}, or set {SKIP_ENV}=1 to skip these tests in a local run"
    );
}

fn find_in_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("cannot bind a loopback port")
}

fn wait_for(what: &str, timeout: Duration, mut ready: impl FnMut() -> Result<bool, String>) {
    let deadline = Instant::now() + timeout;
    loop {
        match ready() {
            Ok(true) => return,
            Ok(false) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Ok(false) => panic!("{what} did not become ready within {timeout:?}"),
            Err(error) => panic!("{what} failed: {error}"),
        }
    }
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// A `redis-server` with a password, no persistence, on a free loopback port.
pub struct RedisServer {
    binary: PathBuf,
    dir: TempDir,
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    pub const PASSWORD: &'static str = "redis-test-secret-4f1c";

    pub fn start() -> Option<Self> {
        let binary = require(find_in_path("redis-server"), "redis-server")?;
        let mut server = Self {
            binary,
            dir: tempfile::tempdir().unwrap(),
            port: 0,
            child: None,
        };
        for _ in 0..5 {
            server.port = free_port();
            if server.spawn() {
                return Some(server);
            }
        }
        panic!(
            "redis-server did not start on any of 5 ports:\n{}",
            tail(&server.log())
        );
    }

    pub fn url(&self) -> String {
        format!("redis://:{}@127.0.0.1:{}/", Self::PASSWORD, self.port)
    }

    pub fn url_with_password(&self, password: &str) -> String {
        format!("redis://:{password}@127.0.0.1:{}/", self.port)
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (with no data: nothing is persisted).
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.spawn() {
            assert!(Instant::now() < deadline, "redis-server did not restart");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    /// Starts the server and waits until it answers; false if it exited (the port was taken).
    fn spawn(&mut self) -> bool {
        let child = Command::new(&self.binary)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(["--requirepass", Self::PASSWORD])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(self.log())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot run redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(child) = self.child.as_mut()
                && child.try_wait().unwrap().is_some()
            {
                self.child = None;
                return false;
            }
            if redis_answers(self.port) {
                return true;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer within 10 s:\n{}",
                tail(&self.log())
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn redis_answers(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    // Any reply proves the server is up; without the password it is `-NOAUTH ...`.
    let mut reply = [0u8; 1];
    stream.write_all(b"PING\r\n").is_ok() && stream.read_exact(&mut reply).is_ok()
}

/// A PostgreSQL cluster in a temporary directory, on a free loopback port, with a password.
///
/// `postgres` refuses to run as root, so as root the cluster belongs to the `postgres` user
/// (which the Debian package creates) and every command runs through `runuser`.
pub struct PostgresServer {
    bin: PathBuf,
    dir: TempDir,
    port: u16,
    run_as: Option<&'static str>,
    running: bool,
}

impl PostgresServer {
    pub const USER: &'static str = "septa";
    pub const PASSWORD: &'static str = "pg-test-secret-9b2e";

    pub fn start() -> Option<Self> {
        Self::start_configured(|_| {})
    }

    /// A server that takes TLS connections only (`hostssl` in `pg_hba.conf`), presenting the
    /// certificate chain `cert_pem` with its key `key_pem`.
    pub fn start_with_tls(cert_pem: &str, key_pem: &str) -> Option<Self> {
        Self::start_configured(|server| {
            let data = PathBuf::from(server.data());
            std::fs::write(data.join("server.crt"), cert_pem).unwrap();
            std::fs::write(data.join("server.key"), key_pem).unwrap();
            let mut conf = std::fs::OpenOptions::new()
                .append(true)
                .open(data.join("postgresql.conf"))
                .unwrap();
            writeln!(
                conf,
                "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'"
            )
            .unwrap();
            std::fs::write(
                data.join("pg_hba.conf"),
                "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n",
            )
            .unwrap();
            for name in ["server.crt", "server.key", "pg_hba.conf"] {
                let path = data.join(name);
                std::fs::set_permissions(
                    &path,
                    std::os::unix::fs::PermissionsExt::from_mode(0o600),
                )
                .unwrap();
                if let Some(user) = server.run_as {
                    let (uid, gid) = user_ids(user);
                    std::os::unix::fs::chown(&path, Some(uid), Some(gid)).unwrap();
                }
            }
        })
    }

    /// Runs `initdb`, then `configure` on the fresh data directory, then starts the server.
    fn start_configured(configure: impl FnOnce(&Self)) -> Option<Self> {
        let bin = require(postgres_bin_dir(), "PostgreSQL (`initdb`, `pg_ctl`)")?;
        let dir = tempfile::tempdir().unwrap();
        let run_as = is_root().then_some("postgres");
        std::fs::write(dir.path().join("pwfile"), Self::PASSWORD).unwrap();
        if let Some(user) = run_as {
            let (uid, gid) = user_ids(user);
            for path in [dir.path().to_owned(), dir.path().join("pwfile")] {
                std::os::unix::fs::chown(&path, Some(uid), Some(gid)).unwrap();
            }
        }
        let mut server = Self {
            bin,
            dir,
            port: 0,
            run_as,
            running: false,
        };
        server
            .run(
                "initdb",
                &[
                    "-D",
                    &server.data(),
                    "-U",
                    Self::USER,
                    &format!("--pwfile={}", server.path("pwfile")),
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "--locale=C",
                    "-E",
                    "UTF8",
                    "--no-sync",
                ],
            )
            .unwrap_or_else(|error| panic!("initdb failed: {error}"));
        configure(&server);
        for _ in 0..5 {
            server.port = free_port();
            if server.start_server().is_ok() {
                return Some(server);
            }
        }
        panic!(
            "PostgreSQL did not start on any of 5 ports:\n{}",
            tail(&server.dir.path().join("server.log"))
        );
    }

    pub fn url(&self) -> String {
        self.url_with_password(Self::PASSWORD)
    }

    pub fn url_with_password(&self, password: &str) -> String {
        format!(
            "postgres://{}:{password}@127.0.0.1:{}/postgres",
            Self::USER,
            self.port
        )
    }

    /// The URL to reach the server at `host` (`127.0.0.1` or `localhost`) with `query` (e.g.
    /// `sslmode=require`).
    pub fn url_at(&self, host: &str, query: &str) -> String {
        format!(
            "postgres://{}:{}@{host}:{}/postgres?{query}",
            Self::USER,
            Self::PASSWORD,
            self.port
        )
    }

    pub fn stop(&mut self) {
        if self.running {
            let data = self.data();
            let _ = self.run("pg_ctl", &["-D", &data, "-m", "fast", "-w", "stop"]);
            self.running = false;
        }
    }

    /// Starts the server again on the same port, with its data.
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(20);
        while let Err(error) = self.start_server() {
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not restart: {error}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn start_server(&mut self) -> Result<(), String> {
        let options = format!(
            "-k {} -p {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.dir.path().display(),
            self.port
        );
        let (data, log) = (self.data(), self.path("server.log"));
        self.run(
            "pg_ctl",
            &[
                "-D", &data, "-l", &log, "-w", "-t", "30", "-o", &options, "start",
            ],
        )?;
        self.running = true;
        Ok(())
    }

    fn data(&self) -> String {
        self.path("data")
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<(), String> {
        let program = self.bin.join(program);
        let mut command = match self.run_as {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(&program);
                command
            }
            None => Command::new(&program),
        };
        let output = command
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run `{}`: {e}", program.display()))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "`{}` exited with {}:\n{}{}",
                program.display(),
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        if self.running {
            let data = self.data();
            let _ = self.run("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
        }
    }
}

/// Where `initdb` and `pg_ctl` are: on `PATH`, or in Debian's `/usr/lib/postgresql/N/bin`.
fn postgres_bin_dir() -> Option<PathBuf> {
    if let (Some(initdb), Some(_)) = (find_in_path("initdb"), find_in_path("pg_ctl")) {
        let resolved = std::fs::canonicalize(&initdb).unwrap_or(initdb);
        return resolved.parent().map(Path::to_owned);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0)
}

fn user_ids(user: &str) -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let output = Command::new("id")
            .args([flag, user])
            .output()
            .expect("cannot run `id`");
        assert!(
            output.status.success(),
            "running the tests as root needs a `{user}` user for PostgreSQL (the postgresql \
             package creates it): {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .unwrap()
    };
    (id("-u"), id("-g"))
}

/// The three backends, each with what it needs to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Embedded,
    Redis,
    Postgres,
}

/// Opens stores of one backend kind, with its server if it has one.
pub struct Harness {
    pub kind: Kind,
    dir: TempDir,
    pub redis: Option<RedisServer>,
    pub postgres: Option<PostgresServer>,
}

impl Harness {
    /// `None` when the backend's server is missing and the external stores are skipped.
    pub fn start(kind: Kind) -> Option<Self> {
        let (redis, postgres) = match kind {
            Kind::Embedded => (None, None),
            Kind::Redis => (Some(RedisServer::start()?), None),
            Kind::Postgres => (None, Some(PostgresServer::start()?)),
        };
        Some(Self {
            kind,
            dir: tempfile::tempdir().unwrap(),
            redis,
            postgres,
        })
    }

    /// The lines of `[endpoint.NAME]` in a `septa.toml` that put `endpoint` on this backend:
    /// none for the embedded store (the default); for a server, `backend` and a `url_file`
    /// written here, since the URL carries the server's password and never goes in the manifest.
    pub fn manifest_lines(&self, endpoint: &str) -> String {
        let (backend, url) = match self.kind {
            Kind::Embedded => return String::new(),
            Kind::Redis => ("redis", self.redis.as_ref().unwrap().url()),
            Kind::Postgres => ("postgres", self.postgres.as_ref().unwrap().url()),
        };
        let file = self.dir.path().join(format!("{endpoint}.url"));
        std::fs::write(&file, url).unwrap();
        format!(
            "backend = \"{backend}\"\nurl_file = {:?}",
            file.display().to_string()
        )
    }

    pub fn backend(&self, endpoint: &str) -> Backend {
        match self.kind {
            Kind::Embedded => Backend::Embedded {
                path: self.dir.path().join(format!("{endpoint}.redb")),
            },
            Kind::Redis => Backend::Redis {
                url: self.redis.as_ref().unwrap().url(),
            },
            Kind::Postgres => Backend::Postgres {
                url: self.postgres.as_ref().unwrap().url(),
            },
        }
    }

    pub async fn store(&self, endpoint: &str) -> Store {
        Store::open(endpoint, &self.backend(endpoint), StoreOptions::default())
            .await
            .unwrap_or_else(|e| panic!("cannot open the {:?} store: {e}", self.kind))
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "the body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The stable code of an error reply.
    pub fn code(&self) -> String {
        let json = self.json();
        json["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("not an error reply: {json}"))
            .to_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    pub fn etag(&self) -> u64 {
        let etag = self.header("etag").expect("no etag");
        etag.trim_matches('"').parse().unwrap()
    }
}

/// Sends one request through [`septa_endpoints::handle`].
pub async fn call(
    store: &Store,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Reply {
    let mut request = http::Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::new(body.into())).unwrap();
    let response = septa_endpoints::handle(store, request).await;
    let (parts, body) = response.into_parts();
    Reply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}
