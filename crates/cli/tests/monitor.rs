//! Watching septa run, end to end: the admin listener and its token, `/metrics`, `/flows`, the
//! live stream, `septa flows tail`, and a gateway that never serves any of it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Septa, echo_app, prometheus, repo};

const TOKEN: &str = "test-admin-token-0123456789abcdef";
const ADMIN: &[&str] = &["--admin", "127.0.0.1:0"];
const ADMIN_PATHS: [&str; 5] = ["/healthz", "/metrics", "/flows", "/flows/stream", "/nosuch"];

/// The echo app with one route, started with an admin listener and the test token.
fn echo_with_admin(name: &str, rest: &str) -> (tempfile::TempDir, Septa) {
    let app = echo_app(name, rest);
    let septa = Septa::start_with_env(app.path(), ADMIN, &[("SEPTA_ADMIN_TOKEN", TOKEN)]);
    (app, septa)
}

const ECHO_ROUTE: &str = "[[route]]\nid = \"echo\"\npath = \"/echo/...\"\nfunction = \"echo\"\n";

/// Polls `/metrics` until every one of `lines` is on the page, and returns the page.
fn metrics_with(septa: &Septa, lines: &[&str]) -> String {
    let start = Instant::now();
    loop {
        let page = septa.admin_get("/metrics", Some(TOKEN));
        assert_eq!(page.status, 200, "{page:?}");
        if lines.iter().all(|l| page.body.lines().any(|p| p == *l)) {
            return page.body;
        }
        if start.elapsed() > Duration::from_secs(10) {
            let missing: Vec<_> = lines
                .iter()
                .filter(|l| !page.body.lines().any(|p| p == **l))
                .collect();
            panic!("missing from /metrics: {missing:#?}\n{}", page.body);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls `/flows?query` until it holds at least `count` records, and returns them.
fn flows_at_least(septa: &Septa, query: &str, count: usize) -> Vec<serde_json::Value> {
    let start = Instant::now();
    loop {
        let response = septa.admin_get(&format!("/flows?{query}"), Some(TOKEN));
        assert_eq!(response.status, 200, "{response:?}");
        let records = response.json().as_array().unwrap().clone();
        if records.len() >= count || start.elapsed() > Duration::from_secs(10) {
            return records;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn every_admin_path_refuses_requests_without_the_token() {
    let (_app, septa) = echo_with_admin("admin-auth", ECHO_ROUTE);
    let admin = septa.admin.unwrap();
    assert!(admin.ip().is_loopback());
    assert_ne!(admin.port(), septa.addr.port());
    for path in ADMIN_PATHS {
        let bare = septa.admin_get(path, None);
        assert_eq!(bare.status, 401, "{path} without a token: {bare:?}");
        assert_eq!(
            bare.header("www-authenticate"),
            Some(r#"Bearer realm="septa-admin""#),
            "{path}"
        );
        assert!(
            !bare.body.contains("septa_"),
            "{path} leaked: {}",
            bare.body
        );

        let wrong = septa.admin_get(path, Some("test-admin-token-0123456789abcdeX"));
        assert_eq!(wrong.status, 401, "{path} with a wrong token: {wrong:?}");
        assert!(
            wrong
                .header("www-authenticate")
                .unwrap()
                .contains(r#"error="invalid_token""#)
        );
        let basic = common::http_get(admin, path, &[("authorization", &format!("Basic {TOKEN}"))]);
        assert_eq!(basic.status, 401, "{path} with another scheme");
        let prefix = septa.admin_get(path, Some(&TOKEN[..TOKEN.len() - 1]));
        assert_eq!(prefix.status, 401, "{path} with a prefix of the token");
    }
    let health = septa.admin_get("/healthz", Some(TOKEN));
    assert_eq!(health.status, 200, "{health:?}");
    assert_eq!(health.json()["status"], "ok");
    assert_eq!(health.json()["application"], "admin-auth");
    let missing = septa.admin_get("/nosuch", Some(TOKEN));
    assert_eq!(missing.status, 404);
}

#[test]
fn a_generated_token_is_private_printed_once_and_reused_on_restart() {
    let app = echo_app("admin-token", ECHO_ROUTE);
    let token_file = app.path().join(".septa/admin-token");

    let first = Septa::start_with(app.path(), ADMIN);
    let written = format!("septa: admin token written to {}", token_file.display());
    assert!(first.startup.contains(&written), "{:#?}", first.startup);
    let token = std::fs::read_to_string(&token_file)
        .unwrap()
        .trim()
        .to_owned();
    assert_eq!(token.len(), 64, "32 random bytes, hex");
    assert!(
        first
            .startup
            .contains(&format!("septa: admin token: {token}")),
        "{:#?}",
        first.startup
    );
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode, 0o600,
        "the token file is readable by others: {mode:o}"
    );
    assert_eq!(first.admin_get("/healthz", Some(&token)).status, 200);
    first.stop();

    let second = Septa::start_with(app.path(), ADMIN);
    assert!(
        !second.startup.iter().any(|l| l.contains("admin token")),
        "the token was printed again: {:#?}",
        second.startup
    );
    assert_eq!(
        std::fs::read_to_string(&token_file).unwrap().trim(),
        token,
        "the token changed on restart"
    );
    assert_eq!(second.admin_get("/healthz", Some(&token)).status, 200);
    assert_eq!(second.admin_get("/healthz", Some(TOKEN)).status, 401);
}

#[test]
fn a_token_file_wins_and_a_bad_one_stops_the_start() {
    let app = echo_app("admin-token-file", ECHO_ROUTE);
    let file = app.path().join("token.txt");
    std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
    let file_arg = file.to_str().unwrap();
    let septa = Septa::start_with_env(
        app.path(),
        &["--admin", "127.0.0.1:0", "--admin-token-file", file_arg],
        &[("SEPTA_ADMIN_TOKEN", "another-token-from-the-environment")],
    );
    assert_eq!(septa.admin_get("/healthz", Some(TOKEN)).status, 200);
    assert!(!app.path().join(".septa/admin-token").exists());
    drop(septa);

    std::fs::write(&file, "short\n").unwrap();
    let (ok, _, stderr) = common::septa(&[
        "up",
        app.path().to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--admin-token-file",
        file_arg,
    ]);
    assert!(!ok);
    assert!(
        stderr.contains(&format!(
            "the admin token from file `{file_arg}` is 5 characters long"
        )),
        "{stderr}"
    );
}

#[test]
fn metrics_count_the_shops_flows_by_the_rule_that_decided_them() {
    let shop = repo().join("examples/shop");
    let septa = Septa::start_with_env(&shop, ADMIN, &[("SEPTA_ADMIN_TOKEN", TOKEN)]);
    assert_eq!(septa.get("/").status, 200);
    assert_eq!(septa.get("/api/products").status, 200);
    let ledger = septa.get("/api/ledger");
    assert_eq!(ledger.json()["denied"], true, "{ledger:?}");
    assert_eq!(septa.get("/admin").status, 404);

    let page = metrics_with(
        &septa,
        &[
            r#"septa_flows_total{kind="ingress",verdict="allow",rule="home",segment="edge",destination="function:storefront",route="home"} 1"#,
            r#"septa_flows_total{kind="ingress",verdict="allow",rule="api",segment="edge",destination="function:storefront",route="api"} 2"#,
            r#"septa_flows_total{kind="mesh",verdict="allow",rule="storefront-to-catalog",segment="edge",destination="function:catalog",route=""} 1"#,
            r#"septa_flows_total{kind="mesh",verdict="deny",rule="",segment="edge",destination="function:ledger",route=""} 1"#,
            r#"septa_flows_total{kind="ingress",verdict="deny",rule="",segment="",destination="unrouted",route=""} 1"#,
            r#"septa_denials_total{kind="mesh",segment="edge",destination="function:ledger"} 1"#,
            r#"septa_denials_total{kind="ingress",segment="",destination="unrouted"} 1"#,
            r#"septa_functions{segment="payments"} 2"#,
            r#"septa_reloads_total{outcome="success"} 0"#,
            r#"septa_flow_log_write_failures_total 0"#,
        ],
    );
    let samples = prometheus::parse(&page);
    let flows: Vec<_> = samples
        .iter()
        .filter(|s| s.name == "septa_flows_total")
        .collect();
    assert_eq!(flows.len(), 5, "only the flows made: {flows:#?}");
    for sample in &samples {
        for (_, value) in &sample.labels {
            assert!(
                !value.starts_with("/api"),
                "a request path became a label: {sample:?}"
            );
        }
    }
    let hash = ring_sha256_hex(&std::fs::read(shop.join("septa.toml")).unwrap());
    let info = samples
        .iter()
        .find(|s| s.name == "septa_policy_info")
        .unwrap();
    assert_eq!(info.label("hash"), Some(hash.as_str()));
    assert_eq!(info.label("application"), Some("shop"));
    let latency = samples
        .iter()
        .find(|s| {
            s.name == "septa_flow_latency_seconds_count"
                && s.label("kind") == Some("mesh")
                && s.label("destination") == Some("function:catalog")
        })
        .unwrap();
    assert_eq!(latency.value, 1.0);
    let storefront = samples
        .iter()
        .find(|s| {
            s.name == "septa_function_instances_in_use" && s.label("function") == Some("storefront")
        })
        .unwrap();
    assert_eq!(storefront.value, 0.0, "nothing is in flight");
    let health = septa.admin_get("/healthz", Some(TOKEN)).json();
    assert_eq!(health["policy_hash"], hash.as_str());
}

fn ring_sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn rate_limit_refusals_are_counted_by_route() {
    let route = "[[route]]\nid = \"limited\"\npath = \"/echo/...\"\nfunction = \"echo\"\nrate_limit = { key = \"ip\", per_second = 1, burst = 2 }\n";
    let (_app, septa) = echo_with_admin("admin-rate", route);
    let refused = (0..5)
        .filter(|_| septa.get("/echo/x").status == 429)
        .count();
    assert!(refused >= 2, "the burst of 2 let {} through", 5 - refused);
    let page = metrics_with(
        &septa,
        &[&format!(
            r#"septa_rate_limited_total{{route="limited"}} {refused}"#
        )],
    );
    prometheus::parse(&page);
}

#[test]
fn metrics_and_flows_still_see_every_flow_when_no_flow_log_is_written() {
    for flow_log in [&["--no-flow-log"][..], &["--flow-log", "-"][..]] {
        let app = echo_app("admin-no-log", ECHO_ROUTE);
        let args: Vec<&str> = ADMIN.iter().chain(flow_log).copied().collect();
        let septa = Septa::start_with_env(app.path(), &args, &[("SEPTA_ADMIN_TOKEN", TOKEN)]);
        assert_eq!(septa.get("/echo/seen").status, 200);
        metrics_with(
            &septa,
            &[
                r#"septa_flows_total{kind="ingress",verdict="allow",rule="echo",segment="edge",destination="function:echo",route="echo"} 1"#,
            ],
        );
        let flows = flows_at_least(&septa, "", 1);
        assert_eq!(flows[0]["path"], "/echo/seen", "{flow_log:?}");
        assert!(
            !app.path().join(".septa/flows.jsonl").exists(),
            "{flow_log:?}"
        );
    }
}

#[test]
fn flows_are_filtered_newest_last_and_bad_filters_are_refused() {
    let (_app, septa) = echo_with_admin("admin-flows", ECHO_ROUTE);
    assert_eq!(septa.get("/echo/one").status, 200);
    assert_eq!(septa.get("/missing").status, 404);
    assert_eq!(septa.get("/echo/two").status, 200);
    let all = flows_at_least(&septa, "", 3);
    let paths: Vec<_> = all.iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert_eq!(
        paths,
        ["/echo/one", "/missing", "/echo/two"],
        "oldest first, newest last"
    );

    let denied = flows_at_least(&septa, "verdict=deny", 1);
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0]["path"], "/missing");
    assert_eq!(denied[0]["status"], 404);
    let echo = flows_at_least(&septa, "function=echo&kind=ingress", 2);
    assert_eq!(echo.len(), 2);
    assert!(echo.iter().all(|f| f["dst"] == "function:echo"));
    assert_eq!(
        flows_at_least(&septa, "segment=edge&verdict=allow", 2).len(),
        2
    );
    assert!(flows_at_least(&septa, "kind=mesh", 0).is_empty());
    let newest = flows_at_least(&septa, "limit=1", 1);
    assert_eq!(newest.len(), 1);
    assert_eq!(newest[0]["path"], "/echo/two");
    let since = all[1]["time"].as_str().unwrap();
    let later = flows_at_least(&septa, &format!("since={}", common::encode(since)), 2);
    assert!(later.iter().all(|f| f["time"].as_str().unwrap() >= since));
    assert!(later.len() >= 2, "{later:#?}");
    assert!(flows_at_least(&septa, "since=2999-01-01T00:00:00Z", 0).is_empty());

    for (query, parameter) in [
        ("verdict=maybe", "verdict"),
        ("kind=sideways", "kind"),
        ("since=yesterday", "since"),
        ("limit=0", "limit"),
        ("limit=many", "limit"),
        ("segment=", "segment"),
        ("colour=red", "colour"),
    ] {
        for path in ["/flows", "/flows/stream"] {
            let response = septa.admin_get(&format!("{path}?{query}"), Some(TOKEN));
            assert_eq!(response.status, 400, "{path}?{query}: {response:?}");
            let error = response.json();
            assert_eq!(error["parameter"], parameter, "{path}?{query}: {error}");
            assert!(
                error["error"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("`{parameter}`")),
                "{error}"
            );
        }
    }
}

/// Opens `/flows/stream?query` and returns the lines septa sends, as they come.
fn open_stream(septa: &Septa, query: &str) -> mpsc::Receiver<String> {
    let mut stream = TcpStream::connect(septa.admin.unwrap()).unwrap();
    write!(
        stream,
        "GET /flows/stream?{query} HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {TOKEN}\r\n\r\n"
    )
    .unwrap();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

/// The first line from `lines` satisfying `pred`, waiting at most 10 seconds.
fn wait_line(lines: &mpsc::Receiver<String>, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(line) if pred(&line) => return line,
            Ok(line) => seen.push(line),
            Err(_) => break,
        }
    }
    panic!("no line {what}; got {seen:#?}");
}

#[test]
fn the_stream_delivers_flows_decided_after_subscribing() {
    let (_app, septa) = echo_with_admin("admin-stream", ECHO_ROUTE);
    assert_eq!(septa.get("/before").status, 404);
    // Flows reach the observers from the writer thread a moment after the answer: subscribe
    // only once the earlier denial is among the recent flows, so it cannot arrive live.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !septa
        .admin_get("/flows?verdict=deny", Some(TOKEN))
        .body
        .contains("\"/before\"")
    {
        assert!(
            Instant::now() < deadline,
            "the denial of /before never reached the observers"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let lines = open_stream(&septa, "verdict=deny");
    let status = wait_line(&lines, "with the status", |l| l.starts_with("HTTP/1.1"));
    assert!(status.contains("200"), "{status}");
    wait_line(&lines, "content type", |l| {
        l.eq_ignore_ascii_case("content-type: text/event-stream")
    });
    wait_line(&lines, "saying it is subscribed", |l| l == ": subscribed");

    assert_eq!(septa.get("/echo/allowed").status, 200);
    assert_eq!(septa.get("/after-subscribing").status, 404);
    let event = wait_line(&lines, "with the denial", |l| l.starts_with("data: "));
    let record: serde_json::Value = serde_json::from_str(&event["data: ".len()..]).unwrap();
    assert_eq!(
        record["path"], "/after-subscribing",
        "only the denial after subscribing"
    );
    assert_eq!(record["verdict"], "deny");
    assert_eq!(record["kind"], "ingress");
}

#[test]
fn flows_tail_prints_a_denial_and_fails_clearly_without_a_good_token() {
    let (app, septa) = echo_with_admin("admin-tail", ECHO_ROUTE);
    let admin = septa.admin.unwrap().to_string();
    let token_file = app.path().join("token");
    std::fs::write(&token_file, TOKEN).unwrap();

    let mut tail = Command::new(env!("CARGO_BIN_EXE_septa"))
        .args(["flows", "tail", "--admin", &admin, "--token-file"])
        .arg(&token_file)
        .args(["--verdict", "deny"])
        .env_remove("SEPTA_ADMIN_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = lines_of(tail.stdout.take().unwrap());
    let notes = lines_of(tail.stderr.take().unwrap());
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_line(&notes, "saying it follows", |l| {
            l.contains("following flows")
        });
        assert_eq!(septa.get("/echo/fine").status, 200);
        assert_eq!(septa.get("/tail-denied").status, 404);
        let line = wait_line(&lines, "for the denial", |l| l.contains("/tail-denied"));
        assert!(line.contains("ingress"), "{line}");
        assert!(line.contains("gateway → unrouted"), "{line}");
        assert!(
            line.contains("GET /tail-denied deny no route for `/tail-denied` 404"),
            "{line}"
        );
        assert!(!line.contains('\x1b'), "colour on a pipe: {line:?}");
    }));
    let _ = tail.kill();
    let _ = tail.wait();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    assert!(
        lines.try_iter().all(|l| !l.contains("/echo/fine")),
        "an allow got past --verdict deny"
    );

    std::fs::write(&token_file, "a-token-that-is-wrong-0000").unwrap();
    let (ok, _, stderr) = tail_once(&admin, &token_file);
    assert!(!ok);
    assert!(
        stderr.contains(&format!(
            "the admin listener at `{admin}` refused the token from `{}`",
            token_file.display()
        )),
        "{stderr}"
    );
    drop(septa);
    let (ok, _, stderr) = tail_once(&admin, &token_file);
    assert!(!ok);
    assert!(
        stderr.contains(&format!("cannot reach the admin listener at `{admin}`")),
        "{stderr}"
    );
}

fn tail_once(admin: &str, token_file: &Path) -> (bool, String, String) {
    common::septa(&[
        "flows",
        "tail",
        "--admin",
        admin,
        "--token-file",
        token_file.to_str().unwrap(),
    ])
}

fn lines_of(reader: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

#[test]
fn the_gateway_serves_no_admin_path() {
    let (_app, septa) = echo_with_admin("gateway-no-admin", ECHO_ROUTE);
    let auth = format!("Bearer {TOKEN}");
    for path in ["/metrics", "/flows", "/flows/stream", "/healthz"] {
        let response = septa.request("GET", path, &[("authorization", &auth)], "");
        assert_eq!(
            response.status, 404,
            "the gateway answered {path}: {response:?}"
        );
        assert_eq!(response.json()["error"], "Not Found");
        for admin_content in ["septa_", "# TYPE", "\"status\":\"ok\"", "data:"] {
            assert!(
                !response.body.contains(admin_content),
                "{path}: {}",
                response.body
            );
        }
        assert_ne!(response.header("content-type"), Some("text/event-stream"));
    }
    drop(septa);

    // An application that routes `/metrics` itself gets its own function's answer there.
    let routes = "[[route]]\nid = \"own-metrics\"\npath = \"/metrics\"\nfunction = \"echo\"\n";
    let (_app, septa) = echo_with_admin("gateway-own-metrics", routes);
    let response = septa.request("GET", "/metrics", &[("authorization", &auth)], "");
    assert_eq!(response.status, 200, "{response:?}");
    let echoed = response.json();
    assert_eq!(echoed["path_with_query"], "/metrics");
    assert_eq!(echoed["caller"], "gateway");
    assert!(!response.body.contains("septa_flows_total"));
}

#[test]
fn the_exposition_checker_itself_refuses_malformed_pages() {
    let good = "# HELP a_total x\n# TYPE a_total counter\na_total{l=\"v\\\"q\"} 1\n";
    assert_eq!(prometheus::parse(good)[0].label("l"), Some("v\"q"));
    for bad in [
        "a_total 1\n",
        "# TYPE a_total counter\na_total 1\n",
        "# HELP a_total x\n# TYPE a_total counter\na_total{l=\"v\"} one\n",
        "# HELP a_total x\n# TYPE a_total counter\na_total{l=\"v\"q\"} 1\n",
        "# HELP a_total x\n# TYPE a_total counter\na_total{l=\"v\"} 1\na_total{l=\"v\"} 2\n",
        "# HELP a_total x\n# TYPE a_total counter\nb_total 1\n",
        "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
    ] {
        let refused = std::panic::catch_unwind(|| prometheus::parse(bad)).is_err();
        assert!(refused, "accepted a malformed page:\n{bad}");
    }
}
