//! Several `septa node`s on loopback: a CA made with `septa ca`, real NATS servers, `septa
//! publish`, and one `septa node` process per node on ports the system picks, each with its own state
//! directory and flow log. Nodes are killed when the cluster is dropped.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use septa_testkit::NatsServer;
use serde_json::Value;

use super::{Response, build_components, repo, send_to, septa};

/// The example shop's trust domain (its `[cluster]`).
pub const TRUST_DOMAIN: &str = "shop.example";

/// The example shop's nodes.
pub const SHOP_NODES: [&str; 3] = ["edge-1", "pay-1", "pay-2"];

/// How long a node may take to start, a publish to be taken, a state to be reached, or a flow
/// record to reach the log (which syncs to disk, slowly on a busy machine).
const PATIENCE: Duration = Duration::from_secs(30);

/// A CA, the NATS servers, and the nodes started so far.
pub struct Cluster {
    // Dropped in this order: the nodes, then NATS, then the files.
    nodes: BTreeMap<String, Node>,
    /// The servers, in the order given.
    pub nats: Vec<NatsServer>,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// A CA for the shop's trust domain (`septa ca init`) beside `nats`; no node yet.
    pub fn new(nats: Vec<NatsServer>) -> Self {
        build_components();
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca");
        let (ok, _, err) = septa(&[
            "ca",
            "init",
            ca.to_str().unwrap(),
            "--trust-domain",
            TRUST_DOMAIN,
        ]);
        assert!(ok, "septa ca init failed: {err}");
        Self {
            nats,
            nodes: BTreeMap::new(),
            dir,
        }
    }

    /// The example shop, published, with its three nodes running: node `i` of
    /// [`SHOP_NODES`] talks to NATS server `i % n`. Returns the cluster and the revision.
    pub fn shop(nats: Vec<NatsServer>) -> (Self, String) {
        let mut cluster = Self::new(nats);
        let revision = cluster.publish(&repo().join("examples/shop"));
        for (i, name) in SHOP_NODES.iter().enumerate() {
            let url = cluster.nats_url(i % cluster.nats.len());
            cluster.start_node(name, &url);
        }
        cluster.wait_peers_known(&SHOP_NODES);
        (cluster, revision)
    }

    /// Waits until each node in `names` has read every other's mesh address from the registry
    /// (it refreshes them every few seconds, and saves them in STATE/peers.json): before that,
    /// a call to a peer it has not seen yet is `node unavailable`.
    pub fn wait_peers_known(&self, names: &[&str]) {
        let deadline = Instant::now() + PATIENCE;
        for name in names {
            let file = self.node(name).state_dir.join("peers.json");
            loop {
                let known: BTreeMap<String, Value> = std::fs::read(&file)
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .unwrap_or_default();
                if names.iter().all(|n| known.contains_key(*n)) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "node `{name}` never saw all of {names:?}: {known:?}"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// `nats://...` of server `i`.
    pub fn nats_url(&self, i: usize) -> String {
        self.nats[i].url()
    }

    /// The CA directory.
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca")
    }

    /// A scratch directory that lives as long as the cluster.
    pub fn scratch(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join("scratch").join(name);
        std::fs::create_dir_all(&path).unwrap();
        path
    }

    /// `septa publish app` to the first server, retried while JetStream is still electing its
    /// leaders (a fresh cluster of servers takes a few seconds). Returns the revision.
    pub fn publish(&self, app: &Path) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let (ok, out, err) = septa(&[
                "publish",
                app.to_str().unwrap(),
                "--nats",
                &self.nats_url(0),
            ]);
            if ok {
                return out.trim().to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "septa publish `{}` failed: {err}",
                app.display()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// A directory `septa ca issue` wrote for `node` (issued on first use).
    pub fn tls_dir(&self, node: &str) -> PathBuf {
        let out = self.dir.path().join("tls").join(node);
        if !out.join("node.crt").exists() {
            let (ok, _, err) = septa(&[
                "ca",
                "issue",
                self.ca().to_str().unwrap(),
                "--node",
                node,
                "--out",
                out.to_str().unwrap(),
            ]);
            assert!(ok, "septa ca issue --node {node} failed: {err}");
        }
        out
    }

    /// Starts node `name` against NATS at `nats`, on ports the system picks, and waits until it
    /// listens.
    pub fn start_node(&mut self, name: &str, nats: &str) -> &Node {
        self.start_node_with(name, nats, None)
    }

    /// Like [`start_node`](Self::start_node), with the node's open-file limit (soft and hard)
    /// set to `nofile` by `prlimit`.
    pub fn start_node_with_fd_limit(&mut self, name: &str, nats: &str, nofile: u64) -> &Node {
        self.start_node_with(name, nats, Some(nofile))
    }

    /// Like [`start_node`](Self::start_node), on a mesh port picked here, advertising it to
    /// the other nodes as `host:PORT` (`--mesh-advertise`).
    pub fn start_node_advertising(&mut self, name: &str, nats: &str, host: &str) -> &Node {
        let port = std::net::TcpListener::bind(loopback(0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        self.start_node_on(
            name,
            nats,
            None,
            loopback(port),
            Some(format!("{host}:{port}")),
        )
    }

    fn start_node_with(&mut self, name: &str, nats: &str, fd_limit: Option<u64>) -> &Node {
        self.start_node_on(name, nats, fd_limit, loopback(0), None)
    }

    fn start_node_on(
        &mut self,
        name: &str,
        nats: &str,
        fd_limit: Option<u64>,
        mesh: SocketAddr,
        advertise: Option<String>,
    ) -> &Node {
        let node = Node {
            child: None,
            name: name.to_owned(),
            addr: loopback(0),
            mesh,
            advertise,
            tls_dir: self.tls_dir(name),
            state_dir: self.state_dir(name),
            flow_log: self.dir.path().join("flows").join(format!("{name}.jsonl")),
            startup: Vec::new(),
            fd_limit,
        };
        self.nodes.insert(name.to_owned(), node);
        let node = self.node_mut(name);
        node.start(nats);
        node
    }

    /// Runs node `name` as [`start_node`](Self::start_node) would, with a fresh state
    /// directory, expecting it to exit: its status and what it wrote to stderr.
    pub fn start_node_expecting_exit(&self, name: &str, nats: &str) -> (ExitStatus, String) {
        let state = self.scratch(&format!("state-of-{name}-that-never-ran"));
        let node = Node {
            child: None,
            name: name.to_owned(),
            addr: loopback(0),
            mesh: loopback(0),
            advertise: None,
            tls_dir: self.tls_dir(name),
            state_dir: state.clone(),
            flow_log: state.join("flows.jsonl"),
            startup: Vec::new(),
            fd_limit: None,
        };
        let mut child = node
            .command(nats)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + PATIENCE;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("node `{name}` was expected to refuse to start, and still runs");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        (status, stderr)
    }

    /// Node `name`.
    pub fn node(&self, name: &str) -> &Node {
        &self.nodes[name]
    }

    /// Node `name`, to kill or restart it.
    pub fn node_mut(&mut self, name: &str) -> &mut Node {
        self.nodes.get_mut(name).unwrap()
    }

    /// `septa cluster status --format json` against the first server.
    pub fn status(&self) -> Value {
        let (ok, out, err) = septa(&[
            "cluster",
            "status",
            "--nats",
            &self.nats_url(0),
            "--format",
            "json",
        ]);
        assert!(ok, "septa cluster status failed: {err}");
        serde_json::from_str(&out).unwrap()
    }

    /// Waits until `septa cluster status` satisfies `pred`, and returns it.
    pub fn wait_status(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let status = self.status();
            if pred(&status) {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "status never showed {what}: {status:#}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until every node in `names` reports `revision` applied; returns their entries.
    pub fn wait_applied(&self, names: &[&str], revision: &str) -> Vec<Value> {
        let status = self.wait_status(&format!("{names:?} on revision {revision}"), |s| {
            names
                .iter()
                .all(|n| entry(s, n).is_some_and(|e| e["revision"] == revision))
        });
        names.iter().map(|n| entry(&status, n).unwrap()).collect()
    }

    fn state_dir(&self, name: &str) -> PathBuf {
        let dir = self.dir.path().join("state").join(name);
        // Every node of every test shares one compiled-component cache, so each component
        // compiles once; `septa node` keeps its cache in STATE/cache.
        let shared = Path::new(env!("CARGO_TARGET_TMPDIR")).join("septa-node-test-cache");
        std::fs::create_dir_all(&shared).unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        let cache = dir.join("cache");
        if !cache.exists() {
            std::os::unix::fs::symlink(&shared, &cache).unwrap();
        }
        dir
    }
}

/// Node `name`'s entry in a `septa cluster status --format json`.
pub fn entry(status: &Value, name: &str) -> Option<Value> {
    status["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["name"] == name)
        .cloned()
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// One `septa node` process (or one that was, and may be started again on the same ports and
/// state).
pub struct Node {
    child: Option<Child>,
    pub name: String,
    /// The gateway (port 0 until it first started).
    pub addr: SocketAddr,
    /// Where it takes calls from other nodes (port 0 until it first started).
    pub mesh: SocketAddr,
    /// What it tells the other nodes to dial (`--mesh-advertise`), when not `mesh`.
    pub advertise: Option<String>,
    pub tls_dir: PathBuf,
    pub state_dir: PathBuf,
    pub flow_log: PathBuf,
    /// What it printed before it listened, the last time it started.
    pub startup: Vec<String>,
    /// Its open-file limit, when the test sets one.
    fd_limit: Option<u64>,
}

impl Node {
    fn command(&self, nats: &str) -> Command {
        let mut command = match self.fd_limit {
            Some(nofile) => {
                let mut prlimit = Command::new("prlimit");
                prlimit
                    .arg(format!("--nofile={nofile}:{nofile}"))
                    .arg("--")
                    .arg(env!("CARGO_BIN_EXE_septa"));
                prlimit
            }
            None => Command::new(env!("CARGO_BIN_EXE_septa")),
        };
        command
            .arg("node")
            .args(["--nats", nats, "--name", &self.name])
            .args(["--listen", &self.addr.to_string()])
            .args(["--mesh-listen", &self.mesh.to_string()])
            .args(
                self.advertise
                    .iter()
                    .flat_map(|a| ["--mesh-advertise", a.as_str()]),
            )
            .arg("--tls-dir")
            .arg(&self.tls_dir)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .arg("--flow-log")
            .arg(&self.flow_log)
            .args(["--workers", "1"])
            .env_remove("RUST_BACKTRACE");
        command
    }

    /// Starts the process against NATS at `nats` and waits until it listens: on the ports it
    /// listened on before, if it ran before.
    pub fn start(&mut self, nats: &str) {
        assert!(self.child.is_none(), "node `{}` already runs", self.name);
        std::fs::create_dir_all(self.flow_log.parent().unwrap()).unwrap();
        let mut child = self
            .command(nats)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start septa node");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let listening = format!("septa: node `{}` listening on http://", self.name);
        self.startup.clear();
        loop {
            let Some(Ok(line)) = lines.next() else {
                let status = child.wait().unwrap();
                panic!("node `{}` exited before listening: {status}", self.name);
            };
            // `... listening on http://ADDR (mesh ADDR)`: kept, so a restart takes the same ports.
            if let Some(rest) = line.strip_prefix(&listening) {
                let (addr, mesh) = rest.trim_end_matches(')').split_once(" (mesh ").unwrap();
                self.addr = addr.parse().unwrap();
                self.mesh = mesh.parse().unwrap();
                break;
            }
            self.startup.push(line);
        }
        // Keep draining stdout so the node never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        self.child = Some(child);
    }

    /// Kills the process with SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A request to the node's gateway: method, path, extra header lines and a body.
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
        send_to(self.addr, &raw)
    }

    /// The node's flow log so far (every complete line).
    pub fn flows(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.flow_log).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits until a flow record satisfies `pred` (the log is written in batches off the request
    /// path), and returns it.
    pub fn wait_flow(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(v) = self.flows().into_iter().find(|v| pred(v)) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "node `{}` wrote no flow record {what}; log:\n{:#?}",
                self.name,
                self.flows()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until at least `n` flow records satisfy `pred`, and returns them all.
    pub fn wait_flows(&self, what: &str, n: usize, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let found: Vec<Value> = self.flows().into_iter().filter(|v| pred(v)).collect();
            if found.len() >= n {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "node `{}` wrote {} flow records {what}, not {n}; log:\n{:#?}",
                self.name,
                found.len(),
                self.flows()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A copy of the example shop (its built components, keys and manifest) in `into`, with the
/// manifest passed through `edit` and each component named in `broken` replaced by bytes that are
/// no component.
pub fn shop_copy(into: &Path, edit: impl FnOnce(&str) -> String, broken: &[&str]) -> PathBuf {
    build_components();
    let shop = repo().join("examples/shop");
    let release = "functions/target/wasm32-wasip2/release";
    std::fs::create_dir_all(into.join(release)).unwrap();
    std::fs::create_dir_all(into.join("keys")).unwrap();
    for name in ["storefront", "relay", "catalog", "checkout", "ledger"] {
        let file = format!("{release}/{name}.wasm");
        if broken.contains(&name) {
            std::fs::write(into.join(&file), b"not a component").unwrap();
        } else {
            std::fs::copy(shop.join(&file), into.join(&file)).unwrap();
        }
    }
    std::fs::copy(shop.join("keys/jwks.json"), into.join("keys/jwks.json")).unwrap();
    let manifest = std::fs::read_to_string(shop.join("septa.toml")).unwrap();
    std::fs::write(into.join("septa.toml"), edit(&manifest)).unwrap();
    into.to_owned()
}
