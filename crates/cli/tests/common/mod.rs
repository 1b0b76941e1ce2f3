//! The integration-test harness: builds the test components once, starts `septa up` on a
//! manifest, talks raw HTTP/1.1 to it over loopback, and reads its flow log.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

pub mod cluster;
pub mod export;
pub mod peer;
pub mod pki;
pub mod prometheus;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The test component `name` (from `tests/components/NAME`), where `scripts/build-components`
/// puts it; [`build_components`] builds it first.
pub fn test_component(name: &str) -> PathBuf {
    repo().join(format!(
        "tests/components/target/wasm32-wasip2/release/{name}.wasm"
    ))
}

/// Builds the example's and the tests' components (once per test binary; cargo serializes
/// concurrent builds of the same target directory).
pub fn build_components() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let status = Command::new(repo().join("scripts/build-components"))
            .stdout(Stdio::null())
            .status()
            .expect("run scripts/build-components");
        assert!(status.success(), "scripts/build-components failed");
    });
}

/// A test case directory under `tests/cases`.
pub fn case(name: &str) -> PathBuf {
    repo().join("tests/cases").join(name)
}

/// A fresh application directory whose `septa.toml` has one public subnet `edge/web` holding the
/// test `echo` function, followed by `rest` (routes, issuers, key sets).
pub fn echo_app(name: &str, rest: &str) -> tempfile::TempDir {
    build_components();
    let dir = tempfile::tempdir().unwrap();
    let echo = test_component("echo");
    let manifest = format!(
        "septa_manifest_version = 1\n[application]\nname = \"{name}\"\n[segment.edge]\nsubnets = {{ web = \"public\" }}\n[function.echo]\nsource = {echo:?}\nplacement = \"edge/web\"\n{rest}"
    );
    std::fs::write(dir.path().join("septa.toml"), manifest).unwrap();
    dir
}

/// A running `septa up`.
pub struct Septa {
    child: Child,
    pub addr: SocketAddr,
    /// The admin listener's address, when started with `--admin`.
    pub admin: Option<SocketAddr>,
    pub flow_log: PathBuf,
    /// What septa printed before it started listening.
    pub startup: Vec<String>,
    _state: tempfile::TempDir,
}

impl Septa {
    /// Starts `septa up DIR` on a free loopback port with its own flow log.
    pub fn start(dir: &Path) -> Self {
        Self::start_with(dir, &[])
    }

    pub fn start_with(dir: &Path, extra: &[&str]) -> Self {
        Self::start_with_env(dir, extra, &[])
    }

    /// Like [`start_with`](Self::start_with), with environment variables set for septa. Any
    /// `SEPTA_ADMIN_TOKEN` of the test's own environment is never passed on.
    pub fn start_with_env(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Self {
        Self::spawn(Command::new(env!("CARGO_BIN_EXE_septa")), dir, extra, env)
    }

    /// Like [`start_with_env`](Self::start_with_env), with septa's own log (its stderr) written
    /// to `log` instead of the test's stderr.
    pub fn start_logging_to(dir: &Path, extra: &[&str], env: &[(&str, &str)], log: &Path) -> Self {
        let file = std::fs::File::create(log).unwrap();
        Self::spawn_with(
            Command::new(env!("CARGO_BIN_EXE_septa")),
            dir,
            extra,
            env,
            Stdio::from(file),
        )
    }

    /// Like [`start_with`](Self::start_with), with septa's open-file limit (soft and hard)
    /// set to `nofile` by `prlimit`.
    pub fn start_with_fd_limit(dir: &Path, extra: &[&str], nofile: u64) -> Self {
        let mut command = Command::new("prlimit");
        command
            .arg(format!("--nofile={nofile}:{nofile}"))
            .arg("--")
            .arg(env!("CARGO_BIN_EXE_septa"));
        Self::spawn(command, dir, extra, &[])
    }

    fn spawn(command: Command, dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Self {
        Self::spawn_with(command, dir, extra, env, Stdio::inherit())
    }

    fn spawn_with(
        mut command: Command,
        dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
        stderr: Stdio,
    ) -> Self {
        build_components();
        let state = tempfile::tempdir().unwrap();
        let flow_log = state.path().join("flows.jsonl");
        let own_flow_log = !extra
            .iter()
            .any(|a| *a == "--flow-log" || *a == "--no-flow-log");
        // One compiled-component cache for every test, so each component compiles once.
        let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("septa-test-cache");
        let mut child = command
            .arg("up")
            .arg(dir)
            .args(["--listen", "127.0.0.1:0"])
            .args(if extra.contains(&"--workers") {
                Vec::new()
            } else {
                vec!["--workers", "2"]
            })
            .args(if own_flow_log {
                vec!["--flow-log".into(), flow_log.clone().into_os_string()]
            } else {
                Vec::new()
            })
            .args(if extra.contains(&"--cache-dir") {
                Vec::new()
            } else {
                vec!["--cache-dir".into(), cache.into_os_string()]
            })
            // Each run its own embedded endpoints: tests of one application run side by side.
            .args(if extra.contains(&"--data-dir") {
                Vec::new()
            } else {
                vec![
                    "--data-dir".into(),
                    state.path().join("data").into_os_string(),
                ]
            })
            .args(extra)
            .env_remove("RUST_BACKTRACE")
            .env_remove("SEPTA_ADMIN_TOKEN")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start septa");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let mut startup = Vec::new();
        let addr = loop {
            let Some(Ok(line)) = lines.next() else {
                let status = child.wait().unwrap();
                panic!("septa exited before listening: {status}");
            };
            if let Some(rest) = line.strip_prefix("septa: listening on http://") {
                break rest.parse().unwrap();
            }
            startup.push(line);
        };
        // Keep draining stdout so septa never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let admin = startup
            .iter()
            .find_map(|l| l.strip_prefix("septa: admin on http://"))
            .map(|a| a.parse().unwrap());
        Self {
            child,
            addr,
            admin,
            flow_log,
            startup,
            _state: state,
        }
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> Response {
        self.send(&format!(
            "GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n"
        ))
    }

    /// A request with a method, extra header lines and a body.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Response {
        let mut raw =
            format!("{method} {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n");
        for (k, v) in headers {
            raw.push_str(&format!("{k}: {v}\r\n"));
        }
        raw.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
        self.send(&raw)
    }

    /// `GET path` on the admin listener, with `Authorization: Bearer TOKEN` when a token is given.
    pub fn admin_get(&self, path: &str, token: Option<&str>) -> Response {
        let admin = self.admin.expect("septa was started without --admin");
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("authorization", a.as_str())).collect();
        http_get(admin, path, &headers)
    }

    /// Sends raw bytes and reads the response until the server closes.
    pub fn send(&self, raw: &str) -> Response {
        send_to(self.addr, raw)
    }

    /// The flow log so far (every complete line: one the writer is still writing is left out).
    pub fn flows(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.flow_log).unwrap_or_default();
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        complete
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Waits until a flow record satisfies `pred` (the log is written in batches off the request
    /// path), and returns it.
    pub fn wait_flow(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            if let Some(v) = self.flows().into_iter().find(|v| pred(v)) {
                return v;
            }
            if start.elapsed() > Duration::from_secs(10) {
                panic!("no flow record {what}; log:\n{:#?}", self.flows());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends septa `signal` (`HUP`, say).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} failed");
    }

    /// A request with `method` to the admin listener, with the token when one is given.
    pub fn admin_request(&self, method: &str, path: &str, token: Option<&str>) -> Response {
        let admin = self.admin.expect("septa was started without --admin");
        let mut raw = format!(
            "{method} {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\ncontent-length: 0\r\n"
        );
        if let Some(token) = token {
            raw.push_str(&format!("authorization: Bearer {token}\r\n"));
        }
        raw.push_str("\r\n");
        send_to(admin, &raw)
    }

    /// Kills septa with SIGKILL, as a crash would: nothing gets to flush or sync.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops septa with SIGTERM and waits, so the flow log is complete.
    pub fn stop(mut self) -> Vec<Value> {
        self.terminate();
        self.flows()
    }

    /// Stops septa and copies its complete flow log to `to` (the log itself goes with septa's
    /// temporary state).
    pub fn stop_keeping_log(mut self, to: &Path) -> Vec<Value> {
        self.terminate();
        std::fs::copy(&self.flow_log, to).unwrap();
        self.flows()
    }

    fn terminate(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Septa {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.terminate();
        }
    }
}

/// Sends raw bytes to `addr` and reads the response until the server closes.
pub fn send_to(addr: SocketAddr, raw: &str) -> Response {
    try_send_to(addr, raw).unwrap()
}

/// Like [`send_to`], but `Err` when the server is not there or goes away mid-answer.
pub fn try_send_to(addr: SocketAddr, raw: &str) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.write_all(raw.as_bytes())?;
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes)?;
    if bytes.is_empty() {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(Response::parse(&bytes))
}

/// `GET path` on `addr` with extra header lines, reading the response until the server closes.
pub fn http_get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut raw = format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n");
    for (k, v) in headers {
        raw.push_str(&format!("{k}: {v}\r\n"));
    }
    raw.push_str("\r\n");
    send_to(addr, &raw)
}

/// A parsed HTTP/1.1 response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    fn parse(bytes: &[u8]) -> Self {
        let text = String::from_utf8_lossy(bytes);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let mut lines = head.lines();
        let status_line = lines.next().unwrap_or_default();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let chunked = headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
        let body = if chunked {
            dechunk(body)
        } else {
            body.to_owned()
        };
        Self {
            status,
            headers,
            body,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Runs `septa` with `args`, returning (exit success, stdout, stderr).
pub fn septa(args: &[&str]) -> (bool, String, String) {
    let out = septa_output(args);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `septa` with `args`, returning all it left: for tests that check the exit code itself.
pub fn septa_output(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_septa"))
        .args(args)
        .output()
        .unwrap()
}

/// Percent-encodes a query value.
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One keep-alive HTTP/1.1 connection, for tests that send many requests in a row.
pub struct Connection {
    addr: SocketAddr,
    reader: Option<BufReader<TcpStream>>,
}

impl Connection {
    pub fn open(addr: SocketAddr) -> Self {
        Self { addr, reader: None }
    }

    /// Sends `GET path` with `headers` and reads the whole response; returns its status.
    /// Reconnects when the server closed the connection.
    pub fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> u16 {
        self.get_with_body(path, headers).0
    }

    /// Like [`Connection::get`], returning the body as well.
    pub fn get_with_body(&mut self, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
        let mut raw = format!("GET {path} HTTP/1.1\r\nhost: localhost\r\n");
        for (k, v) in headers {
            raw.push_str(&format!("{k}: {v}\r\n"));
        }
        raw.push_str("\r\n");
        let reader = self.reader.get_or_insert_with(|| {
            let stream = TcpStream::connect(self.addr).unwrap();
            stream.set_nodelay(true).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(30)))
                .unwrap();
            BufReader::new(stream)
        });
        reader.get_mut().write_all(raw.as_bytes()).unwrap();
        let (status, close, body) = read_response(reader);
        if close {
            self.reader = None;
        }
        (status, body)
    }
}

/// Reads one response off a keep-alive connection: (status, whether the server closes, body).
fn read_response(reader: &mut BufReader<TcpStream>) -> (u16, bool, String) {
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let status: u16 = line.split(' ').nth(1).unwrap().parse().unwrap();
    let (mut length, mut chunked, mut close) = (0usize, false, false);
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':').unwrap();
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse().unwrap(),
            "transfer-encoding" => chunked = value.contains("chunked"),
            "connection" => close = value.trim().eq_ignore_ascii_case("close"),
            _ => {}
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            let size = usize::from_str_radix(line.trim(), 16).unwrap();
            let mut chunk = vec![0; size + 2];
            if size == 0 {
                // No trailers: the final CRLF.
                reader.read_exact(&mut chunk).unwrap();
                break;
            }
            reader.read_exact(&mut chunk).unwrap();
            body.extend_from_slice(&chunk[..size]);
        }
    } else {
        body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
    }
    (status, close, String::from_utf8_lossy(&body).into_owned())
}

/// Unpadded base64url, as JWTs and JWKs write bytes.
pub fn b64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | (u32::from(b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// Seconds since the Unix epoch, as JWT claims count time.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Lines in septa's log without the terminal colours.
pub fn log_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(|line| {
            let mut plain = String::with_capacity(line.len());
            let mut chars = line.chars();
            while let Some(c) = chars.next() {
                if c == '\u{1b}' {
                    // An escape sequence: ESC [ ... m.
                    for c in chars.by_ref() {
                        if c == 'm' {
                            break;
                        }
                    }
                } else {
                    plain.push(c);
                }
            }
            plain
        })
        .collect()
}
