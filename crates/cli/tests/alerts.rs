//! Alerts end to end: a running septa whose functions are denied calls across a segment boundary,
//! whose gateway refuses a burst of requests and whose manifest is changed into one it refuses, a
//! real webhook receiver on loopback and a real command, and what each of them gets — exactly
//! once, naming the alert and the reason — while allowed flows and denials below a threshold
//! send nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Septa, encode, prometheus};
use serde_json::Value;

const TOKEN: &str = "test-admin-token-0123456789abcdef";
const ADMIN: &[&str] = &["--admin", "127.0.0.1:0"];

/// How long a test waits for something that should not happen before it believes it did not.
const QUIET: Duration = Duration::from_millis(700);

/// One POST a receiver got.
#[derive(Debug)]
struct Hook {
    request_line: String,
    headers: Vec<(String, String)>,
    body: Value,
}

/// A webhook receiver on 127.0.0.1: every request it gets is passed on, answered 204.
struct Receiver {
    addr: SocketAddr,
    hooks: mpsc::Receiver<Hook>,
}

impl Receiver {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, hooks) = mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let hook = read_hook(&stream);
                let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n");
                if tx.send(hook).is_err() {
                    return;
                }
            }
        });
        Self { addr, hooks }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The next POST, waiting up to 10 s.
    fn next(&self) -> Hook {
        self.hooks
            .recv_timeout(Duration::from_secs(10))
            .expect("no alert reached the webhook")
    }

    /// Asserts that nothing more arrives for a while.
    fn assert_quiet(&self, after: &str) {
        if let Ok(hook) = self.hooks.recv_timeout(QUIET) {
            panic!("an alert arrived {after}: {hook:#?}");
        }
    }
}

fn read_hook(stream: &TcpStream) -> Hook {
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).unwrap();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').unwrap();
        headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
    }
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    Hook {
        request_line: request_line.trim_end().to_owned(),
        headers,
        body: serde_json::from_slice(&body).unwrap(),
    }
}

fn component(name: &str) -> String {
    let path = common::test_component(name);
    format!("{:?}", path.to_str().unwrap())
}

/// Two segments: `caller` in edge's public subnet behind `/caller/...`, `target` in back's
/// private one. The only rule lets `caller` `GET /open` on `target`.
fn two_segments(alerts: &str) -> tempfile::TempDir {
    common::build_components();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("septa.toml"), two_segments_manifest(alerts)).unwrap();
    dir
}

fn two_segments_manifest(alerts: &str) -> String {
    format!(
        r#"septa_manifest_version = 1
[application]
name = "alerts"
[segment.edge]
subnets = {{ web = "public" }}
[segment.back]
subnets = {{ app = "private" }}
labels = ["internal"]
[function.caller]
source = {caller}
placement = "edge/web"
[function.target]
source = {echo}
placement = "back/app"
[[route]]
id = "caller"
path = "/caller/..."
function = "caller"
[[allow]]
id = "caller-reads-open"
from = "function:caller"
to = "function:target"
methods = ["GET"]
paths = ["/open"]
{alerts}"#,
        caller = component("caller"),
        echo = component("echo"),
    )
}

fn start(app: &Path) -> Septa {
    Septa::start_with_env(app, ADMIN, &[("SEPTA_ADMIN_TOKEN", TOKEN)])
}

/// What `caller`'s relay saw calling `target` at `path`.
fn call_target(septa: &Septa, path: &str) -> Value {
    let url = format!("http://target.internal{path}");
    let r = septa.get(&format!("/caller/?to={}", encode(&url)));
    assert_eq!(r.status, 200, "the relay itself failed: {r:?}");
    r.json()
}

/// Waits until `/metrics` shows every one of `lines`.
fn metrics_with(septa: &Septa, lines: &[&str]) {
    let start = Instant::now();
    loop {
        let page = septa.admin_get("/metrics", Some(TOKEN)).body;
        if lines.iter().all(|l| page.lines().any(|p| p == *l)) {
            prometheus::parse(&page);
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "missing some of {lines:#?} in:\n{page}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_denied_call_across_segments_reaches_the_webhook_and_the_command_once() {
    let receiver = Receiver::start();
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("alert.json");
    let alerts = format!(
        r#"[[alert]]
id = "lateral-movement"
on = "lateral_movement"
webhook = {webhook:?}
[[alert]]
id = "into-internal"
on = "lateral_movement"
from = "segment:edge"
to = "label:internal"
command = ["/bin/sh", "-c", "cat >> \"$1\"", "sh", {file:?}]
"#,
        webhook = receiver.url("/hooks/septa"),
        file = file.to_str().unwrap(),
    );
    let app = two_segments(&alerts);
    let septa = start(app.path());
    assert!(
        septa.startup.iter().any(|l| l
            == &format!(
                "septa: alert `lateral-movement` on lateral_movement: POST {}",
                receiver.url("/hooks/septa")
            )),
        "{:#?}",
        septa.startup
    );

    // Allowed: the call goes through and alerts nobody.
    let open = call_target(&septa, "/open");
    assert_eq!(open["status"], 200, "{open}");
    assert_eq!(open["denied"], false, "{open}");
    septa.wait_flow("for the allowed call", |f| {
        f["kind"] == "mesh" && f["verdict"] == "allow" && f["path"] == "/open"
    });

    // Denied: no rule opens `/secret`.
    let secret = call_target(&septa, "/secret");
    assert_eq!(secret["status"], 403, "{secret}");
    assert_eq!(secret["denied"], true, "{secret}");
    let denial = septa.wait_flow("for the denied call", |f| {
        f["kind"] == "mesh" && f["verdict"] == "deny" && f["path"] == "/secret"
    });
    assert_eq!(denial["src"], "function:caller");
    assert_eq!(denial["dst"], "function:target");
    let reason = denial["reason"].as_str().unwrap();
    assert!(!reason.is_empty());

    let hook = receiver.next();
    assert_eq!(hook.request_line, "POST /hooks/septa HTTP/1.1");
    assert!(
        hook.headers
            .iter()
            .any(|(n, v)| n == "content-type" && v == "application/json"),
        "{hook:#?}"
    );
    let alert = &hook.body;
    assert_eq!(alert["alert"], "lateral-movement");
    assert_eq!(alert["on"], "lateral_movement");
    assert_eq!(alert["application"], "alerts");
    assert_eq!(alert["source"], "function:caller");
    assert_eq!(alert["suppressed"], 0);
    assert_eq!(
        alert["summary"],
        format!(
            "alert `lateral-movement`: function:caller was denied GET /secret on function:target: {reason}"
        )
    );
    let flows = alert["flows"].as_array().unwrap();
    assert_eq!(flows.len(), 1);
    assert_eq!(flows[0]["verdict"], "deny");
    assert_eq!(flows[0]["reason"], reason);
    assert_eq!(flows[0]["time"], denial["time"], "the very flow logged");
    receiver.assert_quiet("for the allowed call, or twice for the denied one");

    // The command got the same alert on its standard input.
    let start = Instant::now();
    let written = loop {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        if text.ends_with('\n') {
            break text;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no alert in {file:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(written.lines().count(), 1, "{written}");
    let by_command: Value = serde_json::from_str(written.trim_end()).unwrap();
    assert_eq!(by_command["alert"], "into-internal");
    assert_eq!(by_command["flows"][0]["path"], "/secret");
    assert_eq!(by_command["flows"][0]["reason"], reason);

    // The same caller denied again within a minute: the webhook hears nothing more.
    let again = call_target(&septa, "/secret/2");
    assert_eq!(again["denied"], true, "{again}");
    receiver.assert_quiet("within min_interval_s of the first");
    metrics_with(
        &septa,
        &[
            r#"septa_alerts_total{alert="lateral-movement",outcome="sent"} 1"#,
            r#"septa_alerts_total{alert="lateral-movement",outcome="suppressed"} 1"#,
            r#"septa_alerts_total{alert="lateral-movement",outcome="failed"} 0"#,
            r#"septa_alerts_total{alert="into-internal",outcome="sent"} 1"#,
            r#"septa_alerts_total{alert="into-internal",outcome="suppressed"} 1"#,
        ],
    );
}

#[test]
fn a_spike_of_denials_from_one_client_alerts_once_at_the_threshold() {
    const THRESHOLD: usize = 5;
    let receiver = Receiver::start();
    let alerts = format!(
        r#"[[alert]]
id = "denial-spike"
on = "denial_spike"
from = "gateway"
threshold = {THRESHOLD}
window_s = 60
webhook = {webhook:?}
"#,
        webhook = receiver.url("/spike"),
    );
    let app = two_segments(&alerts);
    let septa = start(app.path());

    // One short of the threshold, with allowed requests in between that count for nothing.
    for i in 0..THRESHOLD - 1 {
        let refused = septa.get(&format!("/nosuch/{i}"));
        assert_eq!(refused.status, 404, "{refused:?}");
        let fine = septa.get("/caller/whoami");
        assert_eq!(fine.status, 200, "{fine:?}");
    }
    septa.wait_flow("for the last refusal below the threshold", |f| {
        f["verdict"] == "deny" && f["path"] == format!("/nosuch/{}", THRESHOLD - 2)
    });
    let denials = septa
        .flows()
        .iter()
        .filter(|f| f["kind"] == "ingress" && f["verdict"] == "deny")
        .count();
    assert_eq!(denials, THRESHOLD - 1);
    receiver.assert_quiet("below the threshold");

    let last = septa.get("/nosuch/last");
    assert_eq!(last.status, 404);
    let hook = receiver.next();
    let alert = &hook.body;
    assert_eq!(alert["alert"], "denial-spike");
    assert_eq!(alert["on"], "denial_spike");
    assert_eq!(alert["source"], "client:127.0.0.1");
    assert_eq!(alert["denials"], THRESHOLD);
    assert_eq!(alert["window_s"], 60);
    assert_eq!(alert["flows"][0]["path"], "/nosuch/last");
    assert_eq!(alert["flows"][0]["client"], "127.0.0.1");
    assert_eq!(
        alert["summary"],
        format!(
            "alert `denial-spike`: {THRESHOLD} denials from client:127.0.0.1 within 60 s; the last: ingress GET /nosuch/last on unrouted: no route for `/nosuch/last`"
        )
    );

    // Another full spike within the cooldown is counted, not sent.
    for i in 0..THRESHOLD {
        assert_eq!(septa.get(&format!("/again/{i}")).status, 404);
    }
    receiver.assert_quiet("for a second spike within min_interval_s");
    metrics_with(
        &septa,
        &[
            r#"septa_alerts_total{alert="denial-spike",outcome="sent"} 1"#,
            r#"septa_alerts_total{alert="denial-spike",outcome="suppressed"} 1"#,
        ],
    );
}

#[test]
fn a_receiver_that_is_down_is_counted_as_failed_and_septa_keeps_serving() {
    // A port nothing listens on.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let alerts = format!(
        r#"[[alert]]
id = "lateral-movement"
on = "lateral_movement"
webhook = "http://{closed}/hook"
timeout_ms = 1000
"#
    );
    let app = two_segments(&alerts);
    let septa = start(app.path());
    assert_eq!(call_target(&septa, "/secret")["denied"], true);
    metrics_with(
        &septa,
        &[r#"septa_alerts_total{alert="lateral-movement",outcome="failed"} 1"#],
    );
    assert_eq!(call_target(&septa, "/open")["status"], 200);
}

#[test]
fn alerts_need_no_admin_listener() {
    let receiver = Receiver::start();
    let alerts = format!(
        "[[alert]]\nid = \"lateral-movement\"\non = \"lateral_movement\"\nwebhook = {:?}\n",
        receiver.url("/hook")
    );
    let app = two_segments(&alerts);
    let septa = Septa::start(app.path());
    assert!(septa.admin.is_none());
    assert_eq!(call_target(&septa, "/secret")["denied"], true);
    let hook = receiver.next();
    assert_eq!(hook.body["alert"], "lateral-movement");
    assert_eq!(hook.body["flows"][0]["path"], "/secret");
    receiver.assert_quiet("twice");
}

#[test]
fn a_refused_reload_alerts_and_an_applied_one_puts_its_alerts_in_force() {
    let receiver = Receiver::start();
    let on_reload = format!(
        "[[alert]]\nid = \"bad-reload\"\non = \"reload_refused\"\nwebhook = {:?}\n",
        receiver.url("/reload")
    );
    let app = two_segments(&on_reload);
    let manifest = app.path().join("septa.toml");
    let septa = start(app.path());
    // No lateral-movement alert yet: a denial alerts nobody.
    assert_eq!(call_target(&septa, "/secret")["denied"], true);
    receiver.assert_quiet("with no alert on denials");

    // The internet reaches `target` through `caller`: this invariant fails, the reload is
    // refused, the old policy keeps serving.
    let violated = format!(
        "{on_reload}[[invariant]]\nid = \"internal-stays-internal\"\ndeny_path = {{ from = \"gateway\", to = \"label:internal\" }}\n"
    );
    std::fs::write(&manifest, two_segments_manifest(&violated)).unwrap();
    let hook = receiver.next();
    assert_eq!(hook.request_line, "POST /reload HTTP/1.1");
    let alert = &hook.body;
    assert_eq!(alert["alert"], "bad-reload");
    assert_eq!(alert["on"], "reload_refused");
    assert_eq!(alert["reload"]["applied"], false);
    assert_eq!(alert["reload"]["trigger"], "file_change");
    assert_eq!(alert["reload"]["generation"], 1);
    let message = alert["reload"]["message"].as_str().unwrap();
    assert!(message.contains("internal-stays-internal"), "{message}");
    let summary = alert["summary"].as_str().unwrap();
    assert!(
        summary.starts_with(
            "alert `bad-reload`: a reload (file_change) was refused; generation 1 (policy "
        ),
        "{summary}"
    );
    assert!(summary.contains("internal-stays-internal"), "{summary}");
    assert_eq!(call_target(&septa, "/open")["status"], 200, "still serving");
    receiver.assert_quiet("more than once for one refused manifest");

    // A valid manifest with a new alert: once it is in force, a denial alerts.
    let lateral = format!(
        "{on_reload}[[alert]]\nid = \"lateral-movement\"\non = \"lateral_movement\"\nwebhook = {:?}\n",
        receiver.url("/lateral")
    );
    std::fs::write(&manifest, two_segments_manifest(&lateral)).unwrap();
    let start = Instant::now();
    let hook = loop {
        assert_eq!(call_target(&septa, "/secret")["denied"], true);
        if let Ok(hook) = receiver.hooks.recv_timeout(Duration::from_millis(300)) {
            break hook;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "the new alert never fired"
        );
    };
    assert_eq!(hook.request_line, "POST /lateral HTTP/1.1");
    assert_eq!(hook.body["alert"], "lateral-movement");
    receiver.assert_quiet("for an applied reload");
}
